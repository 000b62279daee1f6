"""A Call with `admit_at` (the plan's one command for a quiet attempt: admission, then the call if admitted)
is carried out by every driver as Admit followed by the call, and a request makes the same store operations
in the same order, with the same record, whether its attempts go that way or as Admit then Call."""

from __future__ import annotations

import asyncio
import textwrap
import threading
from collections.abc import Generator
from typing import Any

import pytest

from router import Admission, Kind, Lease, MemoryStore, Router, parse_policy
from router import drivers as engine
from router.clock import SYSTEM
from router.commands import Call, Reply, Target
from router.policy import BreakerConfig
from router.start import Start
from router.streaming import drivers as stream_drivers
from router.streaming.stitcher import Stitcher
from router.testing import Fault

from .conftest import KEYS, USER, policy_yaml
from .test_commands_and_events import RecordingStore, SlowAsyncStore


class CountingProvider:
    """Answers every call with the same object; counts calls and streams."""

    def __init__(self) -> None:
        self.calls = 0
        self.streams = 0
        self.reply: Any = object()

    def call(self, params: Any, timeout: float) -> Any:
        self.calls += 1
        return self.reply

    async def acall(self, params: Any, timeout: float) -> Any:
        return self.call(params, timeout)

    def stream(self, params: Any, timeout: float) -> Any:
        self.streams += 1
        raise AssertionError("a refused admission must not open a stream")

    def astream(self, params: Any, timeout: float) -> Any:
        return self.stream(params, timeout)


def _target(fake_server: Any, provider: CountingProvider) -> Target:
    policy = parse_policy(textwrap.dedent(policy_yaml(fake_server.url)), env=KEYS)
    return Target("primary", policy.models["primary"], provider, "key")  # type: ignore[arg-type]


def _one_call(target: Target, replies: list[Reply]) -> Generator[Any, Reply, Any]:
    """A plan that sends one admitted Call and writes down the reply it gets."""
    replies.append((yield Call(target, {"messages": USER}, 5.0, None, admit_at=100.0)))
    return "done"


def _store(state: str) -> RecordingStore:
    store = RecordingStore()
    store.configure("primary", BreakerConfig(failure_threshold=1, reset_timeout=10.0, max_reset_timeout=10.0))
    if state in ("open", "half_open"):
        store.inner.record_failure("primary", 0.0 if state == "half_open" else 95.0, probe=None)
    elif state == "cooling":
        store.inner.cool_down("primary", 200.0)
    return store


def _drive(driver: str, target: Target, store: Any) -> list[Reply]:
    replies: list[Reply] = []
    steps = _one_call(target, replies)
    if driver == "run":
        assert engine.run(steps, store, SYSTEM) == "done"
    elif driver == "arun":
        assert asyncio.run(engine.arun(steps, store, SYSTEM)) == "done"
    elif driver == "events":
        assert list(stream_drivers.events(steps, Stitcher("raise"), store, SYSTEM)) == []
    else:
        async def read() -> list[Any]:
            return [e async for e in stream_drivers.aevents(steps, Stitcher("raise"), store, SYSTEM)]
        assert asyncio.run(read()) == []
    return replies


@pytest.mark.parametrize("driver", ["run", "arun", "events", "aevents"])
@pytest.mark.parametrize("state", ["open", "cooling", "half_open"])
def test_a_refused_admission_is_the_reply_and_nothing_is_called(fake_server, driver, state) -> None:
    provider = CountingProvider()
    store = _store(state)
    (reply,) = _drive(driver, _target(fake_server, provider), store)
    expected = {"open": Admission.OPEN, "cooling": Admission.COOLING}.get(state)
    assert reply is expected if expected is not None else isinstance(reply, Lease)
    assert provider.calls == 0 and provider.streams == 0
    assert store.ops == [("admit", "primary")]


@pytest.mark.parametrize("driver", ["run", "arun"])
def test_a_permitted_admission_makes_the_call(fake_server, driver) -> None:
    provider = CountingProvider()
    store = _store("closed")
    (reply,) = _drive(driver, _target(fake_server, provider), store)
    assert reply is provider.reply and provider.calls == 1
    assert store.ops == [("admit", "primary")]


