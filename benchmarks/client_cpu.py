"""Client CPU per call over loopback: a plain anthropic client, then each difference the router's call adds.

Run: python -m benchmarks.client_cpu [--quick] [--calls N]   (or python -m benchmarks --only client_cpu)
A ladder of contenders against the same fake server process on 127.0.0.1, each rung adding one thing the
router's call does that a plain `anthropic.Anthropic(max_retries=0)` does not: the provider's HTTP client
(its deadline transport), the per-call `timeout=`, the provider itself inside an attempt's Budget (its
judging of the reply, the budget bounding every socket operation), then the whole Router. The figure is the
calling thread's CPU time (time.thread_time()) per call, which neither the server's work nor the wait for
it touches, over blocks of calls in shuffled interleaved rounds. `--calls N` sets the calls per block (the
rounds then keep the same total). Figures, not assertions.
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
from collections.abc import Awaitable, Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import anthropic

if not __package__:  # run as a script: make the `benchmarks` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import KEY, MAX_TOKENS, USER, ServerProcess, Settings, Table, router_policy, standalone
from router import Policy, Router
from router.budget import CURRENT, Budget
from router.providers.anthropic import AnthropicProvider, _AsyncHttpClient, _HttpClient

PRIMARY = "claude-primary"
# Calls per contender: 3000, in 150 rounds of one block of 20 calls each. Short blocks keep the blocks paired
# in a round close in time: on this shared 2-core machine, blocks of 200 calls (a round of them takes ~1.5 s)
# let the load change between the blocks being compared, and the 'added' figures then moved by +-40 us from
# run to run, against +-10 us with blocks of 20.
CALLS, CALLS_QUICK = 3000, 1200
BLOCK = 20
COUNTED = 200  # calls profiled (cProfile) to count function calls per request
WARM = 50  # untimed calls of each contender first: connections open, code paths warm

A = "A: anthropic client, its default http client"
AA = "A': a second, identical client (A/A control: the noise floor)"
B = "B: A on the provider's http client (its deadline transport)"
C = "C: B + the provider's per-call timeout="
D = "D: AnthropicProvider.call inside an attempt's Budget (budget on every socket op, judging)"
E = "E: Router.complete / acomplete, one-model policy"
LADDER = (A, B, C, D, E)  # each rung adds one difference to the one before it
CONTENDERS = (A, AA, B, C, D, E)

SyncCall = Callable[[], object]
AsyncCall = Callable[[], Awaitable[object]]
PARAMS: dict[str, Any] = {"messages": USER, "max_tokens": MAX_TOKENS}


def one_model_policy(url: str) -> Policy:
    return router_policy(url, {"primary": PRIMARY}, {"default": ["primary"]})


def _order(rng: random.Random, names: Sequence[str]) -> list[str]:
    order = list(names)
    rng.shuffle(order)
    return order


def blocks(contenders: Mapping[str, SyncCall], rounds: int, size: int) -> dict[str, list[float]]:
    """CPU seconds per call of the calling thread, one figure per block of `size` calls, `rounds` blocks
    each, interleaved: every round runs one block of each contender, in a freshly shuffled order."""
    out: dict[str, list[float]] = {name: [] for name in contenders}
    rng = random.Random(7)
    cpu = time.thread_time
    for _ in range(rounds):
        for name in _order(rng, list(contenders)):
            fn = contenders[name]
            gc.collect()
            t0 = cpu()
            for _ in range(size):
                fn()
            out[name].append((cpu() - t0) / size)
    return out


async def ablocks(contenders: Mapping[str, AsyncCall], rounds: int, size: int) -> dict[str, list[float]]:
    """`blocks` for coroutines, awaited one at a time on the running loop (the loop's work is this thread's)."""
    out: dict[str, list[float]] = {name: [] for name in contenders}
    rng = random.Random(7)
    cpu = time.thread_time
    for _ in range(rounds):
        for name in _order(rng, list(contenders)):
            fn = contenders[name]
            gc.collect()
            t0 = cpu()
            for _ in range(size):
                await fn()
            out[name].append((cpu() - t0) / size)
    return out


def counted(fn: SyncCall, calls: int) -> float:
    """Python function calls (cProfile's count, builtins included) per call."""
    profile = cProfile.Profile()
    profile.enable()
    for _ in range(calls):
        fn()
    profile.disable()
    return float(pstats.Stats(profile).total_calls) / calls  # type: ignore[attr-defined]


async def acounted(fn: AsyncCall, calls: int) -> float:
    profile = cProfile.Profile()
    profile.enable()
    for _ in range(calls):
        await fn()
    profile.disable()
    return float(pstats.Stats(profile).total_calls) / calls  # type: ignore[attr-defined]


def _in_budget(provider: AnthropicProvider) -> object:
    token = CURRENT.set(Budget(600.0))  # as router/drivers.py does around every provider call
    try:
        return provider.call(PARAMS, 600.0)
    finally:
        CURRENT.reset(token)


async def _ain_budget(provider: AnthropicProvider) -> object:
    token = CURRENT.set(Budget(600.0))
    try:
        return await provider.acall(PARAMS, 600.0)
    finally:
        CURRENT.reset(token)


def sync_contenders(url: str, provider: AnthropicProvider, r: Router) -> tuple[dict[str, SyncCall], list[Any]]:
    plain = anthropic.Anthropic(base_url=url, api_key=KEY, max_retries=0)
    control = anthropic.Anthropic(base_url=url, api_key=KEY, max_retries=0)
    ours = anthropic.Anthropic(base_url=url, api_key=KEY, max_retries=0, http_client=_HttpClient())
    timeout = provider._timeout_for(600.0)  # what the provider passes for a call with its whole budget left
    contenders: dict[str, SyncCall] = {
        A: lambda: plain.messages.create(model=PRIMARY, **PARAMS),
        AA: lambda: control.messages.create(model=PRIMARY, **PARAMS),
        B: lambda: ours.messages.create(model=PRIMARY, **PARAMS),
        C: lambda: ours.messages.create(model=PRIMARY, timeout=timeout, **PARAMS),
        D: lambda: _in_budget(provider),
        E: lambda: r.complete(**PARAMS),
    }
    return contenders, [plain, control, ours]


def async_contenders(url: str, provider: AnthropicProvider, r: Router) -> tuple[dict[str, AsyncCall], list[Any]]:
    plain = anthropic.AsyncAnthropic(base_url=url, api_key=KEY, max_retries=0)
    control = anthropic.AsyncAnthropic(base_url=url, api_key=KEY, max_retries=0)
    ours = anthropic.AsyncAnthropic(base_url=url, api_key=KEY, max_retries=0, http_client=_AsyncHttpClient())
    timeout = provider._timeout_for(600.0)
    contenders: dict[str, AsyncCall] = {
        A: lambda: plain.messages.create(model=PRIMARY, **PARAMS),
        AA: lambda: control.messages.create(model=PRIMARY, **PARAMS),
        B: lambda: ours.messages.create(model=PRIMARY, **PARAMS),
        C: lambda: ours.messages.create(model=PRIMARY, timeout=timeout, **PARAMS),
        D: lambda: _ain_budget(provider),
        E: lambda: r.acomplete(**PARAMS),
    }
    return contenders, [plain, control, ours]


Result = tuple[dict[str, list[float]], dict[str, float]]


def measure_sync(url: str, rounds: int, size: int, warm: int = WARM, count: int = COUNTED) -> Result:
    """(CPU seconds per call of every block, function calls per request) of each sync contender."""
    r = Router(one_model_policy(url), watch=False)
    provider = AnthropicProvider(one_model_policy(url).models["primary"])
    contenders, clients = sync_contenders(url, provider, r)
    try:
        for fn in contenders.values():  # open the connections, warm the code paths
            for _ in range(warm):
                fn()
        calls = {name: counted(contenders[name], count) for name in contenders}
        return blocks(contenders, rounds, size), calls
    finally:
        for client in clients:
            client.close()
        provider.close()
        r.close()


async def measure_async(url: str, rounds: int, size: int, warm: int = WARM, count: int = COUNTED) -> Result:
    r = Router(one_model_policy(url), watch=False)
    provider = AnthropicProvider(one_model_policy(url).models["primary"])
    contenders, clients = async_contenders(url, provider, r)
    try:
        for fn in contenders.values():
            for _ in range(warm):
                await fn()
        calls = {name: await acounted(contenders[name], count) for name in contenders}
        return await ablocks(contenders, rounds, size), calls
    finally:
        for client in clients:
            await client.close()
        await provider.aclose()
        await r.aclose()


def paired(samples: Mapping[str, list[float]], name: str, base: str) -> float:
    """The median over rounds of (name's block - base's block of the same round), in seconds per call."""
    return statistics.median(x - y for x, y in zip(samples[name], samples[base], strict=True))


def table_rows(mode: str, samples: Mapping[str, list[float]], calls: Mapping[str, float]) -> list[list[str]]:
    out = []
    for name in CONTENDERS:
        values = samples[name]
        over_a = "-" if name == A else f"{paired(samples, name, A) * 1e6:+.1f}"
        previous = LADDER[LADDER.index(name) - 1] if name in LADDER[1:] else None
        over_prev = "-" if previous is None else f"{paired(samples, name, previous) * 1e6:+.1f}"
        spread = f"{min(values) * 1e6:,.0f}–{max(values) * 1e6:,.0f}"
        extra = "-" if name == A else f"{calls[name] - calls[A]:+,.0f}"
        out.append([f"{mode}: {name}", f"{statistics.median(values) * 1e6:,.1f}", spread, over_a, over_prev,
                    f"{calls[name]:,.0f}", extra])
    return out


def run(settings: Settings, server: ServerProcess) -> list[Table]:
    size = settings.calls if settings.calls is not None else settings.n(BLOCK, BLOCK)
    rounds = max(1, settings.n(CALLS, CALLS_QUICK) // size)
    warm, count = settings.n(WARM, WARM), settings.n(COUNTED, COUNTED)
    sync, sync_calls = measure_sync(server.url, rounds, size, warm, count)
    asyn, async_calls = asyncio.run(measure_async(server.url, rounds, size, warm, count))
    table = Table(
        f"Client CPU per call, loopback: from a plain anthropic client to the router, rung by rung "
        f"({rounds} interleaved blocks of {size} calls per contender)",
        ["contender", "CPU per call p50 µs", "min–max over blocks µs", "added over A µs",
         "added over previous rung µs", "function calls per request", "calls over A"],
    )
    table.rows += table_rows("sync", sync, sync_calls) + table_rows("async", asyn, async_calls)
    table.notes += [
        "CPU is the calling thread's (time.thread_time()) over each block of calls divided by its calls: the fake "
        "server is another process and the wait for it costs no CPU here, so this is the client's own work per "
        "call (SDK, httpx2, httpcore2, our transport and router; async: the event loop's too; the kernel's "
        "socket work included). Each round runs one block of every contender of the mode in a freshly shuffled "
        "order, each after a gc.collect().",
        "'CPU per call p50' is the median over the blocks and 'min–max' their range; the 'added' columns are the "
        "median over the rounds of the difference between the two contenders' blocks of the same round (paired, "
        "so drift between rounds cancels), so they need not equal the difference of the p50s. A' is a second "
        "client built like A: its 'added over A' is what this machine's noise alone gives.",
        "A: anthropic.Anthropic / AsyncAnthropic(base_url, api_key, max_retries=0), messages.create(). "
        "B: the same SDK client given http_client=router.providers.anthropic._HttpClient() / _AsyncHttpClient(): "
        "our deadline transport (router/providers/deadline.py), which also records the response head. "
        "C: B's client, passing the timeout= the provider passes for a call with its whole budget left. "
        "D: AnthropicProvider.call / acall (its own clients) inside CURRENT.set(Budget(600)), as "
        "router/drivers.py calls it: its client hand-out, the budget bounding every socket read and write, and "
        "its judging of the reply. E: Router.complete / acomplete on a one-model policy: D plus the route's "
        "look-up, the breaker and the routing record (a quiet request: no plan is started, router/start.py).",
        "The figure depends on the neighbours: rungs B to D run the router's transport too and keep it warm for "
        "E. With only A, A' and E interleaved, E - A reads higher (a check on this machine: +15 to +31 µs sync, "
        "against +10 to +13 in the full ladder).",
        f"'function calls per request': cProfile's count of Python and builtin function calls over {count} "
        "calls of each contender (after the warm-up, before the timed blocks), divided by the calls: deterministic, "
        "unlike the CPU figures.",
    ]
    table.summary.append([
        "Client CPU per call added over a plain anthropic client, loopback, p50, sync / async (µs): whole router "
        "(E - A) [its http client, timeout= and provider alone (D - A)] {A/A control}",
        f"{paired(sync, E, A) * 1e6:+.0f} / {paired(asyn, E, A) * 1e6:+.0f} "
        f"[{paired(sync, D, A) * 1e6:+.0f} / {paired(asyn, D, A) * 1e6:+.0f}] "
        f"{{{paired(sync, AA, A) * 1e6:+.0f} / {paired(asyn, AA, A) * 1e6:+.0f}}}",
        "-", "< 20 µs",
    ])
    return [table]


if __name__ == "__main__":
    standalone(run)
