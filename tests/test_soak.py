"""Chaos soak: three models, random faults from the fake server's whole catalogue, sync, async and streaming
calls mixed, all at once, on the real clock with short timeouts (tenths of a second).

The default run is short (~300 requests); `pytest --soak` runs a few thousand. `ROUTER_SOAK_SEED=<n>`
replays a seed's jobs and fault plans (thread timing still varies). At the end the books must balance:

- every request returned a message, or raised a documented exception (`AllModelsFailed`,
  `StreamInterrupted`, the SDK's own caller errors), and nothing else; a stream's final message holds
  exactly the text it streamed (no text lost or repeated across a resume);
- none hung: each came back within its own `timeout=` plus a generous slack (a bounded wait, not a
  speed test), and the whole soak ended within a bounded wait;
- per request and per model, the attempts the router recorded as sent are exactly the requests the fake
  server read (each request is tagged through `metadata.user_id`);
- afterwards, with every model healthy again, every breaker closes and traffic returns to every model.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import os
import random
import threading
import time
from collections import Counter
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import pytest

from router import Router, parse_policy
from router.testing import FakeServer, Fault

from ._reliability import Ledger, Outcome, StreamInterrupted, check_accounting, check_outcomes
from .conftest import KEYS, USER

SHORT, LONG = 300, 3000  # requests
SPREAD = {SHORT: 6.0, LONG: 75.0}  # seconds over which they arrive (an open breaker answers at once, so
# without pacing the queue would drain in a blink once every breaker is open, and no breaker would cycle)
WORKERS = 8  # sync threads, and separately concurrent coroutines
HANG_SLACK = 10.0  # seconds past a request's own timeout before it counts as hung (only a hang gets there)
SOAK_WAIT = 240.0  # the whole soak, bounded

MODELS = {"a": "claude-a", "b": "claude-b", "c": "claude-c"}
TEXTS = {alias: f"Hello from {model}" for alias, model in MODELS.items()}
CHAINS = {"default": ("a", "b", "c"), "reverse": ("c", "b", "a"), "pair": ("b", "c"),
          "only_a": ("a",), "only_b": ("b",), "only_c": ("c",)}


def policy(url: str, keys: dict[str, str] | None = None) -> str:
    """The soak's policy; `keys` maps alias -> the api_key as written (default: env references, a and b
    sharing one key so that an invalid key on one skips the other: same_credentials)."""
    keys = keys or {"a": "${KEY_PRIMARY}", "b": "${KEY_PRIMARY}", "c": "${KEY_FALLBACK}"}
    models = "".join(
        f"  {alias}: {{provider: anthropic, model: {model}, base_url: '{url}', api_key: '{keys[alias]}'}}\n"
        for alias, model in MODELS.items()
    )
    stream_idle = ", stream_idle: 150ms"
    return (
        "version: 1\n"
        "defaults:\n"
        "  breaker: {failure_threshold: 3, reset_timeout: 200ms, max_reset_timeout: 800ms}\n"
        "  retry: {attempts: 2, backoff: {initial: 5ms, max: 20ms, jitter: 0.2}}\n"
        f"  timeout: {{connect: 500ms, read: 150ms, total: 2s{stream_idle}}}\n"
        f"models:\n{models}"
        "routes:\n" + "".join(f"  {name}: [{', '.join(chain)}]\n" for name, chain in CHAINS.items())
    )


# ---- the whole catalogue -----------------------------------------------------------------------------


def _ok(rng: random.Random) -> Fault:
    return Fault.ok(delay=rng.choice([0.0, 0.0, 0.005, 0.02]), delta_delay=rng.choice([0.0, 0.002]))


def _server_error(rng: random.Random) -> Fault:
    return Fault.status(
        rng.choice([500, 502, 503, 504, 529, 599]),
        should_retry=rng.choice([None, None, True, False]),
        retry_after_ms=rng.choice([None, None, 20.0]),
        delay=rng.choice([0.0, 0.0, 0.01]),
    )


CATALOGUE: list[tuple[float, Callable[[random.Random], Fault]]] = [
    (60, _ok),
    (14, _server_error),
    (2, lambda rng: Fault.status(503, retry_after=30)),  # longer than any budget: move on, don't wait
    (3, lambda rng: Fault.status(rng.choice([408, 409]))),
    (4, lambda rng: Fault.html(rng.choice([500, 502, 503, 504]))),
    (4, lambda rng: Fault.reset(delay=rng.choice([0.0, 0.01]))),
    (3, lambda rng: Fault.hang(rng.choice([0.3, 0.5]))),  # past the 150ms read timeout
    (2, lambda rng: Fault.status(429, retry_after=rng.choice([0.02, 0.05, 0.2]))),
    (1, lambda rng: Fault.status(429, retry_after_ms=50)),
    (1, lambda rng: Fault.status(429)),  # no retry-after at all
    (1, lambda rng: Fault.status(429, error_code="spend_limit_exceeded")),
    (3, lambda rng: Fault.status(rng.choice([401, 402, 403]))),
    (1, lambda rng: Fault.status(rng.choice([400, 404, 413, 422, 418]))),  # the caller's fault: raised
    (4, lambda rng: Fault.stream_error(after=rng.choice([0, 1, 2]),
                                       error_type=rng.choice(["overloaded_error", "api_error", "rate_limit_error"]))),
    (4, lambda rng: Fault.stream_cut(after=rng.choice([0, 1, 2]))),
    (3, lambda rng: Fault.stream_stall(after=rng.choice([0, 1, 2]), seconds=0.4)),
    (3, lambda rng: Fault.stream_no_stop(after=rng.choice([1, 2]))),
    (1, lambda rng: Fault.stream_error(after=rng.choice([0, 1]), error_type="invalid_request_error")),
    (2, lambda rng: Fault.ok(tool_use=("get_time", {"tz": "UTC"}))),  # a tool call after the text
    (2, lambda rng: rng.choice([Fault.stream_cut, Fault.stream_error, Fault.stream_no_stop])(  # breaks inside it
        after=rng.choice([1, 2, 3, 4, 5])).with_tool_use("get_time", {"tz": "UTC"})),
]


def random_fault(rng: random.Random) -> Fault:
    weights = [w for w, _ in CATALOGUE]
    make = rng.choices([f for _, f in CATALOGUE], weights)[0]
    return make(rng)


class Chaos:
    """A thread that keeps replacing each model's fault plan with a random one."""

    def __init__(self, server: FakeServer, seed: int) -> None:
        self.server, self.rng = server, random.Random(seed)
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="chaos", daemon=True)

    def replan(self, model: str) -> None:
        rng = self.rng
        faults = [random_fault(rng) for _ in range(rng.randrange(0, 8))]
        default = _ok(rng) if rng.random() < 0.7 else random_fault(rng)
        self.server.plan(model, faults, default=default)

    def _run(self) -> None:
        while not self.stop.wait(self.rng.uniform(0.01, 0.04)):
            self.replan(self.rng.choice(list(MODELS.values())))

    def __enter__(self) -> Chaos:
        for model in MODELS.values():
            self.replan(model)
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(10)


