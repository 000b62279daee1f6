"""Async throughput at 100 and 500 concurrent requests: router.acomplete vs the direct AsyncAnthropic client.

Run: python -m benchmarks.throughput [--quick] [--no-litellm]
C coroutines send requests one after the other (4 each at C=100, 2 each at C=500). Batches of the direct
client, of a second identical direct client (the A/A control: the noise floor) and of the router run in a
fresh order every round; each ratio is taken within a round, then the median [min-max] over the rounds;
litellm runs one batch after them. Client CPU per
request is this process's CPU time (all threads) over the batch divided by its requests; the fake server
is another process.
"""

from __future__ import annotations

import asyncio
import cProfile
import gc
import pstats
import random
import statistics
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import anthropic

if not __package__:  # run as a script: make the `benchmarks` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import (
    KEY,
    MAX_TOKENS,
    MEMORY_URL,
    USER,
    ServerProcess,
    Settings,
    Table,
    close_litellm_clients,
    import_litellm,
    litellm_deployment,
    memory_clients,
    router_policy,
    standalone,
)
from router import Router

PRIMARY, FALLBACK = "claude-primary", "claude-fallback"
Call = Callable[[], Awaitable[object]]


async def batch(call: Call, concurrency: int, total: int) -> tuple[float, float, int]:
    """(wall seconds, process CPU seconds, failed requests) for `total` requests, `concurrency` at a time."""
    per_worker, extra = divmod(total, concurrency)
    failed = 0

    async def worker(n: int) -> None:
        nonlocal failed
        for _ in range(n):
            try:
                await call()
            except Exception:
                failed += 1

    # Every batch starts from a fresh collection: otherwise whichever batch happens to trigger a full
    # collection (a scan of the whole heap, ~150 ms here) pays for the garbage of the batches before it.
    gc.collect()
    cpu0, t0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker(per_worker + (i < extra)) for i in range(concurrency)))
    return time.perf_counter() - t0, time.process_time() - cpu0, failed


MEMORY_LATENCY = 0.002  # seconds each in-memory answer takes
CONTROL = "direct anthropic.AsyncAnthropic, a second client (A/A control)"
DIRECT = "direct anthropic.AsyncAnthropic"
OURS = "router.acomplete"


def spread(values: list[float]) -> str:
    """median [min-max] of ratios, as percentages."""
    return f"{statistics.median(values):.0%} [{min(values):.0%}-{max(values):.0%}]"


async def compare(contenders: dict[str, Call], settings: Settings) -> list[list[str]]:
    """Rows for each concurrency: DIRECT, CONTROL and OURS in shuffled rounds, then any others once."""
    rounds = settings.n(7, 2)
    shuffle = random.Random(5)
    ours = [DIRECT, CONTROL, OURS]
    out: list[list[str]] = []
    for concurrency, per_coroutine in settings.levels():
        total = concurrency * per_coroutine
        results: dict[str, list[tuple[float, float, int]]] = {name: [] for name in contenders}
        for name in ours:  # fill connection pools, warm code paths
            await batch(contenders[name], concurrency, concurrency)
        for _ in range(rounds):  # a fresh order every round, so drift within a round hits all alike
            for name in shuffle.sample(ours, len(ours)):
                results[name].append(await batch(contenders[name], concurrency, total))
        # litellm after ours, never before them: its leftover background work (logging tasks and threads)
        # would slow whichever batch came next.
        for name in list(contenders)[len(ours):]:
            await batch(contenders[name], concurrency, concurrency)
            results[name].append(await batch(contenders[name], concurrency, total))
        base = results[DIRECT]
        base_rate = statistics.median(total / wall for wall, _, _ in base)
        base_cpu = statistics.median(cpu for _, cpu, _ in base)
        for name, res in results.items():
            rate = statistics.median(total / wall for wall, _, _ in res)
            cpu = statistics.median(cpu for _, cpu, _ in res)
            if name == DIRECT:
                ratio = cpu_ratio = "-"
            elif name in ours:  # within each round (same drift), then the median over the rounds
                pairs = list(zip(res, base, strict=True))
                ratio = spread([b[0] / c[0] for c, b in pairs])
                cpu_ratio = spread([c[1] / b[1] for c, b in pairs])
            else:  # litellm's single batch against the direct client's median
                ratio, cpu_ratio = f"{rate / base_rate:.0%}", f"{cpu / base_cpu:.0%}"
            failed = sum(f for _, _, f in res)
            out.append([str(concurrency), name, f"{rate:,.0f}", ratio, f"{cpu / total * 1e6:,.0f}", cpu_ratio,
                        f"{failed}/{total * len(res)}"])
    return out


