"""`failover-router status --watch`: each model's breaker over the last minutes, as strips of coloured cells."""

from __future__ import annotations

import sys
from collections import deque
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TextIO

from rich.console import Console, Group, RenderableType
from rich.live import Live
from rich.table import Table
from rich.text import Text

from .breaker import BreakerInfo
from .clock import SYSTEM, Clock
from .status_page import PollResult
from .status_page.report import concerning, page_lines

#: state -> (glyph, style). Distinct glyphs, so the strip reads without colour too.
CELLS = {
    "closed": ("▁", "green"),
    "half_open": ("▄", "yellow"),
    "open": ("█", "red"),
    "forced": ("▓", "magenta"),
    "unknown": ("?", "dim"),
    None: ("·", "dim"),  # no sample in that stretch of time
}
_WORST = ("forced", "open", "half_open", "unknown", "closed")  # a cell shows the worst state seen in it


@dataclass(frozen=True, slots=True)
class Sample:
    """Every model's breaker at one moment of the watch (times on the watch's monotonic clock)."""

    at: float
    breakers: Mapping[str, BreakerInfo]
    reachable: bool = True  # False: Redis did not answer, so these are this process's own breakers


def state_of(info: BreakerInfo | None) -> str:
    if info is None:
        return "unknown"
    return "forced" if info.forced else info.state


def strip(history: Sequence[Sample], alias: str, start: float, end: float, cells: int) -> list[str | None]:
    """The state each of `cells` equal stretches of [start, end) shows: the worst one sampled in it (so a
    short opening is never hidden), or None when no sample fell in it."""
    width = (end - start) / cells
    seen: list[set[str]] = [set() for _ in range(cells)]
    for sample in history:
        if start <= sample.at <= end:
            seen[min(cells - 1, int((sample.at - start) / width))].add(state_of(sample.breakers.get(alias)))
    return [next((s for s in _WORST if s in states), None) for states in seen]


def _strip_text(states: list[str | None]) -> Text:
    text = Text()
    for state in states:
        glyph, style = CELLS[state]
        text.append(glyph, style=style)
    return text


def _ahead(at: float | None, now: float) -> str:
    if at is None:
        return ""
    return f"in {at - now:.0f}s" if at > now else "now"


def draw(history: Sequence[Sample], models: Sequence[str], *, now: float, minutes: float, cells: int = 60,
         page: PollResult | None = None, shared: bool = False) -> RenderableType:
    """The watch view for a history of samples: one row per model (strip, state now, failures, next probe,
    what the status page says of it), a legend, and the status page's lines. Pure: no I/O, no clock."""
    start = now - minutes * 60
    latest = history[-1] if history else None
    title = ("breakers as the fleet sees them" if shared else
             "breakers of a fresh process (the policy has no `state:`; add state: {redis: ...} to watch the fleet)")
    table = Table(title=title, title_justify="left", box=None, pad_edge=False)
    for column in ("model", f"last {minutes:g} min", "now", "failures", "next probe", "status page"):
        table.add_column(column, no_wrap=column != "status page", min_width=len(column))
    for alias in models:
        info = latest.breakers.get(alias) if latest else None
        state = state_of(info)
        glyph, style = CELLS[state]
        table.add_row(
            alias, _strip_text(strip(history, alias, start, now, cells)),
            Text(f"{glyph} {state.replace('_', '-')}", style=style), str(info.failures) if info else "",
            _ahead(info.retry_at, now) if info and state == "open" else "", concerning(page, alias),
        )
    legend = Text(f"each cell {minutes * 60 / cells:g}s, oldest left; ")
    for state in ("closed", "half_open", "open", "forced"):
        glyph, style = CELLS[state]
        legend.append(glyph, style=style).append(f" {state.replace('_', '-')}  ")
    parts: list[RenderableType] = [table, legend]
    if latest is not None and not latest.reachable:
        parts.append(Text.from_markup("[red]redis is unreachable: these are this process's own breakers[/]"))
    if page is not None:
        parts += [Text.from_markup(line) for line in page_lines(page, now)]
    return Group(*parts)


def _cells(minutes: float, interval: float) -> int:
    return max(10, min(60, round(minutes * 60 / interval)))


class Watch:
    """The loop: sample the store every `interval`, keep the last `minutes`, redraw; Ctrl-C ends it (exit 0)."""

    def __init__(self, sample: Callable[[], Sample], models: Sequence[str], *, interval: float, minutes: float,
                 shared: bool, page: Callable[[], PollResult | None], clock: Clock = SYSTEM,
                 out: TextIO = sys.stdout) -> None:
        self.sample, self.models, self.interval, self.minutes = sample, models, interval, minutes
        self.shared, self.page, self.clock, self.out = shared, page, clock, out
        self.history: deque[Sample] = deque()

    def frame(self) -> RenderableType:
        taken = self.sample()
        self.history.append(taken)
        while self.history and self.history[0].at < taken.at - self.minutes * 60:
            self.history.popleft()
        return draw(self.history, self.models, now=taken.at, minutes=self.minutes,
                    cells=_cells(self.minutes, self.interval), page=self.page(), shared=self.shared)

    def run(self, count: int | None = None) -> int:
        console = Console(file=self.out, highlight=False)
        shown = 0
        try:
            if console.is_terminal:
                with Live(console=console, auto_refresh=False, transient=False) as live:
                    while count is None or shown < count:
                        live.update(self.frame(), refresh=True)
                        shown += 1
                        if count is None or shown < count:
                            self.clock.sleep(self.interval)
                return 0
            while count is None or shown < count:  # not a terminal: one frame after another
                console.print(self.frame())
                console.print()
                self.out.flush()
                shown += 1
                if count is None or shown < count:
                    self.clock.sleep(self.interval)
        except KeyboardInterrupt:
            pass
        return 0