def test_an_async_store_is_awaited_for_the_admission_and_refused_by_the_sync_driver(fake_server) -> None:
    provider = CountingProvider()
    store = SlowAsyncStore()
    store.configure("primary", BreakerConfig())
    (reply,) = _drive("arun", _target(fake_server, provider), store)
    assert reply is provider.reply and store.ops == [("admit", "primary")]
    with pytest.raises(TypeError, match="async breaker store"):
        _drive("run", _target(fake_server, provider), store)
    assert provider.calls == 1


# primary: a failure then a 429 (cooling down), a second failure (open), then the probe succeeds; a 401 later
SCENARIO = [Fault.status(500), Fault.status(429, retry_after=2), Fault.status(503), Fault.ok(), Fault.status(401)]


def _requests(r: Router, clock: Any, is_async: bool) -> list[tuple[Any, ...]]:
    """Requests through a failing, then recovering primary (breaker open, cooling, half-open probe)."""
    out: list[tuple[Any, ...]] = []

    async def acall() -> Any:
        return await r.acomplete(messages=USER, max_tokens=32)

    for step in range(11):
        if step in (6, 8):
            clock.advance(30)  # past the retry-after; then past the reset timeout: the next request is the probe
        try:
            msg = asyncio.run(acall()) if is_async else r.complete(messages=USER, max_tokens=32)
        except Exception as exc:
            out.append(("raised", type(exc).__name__, [(a.model, a.outcome) for a in exc.attempts]))  # type: ignore[attr-defined]
            continue
        out.append(("served", msg.routing.model,
                    [(a.model, a.outcome, a.status, a.probe, a.detail) for a in msg.routing.attempts]))
    return out


@pytest.mark.parametrize("is_async", [False, True], ids=["complete", "acomplete"])
def test_quiet_and_listened_requests_make_the_same_store_operations(make_router, fake_server, clock, is_async) -> None:
    """Nobody listening: attempts go as admitted Calls; a listener: as Admit then Call. Same everything."""
    runs = []
    for listen in (False, True):
        fake_server.reset()
        fake_server.plan("claude-primary", list(SCENARIO))
        store = RecordingStore()
        r = make_router(store=store, attempts=2, threshold=2, models=("primary", "fallback", "third"))
        if listen:
            r.add_listener(lambda event: None)
        runs.append((_requests(r, clock, is_async), store.ops))
    (quiet, quiet_ops), (heard, heard_ops) = runs
    assert quiet == heard and quiet_ops == heard_ops
    outcomes = {a[1] for row in quiet for a in row[2]}
    assert {Kind.SERVER_FAILURE, Kind.RATE_LIMITED, Kind.COOLING_DOWN, Kind.BREAKER_OPEN, Kind.ACCOUNT,
            Kind.SUCCESS} <= outcomes
    assert any(a[3] for row in quiet if row[0] == "served" for a in row[2])  # a half-open probe served
    assert ("failure", "primary") in quiet_ops and ("cool_down", "primary") in quiet_ops


def test_a_router_on_memory_breakers_serves_through_admitted_calls(fake_server) -> None:
    """The default store, no listener: the path every healthy request takes."""
    r = Router(parse_policy(textwrap.dedent(policy_yaml(fake_server.url)), env=KEYS), store=MemoryStore())
    try:
        msg = r.complete(messages=USER, max_tokens=32)
        assert msg.routing.model == "primary" and [a.outcome for a in msg.routing.attempts] == [Kind.SUCCESS]
        r.force_open("primary")
        msg = r.complete(messages=USER, max_tokens=32)
        assert [(a.model, a.outcome) for a in msg.routing.attempts] == [
            ("primary", Kind.BREAKER_OPEN), ("fallback", Kind.SUCCESS)]
    finally:
        r.close()


