"""Per-call cost of the router next to the direct anthropic client, on the same fake server, interleaved.

Run: python benchmarks/overhead.py [--calls N]
Prints p50/p99 per call for each contender and what the router adds. Figures, not assertions: the
machine is shared and noisy, so compare numbers from one run only.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import platform
import statistics
import time

import anthropic

from router import Router, parse_policy
from router.testing import FakeServer, Fault

USER = [{"role": "user", "content": "Hi"}]
KEY = "bench-key"


def policy_text(url: str) -> str:
    return f"""
version: 1
defaults:
  retry: {{attempts: 1}}
  breaker: {{failure_threshold: 1, reset_timeout: 1h, max_reset_timeout: 1h}}
models:
  primary:  {{provider: anthropic, model: claude-primary,  base_url: "{url}", api_key: "${{BENCH_KEY}}"}}
  fallback: {{provider: anthropic, model: claude-fallback, base_url: "{url}", api_key: "${{BENCH_KEY}}"}}
  dead:     {{provider: anthropic, model: claude-dead,     base_url: "{url}", api_key: "${{BENCH_KEY}}"}}
routes:
  default: [primary, fallback]
  open_first: [dead, fallback]
  fallback_only: [fallback]
"""


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def row(name: str, samples: list[float], base: list[float] | None = None) -> str:
    p50, p99 = statistics.median(samples) * 1e6, pct(samples, 0.99) * 1e6
    added = f"{(statistics.median(samples) - statistics.median(base)) * 1e6:+8.1f}" if base else "       -"
    return f"| {name:<42} | {p50:9.1f} | {p99:9.1f} | {added} |"


def timed(fn, *args, **kwargs) -> float:  # type: ignore[no-untyped-def]
    t0 = time.perf_counter()
    fn(*args, **kwargs)
    return time.perf_counter() - t0


def bench_sync(server: FakeServer, r: Router, calls: int) -> list[str]:
    direct = anthropic.Anthropic(base_url=server.url, api_key=KEY, max_retries=0)
    fallback_direct = anthropic.Anthropic(base_url=server.url, api_key=KEY, max_retries=0)
    d, rt, ro, rf = [], [], [], []
    for _ in range(200):  # warm up connections and code paths
        direct.messages.create(model="claude-primary", messages=USER, max_tokens=16)
        r.complete(messages=USER, max_tokens=16)
        r.complete(messages=USER, max_tokens=16, route="open_first")
    gc.collect()
    for _ in range(calls):
        d.append(timed(direct.messages.create, model="claude-primary", messages=USER, max_tokens=16))
        rt.append(timed(r.complete, messages=USER, max_tokens=16))
        ro.append(timed(r.complete, messages=USER, max_tokens=16, route="open_first"))
        rf.append(timed(r.complete, messages=USER, max_tokens=16, route="fallback_only"))
    direct.close()
    fallback_direct.close()
    return [
        row("sync: direct anthropic client", d),
        row("sync: router.complete (primary healthy)", rt, d),
        row("sync: router, route [fallback] only", rf, d),
        row("sync: router, first model open -> fallback", ro, rf),
    ]


async def bench_async(server: FakeServer, r: Router, calls: int) -> list[str]:
    direct = anthropic.AsyncAnthropic(base_url=server.url, api_key=KEY, max_retries=0)
    d, rt = [], []
    for _ in range(200):
        await direct.messages.create(model="claude-primary", messages=USER, max_tokens=16)
        await r.acomplete(messages=USER, max_tokens=16)
    for _ in range(calls):
        t0 = time.perf_counter()
        await direct.messages.create(model="claude-primary", messages=USER, max_tokens=16)
        t1 = time.perf_counter()
        await r.acomplete(messages=USER, max_tokens=16)
        t2 = time.perf_counter()
        d.append(t1 - t0)
        rt.append(t2 - t1)
    await direct.close()
    return [row("async: direct AsyncAnthropic client", d), row("async: router.acomplete", rt, d)]


def bench_decision(r: Router, calls: int) -> list[str]:
    """The router's own work before the fallback's request starts, with the first model open (no I/O)."""
    samples = []
    for _ in range(calls):
        t0 = time.perf_counter()
        steps = r._plan("open_first", None, {})
        steps.send(None)  # runs until the plan yields the call to the fallback
        samples.append(time.perf_counter() - t0)
        steps.close()
    return [row("decision only: open model skipped, up to fallback call", samples)]


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=3000)
    args = parser.parse_args()
    with FakeServer() as server:
        server.plan("claude-dead", default=Fault.status(500))
        r = Router(parse_policy(policy_text(server.url), env={"BENCH_KEY": KEY}))
        try:
            r.complete(messages=USER, max_tokens=16, route="open_first")  # trips "dead" (threshold 1)
        finally:
            assert r.breakers()["dead"].state == "open"
        lines = bench_sync(server, r, args.calls)
        lines += asyncio.run(bench_async(server, r, args.calls))
        lines += bench_decision(r, args.calls * 10)
        r.close()
    print(f"# router overhead: {args.calls} interleaved calls each, {platform.python_implementation()} "
          f"{platform.python_version()}, {platform.machine()}, fake server on 127.0.0.1")
    print()
    print("| contender | p50 µs | p99 µs | added at p50 µs |")
    print("|---|---:|---:|---:|")
    for line in lines:
        print(line)


if __name__ == "__main__":
    main()