# ---- jobs --------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Job:
    tag: str
    mode: str  # "sync" | "async" | "stream" | "astream"
    route: str
    timeout: float
    on_interrupt: str | None = None
    pause: float = 0.0  # the caller's think time before it sends this request


def make_jobs(n: int, rng: random.Random) -> list[Job]:
    mean_pause = SPREAD.get(n, n / 50) * 2 * WORKERS / n
    modes = ["sync", "async", "stream", "astream"]
    weights = [35, 35, 15, 15]
    jobs = []
    for i in range(n):
        mode = rng.choices(modes, weights)[0]
        on_interrupt = rng.choice([None, None, "raise"]) if mode in ("stream", "astream") else None
        jobs.append(Job(f"soak-{i}", mode, rng.choice(["default", "default", "reverse", "pair"]),
                        rng.choice([0.3, 0.6, 1.0, 2.0]), on_interrupt, rng.uniform(0, 2 * mean_pause)))
    return jobs


def _kwargs(job: Job) -> dict[str, Any]:
    kw: dict[str, Any] = {"messages": USER, "max_tokens": 16, "route": job.route, "timeout": job.timeout,
                          "metadata": {"user_id": job.tag}}
    if job.on_interrupt is not None:
        kw["on_interrupt"] = job.on_interrupt
    return kw


