"""Concurrency: 200 threads, and separately 200 coroutines, hammer one Router (real SDK, real HTTP to the fake
server) while another thread flips the models between healthy, failing, rate limited and unauthorised
and moves the router's injected clock past reset timeouts.

What must hold afterwards:

- no deadlock: every thread / coroutine finishes within a bounded wait;
- nothing but documented outcomes: a message, or `AllModelsFailed`;
- the books balance: per request and per model, the attempts the router recorded as sent are exactly
  the requests the fake server read (each request is tagged through `metadata.user_id`);
- the breakers' transitions agree with what the models received: every probe that went out was let
  through by one open -> half_open move (or by a probe lease handed back after a neutral outcome), every
  probe success is one half_open -> closed, every failed probe one half_open -> open, every opening
  needs `failure_threshold` counted failures, and the transitions form one path ending in the state
  `breakers()` reports;
- then, on the state the storm left behind: with a model's breaker open, 200 concurrent requests send
  it nothing at all; once its wait is over, 200 concurrent requests send it exactly one probe.

And, for what operators would lose sleep over: requests in flight while the policy file changes under
them (a model removed; reloads must not leak HTTP connections), and coroutines cancelled at random
moments while a breaker is half-open (a cancelled probe must hand its lease back).
"""

from __future__ import annotations

import asyncio
import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from router import Kind, Router
from router.testing import FakeServer, Fault

from ._reliability import Ledger, Outcome, check_accounting, check_outcomes
from .conftest import KEYS, USER, Clock

N = 200  # threads, or coroutines
PER_WORKER = 5  # requests each during the storm
THRESHOLD = 3
RESET = 10.0  # seconds on the injected clock
JOIN_TIMEOUT = 120.0  # a generous bound: only a deadlock gets near it

MODELS = {"a": "claude-a", "b": "claude-b", "c": "claude-c"}
TEXTS = {alias: f"Hello from {model}" for alias, model in MODELS.items()}
CHAINS = {"default": ("a", "b", "c"), "reverse": ("c", "b", "a"), "only_a": ("a",), "only_b": ("b",),
          "only_c": ("c",)}


def policy(url: str) -> str:
    # total: 24h, so that no probe lease (its request's remaining budget on the injected clock) can run
    # out while the flipper moves the clock: every probe reports within its lease, as the counts need.
    models = "\n".join(
        f"  {alias}: {{provider: anthropic, model: {model}, base_url: '{url}', api_key: '${{{key}}}'}}"
        for (alias, model), key in zip(MODELS.items(), ("KEY_PRIMARY", "KEY_FALLBACK", "KEY_THIRD"), strict=True)
    )
    return (
        "version: 1\n"
        "defaults:\n"
        f"  breaker: {{failure_threshold: {THRESHOLD}, reset_timeout: {RESET:g}s, max_reset_timeout: 40s}}\n"
        "  retry: {attempts: 2, backoff: {initial: 1ms, max: 2ms, jitter: 0.1}}\n"
        "  timeout: {connect: 5s, read: 10s, total: 24h}\n"
        f"models:\n{models}\n"
        "routes:\n"
        + "".join(f"  {name}: [{', '.join(chain)}]\n" for name, chain in CHAINS.items())
    )


