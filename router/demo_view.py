"""What the demo shows: a live rich view of requests and breakers (or plain lines when not a terminal)."""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass, field
from typing import TextIO

from rich.console import Console, Group
from rich.live import Live
from rich.panel import Panel
from rich.table import Table
from rich.text import Text

from .client import Router

STATE_STYLE = {"closed": "bold green", "open": "bold red", "half_open": "bold yellow"}
MODEL_STYLES = ["green", "cyan", "magenta", "blue"]


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
    """Renders the demo. Live and redrawn 8 times a second on a terminal; event lines otherwise."""

    def __init__(
        self, router: Router, tally: Tally, primary: str, outage: float, duration: float, plain: bool,
        out: TextIO,
    ) -> None:
        self.router = router
        self.tally = tally
        self.primary = primary
        self.outage = outage
        self.duration = duration
        self.plain = plain
        self.console = Console(file=out, highlight=False, force_terminal=None if plain else True)
        self.aliases = list(router.policy.models)
        self.styles = {a: MODEL_STYLES[i % len(MODEL_STYLES)] for i, a in enumerate(self.aliases)}
        self.recent: list[str] = []
        self.notes: list[tuple[float, str]] = []  # (monotonic time, text), shown among the events
        self._live: Live | None = None
        self._lock = threading.Lock()
        self._shown_transitions = 0
        self._last_path: str | None = None

    def __enter__(self) -> View:
        self.console.print(
            f"[bold]failover-router demo[/]: route {' → '.join(self.aliases)}; "
            f"[bold]{self.primary}[/] answers HTTP 500 for {self.outage:g} s, then recovers."
        )
        if not self.plain:
            self._live = Live(get_renderable=self._render, console=self.console, refresh_per_second=8)
            self._live.__enter__()
        return self

    def __exit__(self, *exc: object) -> None:
        if self._live is not None:
            self._live.__exit__(None, None, None)
        else:
            self._flush_transitions()

    def note(self, text: str) -> None:
        with self._lock:
            self.notes.append((time.monotonic(), text))
        if self.plain:
            self._flush_transitions()
            self.console.print(text)

    def request(self, t: float, served_by: str, path: str) -> None:
        line = f"[{self.tally.at(t):5.1f}s] {served_by:>7} served  {path}"
        with self._lock:
            self.recent = [*self.recent[-7:], line]
        if self.plain:
            self._flush_transitions()
            if path != self._last_path:  # print when the route a request takes changes
                self.console.print(line)
                self._last_path = path

    def _flush_transitions(self) -> None:
        for t, alias, old, new in self.tally.transitions[self._shown_transitions:]:
            self.console.print(f"[{self.tally.at(t):5.1f}s] breaker {alias}: {old} → {new}")
            self._shown_transitions += 1

    def _render(self) -> Group:
        breakers = Table(title="breakers", expand=False)
        for col in ("model", "state", "failures", "next probe in"):
            breakers.add_column(col)
        now = time.monotonic()
        for alias, info in self.router.breakers().items():
            retry = f"{max(0.0, info.retry_at - now):.1f}s" if info.retry_at and info.state == "open" else ""
            breakers.add_row(alias, Text(info.state, STATE_STYLE[info.state]), str(info.failures), retry)
        bar = Text()
        for alias in self.tally.timeline[-90:]:
            bar.append("█", "bold red" if alias == "!" else self.styles[alias])
        legend = Text("  ".join(f"█ {a}" for a in self.aliases))
        for a in self.aliases:
            legend.highlight_words([f"█ {a}"], self.styles[a])
        elapsed = time.monotonic() - self.tally.started
        phase = "OUTAGE" if elapsed < self.outage else "recovered upstream"
        head = Text(f"t = {elapsed:4.1f}s / {self.duration:g}s   {self.primary}: {phase}", "bold")
        with self._lock:
            recent = "\n".join(self.recent)
            events = sorted(
                [(t, f"[{self.tally.at(t):5.1f}s] breaker {a}: {o} → {n}") for t, a, o, n in self.tally.transitions]
                + self.notes
            )
        return Group(
            head,
            breakers,
            Panel(Group(bar, legend), title="who served each request (newest right)"),
            Panel(recent or "…", title="latest requests"),
            Panel("\n".join(text for _, text in events[-8:]) or "…", title="events"),
        )

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
        return 0 if t.failed == 0 else 1
