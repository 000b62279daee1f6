"""Outage timeline: the primary answers 500 for T seconds, then recovers, under a steady request rate.

Run: python -m benchmarks.outage [--quick] [--no-litellm]
Our router and litellm.Router run side by side on one event loop (each its own primary and fallback on the
same fake server, requests offset by half a period), so the same outage and the same machine drift hit
both. Counted: requests that reached the dead primary (by the server), requests that failed for the
caller, latency added to requests during the outage, and time from recovery until traffic is back on
the primary.
"""

from __future__ import annotations

import asyncio
import sys
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

if not __package__:  # run as a script: make the `benchmarks` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import (
    MAX_TOKENS,
    USER,
    ServerProcess,
    Settings,
    Table,
    close_litellm_clients,
    import_litellm,
    litellm_deployment,
    ms,
    p50,
    router_policy,
    standalone,
)
from router import Kind, Router

RATE = 20.0  # requests per second, per contender
THRESHOLD = 3
RESET = 1.0  # seconds: our reset_timeout (= max_reset_timeout: one probe per window) and litellm's cooldown_time

# (served by "primary" | "fallback", failed probes of the primary during this request)
Served = tuple[str, int]


@dataclass
class Sample:
    sent: float  # seconds since the timeline started
    latency: float
    served: str  # "primary" | "fallback" | "error"
    failed_probes: int = 0


@dataclass
class Contender:
    name: str
    settings: str
    primary_model: str
    call: Callable[[], Awaitable[Served]]
    samples: list[Sample] = field(default_factory=list)
    dead_hits: int = 0


def our_contender(url: str) -> tuple[Contender, Router]:
    primary, fallback = "claude-outage-ours-primary", "claude-outage-ours-fallback"
    policy = router_policy(url, {"primary": primary, "fallback": fallback}, {"default": ["primary", "fallback"]},
                           failure_threshold=THRESHOLD, reset_timeout=f"{RESET:g}s", attempts=1)
    r = Router(policy, watch=False)

    async def call() -> Served:
        msg = await r.acomplete(messages=USER, max_tokens=MAX_TOKENS)
        probes = sum(1 for a in msg.routing.attempts if a.probe and a.outcome is not Kind.SUCCESS)
        return ("primary" if msg.routing.model == "primary" else "fallback"), probes

    settings = (f"failure_threshold {THRESHOLD}, reset_timeout {RESET:g}s (max_reset_timeout {RESET:g}s), "
                "retry attempts 1")
    return Contender("failover-router (router.acomplete)", settings, primary, call), r


def litellm_contender(url: str) -> Contender | None:
    litellm = import_litellm()
    if litellm is None:
        return None
    primary, fallback = "claude-outage-litellm-primary", "claude-outage-litellm-fallback"
    lt = litellm.Router(
        model_list=[litellm_deployment("primary", primary, url, "anthropic"),
                    litellm_deployment("fallback", fallback, url, "anthropic")],
        fallbacks=[{"primary": ["fallback"]}],
        num_retries=0,
        allowed_fails=THRESHOLD - 1,  # cooled down when fails > allowed_fails: on the 3rd failure
        cooldown_time=RESET,
    )

    async def call() -> Served:
        response: Any = await lt.acompletion(model="primary", messages=USER, max_tokens=MAX_TOKENS)
        return ("primary" if response.model == primary else "fallback"), 0

    settings = (f"allowed_fails {THRESHOLD - 1}, cooldown_time {RESET:g}s, num_retries 0, "
                "fallbacks, anthropic/ wire")
    return Contender("litellm.Router (acompletion)", settings, primary, call)


async def _sleep_until(at: float) -> None:
    delay = at - time.perf_counter()
    if delay > 0:
        await asyncio.sleep(delay)


async def _one(c: Contender, start: float) -> None:
    t0 = time.perf_counter()
    try:
        served, probes = await c.call()
    except Exception:
        served, probes = "error", 0
    c.samples.append(Sample(t0 - start, time.perf_counter() - t0, served, probes))


async def _drive(c: Contender, start: float, offset: float, total: float) -> None:
    tasks = []
    for i in range(int(total * RATE)):
        await _sleep_until(start + offset + i / RATE)
        tasks.append(asyncio.create_task(_one(c, start)))
    await asyncio.gather(*tasks)


async def timeline(server: ServerProcess, contenders: list[Contender], healthy: float, outage: float,
                   total: float) -> tuple[float, float]:
    """Run the timeline; returns (outage start, recovery) in seconds since the start."""
    for c in contenders:  # connections and code paths warm, primaries healthy
        for _ in range(20):
            await c.call()
    start = time.perf_counter()
    drivers = [asyncio.create_task(_drive(c, start, i / (RATE * len(contenders)), total))
               for i, c in enumerate(contenders)]
    await _sleep_until(start + healthy)
    at_fail = {c.name: server.fail(c.primary_model) for c in contenders}
    t_fail = time.perf_counter() - start
    await _sleep_until(start + healthy + outage)
    for c in contenders:
        c.dead_hits = server.ok(c.primary_model) - at_fail[c.name]
    t_ok = time.perf_counter() - start
    await asyncio.gather(*drivers)
    await close_litellm_clients()
    return t_fail, t_ok


