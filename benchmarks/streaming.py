"""Streaming: time to first token and to the end of the stream, router vs the SDK's messages.stream().

Run: python -m benchmarks.streaming [--quick] [--calls N] [--no-litellm]
Prints "not available yet" when this checkout's Router has no stream(). Each call reads the whole stream
(so connections are reused); the first text delta's arrival is the time to first token.
"""

from __future__ import annotations

import asyncio
import gc
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
    memory_stream_client,
    p50,
    pct,
    router_policy,
    schedule,
    standalone,
    us,
)
from router import Router

PRIMARY, FALLBACK = "claude-primary", "claude-fallback"
COLUMNS = ["contender", "first token p50 µs", "first token p99 µs", "added vs SDK stream() µs",
           "added vs SDK create(stream=True) µs", "whole stream p50 µs", "added vs SDK create(stream=True) µs "]

# A timed stream: returns (seconds to the first text delta, seconds to the end).
SyncStream = Callable[[], tuple[float, float]]
AsyncStream = Callable[[], Awaitable[tuple[float, float]]]


def available() -> bool:
    return callable(getattr(Router, "stream", None)) and callable(getattr(Router, "astream", None))


def _times(samples: dict[str, list[tuple[float, float]]], helper: str | None, raw: str) -> list[list[str]]:
    """Rows; 'added' at p50 against the SDK's stream() helper and against its raw create(stream=True)."""
    def first(name: str) -> float:
        return p50([f for f, _ in samples[name]])

    def whole(name: str) -> float:
        return p50([t for _, t in samples[name]])

    out = []
    for name, values in samples.items():
        firsts = [f for f, _ in values]
        out.append([
            name, us(first(name)), us(pct(firsts, 0.99)),
            "-" if helper is None or name == helper else us(first(name) - first(helper), True),
            "-" if name == raw else us(first(name) - first(raw), True),
            us(whole(name)),
            "-" if name == raw else us(whole(name) - whole(raw), True),
        ])
    return out


def _interleave(contenders: dict[str, SyncStream], calls: int) -> dict[str, list[tuple[float, float]]]:
    samples: dict[str, list[tuple[float, float]]] = {n: [] for n in contenders}
    for name in schedule(list(contenders), calls):
        samples[name].append(contenders[name]())
    return samples


async def _ainterleave(contenders: dict[str, AsyncStream], calls: int) -> dict[str, list[tuple[float, float]]]:
    samples: dict[str, list[tuple[float, float]]] = {n: [] for n in contenders}
    for name in schedule(list(contenders), calls):
        samples[name].append(await contenders[name]())
    return samples


def bench_sync(url: str, calls: int, warm: int) -> list[list[str]]:
    direct = anthropic.Anthropic(base_url=url, api_key=KEY, max_retries=0)
    r = Router(router_policy(url, {"primary": PRIMARY, "fallback": FALLBACK}, {"default": ["primary", "fallback"]}),
               watch=False)

    def sdk() -> tuple[float, float]:
        t0 = time.perf_counter()
        first = 0.0
        with direct.messages.stream(model=PRIMARY, messages=USER, max_tokens=MAX_TOKENS) as s:
            for _ in s.text_stream:
                first = first or time.perf_counter() - t0
        return first, time.perf_counter() - t0

    def raw() -> tuple[float, float]:
        t0 = time.perf_counter()
        first = 0.0
        events = direct.messages.create(model=PRIMARY, messages=USER, max_tokens=MAX_TOKENS, stream=True)
        with events:
            for event in events:
                if event.type == "content_block_delta":
                    first = first or time.perf_counter() - t0
        return first, time.perf_counter() - t0

    def routed() -> tuple[float, float]:
        t0 = time.perf_counter()
        first = 0.0
        with r.stream(messages=USER, max_tokens=MAX_TOKENS) as s:
            for _ in s.text_stream:
                first = first or time.perf_counter() - t0
        return first, time.perf_counter() - t0

    contenders = {"sync: direct anthropic.Anthropic messages.stream()": sdk,
                  "sync: direct anthropic.Anthropic messages.create(stream=True)": raw,
                  "sync: router.stream": routed}
    try:
        for fn in contenders.values():
            for _ in range(warm):
                fn()
        gc.collect()
        samples = _interleave(contenders, calls)
    finally:
        direct.close()
        r.close()
    return _times(samples, "sync: direct anthropic.Anthropic messages.stream()",
                  "sync: direct anthropic.Anthropic messages.create(stream=True)")


