"""Per-call cost when the primary is known dead (our breaker open / litellm's deployment cooled down).

Run: python -m benchmarks.open_breaker [--quick] [--calls N] [--no-litellm]
The call should go straight to the fallback: no request to the dead model, no delay. Rows compare each
router with the direct client calling the fallback, and with the same router given a route that holds
the fallback only (the price of skipping the dead model).
"""

from __future__ import annotations

import asyncio
import gc
import sys
import time
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import anthropic

if not __package__:  # run as a script: make the `benchmarks` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import (
    KEY,
    MAX_TOKENS,
    USER,
    ServerProcess,
    Settings,
    Table,
    ainterleave,
    awarm_up,
    close_litellm_clients,
    import_litellm,
    interleave,
    litellm_deployment,
    p50,
    pct,
    router_policy,
    standalone,
    us,
    warm_up,
)
from router import Router
from router.commands import Call

FALLBACK = "claude-fallback"
DEAD, DEAD_LT = "claude-dead", "claude-dead-litellm"
COLUMNS = ["contender", "p50 µs", "p99 µs", "added over direct µs", "added over same router, fallback-only route µs",
           "requests to the dead model"]


def make_router(url: str) -> Router:
    policy = router_policy(
        url,
        {"dead": DEAD, "fallback": FALLBACK},
        {"default": ["dead", "fallback"], "fallback_only": ["fallback"]},
        failure_threshold=3,
        reset_timeout="1h",
    )
    r = Router(policy, watch=False)
    for _ in range(3):  # three 500s open the dead model's breaker; the fallback answers each call
        r.complete(messages=USER, max_tokens=MAX_TOKENS)
    if r.breakers()["dead"].state != "open":
        raise RuntimeError(f"the dead model's breaker did not open: {r.breakers()['dead']}")
    return r


def make_litellm_router(url: str) -> Any | None:
    """litellm.Router whose primary deployment is cooled down for an hour (allowed_fails=1, two 500s)."""
    litellm = import_litellm()
    if litellm is None:
        return None
    lt = litellm.Router(
        model_list=[litellm_deployment("dead", DEAD_LT, url, "anthropic"),
                    litellm_deployment("fallback", FALLBACK, url, "anthropic")],
        fallbacks=[{"dead": ["fallback"]}],
        num_retries=0,
        allowed_fails=1,
        cooldown_time=3600,
    )
    for _ in range(2):
        lt.completion(model="dead", messages=USER, max_tokens=MAX_TOKENS)
    return lt


def rows(samples: Mapping[str, list[float]], refs: Mapping[str, tuple[str, str | None]],
         dead_hits: Mapping[str, int]) -> list[list[str]]:
    out = []
    for name, values in samples.items():
        direct, same = refs[name]
        added = us(p50(values) - p50(samples[direct]), signed=True) if direct != name else "-"
        skip = us(p50(values) - p50(samples[same]), signed=True) if same is not None else "-"
        hits = str(dead_hits[name]) if name in dead_hits else "-"
        out.append([name, us(p50(values)), us(pct(values, 0.99)), added, skip, hits])
    return out


OUR_CALLS, OUR_CALLS_QUICK = 800, 300  # direct client and router: cheap, so many calls
LITELLM_CALLS, LITELLM_CALLS_QUICK = 200, 80  # litellm's loop: ~8 ms a call


def loops(mode: str, direct: Any, r: Router, lt: Any | None) -> tuple[dict[str, Any], dict[str, Any],
                                                                      dict[str, tuple[str, str | None]]]:
    """The two interleaved loops (ours, litellm's) as {name: call}, and each row's references:
    (its direct-client baseline, the same router on a route without the dead model)."""
    d = f"{mode}: direct anthropic.{'Anthropic' if mode == 'sync' else 'AsyncAnthropic'} to the fallback"
    dl = d + " (litellm loop)"
    complete = r.complete if mode == "sync" else r.acomplete
    ours = {
        d: lambda: direct.messages.create(model=FALLBACK, messages=USER, max_tokens=MAX_TOKENS),
        f"{mode}: router, route [fallback]": lambda: complete(
            messages=USER, max_tokens=MAX_TOKENS, route="fallback_only"),
        f"{mode}: router, route [dead (open), fallback]": lambda: complete(messages=USER, max_tokens=MAX_TOKENS),
    }
    refs: dict[str, tuple[str, str | None]] = {
        d: (d, None),
        f"{mode}: router, route [fallback]": (d, None),
        f"{mode}: router, route [dead (open), fallback]": (d, f"{mode}: router, route [fallback]"),
    }
    theirs: dict[str, Any] = {}
    if lt is not None:
        call = lt.completion if mode == "sync" else lt.acompletion
        theirs = {
            dl: ours[d],
            f"{mode}: litellm.Router, fallback group": lambda: call(
                model="fallback", messages=USER, max_tokens=MAX_TOKENS),
            f"{mode}: litellm.Router, dead group (cooled down) -> fallback": lambda: call(
                model="dead", messages=USER, max_tokens=MAX_TOKENS),
        }
        refs[dl] = (dl, None)
        refs[f"{mode}: litellm.Router, fallback group"] = (dl, None)
        refs[f"{mode}: litellm.Router, dead group (cooled down) -> fallback"] = (
            dl, f"{mode}: litellm.Router, fallback group")
    return ours, theirs, refs