@dataclass
class Transitions:
    """The breakers' transitions as the router reported them (on_transition hook), counted per model."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    moves: dict[str, Counter[tuple[str, str]]] = field(default_factory=dict)

    def __call__(self, alias: str, old: str, new: str) -> None:
        with self.lock:
            self.moves.setdefault(alias, Counter())[(old, new)] += 1

    def count(self, alias: str, old: str, new: str) -> int:
        return self.moves.get(alias, Counter())[(old, new)]


class Flipper:
    """Another thread that keeps changing the models' fault plans and moves the injected clock."""

    MOODS = ("healthy", "healthy", "healthy", "down", "flaky", "flaky", "rate_limited", "unauthorised")

    def __init__(self, server: FakeServer, clock: Clock, seed: int) -> None:
        self.server, self.clock, self.rng = server, clock, random.Random(seed)
        self.stop = threading.Event()
        self.advances = 0
        self.flips = 0
        self.thread = threading.Thread(target=self._run, name="flipper", daemon=True)

    def _plan(self, model: str) -> None:
        rng = self.rng
        mood = rng.choice(self.MOODS)
        if mood == "healthy":
            self.server.plan(model, default=Fault.ok(delay=rng.choice([0.0, 0.002, 0.01])))
        elif mood == "down":
            self.server.plan(model, default=rng.choice([
                Fault.status(500), Fault.status(503), Fault.status(529), Fault.html(502), Fault.reset(),
                Fault.status(502, should_retry=False), Fault.status(504, delay=0.005),
            ]))
        elif mood == "flaky":
            faults = [rng.choice([Fault.ok(), Fault.status(500), Fault.status(529), Fault.reset()]) for _ in range(30)]
            self.server.plan(model, faults, default=Fault.ok())
        elif mood == "rate_limited":
            self.server.plan(model, default=Fault.status(429, retry_after=rng.choice([1, 5])))
        else:
            self.server.plan(model, default=Fault.status(401))

    def _run(self) -> None:
        while not self.stop.wait(self.rng.uniform(0.002, 0.008)):
            if self.rng.random() < 0.25:  # a mood lasts a while, so that breakers have time to trip
                self._plan(self.rng.choice(list(MODELS.values())))
                self.flips += 1
            if self.advances < 1000 and self.rng.random() < 0.3:
                # the only writer of the clock while the storm runs: past one or two reset timeouts
                self.clock.advance(self.rng.choice([RESET + 1, 2 * RESET + 1]))
                self.advances += 1

    def __enter__(self) -> Flipper:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(10)
        assert not self.thread.is_alive(), "the flipper thread did not stop"


def run_threads(n: int, target: Callable[[int], None]) -> None:
    """Start n threads that wait on one barrier, then join them all within a bounded time."""
    barrier = threading.Barrier(n)
    errors: list[BaseException] = []

    def body(i: int) -> None:
        try:
            barrier.wait(timeout=60)
            target(i)
        except BaseException as exc:  # reported below: the test must see it, not the thread's stderr
            errors.append(exc)

    threads = [threading.Thread(target=body, args=(i,), daemon=True) for i in range(n)]
    for t in threads:
        t.start()
    give_up = time.monotonic() + JOIN_TIMEOUT
    for t in threads:
        t.join(max(0.0, give_up - time.monotonic()))
    alive = sum(t.is_alive() for t in threads)
    assert alive == 0, f"deadlock: {alive} of {n} threads still running after {JOIN_TIMEOUT:.0f}s"
    assert errors == [], f"worker threads failed: {errors[:3]}"


async def run_coroutines(n: int, target: Callable[[int], object]) -> None:
    try:
        await asyncio.wait_for(asyncio.gather(*(target(i) for i in range(n))), JOIN_TIMEOUT)  # type: ignore[misc]
    except asyncio.TimeoutError:
        pytest.fail(f"deadlock: {n} coroutines not done after {JOIN_TIMEOUT:.0f}s")


# ---- checks ------------------------------------------------------------------------------------------