class StreamMismatch(AssertionError):
    """The text a stream delivered is not the text of its final message (recorded as an undocumented
    outcome, so the soak reports it)."""


def _same_text(parts: list[str], final: Any) -> Any:
    text = "".join(b.text for b in final.content if b.type == "text")
    if "".join(parts) != text:
        raise StreamMismatch(f"streamed {''.join(parts)!r} but the final message says {text!r}")
    return final


def run_sync(r: Router, ledger: Ledger, job: Job) -> Outcome:
    time.sleep(job.pause)
    if job.mode == "stream":
        def call() -> Any:
            with r.stream(**_kwargs(job)) as s:
                parts = list(s.text_stream)
                return _same_text(parts, s.get_final_message())
    else:
        def call() -> Any:
            return r.complete(**_kwargs(job))
    return ledger.call(job.tag, job.route, job.mode, job.timeout, call)


async def run_async(r: Router, ledger: Ledger, job: Job) -> Outcome:
    await asyncio.sleep(job.pause)
    if job.mode == "astream":
        async def call() -> Any:
            async with r.astream(**_kwargs(job)) as s:
                parts = [text async for text in s.text_stream]
                return _same_text(parts, await s.get_final_message())
    else:
        async def call() -> Any:
            return await r.acomplete(**_kwargs(job))
    return await ledger.acall(job.tag, job.route, job.mode, job.timeout, call)


def soak(server: FakeServer, n: int, seed: int, r: Router | None = None) -> tuple[Router, Ledger, list[str]]:
    """Run n jobs through one Router (by default one on `policy()`): sync ones on a thread pool, async ones
    on an event loop in another thread, both at once, while the chaos thread replans the models.
    Returns (router, ledger, hung). The router's async clients are closed at the end, on their loop."""
    if r is None:
        r = Router(parse_policy(policy(server.url), env=KEYS), rng=random.Random(seed))
    ledger = Ledger()
    hung: list[str] = []
    jobs = make_jobs(n, random.Random(seed))
    sync_jobs = [j for j in jobs if j.mode in ("sync", "stream")]
    async_jobs = [j for j in jobs if j.mode in ("async", "astream")]
    sync_done = threading.Event()

    async def async_side() -> None:
        gate = asyncio.Semaphore(WORKERS)

        async def one(job: Job) -> None:
            async with gate:
                try:
                    await asyncio.wait_for(run_async(r, ledger, job), job.pause + job.timeout + HANG_SLACK)
                except asyncio.TimeoutError:
                    hung.append(f"{job.tag} ({job.mode}, timeout={job.timeout})")

        try:
            await asyncio.gather(*(one(j) for j in async_jobs))
        finally:
            await asyncio.to_thread(sync_done.wait, SOAK_WAIT)
            await r.aclose()  # the async clients belong to this loop (this also closes the sync ones)

    loop_thread = threading.Thread(target=asyncio.run, args=(async_side(),), name="soak-async", daemon=True)
    with Chaos(server, seed):
        loop_thread.start()
        pool = concurrent.futures.ThreadPoolExecutor(WORKERS, thread_name_prefix="soak-sync")
        try:
            futures = {pool.submit(run_sync, r, ledger, job): job for job in sync_jobs}
            _, pending = concurrent.futures.wait(futures, SOAK_WAIT)
            hung += [f"{futures[f].tag} ({futures[f].mode}): still running" for f in pending]
        finally:
            pool.shutdown(wait=False, cancel_futures=True)
            sync_done.set()
        loop_thread.join(SOAK_WAIT)
    assert not loop_thread.is_alive(), "the async side of the soak never finished"
    return r, ledger, hung


