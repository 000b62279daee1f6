"""The breaker state machine, driven with an injected clock: no sleeps, no network."""

from __future__ import annotations

import asyncio
import logging
import random
import threading

import pytest

from router.breaker import Admission, Lease, MemoryStore
from router.plan import backoff_delay
from router.policy import BackoffConfig, BreakerConfig

CFG = BreakerConfig(failure_threshold=3, reset_timeout=10.0, max_reset_timeout=35.0)
TTL = 5.0


def store_with(config: BreakerConfig = CFG, hook=None) -> MemoryStore:
    store = MemoryStore(hook)
    store.configure("m", config)
    return store


def trip(store: MemoryStore, now: float = 0.0) -> None:
    for _ in range(CFG.failure_threshold):
        assert store.admit("m", now, TTL) is Admission.PERMIT
        store.record_failure("m", now, probe=None)


def test_opens_exactly_at_threshold() -> None:
    store = store_with()
    assert store.record_failure("m", 0.0, probe=None) is False
    assert store.record_failure("m", 0.0, probe=None) is False
    assert store.info("m", 0.0).state == "closed"
    assert store.info("m", 0.0).failures == 2
    assert store.record_failure("m", 1.0, probe=None) is True
    info = store.info("m", 1.0)
    assert (info.state, info.opened_at, info.retry_at) == ("open", 1.0, 11.0)


def test_success_resets_count_and_neutral_changes_nothing() -> None:
    store = store_with()
    store.record_failure("m", 0.0, probe=None)
    store.record_failure("m", 0.0, probe=None)
    store.release("m", probe=None)  # a 400 or a cancellation
    assert store.info("m", 0.0).failures == 2
    store.record_success("m", 0.0, probe=None)
    assert store.info("m", 0.0).failures == 0
    store.record_failure("m", 0.0, probe=None)
    store.record_failure("m", 0.0, probe=None)
    assert store.info("m", 0.0).state == "closed"


def test_open_admits_nobody_until_reset_timeout() -> None:
    store = store_with()
    trip(store)
    for t in (0.0, 5.0, 9.999):
        assert store.admit("m", t, TTL) is Admission.OPEN
    assert store.info("m", 10.0).state == "half_open"  # by time, before anyone asks


def test_half_open_lets_exactly_one_probe_through() -> None:
    store = store_with()
    trip(store)
    lease = store.admit("m", 10.0, TTL)
    assert isinstance(lease, Lease)
    assert store.info("m", 10.0).probe_in_flight
    for _ in range(5):
        assert store.admit("m", 10.5, TTL) is Admission.OPEN


def test_probe_success_closes_and_restarts_count() -> None:
    store = store_with()
    trip(store)
    lease = store.admit("m", 10.0, TTL)
    assert isinstance(lease, Lease)
    store.record_success("m", 10.2, probe=lease)
    info = store.info("m", 10.2)
    assert (info.state, info.failures, info.retry_at) == ("closed", 0, None)
    assert store.admit("m", 10.3, TTL) is Admission.PERMIT
    # The count restarted: it takes a full threshold again to open.
    store.record_failure("m", 11.0, probe=None)
    store.record_failure("m", 11.0, probe=None)
    assert store.info("m", 11.0).state == "closed"


def test_failed_probe_doubles_the_wait_up_to_the_cap() -> None:
    store = store_with()
    trip(store)
    now, waits = 10.0, []
    for _ in range(4):
        lease = store.admit("m", now, TTL)
        assert isinstance(lease, Lease)
        assert store.record_failure("m", now, probe=lease) is True
        info = store.info("m", now)
        assert info.state == "open"
        waits.append(info.retry_at - now)  # type: ignore[operator]
        now = info.retry_at  # type: ignore[assignment]
    assert waits == [20.0, 35.0, 35.0, 35.0]
    # Recovery resets the wait to reset_timeout for the next outage.
    lease = store.admit("m", now, TTL)
    assert isinstance(lease, Lease)
    store.record_success("m", now, probe=lease)
    for _ in range(3):
        store.record_failure("m", now, probe=None)
    assert store.info("m", now).retry_at == now + 10.0


def test_a_hung_probe_counts_as_failed_when_its_lease_expires() -> None:
    store = store_with()
    trip(store)
    lease = store.admit("m", 10.0, TTL)
    assert isinstance(lease, Lease)
    assert store.admit("m", 14.9, TTL) is Admission.OPEN
    assert store.admit("m", 15.0, TTL) is Admission.OPEN  # lease expired: reopened, doubled
    info = store.info("m", 15.0)
    assert (info.state, info.retry_at) == ("open", 35.0)
    # The hung probe reporting late changes nothing.
    store.record_success("m", 16.0, probe=lease)
    assert store.info("m", 16.0).state == "open"


def test_neutral_probe_releases_the_lease_for_the_next_asker() -> None:
    store = store_with()
    trip(store)
    lease = store.admit("m", 10.0, TTL)
    assert isinstance(lease, Lease)
    store.release("m", probe=lease)
    assert store.info("m", 10.0).state == "half_open"
    lease = store.admit("m", 10.1, TTL)
    assert isinstance(lease, Lease)