def _router(url: str) -> Router:
    policy = router_policy(url, {"primary": PRIMARY, "fallback": FALLBACK}, {"default": ["primary", "fallback"]})
    return Router(policy, watch=False)


def _ours(direct: anthropic.AsyncAnthropic, control: anthropic.AsyncAnthropic, r: Router) -> dict[str, Call]:
    return {
        DIRECT: lambda: direct.messages.create(model=PRIMARY, messages=USER, max_tokens=MAX_TOKENS),
        CONTROL: lambda: control.messages.create(model=PRIMARY, messages=USER, max_tokens=MAX_TOKENS),
        OURS: lambda: r.acomplete(messages=USER, max_tokens=MAX_TOKENS),
    }


async def measure(url: str, settings: Settings, lt: Any | None) -> list[list[str]]:
    direct = anthropic.AsyncAnthropic(base_url=url, api_key=KEY, max_retries=0)
    control = anthropic.AsyncAnthropic(base_url=url, api_key=KEY, max_retries=0)
    r = _router(url)
    contenders = _ours(direct, control, r)
    if lt is not None:
        contenders["litellm.Router.acompletion anthropic/"] = lambda: lt.acompletion(
            model="primary", messages=USER, max_tokens=MAX_TOKENS)
    try:
        return await compare(contenders, settings)
    finally:
        await direct.close()
        await control.close()
        await r.aclose()
        await close_litellm_clients()


async def calls_per_request(call: Call, concurrency: int, total: int) -> float:
    """Python function calls (cProfile's count, builtins included) per request over one batch."""
    profile = cProfile.Profile()
    profile.enable()
    await batch(call, concurrency, total)
    profile.disable()
    return float(pstats.Stats(profile).total_calls) / total  # type: ignore[attr-defined]


async def measure_memory(settings: Settings) -> tuple[list[list[str]], list[list[str]]]:
    """The same batches with every client on an in-memory transport whose answers take MEMORY_LATENCY:
    no server and no sockets, so the batch time is this process's own work and much less noisy. Then the
    work per request counted, which no noise can touch: Python function calls, direct client vs router."""
    _, direct = memory_clients(MEMORY_LATENCY)
    _, control = memory_clients(MEMORY_LATENCY)
    r = _router(MEMORY_URL)
    provider: Any = r._current.targets["primary"].provider  # benchmark-only: swap in the in-memory client
    await provider.aclose()  # the async client is taken per event loop: the spare goes to this loop
    _, provider._spare = memory_clients(MEMORY_LATENCY)
    try:
        contenders = _ours(direct, control, r)
        timed = await compare(contenders, settings)
        counted = []
        for concurrency, per_coroutine in settings.levels():
            total = concurrency * per_coroutine
            base = await calls_per_request(contenders[DIRECT], concurrency, total)
            ours = await calls_per_request(contenders[OURS], concurrency, total)
            counted += [[str(concurrency), DIRECT, f"{base:,.0f}", "-"],
                        [str(concurrency), OURS, f"{ours:,.0f}", f"{ours - base:+,.0f} ({ours / base - 1:+.1%})"]]
        return timed, counted
    finally:
        await direct.close()
        await control.close()
        await r.aclose()