def strip(samples: list[Sample], t_fail: float, t_ok: float, total: float, bucket: float = 0.25) -> str:
    """One character per `bucket` seconds: P all on primary, F all on fallback, m mixed, x any failed;
    '|' marks the outage start and the recovery."""
    chars = []
    t = 0.0
    marks = [t_fail, t_ok]
    while t < total - 1e-9:
        while marks and marks[0] < t + bucket / 2:
            chars.append("|")
            marks.pop(0)
        served = {s.served for s in samples if t <= s.sent < t + bucket}
        chars.append("x" if "error" in served else "P" if served == {"primary"} else "F" if served == {"fallback"}
                     else "m" if served else ".")
        t += bucket
    return "".join(chars)


def row(c: Contender, t_fail: float, t_ok: float, is_ours: bool) -> list[str]:
    healthy = [s.latency for s in c.samples if s.sent < t_fail and s.served == "primary"]
    base = p50(healthy) if healthy else 0.0
    during = [s for s in c.samples if t_fail <= s.sent < t_ok]
    added = [(s.latency - base, s.sent - t_fail) for s in during if s.served != "error"]
    worst = max(added) if added else None
    failed = sum(1 for s in c.samples if s.served == "error")
    back = next((s.sent - t_ok for s in sorted(c.samples, key=lambda s: s.sent)
                 if s.sent >= t_ok and s.served == "primary"), None)
    after_on_fallback = sum(1 for s in c.samples if s.sent >= t_ok and s.served == "fallback")
    if is_ours:
        probes = sum(s.failed_probes for s in during)
        expected = f"{THRESHOLD} + {probes} failed probes = {THRESHOLD + probes}"
    else:
        expected = "-"
    return [
        c.name,
        str(len(during)),
        str(c.dead_hits),
        expected,
        str(failed),
        f"{ms(p50([a for a, _ in added]), signed=True)} / {ms(worst[0], signed=True)} (at +{worst[1]:.2f} s)"
        if worst else "-",
        f"{back:.2f}" if back is not None else "never",
        str(after_on_fallback),
    ]


def run(settings: Settings, server: ServerProcess) -> list[Table]:
    healthy, outage, total = (1.0, 2.0, 5.0) if settings.quick else (1.0, 3.0, 8.0)
    ours, r = our_contender(server.url)
    contenders = [ours]
    lt = litellm_contender(server.url) if settings.litellm else None
    if lt is not None:
        contenders.append(lt)
    async def timeline_then_close() -> tuple[float, float]:
        try:
            return await timeline(server, contenders, healthy, outage, total)
        finally:
            await r.aclose()

    t_fail, t_ok = asyncio.run(timeline_then_close())
    table = Table(
        f"Outage timeline: primary answers 500 for {outage:g} s of {total:g} s, {RATE:g} req/s per router",
        ["contender", "requests during outage", "reached the dead primary", "expected (ours)",
         "failed for the caller", "added latency during outage, p50 / max ms (sent at, from outage start)",
         "recovery -> first request on primary, s", "requests on fallback after recovery"],
    )
    for c in contenders:
        table.rows.append(row(c, t_fail, t_ok, c is ours))
    cols = table.columns
    by_name = {c.name: table.rows[i] for i, c in enumerate(contenders)}
    mine = by_name[ours.name]
    other = by_name[lt.name] if lt is not None else ["-"] * len(cols)
    table.summary += [
        [f"Outage {outage:g} s at {RATE:g} req/s: requests that reached the dead primary (ours expected: "
         f"threshold + one probe per reset window)", f"{mine[2]} (expected {mine[3].split('= ')[-1]})", other[2],
         "threshold + 1 per window"],
        ["Outage: requests that failed for the caller", mine[4], other[4], "0"],
        ["Outage: added latency during the outage, p50 / max (ms)", mine[5].split(" (")[0], other[5].split(" (")[0],
         "-"],
        ["Recovery: seconds until traffic is back on the primary", mine[6], other[6], f"≤ reset_timeout ({RESET:g} s)"],
    ]
    table.notes += [f"{c.name}: {c.settings}." for c in contenders]
    table.notes.append(
        "Timeline, one character per 0.25 s (P all on primary, F all on fallback, m mixed, x a request failed, "
        "| outage start / recovery): " + "; ".join(
            f"{c.name.split()[0]} `{strip(c.samples, t_fail, t_ok, total)}`" for c in contenders))
    table.notes.append("Added latency: each request's latency minus the p50 of the same router's requests "
                       "before the outage. Both routers share one event loop and one fake server process.")
    if lt is None:
        table.notes.append("litellm: not measured (not installed or --no-litellm).")
    return [table]


if __name__ == "__main__":
    standalone(run)