async def bench_async(url: str, calls: int, warm: int, lt: Any | None) -> list[list[str]]:
    direct = anthropic.AsyncAnthropic(base_url=url, api_key=KEY, max_retries=0)
    r = Router(router_policy(url, {"primary": PRIMARY, "fallback": FALLBACK}, {"default": ["primary", "fallback"]}),
               watch=False)

    async def sdk() -> tuple[float, float]:
        t0 = time.perf_counter()
        first = 0.0
        async with direct.messages.stream(model=PRIMARY, messages=USER, max_tokens=MAX_TOKENS) as s:
            async for _ in s.text_stream:
                first = first or time.perf_counter() - t0
        return first, time.perf_counter() - t0

    async def raw() -> tuple[float, float]:
        t0 = time.perf_counter()
        first = 0.0
        events = await direct.messages.create(model=PRIMARY, messages=USER, max_tokens=MAX_TOKENS, stream=True)
        async with events:
            async for event in events:
                if event.type == "content_block_delta":
                    first = first or time.perf_counter() - t0
        return first, time.perf_counter() - t0

    async def routed() -> tuple[float, float]:
        t0 = time.perf_counter()
        first = 0.0
        async with r.astream(messages=USER, max_tokens=MAX_TOKENS) as s:
            async for _ in s.text_stream:
                first = first or time.perf_counter() - t0
        return first, time.perf_counter() - t0

    contenders: dict[str, AsyncStream] = {
        "async: direct anthropic.AsyncAnthropic messages.stream()": sdk,
        "async: direct anthropic.AsyncAnthropic messages.create(stream=True)": raw,
        "async: router.astream": routed,
    }
    theirs: dict[str, AsyncStream] = {}
    if lt is not None:
        async def litellm_stream() -> tuple[float, float]:
            t0 = time.perf_counter()
            first = 0.0
            response = await lt.acompletion(model="primary", messages=USER, max_tokens=MAX_TOKENS, stream=True)
            async for chunk in response:
                if chunk.choices and chunk.choices[0].delta.content:
                    first = first or time.perf_counter() - t0
            return first, time.perf_counter() - t0

        theirs = {"async: direct anthropic.AsyncAnthropic messages.create(stream=True) (litellm loop)": raw,
                  "async: litellm.Router.acompletion(stream=True) anthropic/": litellm_stream}
    try:
        for fn in contenders.values():
            for _ in range(warm):
                await fn()
        gc.collect()
        samples = await _ainterleave(contenders, calls)
        out = _times(samples, "async: direct anthropic.AsyncAnthropic messages.stream()",
                     "async: direct anthropic.AsyncAnthropic messages.create(stream=True)")
        if theirs:  # after ours, never before: litellm's leftover background work would slow them
            for fn in theirs.values():
                for _ in range(warm):
                    await fn()
            more = await _ainterleave(theirs, max(50, calls // 2))
            out += _times(more, None, "async: direct anthropic.AsyncAnthropic messages.create(stream=True) "
                          "(litellm loop)")
    finally:
        await direct.close()
        await r.aclose()
        await close_litellm_clients()
    return out


LONG = "claude-long"


LONG_NAMES = ("sync: direct anthropic.Anthropic messages.create(stream=True)",
              "sync: router.stream, to get_final_message()")


def _long_samples(deltas: int, streams: int) -> dict[str, list[tuple[float, float]]]:
    direct = memory_stream_client(deltas)
    r = Router(router_policy(MEMORY_URL, {"primary": LONG, "fallback": FALLBACK}, {"default": ["primary", "fallback"]}),
               watch=False)
    provider: Any = r._current.targets["primary"].provider  # benchmark-only: swap in the in-memory client
    provider._sync.close()
    provider._sync = memory_stream_client(deltas)

    def raw() -> tuple[float, float]:
        t0 = time.perf_counter()
        with direct.messages.create(model=LONG, messages=USER, max_tokens=MAX_TOKENS, stream=True) as events:
            for _ in events:
                pass
        return 0.0, time.perf_counter() - t0

    def routed() -> tuple[float, float]:
        t0 = time.perf_counter()
        with r.stream(messages=USER, max_tokens=MAX_TOKENS) as s:
            s.get_final_message()
        return 0.0, time.perf_counter() - t0

    try:
        raw()
        routed()
        gc.collect()
        return _interleave(dict(zip(LONG_NAMES, (raw, routed), strict=True)), streams)
    finally:
        direct.close()
        r.close()


def bench_long(sizes: tuple[int, ...], streams: int) -> Table:
    """A long answer: does the router's cost per event stay flat however long the stream gets?"""
    table = Table(f"Streaming a long answer, in memory: text deltas of 20 chars ({streams} interleaved streams each)",
                  ["deltas", "contender", "whole stream p50 ms", "per event p50 µs", "added per event µs"])
    for deltas in sizes:
        samples = _long_samples(deltas, streams)
        base = p50([w for _, w in samples[LONG_NAMES[0]]])
        for name in LONG_NAMES:
            whole = p50([w for _, w in samples[name]])
            table.rows.append([f"{deltas:,}", name, f"{whole * 1e3:,.1f}", f"{whole / deltas * 1e6:.1f}",
                               "-" if name == LONG_NAMES[0] else f"{(whole - base) / deltas * 1e6:+.2f}"])
    table.notes.append(
        "Both clients run on httpx2.MockTransport answering the same SSE body (no sockets, no server, so the "
        "long streams are not at the mercy of the other core); the router's primary has its sync client swapped "
        "for it (benchmark-only). The router keeps every streamed piece and joins them once for the final "
        "message, so its added cost per event should be the same at both lengths.")
    return table


def run(settings: Settings, server: ServerProcess) -> list[Table]:
    calls = settings.calls_or(200, 100)
    table = Table(f"Streaming, healthy primary: time to first token and to the end ({calls} interleaved streams each)",
                  COLUMNS)
    if not available():
        table.rows.append(["router.stream / router.astream", "not available yet", "-", "-", "-", "-", "-"])
        table.summary.append(["Streaming: time to first token", "not available yet", "-", "-"])
        return [table]
    lt = None
    if settings.litellm and (litellm := import_litellm()) is not None:
        lt = litellm.Router(
            model_list=[litellm_deployment("primary", PRIMARY, server.url, "anthropic"),
                        litellm_deployment("fallback", FALLBACK, server.url, "anthropic")],
            fallbacks=[{"primary": ["fallback"]}], num_retries=0)
    warm = settings.n(50, 20)
    table.rows += bench_sync(server.url, calls, warm)
    table.rows += asyncio.run(bench_async(server.url, calls, warm, lt))
    raw_col = COLUMNS[4]
    lt_name = "async: litellm.Router.acompletion(stream=True) anthropic/"
    table.summary.append([
        "Streaming: time to first token added over the SDK's create(stream=True), p50, sync / async (µs)",
        f"{table.cell('sync: router.stream', raw_col)} / {table.cell('async: router.astream', raw_col)}",
        f"- / {table.cell(lt_name, raw_col)}", "-",
    ])
    table.notes += [
        "The fake server sends its whole default stream at once (message_start, a few text deltas, message_stop), "
        "so these are the clients' own costs, not a model's pacing. The SDK's stream() helper builds a snapshot "
        "message on every event; the router (like create(stream=True)) passes raw events and assembles the "
        "final message once, so the fair comparison for the router's own cost is create(stream=True).",
        "Ours: route [primary, fallback], policy streaming defaults. litellm: fallbacks, num_retries=0, "
        "its OpenAI-format chunks, in a loop of its own after ours (half as many streams), against the direct "
        "client's create(stream=True) in that loop.",
    ]
    if lt is None:
        table.notes.append("litellm: not measured (not installed or --no-litellm).")
    sizes = (2_000, 20_000) if not settings.quick else (1_000, 5_000)
    long = bench_long(sizes, settings.n(11, 3))
    long.summary.append([f"Streaming a long answer, in memory: added per event over the SDK's create(stream=True), "
                         f"p50, at {sizes[0]:,} / {sizes[1]:,} deltas (µs)",
                         f"{long.rows[1][4]} / {long.rows[3][4]}", "-", "-"])
    return [table, long]


if __name__ == "__main__":
    standalone(run)
