"""The numbers a simulation comes down to: who served, what failed, what the faulty models cost, recoveries."""

from __future__ import annotations

import bisect
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType

from .run import RequestResult, Simulation, WindowCalls


@dataclass(frozen=True, slots=True)
class Recovery:
    """After `model` (the first model of `route`) stopped failing at `fault_ended`, the first request of the
    route it served again, once its breaker had opened for the last time because of that fault, started at
    `back_at` (None: it served none before `until`, its next fault window, or the end of the timeline).
    Calls that hung through the fault may fail after it ended and open the breaker then: traffic is back
    when it stays back."""

    route: str
    model: str
    fault_ended: float
    back_at: float | None
    until: float | None

    @property
    def after(self) -> float | None:
        return None if self.back_at is None else self.back_at - self.fault_ended


@dataclass(frozen=True, slots=True)
class Summary:
    """Requests sent, served and failed for the caller; served per model and failed per error; the calls
    each model received (in all, and during each of its fault windows); each recovery of a primary."""

    requests: int
    served: int
    failed: int
    served_by: Mapping[str, int] = field(hash=False)
    failed_by: Mapping[str, int] = field(hash=False)
    calls: Mapping[str, int] = field(hash=False)
    windows: tuple[WindowCalls, ...]
    recoveries: tuple[Recovery, ...]


def summarize(sim: Simulation) -> Summary:
    served_by = dict.fromkeys(sim.policy.models, 0)
    failed_by: Counter[str] = Counter()
    for r in sim.requests:
        if r.model is not None:
            served_by[r.model] += 1
        else:
            failed_by[r.error or "?"] += 1
    failed = sum(failed_by.values())
    return Summary(
        requests=len(sim.requests), served=len(sim.requests) - failed, failed=failed,
        served_by=MappingProxyType(served_by), failed_by=MappingProxyType(dict(failed_by.most_common())),
        calls=sim.calls, windows=sim.windows, recoveries=recoveries(sim),
    )


def fault_spans(sim: Simulation, alias: str) -> list[tuple[float, float]]:
    """When `alias` was not healthy: its fault windows (not `ok`), those that touch merged into one."""
    spans: list[tuple[float, float]] = []
    for w in sim.timeline.model(alias).windows:
        if w.fault.kind == "ok":
            continue
        if spans and w.start <= spans[-1][1]:
            spans[-1] = (spans[-1][0], max(spans[-1][1], w.end))
        else:
            spans.append((w.start, w.end))
    return spans


def recoveries(sim: Simulation) -> tuple[Recovery, ...]:
    """For each route the requests use, each end of its primary's faults, and when traffic came back."""
    out: list[Recovery] = []
    ats = [r.at for r in sim.requests]
    for route in sim.timeline.requests.routes:
        primary = sim.policy.routes[route].chain[0]
        spans = fault_spans(sim, primary)
        for i, (start, end) in enumerate(spans):
            until = spans[i + 1][0] if i + 1 < len(spans) else None
            stop = math.inf if until is None else until
            opened = [t.at for t in sim.transitions if t.model == primary and t.new == "open" and start <= t.at < stop]
            since = max([end, *opened])
            back = _first_served(sim.requests, ats, route, primary, since, until, strict=since > end)
            out.append(Recovery(route, primary, end, back, until))
    return tuple(sorted(out, key=lambda r: (r.fault_ended, r.route)))


def _first_served(
    requests: Sequence[RequestResult], ats: Sequence[float], route: str, model: str, start: float,
    until: float | None, strict: bool,
) -> float | None:
    """The start of the first request of `route` served by `model` from `start` (after it, if `strict`)."""
    stop = math.inf if until is None else until
    first = bisect.bisect_right(ats, start) if strict else bisect.bisect_left(ats, start)
    for i in range(first, len(requests)):
        r = requests[i]
        if r.at >= stop:
            return None
        if r.route == route and r.model == model:
            return r.at
    return None