def test_late_results_of_calls_admitted_while_closed_are_ignored() -> None:
    store = store_with()
    trip(store)
    store.record_failure("m", 1.0, probe=None)
    store.record_success("m", 1.0, probe=None)
    info = store.info("m", 1.0)
    assert (info.state, info.retry_at) == ("open", 10.0)


def test_cool_down_skips_without_counting() -> None:
    store = store_with()
    store.cool_down("m", 2.0)
    assert store.admit("m", 1.9, TTL) is Admission.COOLING
    assert store.info("m", 1.9).failures == 0
    assert store.admit("m", 2.0, TTL) is Admission.PERMIT


def test_transitions_are_reported_and_a_failing_hook_never_breaks_a_call(caplog) -> None:
    seen: list[tuple[str, str, str]] = []

    def hook(alias: str, old: str, new: str) -> None:
        seen.append((alias, old, new))
        raise RuntimeError("buggy hook")

    store = store_with(hook=hook)
    with caplog.at_level(logging.ERROR, logger="router.breaker"):
        trip(store)
        lease = store.admit("m", 10.0, TTL)
        assert isinstance(lease, Lease)
        store.record_success("m", 10.0, probe=lease)
    assert seen == [("m", "closed", "open"), ("m", "open", "half_open"), ("m", "half_open", "closed")]
    assert "buggy hook" in caplog.text


def test_reconfigure_keeps_state_and_applies_new_threshold() -> None:
    store = store_with()
    store.record_failure("m", 0.0, probe=None)
    store.record_failure("m", 0.0, probe=None)
    store.configure("m", BreakerConfig(failure_threshold=5, reset_timeout=10.0, max_reset_timeout=35.0))
    assert store.record_failure("m", 0.0, probe=None) is False
    assert store.info("m", 0.0).failures == 3


def test_fifty_threads_in_half_open_get_exactly_one_probe() -> None:
    store = store_with()
    trip(store)
    barrier = threading.Barrier(50)
    results: list[Admission] = []
    lock = threading.Lock()

    def ask() -> None:
        barrier.wait()
        a = store.admit("m", 10.0, TTL)
        with lock:
            results.append(a)

    threads = [threading.Thread(target=ask) for _ in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert sum(isinstance(a, Lease) for a in results) == 1
    assert results.count(Admission.OPEN) == 49


async def test_fifty_coroutines_in_half_open_get_exactly_one_probe() -> None:
    store = store_with()
    trip(store)
    gate = asyncio.Event()

    async def ask() -> Admission:
        await gate.wait()
        return store.admit("m", 10.0, TTL)

    tasks = [asyncio.create_task(ask()) for _ in range(50)]
    await asyncio.sleep(0)
    gate.set()
    results = await asyncio.gather(*tasks)
    assert sum(isinstance(a, Lease) for a in results) == 1


def test_unknown_model_is_a_clear_error_and_a_removed_one_is_never_called() -> None:
    store = MemoryStore()
    with pytest.raises(KeyError, match="no breaker for model 'x'"):
        store.info("x", 0.0)
    # A reload removed "x" while a request to it was on its way: it is not called, and late results
    # for it are dropped.
    assert store.admit("x", 0.0, TTL) is Admission.OPEN
    assert store.record_failure("x", 0.0, probe=None) is True
    store.record_success("x", 0.0, probe=None)


@pytest.mark.parametrize("retry_index, expected", [(0, 0.5), (1, 1.0), (2, 2.0), (5, 8.0), (10, 8.0)])
def test_backoff_is_exponential_and_capped(retry_index: int, expected: float) -> None:
    cfg = BackoffConfig(initial=0.5, max=8.0, jitter=0.0)
    assert backoff_delay(cfg, retry_index, random.Random(1)) == expected


def test_backoff_jitter_stays_within_bounds() -> None:
    cfg = BackoffConfig(initial=1.0, max=8.0, jitter=0.25)
    rng = random.Random(7)
    delays = [backoff_delay(cfg, 0, rng) for _ in range(500)]
    assert min(delays) >= 0.75 and max(delays) <= 1.25
    assert max(delays) - min(delays) > 0.3  # it really jitters


def test_a_stale_probe_never_touches_the_current_probe() -> None:
    store = store_with()
    trip(store)
    old = store.admit("m", 10.0, TTL)  # lease until 15
    assert isinstance(old, Lease)
    assert store.admit("m", 15.0, TTL) is Admission.OPEN  # expired: reopened until 35
    current = store.admit("m", 35.0, 100.0)
    assert isinstance(current, Lease) and current != old
    store.release("m", probe=old)  # the old probe, cancelled late
    store.record_failure("m", 36.0, probe=old)  # or failing late
    store.record_success("m", 36.0, probe=old)  # or succeeding late
    info = store.info("m", 36.0)
    assert (info.state, info.probe_in_flight) == ("half_open", True)
    assert store.admit("m", 36.0, TTL) is Admission.OPEN  # still only one probe
    store.record_success("m", 37.0, probe=current)
    assert store.info("m", 37.0).state == "closed"