def run(settings: Settings, server: ServerProcess) -> list[Table]:
    lt = None
    if settings.litellm and (litellm := import_litellm()) is not None:
        lt = litellm.Router(
            model_list=[litellm_deployment("primary", PRIMARY, server.url, "anthropic"),
                        litellm_deployment("fallback", FALLBACK, server.url, "anthropic")],
            fallbacks=[{"primary": ["fallback"]}],
            num_retries=0,
        )
    rounds = settings.n(7, 2)
    table = Table(
        f"Async throughput, non-streaming, healthy primary (median [min-max] of {rounds} shuffled rounds; "
        "litellm: one batch, after them)",
        ["concurrent", "contender", "req/s", "throughput vs direct", "client CPU µs/req", "CPU vs direct",
         "failed"],
    )
    table.rows += asyncio.run(measure(server.url, settings, lt))
    memory = Table(
        f"Async throughput on an in-memory transport (answers after {MEMORY_LATENCY * 1e3:g} ms, no sockets; "
        f"median [min-max] of {rounds} shuffled rounds)",
        table.columns,
    )
    memory.rows, counted_rows = asyncio.run(measure_memory(settings))
    counted = Table("Work per request, counted: Python function calls in one in-memory batch (deterministic)",
                    ["concurrent", "contender", "function calls per request", "router vs direct"], counted_rows)
    counted.notes.append(
        "cProfile's count of Python and builtin function calls over one batch on the in-memory transport, "
        "divided by its requests (the batch's own gather and workers are the same for both). A count, not a "
        "time: it does not move with the machine's load, and the router's added share of it is a floor for "
        "its share of the CPU per request.")
    memory.notes.append(
        "Every client's HTTP transport is httpx2.MockTransport with an async handler that sleeps "
        f"{MEMORY_LATENCY * 1e3:g} ms and returns a canned Message, so the C requests really are in flight "
        "together, and the only work is this process's own: SDK, router and event loop. There is no server "
        "process competing for the 2 cores and no socket churn, which is why the A/A control's spread is much "
        "narrower here than over loopback. The router's primary has its async client swapped for the same "
        "in-memory one (benchmark-only).")
    for c, _ in settings.levels():
        row = next((r for r in counted.rows if r[0] == str(c) and r[1] == OURS), None)
        counted.summary.append([f"Python function calls per request at {c} concurrent, router over the direct client "
                                "(counted, not timed)", row[3] if row else "-", "-", "-"])
    for t, where in ((table, "loopback"), (memory, "in-memory")):
        for c in (100, 500):
            def at(name: str, column: str, c: int = c, t: Table = t) -> str:
                return next((r[t.columns.index(column)] for r in t.rows if r[0] == str(c) and r[1] == name), "-")

            t.summary.append([
                f"Async throughput at {c} concurrent vs the direct client, {where}: req/s ratio, median [min-max] "
                "(client CPU per request ratio); the A/A control's req/s ratio",
                f"{at(OURS, 'throughput vs direct')} ({at(OURS, 'CPU vs direct')}); A/A: "
                f"{at(CONTROL, 'throughput vs direct')}",
                f"{at('litellm.Router.acompletion anthropic/', 'throughput vs direct')} "
                f"({at('litellm.Router.acompletion anthropic/', 'CPU vs direct')})",
                "≥ 95% at 500",
            ])
    table.notes += [
        "A batch: C coroutines sending requests one after the other, 4 each at C=100 and 2 each at C=500. "
        "'vs direct' is the ratio to the direct client's batch of the same round, as the median [min-max] over "
        "rounds (throughput: higher is better; CPU: the benchmark process's CPU time, lower is better). "
        "The A/A control is a second, identical direct client measured the same way: its spread is this "
        "machine's noise floor, and a router ratio inside it is no measurable difference. Every batch starts "
        "after a gc.collect(), so no batch pays for a full collection of the garbage the batches before it left. "
        "SDK default connection limits "
        "(max_connections 1000, keep-alive 100) for the direct client and for the router's clients alike.",
        "The fake server runs in a separate process on the other core; on 2 cores the client and server compete "
        "with each other and with anything else on the machine.",
    ]
    if lt is None:
        table.notes.append("litellm: not measured (not installed or --no-litellm).")
    return [table, memory, counted]


if __name__ == "__main__":
    standalone(run)