class _PlanCounter:
    """Counts the plans `router.start.Start` starts, and what each was handed."""

    def __init__(self, monkeypatch: pytest.MonkeyPatch) -> None:
        self.made: list[Any] = []
        original = Start.plan

        def counted(start: Start, made: Any = None) -> Any:
            self.made.append(made)
            return original(start, made)

        monkeypatch.setattr(Start, "plan", counted)


@pytest.mark.parametrize("is_async", [False, True], ids=["complete", "acomplete"])
def test_a_quiet_healthy_request_never_starts_a_plan(make_router, fake_server, monkeypatch, is_async) -> None:
    """The first call of a quiet request (no timeout=, not a stream, nobody listening) is made before its plan;
    a message ends the request there, with the same routing record and store operations as through a plan.
    (Streams never start quiet: test_streaming covers them through their plans.)"""
    plans = _PlanCounter(monkeypatch)
    store = RecordingStore()
    r = make_router(store=store)

    def call(**kwargs: Any) -> Any:
        if is_async:
            return asyncio.run(r.acomplete(messages=USER, max_tokens=32, **kwargs))
        return r.complete(messages=USER, max_tokens=32, **kwargs)

    quiet = call()
    assert plans.made == [] and fake_server.count("claude-primary") == 1
    quiet_ops = list(store.ops)
    store.ops.clear()
    r.add_listener(lambda event: None)  # someone listens: requests are no longer quiet, each starts its plan
    planned = call()
    assert plans.made == [None] and store.ops == quiet_ops == [("admit", "primary"), ("success", "primary")]
    call(timeout=30)  # a request with timeout= is not quiet either
    assert plans.made == [None, None]
    assert [(a.model, a.outcome, a.status) for a in quiet.routing.attempts] == [("primary", Kind.SUCCESS, 200)]
    assert [(a.model, a.outcome, a.status) for a in planned.routing.attempts] == [("primary", Kind.SUCCESS, 200)]
    assert quiet.routing.attempts[0].request_id and quiet.routing.attempts[0].request_id.startswith("req_")


@pytest.mark.parametrize("is_async", [False, True], ids=["complete", "acomplete"])
def test_a_quiet_first_call_that_fails_hands_its_reply_to_the_plan(make_router, fake_server, monkeypatch,
                                                                  is_async) -> None:
    """The plan goes on from the failed first call as if it had made it: the model is not called again, and
    the record and the breaker see that one failure."""
    plans = _PlanCounter(monkeypatch)
    store = RecordingStore()
    r = make_router(store=store)
    fake_server.plan("claude-primary", [Fault.status(500)])
    msg = asyncio.run(r.acomplete(messages=USER, max_tokens=32)) if is_async else r.complete(
        messages=USER, max_tokens=32)
    assert len(plans.made) == 1
    _, reply = plans.made[0]
    assert reply.kind is Kind.SERVER_FAILURE
    assert fake_server.count("claude-primary") == 1 and fake_server.count("claude-fallback") == 1
    assert [(a.model, a.outcome, a.status) for a in msg.routing.attempts] == [
        ("primary", Kind.SERVER_FAILURE, 500), ("fallback", Kind.SUCCESS, 200)]
    assert store.ops == [("admit", "primary"), ("failure", "primary"), ("admit", "fallback"),
                         ("success", "fallback")]
    assert r.breakers()["primary"].failures == 1


def test_a_listener_added_during_a_quiet_first_call_hears_only_later_requests(make_router, fake_server) -> None:
    """Listening is decided once per request: one that started quiet stays quiet, failover and all, so a
    listener never sees half a request."""
    r = make_router()
    heard: list[Any] = []
    fake_server.plan("claude-primary", [Fault.status(500, delay=0.05)])
    adder = threading.Timer(0.01, r.add_listener, (heard.append,))
    adder.start()
    try:
        msg = r.complete(messages=USER, max_tokens=32)
    finally:
        adder.join()
    assert msg.routing.model == "fallback" and len(heard) == 0
    r.complete(messages=USER, max_tokens=32)
    names = [type(e).__name__ for e in heard]
    assert names[0] == "RequestStarted" and names[-1] == "RequestEnded" and "AttemptEnded" in names
