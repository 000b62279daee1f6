"""What the demo shows: a live rich view of requests and breakers (or plain lines when not a terminal)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import TextIO

from rich import box
from rich.console import Console, ConsoleOptions, Group, RenderResult
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from .clock import SYSTEM
from .router import Router

STATE_STYLE = {"closed": "bold green", "open": "bold red", "half_open": "bold yellow"}
MODEL_STYLES = ["green", "cyan", "magenta", "blue"]
MAX_LINES = 8  # events and requests the live view shows at most


@dataclass
class Tally:
    """What the demo saw, for the live view and the summary."""

    started: float
    outage_end: float
    served: dict[str, int] = field(default_factory=dict)
    failed: int = 0
    transitions: list[tuple[float, str, str, str]] = field(default_factory=list)
    probes: int = 0
    recovered_at: float | None = None
    timeline: list[str] = field(default_factory=list)  # alias that served each request, "!" = failed

    def at(self, t: float) -> float:
        return t - self.started


class View:
    """Renders the demo. Live and redrawn 8 times a second on a terminal; event lines otherwise.

    The live view fits the terminal: at 80x24 it shows the breakers, who served each request, the
    last 7 breaker transitions and events, and the last 3 requests; taller terminals show more.
    """

    def __init__(
        self, router: Router, tally: Tally, chain: Sequence[str], outage: float, duration: float, plain: bool,
        out: TextIO, clock: Callable[[], float] = SYSTEM.now,
    ) -> None:
        self.router = router
        self.tally = tally
        self.chain = list(chain)
        self.primary = self.chain[0]
        self.outage = outage
        self.duration = duration
        self.plain = plain
        self.clock = clock
        self.advice: str | None = None  # how to run the demo so that the primary recovers in it
        self.console = Console(file=out, highlight=False, force_terminal=None if plain else True, soft_wrap=plain)
        self.styles = {a: MODEL_STYLES[i % len(MODEL_STYLES)] for i, a in enumerate(self.chain)}
        self.recent: list[str] = []
        self.notes: list[tuple[float, str]] = []  # (time, text), shown among the events
        self._live: Live | None = None
        self._lock = threading.Lock()
        self._shown_transitions = 0
        self._last_path: str | None = None

    def __enter__(self) -> View:
        if self.plain:
            self.console.print(
                f"[bold]failover-router demo[/]: route {' → '.join(self.chain)}; "
                f"[bold]{self.primary}[/] answers HTTP 500 for {self.outage:g} s, then recovers."
            )
        if self.advice:
            self.console.print(f"note: {self.advice}")
        if not self.plain:
            self._live = Live(self, console=self.console, refresh_per_second=8)
            self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.__exit__(None, None, None)
        else:
            self._flush_transitions()

    def note(self, text: str) -> None:
        with self._lock:
            self.notes.append((self.clock(), text))
        if self.plain:
            self._flush_transitions()
            self.console.print(text)

    def request(self, t: float, served_by: str, path: str) -> None:
        line = f"[{self.tally.at(t):5.1f}s] {served_by:>7} served  {path}"
        with self._lock:
            self.recent = [*self.recent[-(MAX_LINES - 1):], line]
        if self.plain:
            self._flush_transitions()
            if path != self._last_path:  # print when the route a request takes changes
                self.console.print(line)
                self._last_path = path

    def _flush_transitions(self) -> None:
        for t, alias, old, new in self.tally.transitions[self._shown_transitions:]:
            self.console.print(f"[{self.tally.at(t):5.1f}s] breaker {alias}: {old} → {new}")
            self._shown_transitions += 1

    # -- the live view ----------------------------------------------------------------------------

    def __rich_console__(self, console: Console, options: ConsoleOptions) -> RenderResult:
        """The live view, sized to the terminal: one line spare, every line within its width."""
        height = (options.height or options.size.height) - 1
        breakers = self._breakers()
        served = self._served(options.max_width - 4)
        fixed = 1 + len(console.render_lines(breakers, options, pad=False)) + 3
        room = height - fixed - 4  # what is left inside the two bordered panels below
        n_events = max(1, min(MAX_LINES, room - 3))
        n_requests = min(MAX_LINES, room - n_events)
        with self._lock:
            events = sorted(
                [(t, f"[{self.tally.at(t):5.1f}s] breaker {a}: {o} → {n}") for t, a, o, n in self.tally.transitions]
                + self.notes,
                key=lambda event: event[0],  # stable: transitions at the same instant keep their order
            )
            recent = self.recent[-n_requests:] if n_requests > 0 else []
        yield self._head()
        yield breakers
        yield served
        yield _lines_panel("breaker transitions and events", [text for _, text in events[-n_events:]], n_events)
        if n_requests > 0:
            yield _lines_panel("latest requests", recent, n_requests)

    def _head(self) -> Text:
        elapsed = self.clock() - self.tally.started
        head = Text(f"failover-router demo   t = {elapsed:4.1f}s / {self.duration:g}s   ", "bold", no_wrap=True,
                    overflow="ellipsis")
        if elapsed < self.outage:
            head.append(f"OUTAGE: {self.primary} answers HTTP 500 until {self.outage:g}s", "bold red")
        else:
            head.append(f"outage over at {self.outage:g}s: {self.primary} answers again", "bold green")
        return head

    def _breakers(self) -> Table:
        table = Table(box=box.SIMPLE_HEAD, show_edge=False, expand=False)
        for col in ("breaker", "state", "failures", "next probe in"):
            table.add_column(col, no_wrap=True)
        now = self.clock()
        infos = self.router.breakers()
        for alias in self.chain:
            info = infos[alias]
            retry = f"{max(0.0, info.retry_at - now):.1f}s" if info.retry_at and info.state == "open" else ""
            table.add_row(alias, Text(info.state, STATE_STYLE[info.state]), str(info.failures), retry)
        return table

    def _served(self, width: int) -> Panel:
        bar = Text(no_wrap=True, overflow="crop")
        for alias in self.tally.timeline[-max(1, width):]:
            bar.append("█", "bold red" if alias == "!" else self.styles.get(alias, ""))
        legend = Text(" ")
        for i, a in enumerate(self.chain):
            legend.append(" → " if i else "route: ").append(f"█ {a}", self.styles[a])
        if self.tally.failed:
            legend.append("   ").append("█ failed", "bold red")
        legend.append(" ")
        return Panel(bar, title="who served each request (newest right)", subtitle=legend)

    def summary(self, primary_failures: int) -> int:
        """Print the summary; the exit status is 0 when no request failed."""
        t = self.tally
        total = sum(t.served.values()) + t.failed
        opened = [x for x in t.transitions if x[1] == self.primary and x[3] == "open"]
        closed = [x for x in t.transitions if x[1] == self.primary and x[3] == "closed"]
        c = self.console
        c.print()
        c.print("[bold]Summary[/]")
        c.print(f"  requests: {total} sent, {sum(t.served.values())} served, {t.failed} failed")
        c.print("  served by: " + ", ".join(f"{a} {n}" for a, n in sorted(t.served.items())))
        failed_probes = sum(1 for x in t.transitions if x[1] == self.primary and x[2] == "half_open" and x[3] == "open")
        plural = "" if failed_probes == 1 else "s"
        c.print(
            f"  calls the dead {self.primary} received: {primary_failures} "
            f"({primary_failures - failed_probes} before its breaker opened, {failed_probes} failed probe{plural})"
        )
        c.print(f"  probes sent to {self.primary}: {t.probes}")
        if opened:
            c.print(f"  breaker {self.primary}: opened at {t.at(opened[0][0]):.1f}s", end="")
            c.print(f", closed at {t.at(closed[-1][0]):.1f}s" if closed else ", never closed")
        else:
            c.print(f"  breaker {self.primary}: never opened")
        if t.recovered_at is not None:
            c.print(
                f"  recovery: traffic back on {self.primary} {t.recovered_at - t.outage_end:.1f}s "
                "after the outage ended"
            )
        else:
            c.print(f"  recovery: traffic did not return to {self.primary} before the demo ended")
            if self.advice:
                c.print(f"  ({self.advice})")
        return 0 if t.failed == 0 else 1


def _lines_panel(title: str, lines: list[str], height: int) -> Panel:
    """A panel `height` lines high inside, each line cut to the width with an ellipsis."""
    body = [Text(line, no_wrap=True, overflow="ellipsis") for line in lines] or [Text("…")]
    return Panel(Group(*body), title=title, height=height + 2)