def check_breakers(r: Router, ledger: Ledger, moves: Transitions) -> list[str]:
    problems: list[str] = []
    final = r.breakers()
    for alias in MODELS:
        attempts = [a for o in ledger.outcomes.values() for a in o.attempts if a.model == alias]
        probes = [a for a in attempts if a.probe]
        ok = sum(a.outcome is Kind.SUCCESS for a in probes)
        failed = sum(a.outcome is Kind.SERVER_FAILURE for a in probes)
        neutral = len(probes) - ok - failed
        counted = sum(a.outcome is Kind.SERVER_FAILURE and not a.probe for a in attempts)
        c_o, o_h = moves.count(alias, "closed", "open"), moves.count(alias, "open", "half_open")
        h_c, h_o = moves.count(alias, "half_open", "closed"), moves.count(alias, "half_open", "open")
        facts = (f"{alias}: {len(probes)} probes ({ok} ok, {failed} failed, {neutral} neutral), {counted} counted "
                 f"failures; transitions c->o {c_o}, o->h {o_h}, h->c {h_c}, h->o {h_o}; final {final[alias]}")
        if h_c != ok:
            problems.append(f"probe successes != half_open->closed: {facts}")
        if h_o != failed:
            problems.append(f"failed probes != half_open->open: {facts}")
        if not o_h <= len(probes) <= o_h + neutral:
            problems.append(f"probes not explained by open->half_open moves and released leases: {facts}")
        if c_o * THRESHOLD > counted:
            problems.append(f"opened more often than the counted failures allow: {facts}")
        if o_h > c_o + h_o:
            problems.append(f"half-opened more often than it opened: {facts}")
        if c_o - h_c != (0 if final[alias].state == "closed" else 1):
            problems.append(f"transitions do not end in the reported state: {facts}")
    return problems


def check_all(r: Router, server: FakeServer, ledger: Ledger, moves: Transitions) -> None:
    problems = check_outcomes(ledger, CHAINS, TEXTS)
    problems += check_accounting(ledger, server, MODELS)
    for alias, model in MODELS.items():
        sent = sum(o.sent()[alias] for o in ledger.outcomes.values())
        if sent != server.count(model):
            problems.append(f"{alias}: router recorded {sent} requests sent, the server read {server.count(model)}")
    problems += check_breakers(r, ledger, moves)
    kinds = Counter(o.kind for o in ledger.outcomes.values())
    probes = Counter(a.model for o in ledger.outcomes.values() for a in o.attempts if a.probe)
    print(f"outcomes {dict(kinds)}; probes {dict(probes)}; transitions "
          f"{ {alias: dict(c) for alias, c in moves.moves.items()} }")
    assert not problems, f"{len(problems)} problems (outcomes {dict(kinds)}):\n" + "\n".join(problems[:20])


def open_a(r: Router, server: FakeServer, clock: Clock, ask: Callable[[str, str], Outcome]) -> float:
    """Close b and c, and make model a's breaker open, whatever state the storm left them in; returns a's
    retry_at. One request at a time."""
    for name in ("b", "c"):
        server.plan(MODELS[name], default=Fault.ok())
    server.plan(MODELS["a"], default=Fault.status(500))
    clock.advance(100.0)  # past any retry_at and cool-down: whatever was open is half-open by time now
    assert ask("heal-b", "only_b").served_by == "b" and ask("heal-c", "only_c").served_by == "c"
    for i in range(2 * THRESHOLD + 2):
        info = r.breakers()["a"]
        if info.state == "open" and info.retry_at is not None and info.retry_at > clock.now:
            return info.retry_at
        ask(f"trip-{i}", "only_a")
    raise AssertionError(f"could not open a's breaker: {r.breakers()['a']}")


def check_open_then_one_probe(phase: dict[str, list[Outcome]], before: int, server: FakeServer) -> None:
    during_open = phase["open"]
    assert server.count(MODELS["a"]) - before == 1, "not exactly one probe after the wait"
    assert all(o.kind == "message" and o.served_by == "b" for o in during_open), \
        Counter((o.kind, o.served_by) for o in during_open)  # b is closed and healthy: it serves them all
    assert all(o.attempts[0].outcome is Kind.BREAKER_OPEN for o in during_open)
    after = phase["half_open"]
    by_a = [o for o in after if o.served_by == "a"]
    assert len(by_a) == 1 and by_a[0].attempts[0].probe, Counter(o.served_by for o in after)
    assert all(o.kind == "message" for o in after)


# ---- the tests ---------------------------------------------------------------------------------------


@pytest.fixture
def storm(fake_server: FakeServer, make_router, clock: Clock) -> Iterator[tuple[Router, Transitions, Ledger]]:
    moves = Transitions()
    r = make_router(policy(fake_server.url), on_transition=moves)
    yield r, moves, Ledger()


