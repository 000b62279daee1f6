"""The picture of a simulation for people: who served what across time, and each model's breaker and faults."""

from __future__ import annotations

from collections.abc import Sequence

from rich.console import Group
from rich.text import Text

from .report import short_time
from .run import Simulation, Transition
from .summary import fault_spans

MODEL_STYLES = ["green", "cyan", "magenta", "blue", "bright_green", "bright_cyan"]  # as the demo's
STATE_GLYPHS = {0: ("─", "green"), 1: ("▒", "bold yellow"), 2: ("█", "bold red")}  # closed, half-open, open
_RANK = {"closed": 0, "half_open": 1, "open": 2}
LEVELS = " ▁▂▃▄▅▆▇█"


class _Axis:
    """`columns` buckets of equal length over [0, span)."""

    def __init__(self, span: float, columns: int) -> None:
        self.span = span if span > 0 else 1.0
        self.columns = columns
        self.width = self.span / columns

    def bucket(self, t: float) -> int:
        return min(self.columns - 1, max(0, int(t / self.width)))


def picture(sim: Simulation, width: int) -> Group:
    """The whole picture, `width` characters wide."""
    aliases = list(sim.policy.models)
    label = max([len(a) for a in aliases] + [len("failed"), len("  faults")]) + 3
    requests = sim.timeline.requests
    span = requests.span if requests.rate is not None else sim.end  # a round span for a rate: round ticks
    axis = _Axis(span, max(10, width - label - 1))
    styles = {a: MODEL_STYLES[i % len(MODEL_STYLES)] for i, a in enumerate(aliases)}
    note = f"one column = {short_time(axis.width)}, bar height = share"
    rows: list[Text] = [_heading("who served the requests", note)]
    rows += _served(sim, axis, aliases, styles, label)
    legend = Text("  (").append("█ open", "bold red").append("  ").append("▒ half-open", "bold yellow")
    legend.append("  ").append("─ closed", "green").append("  ").append("× fault window", "bold magenta").append(")")
    rows.append(_heading("breakers", "").append_text(legend))
    for alias in aliases:
        rows.append(_row(alias, label, _breaker(sim.transitions, alias, axis)))
        spans = fault_spans(sim, alias)
        if spans:
            rows.append(_row("  faults", label, _faults(spans, axis)))
    rows.append(_ticks(axis, label))
    return Group(*rows)


def _heading(title: str, note: str) -> Text:
    head = Text(title, "bold", no_wrap=True, overflow="ellipsis")
    if note:
        head.append(f"  ({note})", "dim")
    return head


def _row(name: str, label: int, cells: Text) -> Text:
    row = Text(f"  {name}".ljust(label)[:label], no_wrap=True, overflow="crop")
    return row.append_text(cells)


def _served(sim: Simulation, axis: _Axis, aliases: Sequence[str], styles: dict[str, str], label: int) -> list[Text]:
    n = axis.columns
    counts = {a: [0] * n for a in aliases}
    failed = [0] * n
    totals = [0] * n
    for r in sim.requests:
        b = axis.bucket(r.at)
        totals[b] += 1
        if r.model is None:
            failed[b] += 1
        else:
            counts[r.model][b] += 1
    rows = [_row(a, label, _bars(counts[a], totals, styles[a])) for a in aliases]
    if any(failed):
        rows.append(_row("failed", label, _bars(failed, totals, "bold red")))
    return rows


def _bars(counts: Sequence[int], totals: Sequence[int], style: str) -> Text:
    cells = []
    for c, total in zip(counts, totals, strict=True):
        cells.append(" " if not c else LEVELS[max(1, round(8 * c / total))])
    return Text("".join(cells), style, no_wrap=True, overflow="crop")


def _breaker(transitions: Sequence[Transition], alias: str, axis: _Axis) -> Text:
    """Each column: open if the breaker was open at any time in it, else half-open if it was, else closed."""
    rank = [0] * axis.columns
    state, since = "closed", 0.0
    for tr in transitions:
        if tr.model != alias:
            continue
        _mark(rank, axis, since, tr.at, _RANK[state])
        state, since = tr.new, tr.at
    _mark(rank, axis, since, axis.span, _RANK[state])
    text = Text(no_wrap=True, overflow="crop")
    for r in rank:
        glyph, style = STATE_GLYPHS[r]
        text.append(glyph, style)
    return text


def _mark(rank: list[int], axis: _Axis, start: float, end: float, value: int) -> None:
    if not value:
        return
    for b in range(axis.bucket(start), axis.bucket(end) + 1):
        if rank[b] < value:
            rank[b] = value


def _faults(spans: Sequence[tuple[float, float]], axis: _Axis) -> Text:
    cells = [" "] * axis.columns
    for start, end in spans:
        if start >= axis.span:
            continue
        for b in range(axis.bucket(start), axis.bucket(max(start, end - 1e-9)) + 1):
            cells[b] = "×"
    return Text("".join(cells), "bold magenta", no_wrap=True, overflow="crop")


def _ticks(axis: _Axis, label: int) -> Text:
    """Times under the columns at 0, ¼, ½, ¾ and the end."""
    line = [" "] * axis.columns
    for q in range(5):
        col = min(axis.columns - 1, round(q * (axis.columns - 1) / 4))
        tick = short_time(axis.span * q / 4)
        start = col if q == 0 else (col - len(tick) + 1 if q == 4 else col - len(tick) // 2)
        start = max(0, min(start, axis.columns - len(tick)))
        if all(c == " " for c in line[max(0, start - 1):start + len(tick) + 1]):
            line[start:start + len(tick)] = tick
    return _row("time", label, Text("".join(line), "dim", no_wrap=True))
