"""What `simulate` prints: the request lines, the breaker transitions, the summary, and the same as JSON."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from typing import Any

from ..outcome import Kind
from ..routing import Attempt
from .run import RequestResult, Simulation
from .summary import Summary

REQUEST_MODES = ("changes", "all", "none")
MAX_CHANGES = 100  # request lines shown in "changes" mode
MAX_TRANSITIONS = 200  # transition lines in the text (the JSON has them all)
_SKIPPED = {Kind.BREAKER_OPEN: "open", Kind.COOLING_DOWN: "cooling down", Kind.SAME_CREDENTIALS: "same key",
            Kind.DEADLINE: "no time left", Kind.CANNOT_RESUME: "cannot resume"}


def clock_time(t: float) -> str:
    """A virtual instant or a duration: '12.340s', '12m03.40s', '1h02m03.40s'."""
    if t < 0:
        return "-" + clock_time(-t)
    if t < 60:
        return f"{t:.3f}s"
    minutes, seconds = divmod(t, 60.0)
    if t < 3600:
        return f"{int(minutes)}m{seconds:05.2f}s"
    hours, minutes = divmod(int(minutes), 60)
    return f"{hours}h{minutes:02d}m{seconds:05.2f}s"


def short_time(t: float) -> str:
    """A round instant for window edges and axis ticks: '2.5s', '90s' → '1m30.00s', '25m', '1h', '1h30m'."""
    if t < 60:
        return f"{t:.4g}s"
    if t % 60:
        return clock_time(t)
    hours, minutes = divmod(int(t // 60), 60)
    if not hours:
        return f"{minutes}m"
    return f"{hours}h" if not minutes else f"{hours}h{minutes:02d}m"


def describe_attempt(a: Attempt) -> str:
    """'opus ✓', 'opus ✗ 529 (probe)', 'opus skipped (open)', 'opus ✗ connection_error mid-stream', ..."""
    detail = a.detail or ""
    probe = " (probe)" if a.probe else ""
    resumed = " resuming the stream" if "resumed at char" in detail else ""
    if a.outcome is Kind.SUCCESS:
        return f"{a.model} ✓{resumed}{probe}"
    skipped = _SKIPPED.get(a.outcome)
    if skipped is not None:
        return f"{a.model} skipped ({skipped})"
    broke = " mid-stream" if "stream broke after" in detail else ""
    return f"{a.model} ✗ {a.status or a.error_type or a.outcome.value}{broke}{resumed}{probe}"


def describe_path(r: RequestResult) -> str:
    return " → ".join(describe_attempt(a) for a in r.attempts) or "(no attempt)"


def _path_key(r: RequestResult) -> tuple[object, ...]:
    return (r.route, r.model, r.error, *((a.model, a.outcome, a.status, a.probe) for a in r.attempts))


def selected(requests: Sequence[RequestResult], mode: str) -> tuple[list[RequestResult], int]:
    """The requests to show and how many qualified: every one ("all"), none, or ("changes") each whose path
    (route, models tried and their outcomes, who served) differs from the request before it, at most
    MAX_CHANGES of them."""
    if mode == "all":
        return list(requests), len(requests)
    if mode == "none":
        return [], 0
    shown: list[RequestResult] = []
    qualified = 0
    last: tuple[object, ...] | None = None
    for r in requests:
        key = _path_key(r)
        if key != last:
            qualified += 1
            if len(shown) < MAX_CHANGES:
                shown.append(r)
            last = key
    return shown, qualified


def request_line(r: RequestResult, route_width: int = 0) -> str:
    served = r.model if r.model is not None else f"FAILED ({r.error})"
    kind = "stream" if r.stream else "call"
    return (f"  [{clock_time(r.at):>12}] #{r.index:<7} {r.route:<{route_width}} {kind:<6} {served:<10} "
            f"{describe_path(r)}")


def text_lines(sim: Simulation, summary: Summary, mode: str, run_seconds: float | None) -> Iterator[str]:
    """The report for people, line by line (the picture comes after it)."""
    t = sim.timeline
    yield f"simulate {sim.policy.source} with {t.source}" + (f": {t.description}" if t.description else "")
    played = f", played in {run_seconds:.2f}s" if run_seconds is not None else ""
    yield (f"  {summary.requests} requests over {clock_time(sim.end)} of virtual time{played} "
           f"(at most {sim.peak_in_flight} in flight at once)")
    shown, qualified = selected(sim.requests, mode)
    if mode != "none":
        what = "every request" if mode == "all" else "each request whose path differs from the one before"
        yield ""
        yield f"requests ({what}; --requests all|changes|none):"
        route_width = max((len(name) for name in t.requests.routes), default=0)
        yield from (request_line(r, route_width) for r in shown)
        if qualified > len(shown):
            yield f"  … and {qualified - len(shown)} more changes (--requests all shows every request)"
    yield ""
    yield "breaker transitions:" if sim.transitions else "breaker transitions: none"
    for tr in sim.transitions[:MAX_TRANSITIONS]:
        yield f"  [{clock_time(tr.at):>12}] {tr.model}: {tr.old} → {tr.new}"
    if len(sim.transitions) > MAX_TRANSITIONS:
        yield f"  … and {len(sim.transitions) - MAX_TRANSITIONS} more (--json lists them all)"
    yield ""
    yield from summary_lines(summary)


def summary_lines(s: Summary) -> Iterator[str]:
    yield "summary:"
    failed = ", ".join(f"{name} {n}" for name, n in s.failed_by.items())
    yield f"  requests: {s.requests} sent, {s.served} served, {s.failed} failed for the caller" + (
        f" ({failed})" if failed else "")
    yield "  served by: " + ", ".join(f"{alias} {n}" for alias, n in s.served_by.items())
    yield "  calls each model received: " + ", ".join(f"{alias} {n}" for alias, n in s.calls.items())
    if s.windows:
        yield "  calls the models received during their fault windows:"
        for w in s.windows:
            span = f"{short_time(w.window.start)}–{short_time(w.window.end)}"
            probes = f" ({w.probes} probe{'' if w.probes == 1 else 's'})" if w.probes else ""
            yield f"    {w.model} {w.window.fault.label} {span}: {w.calls} call{'' if w.calls == 1 else 's'}{probes}"
    if s.recoveries:
        yield "  back to the primary after each fault:"
        for rec in s.recoveries:
            head = f"    route {rec.route}: {rec.model} healthy again at {short_time(rec.fault_ended)}, "
            if rec.back_at is not None and rec.after is not None:
                yield head + f"served again from {clock_time(rec.back_at)} (+{clock_time(rec.after)})"
            else:
                end = f"its next fault at {short_time(rec.until)}" if rec.until is not None else "the end"
                yield head + f"served no request of the route before {end}"


def _attempt_json(a: Attempt) -> dict[str, Any]:
    return {"model": a.model, "outcome": a.outcome.value, "status": a.status, "error_type": a.error_type,
            "probe": a.probe, "duration_s": round(a.duration_s, 6), "detail": a.detail}


def to_json(sim: Simulation, summary: Summary, mode: str, run_seconds: float | None) -> dict[str, Any]:
    """The same as the text, as one JSON-ready document (times in virtual seconds from 0)."""
    shown, qualified = selected(sim.requests, mode)
    return {
        "policy": sim.policy.source,
        "timeline": sim.timeline.source,
        "description": sim.timeline.description,
        "virtual_seconds": round(sim.end, 6),
        "run_seconds": None if run_seconds is None else round(run_seconds, 3),
        "peak_in_flight": sim.peak_in_flight,
        "summary": {
            "requests": summary.requests,
            "served": summary.served,
            "failed": summary.failed,
            "served_by": dict(summary.served_by),
            "failed_by": dict(summary.failed_by),
            "calls": dict(summary.calls),
            "fault_windows": [
                {"model": w.model, "from": w.window.start, "to": w.window.end, "fault": w.window.fault.label,
                 "calls": w.calls, "probes": w.probes} for w in summary.windows
            ],
            "recoveries": [
                {"route": r.route, "model": r.model, "fault_ended": r.fault_ended, "back_at": r.back_at,
                 "after": None if r.after is None else round(r.after, 6)} for r in summary.recoveries
            ],
        },
        "transitions": [{"at": round(t.at, 6), "model": t.model, "old": t.old, "new": t.new}
                        for t in sim.transitions],
        "requests": {
            "mode": mode,
            "matching": qualified,
            "shown": [
                {"index": r.index, "at": round(r.at, 6), "route": r.route, "stream": r.stream, "model": r.model,
                 "error": r.error, "ended": round(r.ended, 6), "attempts": [_attempt_json(a) for a in r.attempts]}
                for r in shown
            ],
        },
    }