def test_200_threads_hammer_one_router_while_models_flip(fake_server: FakeServer, storm, clock: Clock) -> None:
    r, moves, ledger = storm
    seed = random.randrange(1 << 30)
    print(f"seed {seed}")

    def ask(tag: str, route: str = "default") -> Outcome:
        return ledger.call(tag, route, "sync", None, lambda: r.complete(
            messages=USER, max_tokens=16, route=route, metadata={"user_id": tag}))

    def worker(i: int) -> None:
        rng = random.Random(seed + i)
        for k in range(PER_WORKER):
            ask(f"t{i}-{k}", rng.choice(["default", "reverse"]))

    with Flipper(fake_server, clock, seed):
        run_threads(N, worker)
    check_all(r, fake_server, ledger, moves)

    # On the state the storm left behind: an open breaker sends nothing, then exactly one probe goes out.
    retry_at = open_a(r, fake_server, clock, ask)
    before = fake_server.count(MODELS["a"])
    phase: dict[str, list[Outcome]] = {"open": [], "half_open": []}
    run_threads(N, lambda i: phase["open"].append(ask(f"open-{i}")))
    assert fake_server.count(MODELS["a"]) == before, "requests reached a model whose breaker is open"
    clock.now = retry_at
    fake_server.plan(MODELS["a"], default=Fault.ok(delay=0.2))  # a slow probe, so everyone overlaps it
    run_threads(N, lambda i: phase["half_open"].append(ask(f"half-{i}")))
    check_open_then_one_probe(phase, before, fake_server)
    assert r.breakers()["a"].state == "closed"
    check_all(r, fake_server, ledger, moves)


async def test_200_coroutines_hammer_one_router_while_models_flip(
    fake_server: FakeServer, storm, clock: Clock
) -> None:
    r, moves, ledger = storm
    seed = random.randrange(1 << 30)
    print(f"seed {seed}")

    async def ask(tag: str, route: str = "default") -> Outcome:
        return await ledger.acall(tag, route, "async", None, lambda: r.acomplete(
            messages=USER, max_tokens=16, route=route, metadata={"user_id": tag}))

    async def worker(i: int) -> None:
        rng = random.Random(seed + i)
        for k in range(PER_WORKER):
            await ask(f"c{i}-{k}", rng.choice(["default", "reverse"]))

    try:
        with Flipper(fake_server, clock, seed):
            await run_coroutines(N, worker)
        check_all(r, fake_server, ledger, moves)

        # The same, in this loop: one request at a time.
        for name in ("b", "c"):
            fake_server.plan(MODELS[name], default=Fault.ok())
        fake_server.plan(MODELS["a"], default=Fault.status(500))
        clock.advance(100.0)
        assert (await ask("heal-b", "only_b")).served_by == "b"
        assert (await ask("heal-c", "only_c")).served_by == "c"
        for i in range(2 * THRESHOLD + 2):
            info = r.breakers()["a"]
            if info.state == "open" and info.retry_at is not None and info.retry_at > clock.now:
                break
            await ask(f"trip-{i}", "only_a")
        info = r.breakers()["a"]
        assert info.state == "open" and info.retry_at is not None and info.retry_at > clock.now
        before = fake_server.count(MODELS["a"])
        phase: dict[str, list[Outcome]] = {"open": [], "half_open": []}

        async def during(name: str, i: int) -> None:
            phase[name].append(await ask(f"{name}-{i}"))

        await run_coroutines(N, lambda i: during("open", i))
        assert fake_server.count(MODELS["a"]) == before, "requests reached a model whose breaker is open"
        clock.now = info.retry_at
        fake_server.plan(MODELS["a"], default=Fault.ok(delay=0.2))
        await run_coroutines(N, lambda i: during("half_open", i))
        check_open_then_one_probe(phase, before, fake_server)
        assert r.breakers()["a"].state == "closed"
        check_all(r, fake_server, ledger, moves)
    finally:
        await r.aclose()


