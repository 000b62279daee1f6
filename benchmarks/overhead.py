"""Per-call cost, non-streaming, healthy primary: direct SDK clients vs router vs litellm.Router, interleaved.

Run: python benchmarks/overhead.py [--quick] [--calls N] [--no-litellm]   (or python -m benchmarks)
Standalone it also prints the open-breaker figure (benchmarks/open_breaker.py). Every contender has a
fallback configured and calls the same fake server process on 127.0.0.1. Figures, not assertions: the
machine is shared and noisy, so compare numbers from one run only.
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
import openai

if not __package__:  # run as a script: make the `benchmarks` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import (
    KEY,
    MAX_TOKENS,
    MEMORY_URL,
    USER,
    AsyncCall,
    ServerProcess,
    Settings,
    SyncCall,
    Table,
    ainterleave,
    awarm_up,
    close_litellm_clients,
    import_litellm,
    interleave,
    litellm_deployment,
    memory_clients,
    p50,
    pct,
    router_policy,
    standalone,
    us,
    warm_up,
)
from router import Router

PRIMARY, FALLBACK = "claude-primary", "claude-fallback"
COLUMNS = ["contender", "wire", "p50 µs", "p99 µs", "added at p50 µs", "× direct"]
OUR_CALLS, OUR_CALLS_QUICK = 1000, 400  # direct client and router: cheap, so many calls
LITELLM_CALLS, LITELLM_CALLS_QUICK = 250, 80  # litellm's loop: ~5 ms a call


def make_router(url: str) -> Router:
    policy = router_policy(url, {"primary": PRIMARY, "fallback": FALLBACK}, {"default": ["primary", "fallback"]})
    return Router(policy, watch=False)


def make_litellm_router(url: str) -> Any | None:
    """litellm.Router with an anthropic/ and an openai/ primary, each with a fallback, no retries."""
    litellm = import_litellm()
    if litellm is None:
        return None
    model_list = [
        litellm_deployment("an-primary", PRIMARY, url, "anthropic"),
        litellm_deployment("an-fallback", FALLBACK, url, "anthropic"),
        litellm_deployment("oa-primary", PRIMARY, url, "openai"),
        litellm_deployment("oa-fallback", FALLBACK, url, "openai"),
    ]
    fallbacks = [{"an-primary": ["an-fallback"]}, {"oa-primary": ["oa-fallback"]}]
    return litellm.Router(model_list=model_list, fallbacks=fallbacks, num_retries=0)


def rows(samples: Mapping[str, list[float]], wires: Mapping[str, str], baselines: Mapping[str, str]) -> list[list[str]]:
    """One row per contender; 'added' is its p50 minus the p50 of the direct client of the same wire."""
    out = []
    for name, values in samples.items():
        base = baselines.get(wires[name])
        if base is None or base == name:
            added, ratio = "-", "-"
        else:
            added = us(p50(values) - p50(samples[base]), signed=True)
            ratio = f"{p50(values) / p50(samples[base]):.2f}"
        out.append([name, wires[name], us(p50(values)), us(pct(values, 0.99)), added, ratio])
    return out


Samples = dict[str, list[float]]


def added(samples: Samples, name: str, base: str) -> str:
    return us(p50(samples[name]) - p50(samples[base]), signed=True) if name in samples else "-"


def bench_sync(server: ServerProcess, settings: Settings, lt: Any | None) -> tuple[list[list[str]], Samples]:
    direct = anthropic.Anthropic(base_url=server.url, api_key=KEY, max_retries=0)
    odirect = openai.OpenAI(base_url=server.url + "/v1", api_key=KEY, max_retries=0)
    r = make_router(server.url)
    d, dl = "sync: direct anthropic.Anthropic", "sync: direct anthropic.Anthropic (litellm loop)"
    ours: dict[str, SyncCall] = {
        d: lambda: direct.messages.create(model=PRIMARY, messages=USER, max_tokens=MAX_TOKENS),
        "sync: router.complete": lambda: r.complete(messages=USER, max_tokens=MAX_TOKENS),
    }
    theirs: dict[str, SyncCall] = {}
    if lt is not None:
        theirs = {
            dl: ours[d],
            "sync: direct openai.OpenAI": lambda: odirect.chat.completions.create(
                model=PRIMARY, messages=USER, max_tokens=MAX_TOKENS),  # type: ignore[arg-type]
            "sync: litellm.Router.completion anthropic/": lambda: lt.completion(
                model="an-primary", messages=USER, max_tokens=MAX_TOKENS),
            "sync: litellm.Router.completion openai/": lambda: lt.completion(
                model="oa-primary", messages=USER, max_tokens=MAX_TOKENS),
        }
    try:
        warm_up(ours, settings.n(50, 20))
        gc.collect()
        samples = interleave(ours, settings.calls_or(OUR_CALLS, OUR_CALLS_QUICK))
        out = rows(samples, dict.fromkeys(samples, "anthropic"), {"anthropic": d})
        if theirs:  # after ours, never before: litellm's leftover background work would slow them
            warm_up(theirs, settings.n(50, 20))
            samples |= (more := interleave(theirs, settings.calls_or(LITELLM_CALLS, LITELLM_CALLS_QUICK)))
            time.sleep(0.5)  # let litellm's background work drain before anything else is timed
            out += rows(more, {name: "openai" if "openai" in name else "anthropic" for name in more},
                        {"anthropic": dl, "openai": "sync: direct openai.OpenAI"})
    finally:
        direct.close()
        odirect.close()
        r.close()
    return out, samples


async def bench_async(server: ServerProcess, settings: Settings, lt: Any | None) -> tuple[list[list[str]], Samples]:
    direct = anthropic.AsyncAnthropic(base_url=server.url, api_key=KEY, max_retries=0)
    odirect = openai.AsyncOpenAI(base_url=server.url + "/v1", api_key=KEY, max_retries=0)
    r = make_router(server.url)
    d, dl = "async: direct anthropic.AsyncAnthropic", "async: direct anthropic.AsyncAnthropic (litellm loop)"
    ours: dict[str, AsyncCall] = {
        d: lambda: direct.messages.create(model=PRIMARY, messages=USER, max_tokens=MAX_TOKENS),
        "async: router.acomplete": lambda: r.acomplete(messages=USER, max_tokens=MAX_TOKENS),
    }
    theirs: dict[str, AsyncCall] = {}
    if lt is not None:
        theirs = {
            dl: ours[d],
            "async: direct openai.AsyncOpenAI": lambda: odirect.chat.completions.create(
                model=PRIMARY, messages=USER, max_tokens=MAX_TOKENS),  # type: ignore[arg-type]
            "async: litellm.Router.acompletion anthropic/": lambda: lt.acompletion(
                model="an-primary", messages=USER, max_tokens=MAX_TOKENS),
            "async: litellm.Router.acompletion openai/": lambda: lt.acompletion(
                model="oa-primary", messages=USER, max_tokens=MAX_TOKENS),
            "async: litellm.Router.aanthropic_messages": lambda: lt.aanthropic_messages(
                model="an-primary", messages=USER, max_tokens=MAX_TOKENS),
        }
    try:
        await awarm_up(ours, settings.n(50, 20))
        gc.collect()
        samples = await ainterleave(ours, settings.calls_or(OUR_CALLS, OUR_CALLS_QUICK))
        out = rows(samples, dict.fromkeys(samples, "anthropic"), {"anthropic": d})
        if theirs:  # after ours, never before: litellm's leftover background work would slow them
            await awarm_up(theirs, settings.n(50, 20))
            samples |= (more := await ainterleave(theirs, settings.calls_or(LITELLM_CALLS, LITELLM_CALLS_QUICK)))
            out += rows(more, {name: "openai" if "openai" in name else "anthropic" for name in more},
                        {"anthropic": dl, "openai": "async: direct openai.AsyncOpenAI"})
    finally:
        await direct.close()
        await odirect.close()
        await r.aclose()
        await close_litellm_clients()
    return out, samples


def run(settings: Settings, server: ServerProcess) -> list[Table]:
    lt = make_litellm_router(server.url) if settings.litellm else None
    ours, theirs = settings.calls_or(OUR_CALLS, OUR_CALLS_QUICK), settings.calls_or(LITELLM_CALLS, LITELLM_CALLS_QUICK)
    table = Table(f"Per-call overhead, healthy primary, non-streaming, loopback ({ours} interleaved calls each; "
                  f"litellm loop: {theirs})", COLUMNS)
    sync_rows, sync = bench_sync(server, settings, lt)
    async_rows, asyn = asyncio.run(bench_async(server, settings, lt))
    table.rows += sync_rows + async_rows
    sd, ad = "sync: direct anthropic.Anthropic", "async: direct anthropic.AsyncAnthropic"
    table.summary.append([
        "Added per call over the direct anthropic client, loopback, p50, sync / async (µs)",
        f"{added(sync, 'sync: router.complete', sd)} / {added(asyn, 'async: router.acomplete', ad)}",
        f"{added(sync, 'sync: litellm.Router.completion anthropic/', sd + ' (litellm loop)')} / "
        f"{added(asyn, 'async: litellm.Router.acompletion anthropic/', ad + ' (litellm loop)')}",
        "< 50 µs (aim 20)",
    ])
    table.notes += [
        "Every router has a fallback configured (ours: route [primary, fallback], retry attempts 1; litellm: "
        "fallbacks, num_retries=0); the primary answers every call.",
        "'added' = p50 minus the p50 of the direct SDK client speaking the same wire (anthropic: POST /v1/messages; "
        "openai: POST /v1/chat/completions), measured in the same loop. litellm's anthropic/ rows are compared "
        "with the anthropic client.",
        "Calls go one at a time, interleaved: every round calls each contender of the loop once, in a freshly "
        "shuffled order. Ours and litellm run in separate loops, each with its own direct-client baseline, so "
        "that ours can take many more calls in the same time (per-call jitter on a loaded 2-core machine is "
        "hundreds of µs; the in-memory figure below is the precise one).",
    ]
    if lt is None:
        table.notes.append("litellm: not measured (not installed or --no-litellm).")
    memory = bench_no_network(settings)
    return [table] if memory is None else [table, memory]


def bench_stubbed(calls: int) -> dict[str, list[float]]:
    """router.complete / acomplete with the primary's provider answering at once: the router's work alone."""
    r = make_router(MEMORY_URL)
    provider: Any = r._current.targets["primary"].provider
    sync_client, _ = memory_clients()
    message = sync_client.messages.create(model=PRIMARY, messages=USER, max_tokens=MAX_TOKENS)  # a real SDK
    sync_client.close()  # response, `_request_id` and all (a hand-built one would take pydantic's slow path)

    def call(params: object, timeout: float) -> anthropic.types.Message:
        return message

    async def acall(params: object, timeout: float) -> anthropic.types.Message:
        return message

    provider.call, provider.acall = call, acall
    clock = time.perf_counter
    sync: list[float] = []
    for _ in range(calls // 10):
        r.complete(messages=USER, max_tokens=MAX_TOKENS)
    for _ in range(calls):
        t0 = clock()
        r.complete(messages=USER, max_tokens=MAX_TOKENS)
        sync.append(clock() - t0)

    async def arun() -> list[float]:
        out = []
        for _ in range(calls // 10):
            await r.acomplete(messages=USER, max_tokens=MAX_TOKENS)
        for _ in range(calls):
            t0 = clock()
            await r.acomplete(messages=USER, max_tokens=MAX_TOKENS)
            out.append(clock() - t0)
        return out

    samples = {"sync: router.complete, provider call stubbed": sync,
               "async: router.acomplete, provider call stubbed": asyncio.run(arun())}
    r.close()
    return samples


def _time_inside(provider: Any) -> list[float]:
    """Wrap the provider's call/acall (benchmark-only, on the instance) to record the seconds each spends."""
    inside: list[float] = []
    clock = time.perf_counter
    call, acall = provider.call, provider.acall

    def timed_call(params: Any, timeout: float) -> Any:
        t0 = clock()
        try:
            return call(params, timeout)
        finally:
            inside.append(clock() - t0)

    async def timed_acall(params: Any, timeout: float) -> Any:
        t0 = clock()
        try:
            return await acall(params, timeout)
        finally:
            inside.append(clock() - t0)

    provider.call, provider.acall = timed_call, timed_acall
    return inside


