"""Engine 2: the plan's store operations are commands (the same under the sync and async drivers, awaited
when the store is async), and events leave through one funnel that no listener can break."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from router import (
    AttemptEnded,
    AttemptStarted,
    BreakerTransition,
    Failover,
    Lease,
    MemoryStore,
    RequestEnded,
)
from router.policy import BreakerConfig
from router.testing import Fault

from .conftest import USER


class RecordingStore:
    """A MemoryStore that writes down every operation the plan asks of it."""

    def __init__(self) -> None:
        self.inner = MemoryStore()
        self.ops: list[tuple[str, str]] = []

    def subscribe(self, hook: Any) -> None:
        self.inner.subscribe(hook)

    def configure(self, alias: str, config: BreakerConfig) -> None:
        self.inner.configure(alias, config)

    def forget(self, alias: str) -> None:
        self.inner.forget(alias)

    def admit(self, alias: str, now: float, lease_ttl: float) -> Any:
        self.ops.append(("admit", alias))
        return self.inner.admit(alias, now, lease_ttl)

    def record_success(self, alias: str, now: float, *, probe: Lease | None) -> None:
        self.ops.append(("success", alias))
        self.inner.record_success(alias, now, probe=probe)

    def record_failure(self, alias: str, now: float, *, probe: Lease | None) -> bool:
        self.ops.append(("failure", alias))
        return self.inner.record_failure(alias, now, probe=probe)

    def release(self, alias: str, *, probe: Lease | None) -> None:
        self.ops.append(("release", alias))
        self.inner.release(alias, probe=probe)

    def cool_down(self, alias: str, until: float) -> None:
        self.ops.append(("cool_down", alias))
        self.inner.cool_down(alias, until)

    def info(self, alias: str, now: float) -> Any:
        self.ops.append(("info", alias))
        return self.inner.info(alias, now)

    def reset(self, alias: str) -> None:
        self.inner.reset(alias)


class SlowAsyncStore(RecordingStore):
    """The same store behind awaited I/O that takes 50 ms per operation, like a far-away Redis."""

    async def _io(self) -> None:
        await asyncio.sleep(0.05)

    async def admit(self, alias: str, now: float, lease_ttl: float) -> Any:  # type: ignore[override]
        await self._io()
        return super().admit(alias, now, lease_ttl)

    async def record_success(self, alias: str, now: float, *, probe: Lease | None) -> None:  # type: ignore[override]
        await self._io()
        super().record_success(alias, now, probe=probe)

    async def record_failure(self, alias: str, now: float, *, probe: Lease | None) -> bool:  # type: ignore[override]
        await self._io()
        return super().record_failure(alias, now, probe=probe)

    async def release(self, alias: str, *, probe: Lease | None) -> None:  # type: ignore[override]
        await self._io()
        super().release(alias, probe=probe)

    async def cool_down(self, alias: str, until: float) -> None:  # type: ignore[override]
        await self._io()
        super().cool_down(alias, until)

    async def info(self, alias: str, now: float) -> Any:  # type: ignore[override]
        await self._io()
        return super().info(alias, now)


SCENARIO = [Fault.status(500), Fault.status(429, retry_after=2), Fault.status(503)]


def _plan_scenario(fake_server: Any) -> None:
    fake_server.plan("claude-primary", list(SCENARIO))


async def test_store_operations_are_the_same_under_both_drivers(make_router, fake_server) -> None:
    sync_store, async_store = RecordingStore(), RecordingStore()
    _plan_scenario(fake_server)
    r = make_router(store=sync_store, attempts=2)
    for _ in range(3):
        r.complete(messages=USER, max_tokens=32, timeout=10)
    fake_server.reset()
    _plan_scenario(fake_server)
    a = make_router(store=async_store, attempts=2)
    for _ in range(3):
        await a.acomplete(messages=USER, max_tokens=32, timeout=10)
    await a.aclose()
    assert sync_store.ops == async_store.ops
    assert ("failure", "primary") in sync_store.ops and ("cool_down", "primary") in sync_store.ops
    assert ("info", "fallback") in sync_store.ops  # the share of timeout= asked whether the fallback could serve


async def test_an_async_store_is_awaited_and_blocks_only_its_own_request(make_router, fake_server) -> None:
    store = SlowAsyncStore()
    r = make_router(store=store)
    ticks = 0
    done = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not done.is_set():
            await asyncio.sleep(0.01)
            ticks += 1

    task = asyncio.create_task(ticker())
    msg = await r.acomplete(messages=USER, max_tokens=32)  # admit + success: at least 100 ms of store I/O
    done.set()
    await task
    await r.aclose()
    assert msg.routing.model == "primary"
    assert store.ops == [("admit", "primary"), ("success", "primary")]
    assert ticks >= 5  # the loop kept running while the store was slow


def test_an_async_store_under_the_sync_driver_is_a_clear_error(make_router) -> None:
    r = make_router(store=SlowAsyncStore())
    with pytest.raises(TypeError, match="async breaker store: use acomplete"):
        r.complete(messages=USER, max_tokens=32)


@pytest.mark.parametrize("given_store", [False, True], ids=["default store", "store= given"])
def test_listeners_see_every_attempt_once_and_a_raising_one_breaks_nothing(
    make_router, fake_server, clock, given_store
) -> None:
    kwargs = {"store": MemoryStore()} if given_store else {}
    r = make_router(reset="1s", **kwargs)
    seen: list[Any] = []

    def broken(event: Any) -> None:
        raise RuntimeError("a buggy listener")

    r.add_listener(broken)
    r.add_listener(seen.append)
    fake_server.plan("claude-primary", [Fault.status(500)] * 3)
    messages = [r.complete(messages=USER, max_tokens=32) for _ in range(4)]
    clock.advance(2)
    messages.append(r.complete(messages=USER, max_tokens=32))  # the probe closes the breaker
    ended = [e for e in seen if isinstance(e, RequestEnded)]
    assert len(ended) == len(messages)
    for msg, end in zip(messages, ended, strict=True):
        assert end.attempts == msg.routing.attempts and end.model == msg.routing.model
    attempts = [e.attempt for e in seen if isinstance(e, AttemptEnded)]
    assert attempts == [a for msg in messages for a in msg.routing.attempts]  # each exactly once, in order
    started = [e for e in seen if isinstance(e, AttemptStarted)]
    assert len(started) == sum(a.sent for msg in messages for a in msg.routing.attempts)
    transitions = [(e.model, e.old, e.new) for e in seen if isinstance(e, BreakerTransition)]
    assert transitions == [("primary", "closed", "open"), ("primary", "open", "half_open"),
                           ("primary", "half_open", "closed")]
    assert any(isinstance(e, Failover) and e.from_model == "primary" and e.to_model == "fallback" for e in seen)


def test_on_transition_keeps_working_with_a_store_given(make_router, fake_server) -> None:
    seen: list[tuple[str, str, str]] = []
    r = make_router(store=MemoryStore(), on_transition=lambda *t: seen.append(t), threshold=1)
    fake_server.plan("claude-primary", [Fault.status(500)])
    r.complete(messages=USER, max_tokens=32)
    assert seen == [("primary", "closed", "open")]


async def test_a_cancelled_request_hands_its_probe_lease_back_through_the_store(make_router, fake_server, clock):
    store = RecordingStore()
    r = make_router(store=store, threshold=1, reset="1s")
    fake_server.plan("claude-primary", [Fault.status(500), Fault.hang(30)])
    await r.acomplete(messages=USER, max_tokens=32)
    clock.advance(2)
    task = asyncio.create_task(r.acomplete(messages=USER, max_tokens=32))
    while fake_server.count("claude-primary") < 2:  # the probe is on its way
        await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    await r.aclose()
    assert store.ops[-1] == ("release", "primary")
    assert r.breakers()["primary"].state == "half_open" and not r.breakers()["primary"].probe_in_flight