# ---- requests in flight while the policy changes under them --------------------------------------------


def _file_policy(url: str, models: dict[str, str], attempts: int = 1, read: str = "10s") -> str:
    lines = ["version: 1", f"defaults: {{retry: {{attempts: {attempts}}}, timeout: {{read: {read}}}}}", "models:"]
    lines += [f"  {alias}: {{provider: anthropic, model: {model}, base_url: '{url}', api_key: '${{KEY_PRIMARY}}'}}"
              for alias, model in models.items()]
    lines.append(f"routes: {{default: [{', '.join(models)}]}}")
    return "\n".join(lines) + "\n"


def test_removing_a_model_while_requests_to_it_are_in_flight(
    fake_server: FakeServer, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """People edit the policy while the application runs (DESIGN): a model taken out of the file must not
    break the requests already talking to it. Their answers arrive after the reload; each request still
    ends in a message (or a documented exception), never in an internal error."""
    monkeypatch.setenv("KEY_PRIMARY", KEYS["KEY_PRIMARY"])
    path = tmp_path / "policy.yaml"
    path.write_text(_file_policy(fake_server.url, {"a": "claude-a", "b": "claude-b"}), encoding="utf-8")
    r = Router.from_yaml(path)
    fake_server.plan("claude-a", default=Fault.ok(delay=0.3))  # slow enough to still be in flight
    ledger = Ledger()
    threads = [threading.Thread(target=ledger.call, args=(f"r{i}", "default", "sync", None, lambda i=i: r.complete(
        messages=USER, max_tokens=8, metadata={"user_id": f"r{i}"}))) for i in range(10)]
    try:
        for t in threads:
            t.start()
        for _ in range(500):
            if fake_server.count("claude-a") == 10:
                break
            time.sleep(0.01)
        assert fake_server.count("claude-a") == 10, "the requests never reached model a"
        path.write_text(_file_policy(fake_server.url, {"b": "claude-b"}), encoding="utf-8")
        r.reload()  # what the file watcher does on its own within a second
        for t in threads:
            t.join(JOIN_TIMEOUT)
        kinds = Counter((o.kind, o.served_by, type(o.error).__name__ if o.error else None)
                        for o in ledger.outcomes.values())
        assert not ledger.of_kind("other"), f"in-flight requests broke on the reload: {kinds}"
        assert r.complete(messages=USER, max_tokens=8).routing.model == "b"
    finally:
        r.close()


def _open_descriptors() -> int:
    fd_dir = Path("/proc/self/fd")
    if not fd_dir.is_dir():
        pytest.skip("needs /proc/self/fd to count open descriptors")
    return len(list(fd_dir.iterdir()))


def _one_model_router(
    fake_server: FakeServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> tuple[Path, dict[str, str], Router]:
    """A Router on a policy file with one model, a, which the test edits and reloads."""
    _open_descriptors()  # skip before building anything
    monkeypatch.setenv("KEY_PRIMARY", KEYS["KEY_PRIMARY"])
    path = tmp_path / "policy.yaml"
    models = {"a": "claude-a"}
    path.write_text(_file_policy(fake_server.url, models), encoding="utf-8")
    return path, models, Router.from_yaml(path, watch=False)


@pytest.mark.parametrize("change", ["retry", "timeout"])
def test_reloading_does_not_leak_http_connections(
    fake_server: FakeServer, tmp_path, monkeypatch: pytest.MonkeyPatch, change: str
) -> None:
    """Every reload that changes a model may build a new provider (a new timeout needs new HTTP clients);
    the old one's clients and their keep-alive connections must then be let go once no request uses
    them, not kept until Router.close(): a service whose policy is edited now and then must not run out
    of sockets. Counted as this process's open file descriptors (client and fake server ends both live
    here), which must not grow with the number of reloads."""
    path, models, r = _one_model_router(fake_server, tmp_path, monkeypatch)
    try:
        r.complete(messages=USER, max_tokens=8)
        before = _open_descriptors()
        for i in range(40):
            edit = {"attempts": 1 + i % 2} if change == "retry" else {"read": f"{10 + i % 2}s"}
            path.write_text(_file_policy(fake_server.url, models, **edit), encoding="utf-8")  # type: ignore[arg-type]
            r.reload()
            r.complete(messages=USER, max_tokens=8)
        grown = _open_descriptors() - before
        assert grown < 10, f"{grown} more open descriptors after 40 reloads that changed {change}"
    finally:
        r.close()


def test_a_reload_in_another_thread_closes_async_connections_on_their_own_loop(
    fake_server: FakeServer, tmp_path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An app with a sync part and an async part: the async requests run on an event loop in one thread,
    the policy is reloaded from another. The replaced provider's async connections belong to that loop
    and can only be closed on it: they must be, or every reload leaks sockets (the loop keeps them)."""
    path, models, r = _one_model_router(fake_server, tmp_path, monkeypatch)
    loop = asyncio.new_event_loop()
    thread = threading.Thread(target=loop.run_forever, daemon=True)
    thread.start()

    def on_loop(coro: Any) -> Any:
        return asyncio.run_coroutine_threadsafe(coro, loop).result(JOIN_TIMEOUT)

    try:
        on_loop(r.acomplete(messages=USER, max_tokens=8))
        before = _open_descriptors()
        for i in range(40):
            path.write_text(_file_policy(fake_server.url, models, read=f"{10 + i % 2}s"), encoding="utf-8")
            r.reload()  # here, not on the loop's thread
            on_loop(r.acomplete(messages=USER, max_tokens=8))
        on_loop(asyncio.sleep(0.1))  # the closes scheduled on the loop run
        grown = _open_descriptors() - before
        assert grown < 5, f"{grown} more open descriptors after 40 reloads from another thread"
    finally:
        on_loop(r.aclose())
        loop.call_soon_threadsafe(loop.stop)
        thread.join(JOIN_TIMEOUT)
        loop.close()


async def test_cancelled_coroutines_never_wedge_a_half_open_breaker(
    fake_server: FakeServer, make_router, clock: Clock
) -> None:
    """200 coroutines ask a half-open model and are cancelled at random moments (asyncio.wait_for), some
    while they hold the probe lease. A cancellation is never the model's fault (README): it counts nothing
    and hands the lease back, so after every round nobody holds a lease, and the model still gets probed
    and closes once it answers."""
    r = make_router(policy(fake_server.url))
    rng = random.Random(1234)
    try:
        fake_server.plan(MODELS["a"], default=Fault.status(500))
        for _ in range(THRESHOLD):
            await r.acomplete(messages=USER, max_tokens=8, route="default")
        assert r.breakers()["a"].state == "open"
        cancelled = 0
        for round_ in range(3):
            clock.advance(100.0)  # past any retry_at
            fake_server.plan(MODELS["a"], default=Fault.ok(delay=0.1))

            async def one(i: int) -> None:
                nonlocal cancelled
                try:
                    await asyncio.wait_for(r.acomplete(messages=USER, max_tokens=8), rng.uniform(0.0, 0.15))
                except asyncio.TimeoutError:
                    cancelled += 1

            await run_coroutines(N, one)
            info = r.breakers()["a"]
            assert not info.probe_in_flight, f"round {round_}: a lease is still held after everyone left: {info}"
            if info.state == "closed":  # a probe finished in time: trip it again for the next round
                fake_server.plan(MODELS["a"], default=Fault.status(500))
                for _ in range(THRESHOLD):
                    await r.acomplete(messages=USER, max_tokens=8, route="default")
        assert cancelled > 0
        clock.advance(100.0)
        fake_server.plan(MODELS["a"], default=Fault.ok())
        msg = await r.acomplete(messages=USER, max_tokens=8, route="only_a")
        assert msg.routing.model == "a" and r.breakers()["a"].state == "closed"
    finally:
        await r.aclose()