def bench_no_network(settings: Settings) -> Table | None:
    """The router's own cost per call, measured without a network: the SDK clients of the direct contender
    and of the router's primary run on httpx2.MockTransport with a canned message, so the only difference
    left is the router's work (plan, breaker, routing record). Benchmark-only: it swaps the clients of the
    router's provider through private attributes, and skips itself when those are not there."""
    if settings.litellm:
        time.sleep(0.5)  # let litellm's background work (if any ran before) drain
    r = make_router(MEMORY_URL)
    provider = r._current.targets["primary"].provider
    if not (hasattr(provider, "_sync") and hasattr(provider, "_spare")):
        r.close()
        return None
    provider.close()  # the async client is taken per event loop: the spare goes to the first loop that asks
    provider._sync, provider._spare = memory_clients()
    inside = _time_inside(provider)
    direct, adirect = memory_clients()
    calls = settings.n(2000, 1000)
    contenders: dict[str, SyncCall] = {
        "sync: direct anthropic.Anthropic": lambda: direct.messages.create(
            model=PRIMARY, messages=USER, max_tokens=MAX_TOKENS),
        "sync: router.complete": lambda: r.complete(messages=USER, max_tokens=MAX_TOKENS),
    }
    acontenders: dict[str, AsyncCall] = {
        "async: direct anthropic.AsyncAnthropic": lambda: adirect.messages.create(
            model=PRIMARY, messages=USER, max_tokens=MAX_TOKENS),
        "async: router.acomplete": lambda: r.acomplete(messages=USER, max_tokens=MAX_TOKENS),
    }

    own: dict[str, list[float]] = {}

    async def arun() -> dict[str, list[float]]:
        try:
            await awarm_up(acontenders, settings.n(300, 300))
            gc.collect()
            inside.clear()
            result = await ainterleave(acontenders, calls)
            own["async"] = [t - i for t, i in zip(result["async: router.acomplete"], inside, strict=True)]
            return result
        finally:
            await adirect.close()
            await r.aclose()

    try:
        warm_up(contenders, settings.n(300, 300))
        gc.collect()
        inside.clear()
        samples = interleave(contenders, calls)
        own["sync"] = [t - i for t, i in zip(samples["sync: router.complete"], inside, strict=True)]
    finally:
        direct.close()
    samples |= asyncio.run(arun())
    stubbed = bench_stubbed(settings.n(20000, 5000))
    wires = dict.fromkeys(samples, "in-memory")
    table = Table(f"The router's own cost per call, no network: SDK on an in-memory transport ({calls} "
                  "interleaved calls each)", COLUMNS)
    table.rows += rows(samples, wires, {"in-memory": "sync: direct anthropic.Anthropic"})[:2]
    table.rows += rows(samples, wires, {"in-memory": "async: direct anthropic.AsyncAnthropic"})[2:]
    for mode in ("sync", "async"):
        values = own[mode]
        table.rows.append([f"{mode}: router's own time in those calls (its time minus the SDK call's)", "-",
                           us(p50(values)), us(pct(values, 0.99)), us(p50(values), signed=True), "-"])
    for name, values in stubbed.items():
        table.rows.append([name, "none", us(p50(values)), us(pct(values, 0.99)), us(p50(values), signed=True), "-"])
    table.notes += [
        "The direct client and the router's primary both run on httpx2.MockTransport returning the same canned "
        "Message: no sockets, no server, so what is left of the difference is the router's own work per call "
        "and it is far less noisy than the loopback figures above. litellm is not in this table: its "
        "mock_response path skips its HTTP and provider code, so it would not be comparable.",
        "'router's own time': each router call's time minus the time spent inside its provider's SDK call in that "
        "same call (benchmark-only timing wrapper on the provider instance, whose own cost counts as the "
        "router's). It is measured per call, not as a difference of two medians, so it is the most precise "
        "figure here; the difference of medians above carries the run-to-run noise of the SDK call itself.",
        "'provider call stubbed': the primary's provider returns a ready Message at once (benchmark-only stub on "
        "the provider instance), so the whole time is the router's own work: route lookup, plan, breaker "
        "admission and success, routing record. Its 'added' is its whole time. It runs in a tight loop, with warm "
        "CPU caches: a floor. Between real SDK calls the same code runs colder, which is why the in-memory "
        "difference above is larger; that one is the realistic figure.",
    ]
    s_stub, a_stub = (us(p50(v), signed=True) for v in stubbed.values())
    s_own, a_own = (us(p50(own[mode]), signed=True) for mode in ("sync", "async"))
    table.summary.append([
        "Router's own cost per call, no network, p50, sync / async (µs): over the SDK on an in-memory transport; "
        "{its own time measured inside each call}; [with the SDK call stubbed out]",
        f"{added(samples, 'sync: router.complete', 'sync: direct anthropic.Anthropic')} / "
        f"{added(samples, 'async: router.acomplete', 'async: direct anthropic.AsyncAnthropic')} "
        f"{{{s_own} / {a_own}}} [{s_stub} / {a_stub}]",
        "-", "< 50 µs (aim 20)",
    ])
    return table


def main() -> None:
    from benchmarks import open_breaker

    standalone(run, open_breaker.run)


if __name__ == "__main__":
    main()