def bench_sync(server: ServerProcess, settings: Settings, r: Router, lt: Any | None) -> list[list[str]]:
    direct = anthropic.Anthropic(base_url=server.url, api_key=KEY, max_retries=0)
    ours, theirs, refs = loops("sync", direct, r, lt)
    before = {DEAD: server.count(DEAD), DEAD_LT: server.count(DEAD_LT)}
    try:
        warm_up(ours, settings.n(50, 20))
        gc.collect()
        samples = interleave(ours, settings.calls_or(OUR_CALLS, OUR_CALLS_QUICK))
        if theirs:  # after ours, never before: litellm's leftover background work would slow them
            warm_up(theirs, settings.n(50, 20))
            samples |= interleave(theirs, settings.calls_or(LITELLM_CALLS, LITELLM_CALLS_QUICK))
            time.sleep(0.5)  # let litellm's background work drain before anything else is timed
    finally:
        direct.close()
    hits = {"sync: router, route [dead (open), fallback]": server.count(DEAD) - before[DEAD]}
    if lt is not None:
        hits["sync: litellm.Router, dead group (cooled down) -> fallback"] = server.count(DEAD_LT) - before[DEAD_LT]
    return rows(samples, refs, hits)


async def bench_async(server: ServerProcess, settings: Settings, r: Router, lt: Any | None) -> list[list[str]]:
    direct = anthropic.AsyncAnthropic(base_url=server.url, api_key=KEY, max_retries=0)
    ours, theirs, refs = loops("async", direct, r, lt)
    before = {DEAD: server.count(DEAD), DEAD_LT: server.count(DEAD_LT)}
    try:
        await awarm_up(ours, settings.n(50, 20))
        gc.collect()
        samples = await ainterleave(ours, settings.calls_or(OUR_CALLS, OUR_CALLS_QUICK))
        if theirs:  # after ours, never before: litellm's leftover background work would slow them
            await awarm_up(theirs, settings.n(50, 20))
            samples |= await ainterleave(theirs, settings.calls_or(LITELLM_CALLS, LITELLM_CALLS_QUICK))
    finally:
        await direct.close()
        await r.aclose()  # the router's async clients belong to this loop: close them in it
        await close_litellm_clients()
    hits = {"async: router, route [dead (open), fallback]": server.count(DEAD) - before[DEAD]}
    if lt is not None:
        hits["async: litellm.Router, dead group (cooled down) -> fallback"] = server.count(DEAD_LT) - before[DEAD_LT]
    return rows(samples, refs, hits)


def bench_decision(r: Router, calls: int) -> list[str]:
    """Our router's own work before the fallback's request starts, first model open: no I/O at all."""
    samples = []
    clock = time.perf_counter
    store = r._store
    for _ in range(calls):
        t0 = clock()
        start = r._start("default", None, {})  # as drivers.serve() does: admit the quiet first call,
        first = start.first
        assert first is not None
        answer = store.admit(first.alias, start.at, first.config.timeout.total)  # (OPEN) then start the plan
        steps = start.plan((start.at, answer))
        command = steps.send(None)  # runs until the plan yields the Call for the fallback
        samples.append(clock() - t0)
        steps.close()
        assert isinstance(command, Call) and command.target.alias == "fallback", command
    return ["router decision only: dead model skipped, up to the fallback's Call (no I/O)",
            us(p50(samples)), us(pct(samples, 0.99)), "-", "-", "0"]


def run(settings: Settings, server: ServerProcess) -> list[Table]:
    server.fail(DEAD)
    server.fail(DEAD_LT)
    r = make_router(server.url)
    lt = make_litellm_router(server.url) if settings.litellm else None
    calls = settings.calls_or(OUR_CALLS, OUR_CALLS_QUICK)
    table = Table(f"Per-call overhead, primary known dead: breaker open / deployment cooled down "
                  f"({calls} interleaved calls each; litellm loop: "
                  f"{settings.calls_or(LITELLM_CALLS, LITELLM_CALLS_QUICK)})", COLUMNS)
    try:
        table.rows += bench_sync(server, settings, r, lt)
        table.rows += asyncio.run(bench_async(server, settings, r, lt))
        table.rows.append(bench_decision(r, calls * 10))
    finally:
        r.close()
    over, hits = COLUMNS[3], COLUMNS[5]
    ours, theirs = "router, route [dead (open), fallback]", "litellm.Router, dead group (cooled down) -> fallback"
    table.summary += [
        ["Primary dead: added per call over the direct client calling the fallback, p50, sync / async (µs)",
         f"{table.cell('sync: ' + ours, over)} / {table.cell('async: ' + ours, over)}",
         f"{table.cell('sync: ' + theirs, over)} / {table.cell('async: ' + theirs, over)}", "-"],
        ["Primary dead: router's own work before the fallback's request starts, p50 (µs)",
         table.rows[-1][1], "-", "< 20 µs"],
        ["Primary dead: requests sent to it anyway, sync / async",
         f"{table.cell('sync: ' + ours, hits)} / {table.cell('async: ' + ours, hits)}",
         f"{table.cell('sync: ' + theirs, hits)} / {table.cell('async: ' + theirs, hits)}", "0"],
    ]
    table.notes += [
        "Ours: failure_threshold 3, reset_timeout 1h, opened by three 500s before timing. litellm: allowed_fails=1, "
        "cooldown_time=3600, num_retries=0, fallbacks; the dead deployment cooled down by two 500s before timing. "
        "Both speak the anthropic wire to the fake server.",
        "'requests to the dead model' is counted by the server during warm-up and timing (should be 0).",
        "Ours and litellm run in separate interleaved loops, each with its own direct-client baseline (litellm's "
        "background work slows whatever shares its process, the direct client included).",
    ]
    if lt is None:
        table.notes.append("litellm: not measured (not installed or --no-litellm).")
    return [table]


if __name__ == "__main__":
    standalone(run)
