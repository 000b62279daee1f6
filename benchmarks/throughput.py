"""Async throughput at 100 and 500 concurrent requests: router.acomplete vs the direct AsyncAnthropic client.

Run: python -m benchmarks.throughput [--quick] [--no-litellm]
At C=100, 100 coroutines send 2 requests each, one after the other; at C=500, a burst of 500 concurrent
requests. Batches of the direct client and of the router alternate over several rounds and each ratio is
taken within a round, then the median over the rounds; litellm runs one batch after them. Client CPU per
request is this process's CPU time (all threads) over the batch divided by its requests; the fake server
is another process.
"""

from __future__ import annotations

import asyncio
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
    USER,
    ServerProcess,
    Settings,
    Table,
    close_litellm_clients,
    import_litellm,
    litellm_deployment,
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

    cpu0, t0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker(per_worker + (i < extra)) for i in range(concurrency)))
    return time.perf_counter() - t0, time.process_time() - cpu0, failed


async def measure(url: str, settings: Settings, lt: Any | None) -> list[list[str]]:
    direct = anthropic.AsyncAnthropic(base_url=url, api_key=KEY, max_retries=0)
    r = Router(router_policy(url, {"primary": PRIMARY, "fallback": FALLBACK}, {"default": ["primary", "fallback"]}),
               watch=False)
    contenders: dict[str, Call] = {
        "direct anthropic.AsyncAnthropic": lambda: direct.messages.create(
            model=PRIMARY, messages=USER, max_tokens=MAX_TOKENS),
        "router.acomplete": lambda: r.acomplete(messages=USER, max_tokens=MAX_TOKENS),
    }
    if lt is not None:
        contenders["litellm.Router.acompletion anthropic/"] = lambda: lt.acompletion(
            model="primary", messages=USER, max_tokens=MAX_TOKENS)
    rounds = settings.n(3, 2)
    out: list[list[str]] = []
    ours = ["direct anthropic.AsyncAnthropic", "router.acomplete"]
    try:
        for concurrency, per_coroutine in ((100, 2), (500, 1)):
            total = concurrency * per_coroutine
            results: dict[str, list[tuple[float, float, int]]] = {name: [] for name in contenders}
            for name in ours:  # fill connection pools, warm code paths
                await batch(contenders[name], concurrency, concurrency)
            for i in range(rounds):  # direct and router alternate, each round starting with the other one
                for name in ours[i % 2:] + ours[: i % 2]:
                    results[name].append(await batch(contenders[name], concurrency, total))
            # litellm after ours, never before them: its leftover background work (logging tasks and threads)
            # would slow whichever batch came next.
            for name in list(contenders)[len(ours):]:
                await batch(contenders[name], concurrency, concurrency)
                results[name].append(await batch(contenders[name], concurrency, total))
            base = results[ours[0]]
            base_rate = statistics.median(total / wall for wall, _, _ in base)
            base_cpu = statistics.median(cpu for _, cpu, _ in base)
            for name, res in results.items():
                rate = statistics.median(total / wall for wall, _, _ in res)
                cpu = statistics.median(cpu for _, cpu, _ in res)
                if name == ours[0]:
                    ratio = cpu_ratio = "-"
                elif name in ours:  # within each round (same drift), then the median over the rounds
                    pairs = list(zip(res, base, strict=True))
                    ratio = f"{statistics.median(b[0] / c[0] for c, b in pairs):.0%}"
                    cpu_ratio = f"{statistics.median(c[1] / b[1] for c, b in pairs):.0%}"
                else:  # litellm's single batch against the direct client's median
                    ratio, cpu_ratio = f"{rate / base_rate:.0%}", f"{cpu / base_cpu:.0%}"
                failed = sum(f for _, _, f in res)
                out.append([str(concurrency), name, f"{rate:,.0f}", ratio, f"{cpu / total * 1e6:,.0f}", cpu_ratio,
                            f"{failed}/{total * len(res)}"])
    finally:
        await direct.close()
        await r.aclose()
        await close_litellm_clients()
    return out


def run(settings: Settings, server: ServerProcess) -> list[Table]:
    lt = None
    if settings.litellm and (litellm := import_litellm()) is not None:
        lt = litellm.Router(
            model_list=[litellm_deployment("primary", PRIMARY, server.url, "anthropic"),
                        litellm_deployment("fallback", FALLBACK, server.url, "anthropic")],
            fallbacks=[{"primary": ["fallback"]}],
            num_retries=0,
        )
    rounds = settings.n(3, 2)
    table = Table(
        f"Async throughput, non-streaming, healthy primary (median of {rounds} alternating rounds; "
        "litellm: one batch, after them)",
        ["concurrent", "contender", "req/s", "throughput vs direct", "client CPU µs/req", "CPU vs direct",
         "failed"],
    )
    table.rows += asyncio.run(measure(server.url, settings, lt))
    for c in (100, 500):
        def at(name: str, column: str, c: int = c) -> str:
            return next((r[table.columns.index(column)] for r in table.rows if r[0] == str(c) and r[1] == name), "-")

        table.summary.append([
            f"Async throughput at {c} concurrent vs the direct client: req/s ratio (client CPU per request ratio)",
            f"{at('router.acomplete', 'throughput vs direct')} ({at('router.acomplete', 'CPU vs direct')})",
            f"{at('litellm.Router.acompletion anthropic/', 'throughput vs direct')} "
            f"({at('litellm.Router.acompletion anthropic/', 'CPU vs direct')})",
            "≥ 95% at 500",
        ])
    table.notes += [
        "A batch: C=100 coroutines sending 2 requests each, one after the other, or a burst of C=500 concurrent "
        "requests. 'vs direct' is the median over rounds of the ratio to the direct client's batch of the same "
        "round (throughput: higher is better; CPU: the benchmark process's CPU time, lower is better). "
        "SDK default connection limits "
        "(max_connections 1000, keep-alive 100) for the direct client and for the router's clients alike.",
        "The fake server runs in a separate process on the other core; on 2 cores the client and server compete "
        "with each other and with anything else on the machine.",
    ]
    if lt is None:
        table.notes.append("litellm: not measured (not installed or --no-litellm).")
    return [table]


if __name__ == "__main__":
    standalone(run)