def recover(r: Router, server: FakeServer) -> None:
    """Every model healthy again: within a bounded number of rounds every breaker closes."""
    for model in MODELS.values():
        server.plan(model, default=Fault.ok())
    for _ in range(100):  # the longest wait is max_reset_timeout (800ms) or a 429's retry-after (400ms)
        for alias in MODELS:
            with contextlib.suppress(Exception):  # still open or cooling: try again next round
                r.complete(messages=USER, max_tokens=8, route=f"only_{alias}")
        infos = r.breakers()
        if all(i.state == "closed" and i.cooling_until is None for i in infos.values()):
            served = {a: r.complete(messages=USER, max_tokens=8, route=f"only_{a}").routing.model for a in MODELS}
            assert served == {a: a for a in MODELS}
            return
        time.sleep(0.05)
    raise AssertionError(f"breakers did not recover: {r.breakers()}")


def test_chaos_soak(fake_server: FakeServer, request: pytest.FixtureRequest) -> None:
    n = LONG if request.config.getoption("--soak") else SHORT
    seed = int(os.environ.get("ROUTER_SOAK_SEED") or random.randrange(1 << 30))
    print(f"soak: {n} requests, seed {seed} (replay with ROUTER_SOAK_SEED={seed})")
    r, ledger, hung = soak(fake_server, n, seed)
    try:
        outcomes = list(ledger.outcomes.values())
        resumed = sum(1 for o in outcomes for a in o.attempts if (a.detail or "").startswith("resumed"))
        summary = (f"seed {seed}: {Counter((o.mode, o.kind) for o in outcomes)}; attempts "
                   f"{Counter(a.outcome.value for o in outcomes for a in o.attempts)}; {resumed} streams resumed")
        print(summary)
        assert not hung, f"seed {seed}: requests hung: {hung[:10]}"
        assert len(outcomes) == n, f"seed {seed}: {n - len(outcomes)} requests have no outcome"
        problems = check_outcomes(ledger, CHAINS, TEXTS)
        problems += check_accounting(ledger, fake_server, MODELS)
        late = [o for o in outcomes if o.timeout is not None and o.elapsed > o.timeout + HANG_SLACK]
        problems += [f"{o.tag} ({o.mode}) took {o.elapsed:.1f}s with timeout={o.timeout}" for o in late]
        assert not problems, f"seed {seed}: {len(problems)} problems; {summary}\n" + "\n".join(problems[:25])
        recover(r, fake_server)
    finally:
        r.close()


def test_a_stream_does_not_outlive_its_timeout(fake_server: FakeServer) -> None:
    """`timeout=` caps the whole request (README), streams included: a healthy but slow stream (40 deltas,
    50ms apart, each well within stream_idle) must not run on for its 2 s when the caller gave it 0.3 s.
    Once the deadline passes after content was sent there is no budget left to resume anywhere, so it
    ends as a StreamInterrupted, not as a message that looks complete."""
    fake_server.plan(MODELS["c"], default=Fault.ok(deltas=["x "] * 40, delta_delay=0.05))
    r = Router(parse_policy(policy(fake_server.url), env=KEYS))
    received: list[str] = []
    try:
        with pytest.raises(StreamInterrupted), r.stream(messages=USER, max_tokens=64, route="only_c",
                                                        timeout=0.3) as s:
            received.extend(s.text_stream)
        assert len(received) < 40, "the stream ran to its end, long past its timeout"
    finally:
        r.close()


async def test_every_answered_attempt_records_its_request_id(fake_server: FakeServer) -> None:
    """The soak matches attempts to requests; the request id is how an operator does the same with the
    provider ("every attempt records its request id"). The fake server sends `request-id` on
    every response, so every successful attempt, streamed or not, must carry it."""
    r = Router(parse_policy(policy(fake_server.url), env=KEYS))
    try:
        msg = r.complete(messages=USER, max_tokens=8, route="only_a")
        amsg = await r.acomplete(messages=USER, max_tokens=8, route="only_a")
        with r.stream(messages=USER, max_tokens=8, route="only_a") as s:
            smsg = s.get_final_message()
        async with r.astream(messages=USER, max_tokens=8, route="only_a") as s:
            asmsg = await s.get_final_message()
        ids = {mode: m.routing.attempts[-1].request_id
               for mode, m in [("sync", msg), ("async", amsg), ("stream", smsg), ("astream", asmsg)]}
        assert all(i and i.startswith("req_fake_") for i in ids.values()), ids
    finally:
        await r.aclose()
