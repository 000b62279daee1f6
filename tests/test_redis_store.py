"""RedisStore against a real redis-server on 127.0.0.1, one process (several stores where a test says so).

- The Lua scripts make the same decisions as the reference rules (`router.breaker_rules`): a table of
  scenarios run against MemoryStore and RedisStore with the same assertions, and a hypothesis state
  machine that drives RedisStore with the rules as its reference model, on real time (Redis times every
  decision with its own clock, `TIME`).
- The hot path is free: a closed breaker with no failures costs no round trip (server-side command stats).
- "Consecutive" holds across stores on one prefix.
- Redis down, or slow: every operation stays within its bound, answers come from the local breakers, the
  warning is logged once, and the store goes back to the shared state after its backoff.
- The async methods never block the event loop while Redis is slow.
- A password in the Redis URL never shows in logs, reprs or exception texts.

Times: the scenarios use reset timeouts of a few tenths of a second and compare times with generous
tolerances; nothing waits whole seconds.
"""

from __future__ import annotations

import asyncio
import logging
import math
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, rule, run_state_machine_as_test

from router import Router, parse_policy
from router import breaker_rules as rules
from router.breaker import Admission, BreakerInfo, Lease, MemoryStore
from router.policy import BreakerConfig
from router.redis_store import RedisStore
from router.testing import FakeServer, Fault

from ._redis import RedisServer
from .conftest import KEYS, USER, policy_yaml

ALIAS = "m"
CFG = BreakerConfig(failure_threshold=3, reset_timeout=0.2, max_reset_timeout=0.5)
TOL = 0.08  # seconds: how far a time Redis computed may sit from the one the test expects
SLOT = 0.25  # a little more than reset_timeout
LONG = 5.0  # a lease that outlives the scenario


def _prefix() -> str:
    return f"t-{uuid.uuid4().hex[:10]}"


def _close_to(value: float | None, expected: float, tol: float = TOL) -> bool:
    return value is not None and abs(value - expected) <= tol


# ---- one subject, two stores ---------------------------------------------------------------------------


@dataclass
class Subject:
    """A breaker store with its clock: MemoryStore on a hand-moved clock, or RedisStore on real time."""

    name: str
    store: Any
    now: Callable[[], float]
    wait: Callable[[float], None]
    moves: list[tuple[str, str]] = field(default_factory=list)

    def admit(self, ttl: float = LONG) -> Admission | Lease:
        return self.store.admit(ALIAS, self.now(), ttl)

    def success(self, probe: Lease | None = None) -> None:
        self.store.record_success(ALIAS, self.now(), probe=probe)

    def failure(self, probe: Lease | None = None) -> bool:
        opened: bool = self.store.record_failure(ALIAS, self.now(), probe=probe)
        return opened

    def release(self, probe: Lease | None) -> None:
        self.store.release(ALIAS, probe=probe)

    def cool_down(self, seconds: float) -> None:
        self.store.cool_down(ALIAS, self.now() + seconds)

    def info(self) -> BreakerInfo:
        info: BreakerInfo = self.store.info(ALIAS, self.now())
        return info

    def trip(self) -> float:
        """Closed -> open with `failure_threshold` admitted, failed calls; returns when it opened."""
        opened = False
        for _ in range(CFG.failure_threshold):
            assert self.admit() is Admission.PERMIT
            opened = self.failure()
        assert opened is True
        return self.now()


class HandClock:
    def __init__(self) -> None:
        self.t = 1000.0

    def __call__(self) -> float:
        return self.t

    def advance(self, seconds: float) -> None:
        self.t += seconds


@pytest.fixture(params=["memory", "redis"])
def subject(request: pytest.FixtureRequest) -> Iterator[Subject]:
    if request.param == "memory":
        clock = HandClock()
        s = Subject("memory", MemoryStore(), clock, clock.advance)
        s.store.subscribe(lambda alias, old, new: s.moves.append((old, new)))
        s.store.configure(ALIAS, CFG)
        yield s
        return
    server: RedisServer = request.getfixturevalue("redis_server")
    # The caller's clock is the wall clock here, the one Redis's TIME reads: the times info() reports and
    # the ones the test expects are then directly comparable. A generous timeout: a noisy machine must not
    # send this store to its local breakers in the middle of a scenario (checked below).
    store = RedisStore(server.url, prefix=_prefix(), timeout=1.0, now=time.time)
    s = Subject("redis", store, time.time, time.sleep)
    store.subscribe(lambda alias, old, new: s.moves.append((old, new)))
    store.configure(ALIAS, CFG)
    try:
        yield s
        assert store.shared, "the store fell back to its local breakers: the scenario did not test Redis"
    finally:
        store.close()


# ---- the scenarios: the same assertions for both stores ------------------------------------------------


def closed_opens_exactly_at_the_threshold(s: Subject) -> None:
    assert s.failure() is False
    assert (s.info().state, s.info().failures) == ("closed", 1)
    assert s.failure() is False
    assert (s.info().state, s.info().failures) == ("closed", 2)
    t = s.now()
    assert s.failure() is True
    info = s.info()
    assert (info.state, info.failures, info.probe_in_flight, info.forced) == ("open", 3, False, False)
    assert _close_to(info.retry_at, t + CFG.reset_timeout), (info, t)
    assert _close_to(info.opened_at, t), (info, t)
    assert s.moves == [("closed", "open")]


def a_success_resets_the_count(s: Subject) -> None:
    assert s.failure() is False
    assert s.failure() is False
    s.success()
    assert s.info().failures == 0
    assert s.failure() is False
    assert s.failure() is False
    assert (s.info().state, s.info().failures) == ("closed", 2)
    assert s.moves == []


def open_refuses_everyone_before_the_reset_timeout(s: Subject) -> None:
    s.trip()
    for _ in range(5):
        assert s.admit() is Admission.OPEN
    assert s.info().state == "open"
    assert s.moves == [("closed", "open")]


def after_the_reset_timeout_exactly_one_lease(s: Subject) -> None:
    s.trip()
    s.wait(SLOT)
    info = s.info()
    assert (info.state, info.probe_in_flight) == ("half_open", False)  # half-open by time
    lease = s.admit()
    assert isinstance(lease, Lease)
    for _ in range(5):
        assert s.admit() is Admission.OPEN
    info = s.info()
    assert (info.state, info.probe_in_flight) == ("half_open", True)
    assert s.moves == [("closed", "open"), ("open", "half_open")]


def a_probe_success_closes(s: Subject) -> None:
    s.trip()
    s.wait(SLOT)
    lease = s.admit()
    assert isinstance(lease, Lease)
    s.success(lease)
    info = s.info()
    assert (info.state, info.failures, info.retry_at, info.opened_at, info.probe_in_flight) == (
        "closed", 0, None, None, False)
    assert s.admit() is Admission.PERMIT
    assert s.moves == [("closed", "open"), ("open", "half_open"), ("half_open", "closed")]


def a_probe_failure_reopens_with_the_wait_doubled_and_capped(s: Subject) -> None:
    s.trip()
    s.wait(SLOT)
    first = s.admit()
    assert isinstance(first, Lease)
    t = s.now()
    assert s.failure(first) is True
    info = s.info()
    assert info.state == "open"
    assert _close_to(info.retry_at, t + 0.4), (info, t)  # 0.2 doubled
    assert s.admit() is Admission.OPEN
    s.wait(0.45)
    second = s.admit()
    assert isinstance(second, Lease) and second != first
    t = s.now()
    assert s.failure(second) is True
    assert _close_to(s.info().retry_at, t + 0.5), (s.info(), t)  # 0.4 doubled, capped at 0.5
    s.wait(0.55)
    third = s.admit()
    assert isinstance(third, Lease)
    s.success(third)
    t = s.trip()  # closed again: the wait starts over at reset_timeout
    assert _close_to(s.info().retry_at, t + CFG.reset_timeout), (s.info(), t)
    assert s.moves == [("closed", "open"), ("open", "half_open"), ("half_open", "open"),
                       ("open", "half_open"), ("half_open", "open"), ("open", "half_open"),
                       ("half_open", "closed"), ("closed", "open")]


def an_expired_lease_makes_the_next_admit_reopen(s: Subject) -> None:
    s.trip()
    s.wait(SLOT)
    lease = s.admit(ttl=0.1)
    assert isinstance(lease, Lease)
    s.wait(0.15)
    info = s.info()
    assert (info.state, info.probe_in_flight) == ("half_open", False)
    t = s.now()
    assert s.admit() is Admission.OPEN  # the hung probe counts as failed
    info = s.info()
    assert info.state == "open"
    assert _close_to(info.retry_at, t + 0.4), (info, t)
    assert s.moves == [("closed", "open"), ("open", "half_open"), ("half_open", "open")]
    # Its late reports change nothing.
    assert s.failure(lease) is True
    s.success(lease)
    s.release(lease)
    assert s.info().state == "open" and _close_to(s.info().retry_at, t + 0.4)
    assert len(s.moves) == 3


def a_neutral_release_frees_the_lease(s: Subject) -> None:
    s.trip()
    s.wait(SLOT)
    first = s.admit()
    assert isinstance(first, Lease)
    s.release(first)
    info = s.info()
    assert (info.state, info.probe_in_flight, info.failures) == ("half_open", False, 3)
    second = s.admit()
    assert isinstance(second, Lease) and second != first
    assert s.admit() is Admission.OPEN
    assert s.moves == [("closed", "open"), ("open", "half_open")]


def cooling_blocks_admission_and_probes(s: Subject) -> None:
    assert s.failure() is False
    t = s.now()
    s.cool_down(0.3)
    assert s.admit() is Admission.COOLING
    info = s.info()
    assert (info.state, info.failures) == ("closed", 1)  # a cool-down counts nothing
    assert _close_to(info.cooling_until, t + 0.3), (info, t)
    s.wait(0.35)
    assert s.admit() is Admission.PERMIT
    assert s.failure() is False
    assert s.failure() is True
    s.wait(SLOT)
    s.cool_down(0.3)
    assert s.admit() is Admission.COOLING  # half-open by time, but no probe while cooling
    assert s.info().probe_in_flight is False
    s.wait(0.35)
    assert isinstance(s.admit(), Lease)
    assert s.moves == [("closed", "open"), ("open", "half_open")]


def reset_closes_and_clears_count_cooldown_and_lease(s: Subject) -> None:
    s.trip()
    s.cool_down(LONG)
    s.store.reset(ALIAS)
    info = s.info()
    assert (info.state, info.failures, info.cooling_until, info.retry_at) == ("closed", 0, None, None)
    assert s.admit() is Admission.PERMIT
    s.trip()
    s.wait(SLOT)
    probe = s.admit()
    assert isinstance(probe, Lease)
    s.store.reset(ALIAS)
    assert (s.info().state, s.info().probe_in_flight) == ("closed", False)
    s.success(probe)  # the probe of before the reset reports: nothing changes
    assert (s.info().state, s.info().failures) == ("closed", 0)
    assert s.moves == [("closed", "open"), ("open", "closed"), ("closed", "open"), ("open", "half_open"),
                       ("half_open", "closed")]


def force_open_holds_it_open_with_no_probe_until_force_close(s: Subject) -> None:
    assert s.failure() is False
    s.store.force_open(ALIAS, s.now())
    info = s.info()
    assert (info.state, info.forced, info.retry_at, info.failures) == ("open", True, None, 1)
    s.wait(SLOT)
    assert s.admit() is Admission.OPEN
    assert s.info().state == "open"  # never half-open by time
    s.store.force_close(ALIAS)
    info = s.info()
    assert (info.state, info.forced, info.failures) == ("closed", False, 0)
    assert s.admit() is Admission.PERMIT
    assert s.moves == [("closed", "open"), ("open", "closed")]


def force_close_keeps_a_cooldown_reset_ends_it(s: Subject) -> None:
    s.cool_down(LONG)
    s.store.force_open(ALIAS, s.now())
    s.store.force_close(ALIAS)
    assert s.info().cooling_until is not None
    assert s.admit() is Admission.COOLING
    s.store.reset(ALIAS)
    assert s.info().cooling_until is None
    assert s.admit() is Admission.PERMIT


def a_late_probe_whose_lease_was_taken_over_changes_nothing(s: Subject) -> None:
    s.trip()
    s.wait(SLOT)
    old = s.admit(ttl=0.1)
    assert isinstance(old, Lease)
    s.wait(0.15)
    assert s.admit() is Admission.OPEN  # reopened: wait 0.4
    s.wait(0.45)
    current = s.admit()
    assert isinstance(current, Lease) and current != old
    before = s.info()
    s.success(old)
    assert s.failure(old) is True
    s.release(old)
    after = s.info()
    assert (after.state, after.probe_in_flight, after.failures) == (before.state, True, before.failures)
    assert s.admit() is Admission.OPEN  # the current probe is still out
    s.success(current)
    assert s.info().state == "closed"


def results_of_calls_admitted_while_closed_are_counted_out_once_open(s: Subject) -> None:
    t = s.trip()
    s.success()  # a call admitted while closed succeeds after the breaker opened: ignored
    assert s.failure() is True  # and one that fails is counted out
    info = s.info()
    assert (info.state, info.failures) == ("open", 3)
    assert _close_to(info.retry_at, t + CFG.reset_timeout)
    assert s.moves == [("closed", "open")]


SCENARIOS = [
    closed_opens_exactly_at_the_threshold,
    a_success_resets_the_count,
    open_refuses_everyone_before_the_reset_timeout,
    after_the_reset_timeout_exactly_one_lease,
    a_probe_success_closes,
    a_probe_failure_reopens_with_the_wait_doubled_and_capped,
    an_expired_lease_makes_the_next_admit_reopen,
    a_neutral_release_frees_the_lease,
    cooling_blocks_admission_and_probes,
    reset_closes_and_clears_count_cooldown_and_lease,
    force_open_holds_it_open_with_no_probe_until_force_close,
    force_close_keeps_a_cooldown_reset_ends_it,
    a_late_probe_whose_lease_was_taken_over_changes_nothing,
    results_of_calls_admitted_while_closed_are_counted_out_once_open,
]


@pytest.mark.parametrize("scenario", SCENARIOS, ids=[f.__name__ for f in SCENARIOS])
def test_both_stores_follow_the_rules(subject: Subject, scenario: Callable[[Subject], None]) -> None:
    scenario(subject)


def test_a_probe_success_reported_after_its_lease_ran_out_but_before_anyone_asked_closes(subject: Subject) -> None:
    """The rules (`breaker_rules.holds`): a probe holds its lease until someone else's admit reopens the
    breaker; its success closes the breaker even if it lands after `lease_until`. Through the Router the
    lease is the model's whole budget, so a probe that succeeds near the end of its budget lands here."""
    subject.trip()
    subject.wait(SLOT)
    probe = subject.admit(ttl=0.1)
    assert isinstance(probe, Lease)
    subject.wait(0.15)  # the lease ran out; nobody else asked meanwhile
    subject.success(probe)
    info = subject.info()
    assert (info.state, info.failures) == ("closed", 0), info
    assert subject.moves[-1] == ("half_open", "closed")


# ---- the scripts against the reference rules: a state machine on real time ------------------------------

MARGIN = 0.015  # no operation runs closer than this to a time at which a decision flips
SLACK = 0.003  # Redis keeps expiry in milliseconds and rounds a lease's TTL down to one
WIDEST = 0.005  # the least uncertainty assumed for a time Redis took (operations take well under 1 ms)


@dataclass
class _Ticket:
    number: int
    lease: Lease | None  # the store's lease, for a probe


class RulesMachine(RuleBasedStateMachine):
    """RedisStore on real (wall) time against `router.breaker_rules`.

    Each operation is timed [before, after]: Redis decided at some instant in between (its `TIME`, the same
    wall clock). The machine never starts an operation within MARGIN of a time at which one of the rules'
    answers flips (retry_at, a lease's end, a cool-down's end: it sleeps past them), so the rules applied
    at the operation's midpoint decide what Redis decided; should a stall still put an operation across
    such a time, Redis's answer must be the rules' at one end or the other. Times Redis reports are compared
    within a few milliseconds. No rule has a precondition: which tickets exist depends on real time, and
    hypothesis needs the same draws when it replays an example.

    Probes are well behaved in one respect: a probe whose lease ran out while nobody else asked stays
    silent (there the script and the rules disagree: see
    test_a_probe_success_reported_after_its_lease_ran_out_but_before_anyone_asked_closes)."""

    url = ""  # set by the test

    def __init__(self) -> None:
        super().__init__()
        self.moves: list[tuple[str, str]] = []
        self.expected_moves: list[tuple[str, str]] = []
        self.store = RedisStore(self.url, prefix=_prefix(), timeout=1.0, now=time.time)
        self.store.subscribe(lambda alias, old, new: self.moves.append((old, new)))
        self.config = CFG
        self.ref = rules.closed(CFG)
        self.bounds: dict[str, tuple[float, float]] = {}  # retry / lease / cooling: when it flips
        self.widest = 0.0  # the longest operation so far: how far a time Redis took may be from ours
        self.tickets: dict[int, _Ticket] = {}
        self.numbers = iter(range(1, 10**9))

    def teardown(self) -> None:
        shared = self.store.shared
        self.store.close()
        assert shared, "the store fell back to its local breakers"

    @initialize(threshold=st.integers(1, 3), reset=st.sampled_from([0.1, 0.15]),
                cap=st.sampled_from([1.0, 2.0, 3.0]))
    def configure(self, threshold: int, reset: float, cap: float) -> None:
        self.config = BreakerConfig(threshold, reset, reset * cap)
        self.store.configure(ALIAS, self.config)
        self.ref = rules.closed(self.config)

    # -- time ------------------------------------------------------------------------------------

    def settle(self) -> None:
        """Sleep until no flip time is within MARGIN of now."""
        for _ in range(20):
            t = time.time()
            near = [hi for lo, hi in self.bounds.values() if lo - MARGIN <= t <= hi + MARGIN]
            if not near:
                return
            time.sleep(max(near) + MARGIN - t + 0.001)

    def timed(self, op: Callable[[float], Any]) -> tuple[Any, tuple[float, ...]]:
        """Run op(now) away from every flip time. Returns its result and the instants to apply the rules
        at: the midpoint; or, when a stall put the operation across a flip time (Redis decided on one
        side of it, which one is unknown), both ends."""
        self.settle()
        before = time.time()
        result = op(before)
        after = time.time()
        self.widest = max(self.widest, after - before)
        if any(lo - SLACK < after and hi + SLACK > before for lo, hi in self.bounds.values()):
            return result, (before, after)
        return result, ((before + after) / 2,)

    def apply(self, change: Any) -> None:
        """Adopt the rules' new state; note when its time-dependent answers flip."""
        old, new = self.ref, change.state
        for name, value in (("retry", new.retry_at), ("lease", new.lease_until),
                            ("cooling", new.cooling_until)):
            before = {"retry": old.retry_at, "lease": old.lease_until, "cooling": old.cooling_until}[name]
            if value is None:
                self.bounds.pop(name, None)
            elif value != before:
                spread = SLACK + max(WIDEST, self.widest)
                self.bounds[name] = (value - spread, value + spread)
        self.ref = new
        if change.transition is not None:
            self.expected_moves.append(change.transition)

    # -- the operations ----------------------------------------------------------------------------

    def do_admit(self, ttl: float) -> None:
        got, instants = self.timed(lambda now: self.store.admit(ALIAS, now, ttl))
        answers = []
        for at in instants:
            change = rules.admit(self.ref, self.config, at, ttl)
            expected = change.answer
            answers.append(expected)
            if (isinstance(expected, Lease) and isinstance(got, Lease)) or got is expected:
                break
        else:
            raise AssertionError(f"admit: Redis said {got}, the rules {answers} ({self.ref})")
        if isinstance(got, Lease):
            assert isinstance(expected, Lease) and got.token == expected.token, "lease tokens out of step"
        self.apply(change)
        if got is Admission.PERMIT or isinstance(got, Lease):
            number = next(self.numbers)
            self.tickets[number] = _Ticket(number, got if isinstance(got, Lease) else None)

    def do_report(self, ticket: _Ticket, outcome: str) -> None:
        del self.tickets[ticket.number]
        if outcome == "hang":
            return
        probe = ticket.lease
        if probe is not None and rules.holds(self.ref, probe):
            self.settle()
            assert self.ref.lease_until is not None
            if time.time() >= self.ref.lease_until:
                # Its lease ran out and nobody asked since: the rules would still take its report,
                # the script does not (see the test below). A well-behaved probe stays silent here.
                return
        if outcome == "succeed":
            self.timed(lambda now: self.store.record_success(ALIAS, now, probe=probe))
            self.apply(rules.success(self.ref, self.config, probe))
        elif outcome == "fail":
            got, instants = self.timed(lambda now: self.store.record_failure(ALIAS, now, probe=probe))
            change = rules.failure(self.ref, self.config, instants[0], probe)  # no time in the decision
            assert got is change.answer, f"failure: Redis said open={got}, the rules {change.answer}"
            self.apply(change)
        else:
            self.timed(lambda now: self.store.release(ALIAS, probe=probe))
            self.apply(rules.release(self.ref, probe))

    @rule(ttl=st.sampled_from([0.06, 0.15, LONG]))
    def admit(self, ttl: float) -> None:
        self.do_admit(ttl)

    @rule(outcome=st.sampled_from(["succeed", "fail", "neutral", "hang"]), pick=st.integers(0, 100))
    def report(self, outcome: str, pick: int) -> None:
        # (No preconditions anywhere: which tickets exist depends on real time, and hypothesis needs the
        # same draws on a replay.)
        if not self.tickets:
            return
        tickets = sorted(self.tickets)
        self.do_report(self.tickets[tickets[pick % len(tickets)]], outcome)

    @rule(outcome=st.sampled_from(["succeed", "fail", "neutral"]))
    def probe_reports(self, outcome: str) -> None:
        probes = [t for t in self.tickets.values() if t.lease is not None]
        if probes:
            self.do_report(max(probes, key=lambda t: t.number), outcome)

    @rule(probe_ttl=st.sampled_from([None, 0.06, LONG]), then=st.sampled_from([None, "succeed", "fail", "neutral"]))
    def trip(self, probe_ttl: float | None, then: str | None) -> None:
        """A burst of failures (a shortcut to the interesting states); then maybe, once the wait is over,
        a probe, and maybe its report at once."""
        for _ in range(self.config.failure_threshold):
            if self.ref.state != "closed":
                break
            self.do_admit(LONG)
            calls = [t for t in self.tickets.values() if t.lease is None]
            if not calls:
                break  # cooling
            self.do_report(max(calls, key=lambda t: t.number), "fail")
        if probe_ttl is not None and self.ref.retry_at is not None and not self.ref.forced:
            time.sleep(max(0.0, self.ref.retry_at + MARGIN - time.time()))
            self.do_admit(probe_ttl)
            if then is not None:
                self.probe_reports(then)

    @rule(seconds=st.sampled_from([0.06, 0.15]))
    def rate_limited(self, seconds: float) -> None:
        until: list[float] = []

        def op(now: float) -> None:
            until.append(now + seconds)
            self.store.cool_down(ALIAS, now + seconds)

        current = self.ref.cooling_until
        self.settle()
        if current is not None and abs(time.time() + seconds - current) < 0.02:
            return  # which of two nearly equal cool-downs ends later is a matter of microseconds
        self.timed(op)
        self.apply(rules.cool_down(self.ref, until[0]))

    @rule(action=st.sampled_from(["reset", "force_open", "force_close"]))
    def operator(self, action: str) -> None:
        if action == "reset":
            self.timed(lambda now: self.store.reset(ALIAS))
            self.apply(rules.reset(self.ref, self.config))
        elif action == "force_open":
            _, instants = self.timed(lambda now: self.store.force_open(ALIAS, now))
            self.apply(rules.force_open(self.ref, self.config, instants[0]))
        else:
            self.timed(lambda now: self.store.force_close(ALIAS))
            self.apply(rules.force_close(self.ref, self.config))

    @rule(seconds=st.sampled_from([0.03, 0.08, 0.15]))
    def advance(self, seconds: float) -> None:
        time.sleep(seconds)

    @rule(which=st.sampled_from(["retry", "lease", "cooling"]), after=st.booleans())
    def to_a_flip(self, which: str, after: bool) -> None:
        bound = self.bounds.get(which)
        if bound is None:
            return
        target = bound[1] + MARGIN + 0.001 if after else bound[0] - MARGIN - 0.001
        if target > time.time():
            time.sleep(target - time.time())

    # -- after every step ----------------------------------------------------------------------------

    @invariant()
    def redis_agrees_with_the_rules(self) -> None:
        got, instants = self.timed(lambda now: self.store.info(ALIAS, now))
        wanted = [self.expected_info(at) for at in instants]
        assert any(self.same(got, want) for want in wanted), (got, wanted, self.ref)
        assert self.moves == self.expected_moves

    def expected_info(self, at: float) -> BreakerInfo:
        """What MemoryStore.info() says of the rules' state at `at`."""
        s = self.ref
        state = s.state
        if state == "open" and s.retry_at is not None and at >= s.retry_at:
            state = "half_open"
        cooling = s.cooling_until if s.cooling_until is not None and at < s.cooling_until else None
        return BreakerInfo(state if not s.forced else "open", s.failures, s.opened_at, s.retry_at,
                           s.lease_until is not None and at < s.lease_until, cooling, s.forced)

    def same(self, got: BreakerInfo, want: BreakerInfo) -> bool:
        if (got.state, got.failures, got.probe_in_flight, got.forced) != (
                want.state, want.failures, want.probe_in_flight, want.forced):
            return False
        tol = 0.01 + 2 * self.widest
        for mine, theirs in ((got.retry_at, want.retry_at), (got.opened_at, want.opened_at),
                             (got.cooling_until, want.cooling_until)):
            if (mine is None) != (theirs is None):
                return False
            if mine is not None and theirs is not None and not math.isclose(mine, theirs, rel_tol=0.0, abs_tol=tol):
                return False
        return True



def test_the_scripts_make_the_decisions_of_the_reference_rules(redis_server: RedisServer,
                                                               monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(RulesMachine, "url", redis_server.url)
    run_state_machine_as_test(
        RulesMachine,
        settings=settings(max_examples=30, stateful_step_count=15, deadline=None, database=None,
                          suppress_health_check=list(HealthCheck)),
    )


# ---- a lease from the local breakers, reported once Redis is back ---------------------------------------


@pytest.mark.parametrize("outcome", ["neutral", "success", "failure"])
def test_a_probe_lease_from_the_local_breakers_never_touches_the_fleets_probe(redis_server: RedisServer,
                                                                              outcome: str) -> None:
    """Process A takes a probe lease from its own breakers while Redis is down; Redis comes back, and B
    becomes the fleet's probe. Then A's probe ends (neutral: a 400 or a cancellation; or a success; or a
    failure) after A's backoff, when A talks to Redis again. A's lease belongs to A's local breakers: its
    report must not hand back B's lease (a second probe would go out while B's is in flight), nor close
    or reopen the fleet's breaker under B's probe."""
    cfg = BreakerConfig(failure_threshold=1, reset_timeout=0.2, max_reset_timeout=1.0)
    clock = HandClock()
    prefix = _prefix()
    a = RedisStore(redis_server.url, prefix=prefix, timeout=0.2, now=clock)
    b = RedisStore(redis_server.url, prefix=prefix, timeout=0.5)
    c = RedisStore(redis_server.url, prefix=prefix, timeout=0.5)
    for store in (a, b, c):
        store.configure(ALIAS, cfg)
    try:
        redis_server.kill()
        assert a.record_failure(ALIAS, clock(), probe=None) is True  # A's own breaker opens
        assert not a.shared
        clock.advance(0.3)  # past A's reset timeout, not past its 1 s backoff
        local = a.admit(ALIAS, clock(), 10.0)
        assert isinstance(local, Lease)
        redis_server.start()
        assert b.record_failure(ALIAS, time.monotonic(), probe=None) is True  # the fleet's breaker opens
        time.sleep(SLOT)
        fleet = b.admit(ALIAS, time.monotonic(), 10.0)
        assert isinstance(fleet, Lease)
        clock.advance(2.0)  # A's backoff is over: its next call goes to Redis
        if outcome == "neutral":
            a.release(ALIAS, probe=local)
        elif outcome == "success":
            a.record_success(ALIAS, clock(), probe=local)
        else:
            a.record_failure(ALIAS, clock(), probe=local)
        info = c.info(ALIAS, time.monotonic())
        assert (info.state, info.probe_in_flight) == ("half_open", True), (
            f"A's local lease {local} ({outcome}) acted on the fleet's lease {fleet}: {info}")
        assert c.admit(ALIAS, time.monotonic(), 10.0) is Admission.OPEN, "a second probe while B's is in flight"
        b.record_success(ALIAS, time.monotonic(), probe=fleet)  # B's own report still counts
        assert c.info(ALIAS, time.monotonic()).state == "closed"
    finally:
        for store in (a, b, c):
            store.close()


# ---- the hot path ------------------------------------------------------------------------------------------


def _commands(server: RedisServer) -> dict[str, int]:
    """Calls per command the server executed since the last CONFIG RESETSTAT (not counting these looks)."""
    client = server.client()
    try:
        stats = client.info("commandstats")
    finally:
        client.close()
    calls = {name.removeprefix("cmdstat_"): int(v["calls"]) for name, v in stats.items()}
    for mine in ("info", "config|resetstat", "hello", "client|setinfo", "ping", "pubsub|numsub"):
        calls.pop(mine, None)
    return {name: n for name, n in calls.items() if n}


def _reset_stats(server: RedisServer, channel: str) -> None:
    """Zero the server's command stats, once the store's pub/sub watcher (a thread) has subscribed."""
    client = server.client()
    try:
        give_up = time.monotonic() + 5.0
        while int(dict(client.pubsub_numsub(channel)).get(channel.encode(), 0)) < 1:
            assert time.monotonic() < give_up, "the store's watcher never subscribed"
            time.sleep(0.01)
        client.config_resetstat()
    finally:
        client.close()


def test_the_hot_path_costs_no_round_trip(redis_server: RedisServer) -> None:
    store = RedisStore(redis_server.url, prefix=_prefix(), timeout=0.5)
    store.configure(ALIAS, CFG)
    try:
        assert store.admit(ALIAS, time.monotonic(), 5.0) is Admission.PERMIT  # learns the view: 1 round trip
        store.record_success(ALIAS, time.monotonic(), probe=None)
        _reset_stats(redis_server, store.channel)
        started = time.monotonic()
        for _ in range(100):
            assert store.admit(ALIAS, time.monotonic(), 5.0) is Admission.PERMIT
            store.record_success(ALIAS, time.monotonic(), probe=None)
        elapsed = time.monotonic() - started
        calls = _commands(redis_server)
        # The view is re-read at least every `poll` (1 s): at most one script per poll second.
        assert sum(calls.values()) <= int(elapsed / store.poll), (calls, elapsed)
        assert store.shared
    finally:
        store.close()


def test_the_hot_path_through_a_router_costs_no_round_trip(redis_server: RedisServer, fake_server: FakeServer
                                                            ) -> None:
    prefix = _prefix()
    r = Router(parse_policy(_with_redis(policy_yaml(fake_server.url), redis_server.url, prefix), env=KEYS))
    try:
        assert r.complete(messages=USER, max_tokens=8).routing.model == "primary"
        _reset_stats(redis_server, f"{prefix}:breaker-changes")
        started = time.monotonic()
        for _ in range(100):
            assert r.complete(messages=USER, max_tokens=8).routing.model == "primary"
        elapsed = time.monotonic() - started
        calls = _commands(redis_server)
        assert sum(calls.values()) <= 2 * (1 + int(elapsed)), (calls, elapsed)  # two models, poll 1 s each
        assert fake_server.count("claude-primary") == 101
    finally:
        r.close()


def _with_redis(policy: str, url: str, prefix: str | None = None, timeout: str = "500ms") -> str:
    return policy + f"state:\n  redis: {{url: '{url}', prefix: {prefix or _prefix()}, timeout: {timeout}}}\n"


# ---- "consecutive" across stores ------------------------------------------------------------------------------


def test_failures_counted_by_two_stores_add_up_and_a_success_on_either_resets_them(redis_server: RedisServer
                                                                                   ) -> None:
    cfg = BreakerConfig(failure_threshold=4, reset_timeout=0.2, max_reset_timeout=1.0)
    prefix = _prefix()
    a = RedisStore(redis_server.url, prefix=prefix, timeout=0.5)
    b = RedisStore(redis_server.url, prefix=prefix, timeout=0.5)
    a.configure(ALIAS, cfg)
    b.configure(ALIAS, cfg)
    now = time.monotonic
    try:
        assert a.record_failure(ALIAS, now(), probe=None) is False
        assert b.record_failure(ALIAS, now(), probe=None) is False
        assert a.record_failure(ALIAS, now(), probe=None) is False
        assert (a.info(ALIAS, now()).failures, b.info(ALIAS, now()).failures) == (3, 3)
        b.record_success(ALIAS, now(), probe=None)
        assert a.info(ALIAS, now()).failures == 0

        # B's last look said "closed, 0 failures" (its view); A counts two since. Once pub/sub has told B
        # (a few milliseconds; allow 100), B's success is not taken for the free no-op.
        assert b.admit(ALIAS, now(), 5.0) is Admission.PERMIT
        assert a.record_failure(ALIAS, now(), probe=None) is False
        assert a.record_failure(ALIAS, now(), probe=None) is False
        time.sleep(0.1)
        b.record_success(ALIAS, now(), probe=None)
        assert a.info(ALIAS, now()).failures == 0

        for store in (a, b, a):
            assert store.record_failure(ALIAS, now(), probe=None) is False
        assert b.record_failure(ALIAS, now(), probe=None) is True  # the fourth, from either, opens it
        assert a.info(ALIAS, now()).state == "open"
        assert a.admit(ALIAS, now(), 5.0) is Admission.OPEN
        assert a.shared and b.shared
    finally:
        a.close()
        b.close()


# ---- Redis down, Redis slow ------------------------------------------------------------------------------------

BOUND = 1.0  # seconds: the most any one store operation may take with a 50 ms Redis timeout (generous)


def _every_operation(store: RedisStore, now: float) -> dict[str, Any]:
    """Each store operation once, timed; {name: (seconds, answer)}."""
    took: dict[str, Any] = {}
    ops: dict[str, Callable[[], Any]] = {
        "admit": lambda: store.admit(ALIAS, now, 5.0),
        "failure": lambda: store.record_failure(ALIAS, now, probe=None),
        "success": lambda: store.record_success(ALIAS, now, probe=None),
        "probe_success": lambda: store.record_success(ALIAS, now, probe=Lease(10**6)),
        "release": lambda: store.release(ALIAS, probe=Lease(10**6)),
        "cool_down": lambda: store.cool_down(ALIAS, now),
        "info": lambda: store.info(ALIAS, now),
        "peek": lambda: store.peek(ALIAS, now),
        "force_open": lambda: store.force_open(ALIAS, now),
        "force_close": lambda: store.force_close(ALIAS),
        "reset": lambda: store.reset(ALIAS),
    }
    for name, op in ops.items():
        started = time.monotonic()
        answer = op()
        took[name] = (time.monotonic() - started, answer)
    return took


def _warnings(caplog: pytest.LogCaptureFixture, text: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "router.redis" and r.levelno >= logging.WARNING
            and text in r.getMessage()]


def test_redis_killed_answers_come_from_local_breakers_within_the_bound_and_it_says_so_once(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="router.redis")
    clock = HandClock()
    store = RedisStore(redis_server.url, prefix=_prefix(), timeout=0.05, now=clock)
    store.configure(ALIAS, CFG)
    try:
        assert store.admit(ALIAS, clock(), 5.0) is Admission.PERMIT
        assert store.shared
        redis_server.kill()
        slowest = 0.0
        for _ in range(40):  # 4 s on the store's clock: several retries of Redis, each refused
            for name, (seconds, _) in _every_operation(store, clock()).items():
                assert seconds < BOUND, f"{name} took {seconds:.2f}s with Redis down"
                slowest = max(slowest, seconds)
            clock.advance(0.1)
        assert not store.shared
        # The local breakers decide meanwhile: they open at the threshold and refuse.
        store.reset(ALIAS)
        for _ in range(CFG.failure_threshold):
            store.record_failure(ALIAS, clock(), probe=None)
        assert store.info(ALIAS, clock()).state == "open"
        assert store.admit(ALIAS, clock(), 5.0) is Admission.OPEN
        assert len(_warnings(caplog, "is unreachable")) == 1, [r.getMessage() for r in caplog.records]

        redis_server.start()
        clock.advance(31.0)  # past the longest backoff (30 s): the next call tries Redis
        info = store.info(ALIAS, clock())
        assert store.shared
        assert info.state == "closed"  # the shared state wins: this Redis never heard of those failures
        assert store.admit(ALIAS, clock(), 5.0) is Admission.PERMIT
        assert len(_warnings(caplog, "shared again")) == 1
        assert len(_warnings(caplog, "is unreachable")) == 1
    finally:
        store.close()


def test_redis_back_within_the_first_backoff_is_used_after_it(redis_server: RedisServer) -> None:
    clock = HandClock()
    store = RedisStore(redis_server.url, prefix=_prefix(), timeout=0.05, now=clock)
    store.configure(ALIAS, CFG)
    try:
        assert store.info(ALIAS, clock()).state == "closed"
        redis_server.kill()
        assert store.record_failure(ALIAS, clock(), probe=None) is False
        assert not store.shared
        redis_server.start()
        clock.advance(0.5)
        store.info(ALIAS, clock())
        assert not store.shared, "tried Redis again before its 1 s backoff"
        clock.advance(0.6)
        store.info(ALIAS, clock())
        assert store.shared
    finally:
        store.close()


def test_redis_paused_no_operation_waits_longer_than_the_bound(redis_server: RedisServer,
                                                               caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.WARNING, logger="router.redis")
    offset = [0.0]

    def now() -> float:
        return time.monotonic() + offset[0]

    store = RedisStore(redis_server.url, prefix=_prefix(), timeout=0.05, now=now)
    store.configure(ALIAS, CFG)
    try:
        assert store.admit(ALIAS, now(), 5.0) is Admission.PERMIT
        redis_server.pause(1.2)
        paused_until = time.monotonic() + 1.2
        rounds = 0
        while time.monotonic() < paused_until - 0.3:
            for name, (seconds, _) in _every_operation(store, now()).items():
                assert seconds < 0.5, f"{name} took {seconds:.2f}s while Redis was paused"
            offset[0] += 0.3  # the store retries Redis (after 1 s, then 2 s ...) while it is still paused
            rounds += 1
            time.sleep(0.02)
        assert rounds >= 3
        assert not store.shared
        assert len(_warnings(caplog, "is unreachable")) == 1
        while time.monotonic() < paused_until + 0.05:
            time.sleep(0.02)
        offset[0] += 60.0  # past any backoff
        store.info(ALIAS, now())
        assert store.shared
    finally:
        redis_server.resume()
        store.close()


async def test_async_operations_never_block_the_event_loop_while_redis_is_paused(redis_server: RedisServer
                                                                                 ) -> None:
    store = RedisStore(redis_server.url, prefix=_prefix(), timeout=0.3)  # long enough to see the loop go on
    store.configure(ALIAS, CFG)
    ticks = 0
    done = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not done.is_set():
            await asyncio.sleep(0.01)
            ticks += 1

    try:
        assert await store.aadmit(ALIAS, time.monotonic(), 5.0) is Admission.PERMIT
        assert await store.arecord_failure(ALIAS, time.monotonic(), probe=None) is False
        task = asyncio.create_task(ticker())
        await asyncio.sleep(0.02)
        redis_server.pause(1.0)
        before, started = ticks, time.monotonic()
        answers = await asyncio.gather(
            store.arecord_failure(ALIAS, time.monotonic(), probe=None),
            store.aadmit(ALIAS, time.monotonic(), 5.0),
            store.ainfo(ALIAS, time.monotonic()),
        )
        took = time.monotonic() - started
        during = ticks - before
        done.set()
        await task
        assert took < 0.8, f"three concurrent operations took {took:.2f}s with a 0.3 s timeout"
        assert during >= 5, f"the loop ticked {during} times in {took:.2f}s while Redis was paused"
        assert not store.shared
        assert answers[1] is Admission.PERMIT  # from the local breakers
    finally:
        redis_server.resume()
        await store.aclose()


async def test_acomplete_is_served_and_the_loop_runs_while_redis_is_paused(redis_server: RedisServer,
                                                                           fake_server: FakeServer) -> None:
    policy = parse_policy(_with_redis(policy_yaml(fake_server.url), redis_server.url, timeout="300ms"), env=KEYS)
    r = Router(policy)
    ticks = 0
    done = asyncio.Event()

    async def ticker() -> None:
        nonlocal ticks
        while not done.is_set():
            await asyncio.sleep(0.01)
            ticks += 1

    try:
        fake_server.plan("claude-primary", [Fault.status(500)])  # a failure: the next success needs Redis
        assert (await r.acomplete(messages=USER, max_tokens=8)).routing.model == "fallback"
        task = asyncio.create_task(ticker())
        redis_server.pause(1.0)
        started = time.monotonic()
        messages = await asyncio.gather(*(r.acomplete(messages=USER, max_tokens=8) for _ in range(5)))
        took = time.monotonic() - started
        done.set()
        await task
        assert [m.routing.model for m in messages] == ["primary"] * 5
        assert took < 1.5, took
        assert ticks >= 10, f"the loop ticked {ticks} times in {took:.2f}s"
    finally:
        redis_server.resume()
        await r.aclose()


# ---- secrets --------------------------------------------------------------------------------------------------

PASSWORD = "pw-R3dis-9c1f7be2"


def test_a_redis_password_never_shows_in_logs_reprs_or_errors(redis_factory: Callable[..., RedisServer],
                                                             fake_server: FakeServer,
                                                             caplog: pytest.LogCaptureFixture) -> None:
    from router.errors import AllModelsFailed
    from router.policy import PolicyError

    caplog.set_level(logging.DEBUG)
    server = redis_factory(password=PASSWORD)
    assert PASSWORD in server.url
    texts: list[str] = []
    policy = parse_policy(_with_redis(policy_yaml(fake_server.url), server.url, timeout="50ms"), env=KEYS)
    r = Router(policy)
    wrong = RedisStore(server.url.replace(PASSWORD, PASSWORD + "-wrong"), prefix=_prefix(), timeout=0.2)
    wrong.configure(ALIAS, CFG)
    try:
        assert r.complete(messages=USER, max_tokens=8).routing.model == "primary"
        store = r._store
        assert isinstance(store, RedisStore) and store.shared  # the password let it in
        texts += [repr(policy), str(policy), repr(policy.state), repr(r), repr(store), str(store),
                  repr(r.breakers())]
        assert wrong.admit(ALIAS, time.monotonic(), 5.0) is Admission.PERMIT  # refused by Redis: local
        assert not wrong.shared
        texts.append(repr(wrong))
        # Errors the caller can see, with Redis down.
        server.kill()
        fake_server.plan("claude-primary", [], default=Fault.status(500))
        fake_server.plan("claude-fallback", [], default=Fault.status(500))
        with pytest.raises(AllModelsFailed) as failed:
            r.complete(messages=USER, max_tokens=8)
        texts += [str(failed.value), repr(failed.value)]
        for broken in ("timeout: -1s", "timeout: soon", "prefix: [a, b]"):
            text = _with_redis(policy_yaml(fake_server.url), server.url).replace("timeout: 500ms", broken)
            with pytest.raises(PolicyError) as bad:
                parse_policy(text, env=KEYS)
            texts.append(str(bad.value))
        bad_scheme = _with_redis(policy_yaml(fake_server.url), server.url.replace("redis://", "http://"))
        with pytest.raises(PolicyError) as bad:
            parse_policy(bad_scheme, env=KEYS)
        texts.append(str(bad.value))
        for broken_url in (f"redis://:{PASSWORD}@127.0.0.1:notaport/0", f"redis://:{PASSWORD}@127.0.0.1:99999/0"):
            with pytest.raises(Exception) as unusable:  # whatever the URL parser raises
                Router(parse_policy(_with_redis(policy_yaml(fake_server.url), broken_url), env=KEYS))
            texts += [str(unusable.value), repr(unusable.value), repr(unusable.value.__cause__),
                      repr(unusable.value.__context__)]
    finally:
        r.close()
        wrong.close()
    texts.append(caplog.text)
    texts += [str(record.args) for record in caplog.records]
    assert any("unreachable" in t for t in texts)  # the warnings were there to look at
    for text in texts:
        assert PASSWORD not in text, text


# ---- peek: "could this model serve?" ------------------------------------------------------------------------


def _could_serve(info: BreakerInfo) -> bool:
    """request_state.callable_now: what the plan reads from a peek."""
    return info.cooling_until is None and (
        info.state == "closed" or (info.state == "half_open" and not info.probe_in_flight))


@pytest.fixture
def tripped(redis_server: RedisServer) -> Iterator[RedisStore]:
    """A RedisStore whose breaker opened and whose wait is over: half-open by time, nobody probing."""
    store = RedisStore(redis_server.url, prefix=_prefix(), timeout=0.5)
    store.configure(ALIAS, CFG)
    for _ in range(CFG.failure_threshold):
        store.record_failure(ALIAS, time.monotonic(), probe=None)
    time.sleep(SLOT)
    yield store
    store.close()


# The plan peeks at the later models of a route to decide whether another could still serve (to split a
# request's timeout=, and to move on after a timeout rather than retry the model that timed out).
# RedisStore.peek answers from the local view while it is fresh; it must answer that question as info().


def test_peek_sees_a_breaker_whose_wait_is_over_as_able_to_serve(tripped: RedisStore) -> None:
    time.sleep(0.05)  # (the pub/sub messages of the failures have been and gone)
    now = time.monotonic()
    info = tripped.info(ALIAS, now)
    assert _could_serve(info), info
    peek = tripped.peek(ALIAS, now)
    assert _could_serve(peek), f"peek says {peek}, info says {info}"


def test_peek_sees_a_half_open_breaker_whose_lease_was_handed_back_as_able_to_serve(tripped: RedisStore) -> None:
    probe = tripped.admit(ALIAS, time.monotonic(), 5.0)
    assert isinstance(probe, Lease)
    tripped.release(ALIAS, probe=probe)  # neutral: the lease is free again
    time.sleep(0.05)  # (the pub/sub message of the release has been and gone)
    now = time.monotonic()
    info = tripped.info(ALIAS, now)
    assert _could_serve(info), info
    peek = tripped.peek(ALIAS, now)
    assert _could_serve(peek), f"peek says {peek}, info says {info}"


async def test_async_operations_with_redis_killed_stay_within_the_bound(redis_server: RedisServer) -> None:
    clock = HandClock()
    store = RedisStore(redis_server.url, prefix=_prefix(), timeout=0.05, now=clock)
    store.configure(ALIAS, CFG)
    try:
        assert await store.aadmit(ALIAS, clock(), 5.0) is Admission.PERMIT
        redis_server.kill()
        for _ in range(20):
            for name, op in {
                "aadmit": lambda: store.aadmit(ALIAS, clock(), 5.0),
                "arecord_failure": lambda: store.arecord_failure(ALIAS, clock(), probe=None),
                "arecord_success": lambda: store.arecord_success(ALIAS, clock(), probe=None),
                "arelease": lambda: store.arelease(ALIAS, probe=Lease(10**6)),
                "acool_down": lambda: store.acool_down(ALIAS, clock()),
                "ainfo": lambda: store.ainfo(ALIAS, clock()),
                "apeek": lambda: store.apeek(ALIAS, clock()),
            }.items():
                started = time.monotonic()
                await op()
                took = time.monotonic() - started
                assert took < BOUND, f"{name} took {took:.2f}s with Redis down"
            clock.advance(0.2)
        assert not store.shared
        redis_server.start()
        clock.advance(31.0)
        assert (await store.ainfo(ALIAS, clock())).state == "closed"
        assert store.shared
    finally:
        await store.aclose()


# ---- several calls at once when Redis goes away -----------------------------------------------------------


async def test_async_calls_failing_together_back_off_once_not_once_each(redis_server: RedisServer) -> None:
    """Five coroutines are waiting on Redis when it stops answering: that is one failed try of Redis, and
    the next try comes after the first backoff (1 s), not after 2**4 s."""
    clock = HandClock()
    store = RedisStore(redis_server.url, prefix=_prefix(), timeout=0.2, now=clock)
    store.configure(ALIAS, CFG)
    try:
        await store.ainfo(ALIAS, clock())
        redis_server.pause(0.8)
        await asyncio.gather(*(store.arecord_failure(ALIAS, clock(), probe=None) for _ in range(5)))
        assert not store.shared
        redis_server.resume()
        clock.advance(1.1)  # past the first backoff
        await store.ainfo(ALIAS, clock())
        assert store.shared, f"calls that failed together put the next try of Redis {store._backoff:g}s away"
    finally:
        redis_server.resume()
        await store.aclose()


def test_threads_failing_together_back_off_once_not_once_each(redis_server: RedisServer) -> None:
    clock = HandClock()
    store = RedisStore(redis_server.url, prefix=_prefix(), timeout=0.2, now=clock)
    store.configure(ALIAS, CFG)
    try:
        store.info(ALIAS, clock())
        redis_server.pause(0.8)
        start = threading.Barrier(5)

        def call() -> None:
            start.wait()
            store.record_failure(ALIAS, clock(), probe=None)

        threads = [threading.Thread(target=call) for _ in range(5)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(5)
        assert not store.shared
        redis_server.resume()
        clock.advance(1.1)  # past the first backoff
        store.info(ALIAS, clock())
        assert store.shared, f"calls that failed together put the next try of Redis {store._backoff:g}s away"
    finally:
        redis_server.resume()
        store.close()


def test_a_reply_from_before_an_outage_does_not_mark_redis_as_answering_again(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Thread T's call got its answer just before Redis died, but T reads it only after another call found
    Redis gone. That answer says nothing about Redis now: the store must stay on its local breakers (and
    not log "answers again", then "unreachable" again on the next call)."""
    caplog.set_level(logging.WARNING, logger="router.redis")
    clock = HandClock()
    store = RedisStore(redis_server.url, prefix=_prefix(), timeout=0.2, now=clock)
    store.configure(ALIAS, CFG)
    real = store._scripts["failure"]
    answered, go_on = threading.Event(), threading.Event()

    def slow_to_read(*args: Any, **kwargs: Any) -> Any:
        reply = real(*args, **kwargs)  # Redis answered...
        answered.set()
        go_on.wait(5)  # ...and this thread is descheduled before it looks at the answer
        return reply

    try:
        store.info(ALIAS, clock())
        store._scripts["failure"] = slow_to_read
        late = threading.Thread(target=lambda: store.record_failure(ALIAS, clock(), probe=None))
        late.start()
        assert answered.wait(5)
        store._scripts["failure"] = real
        redis_server.kill()
        store.info(ALIAS, clock())
        assert not store.shared
        go_on.set()
        late.join(5)
        assert not store.shared, "an answer Redis gave before it went down marked it as answering again"
        store.info(ALIAS, clock())
        assert len(_warnings(caplog, "is unreachable")) == 1, [r.getMessage() for r in caplog.records]
    finally:
        go_on.set()
        store.close()


async def test_an_async_store_stays_shared_once_redis_is_back_though_its_pooled_connections_died(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    """Three coroutines use the store at once, so its async client pools three connections; Redis restarts,
    and all three die with the old server. One call finds out (the outage: one warning); after the backoff
    the next call finds Redis again. From then on the connections that died with the old server must not,
    one by one, send the store back to its local breakers (each time with another warning and another
    backoff, during which this process's breakers are its own)."""
    caplog.set_level(logging.WARNING, logger="router.redis")
    clock = HandClock()
    store = RedisStore(redis_server.url, prefix=_prefix(), timeout=0.5, now=clock)
    store.configure(ALIAS, CFG)
    try:
        await asyncio.gather(*(store.arecord_failure(ALIAS, clock(), probe=None) for _ in range(3)))
        redis_server.kill()
        redis_server.start()
        await store.ainfo(ALIAS, clock())  # Redis's restart is noticed here, or not at all
        clock.advance(1.1)
        await store.ainfo(ALIAS, clock())
        assert store.shared
        await asyncio.gather(*(store.ainfo(ALIAS, clock()) for _ in range(3)))
        assert store.shared, "a connection that died with the old server sent the store back to local breakers"
        assert len(_warnings(caplog, "is unreachable")) <= 1, [r.getMessage() for r in caplog.records]
    finally:
        await store.aclose()


# ---- force_open is for as long as the operator says ------------------------------------------------------


def test_a_forced_open_breaker_does_not_close_when_its_keys_time_to_live_runs_out(redis_server: RedisServer
                                                                                  ) -> None:
    """force_open(): no traffic at all until force_close() or reset(). The model's keys carry a time to
    live (max(1 h, 10 x max_reset_timeout)) that only writes renew; a forced-open model gets no calls and
    so no writes, however often every process asks. When that time runs out (simulated here by shortening
    it on the server: the same as an hour passing), the breaker must still be forced open."""
    prefix = _prefix()
    store = RedisStore(redis_server.url, prefix=prefix, timeout=0.5)
    store.configure(ALIAS, CFG)
    client = redis_server.client()
    try:
        store.force_open(ALIAS, time.monotonic())
        for _ in range(20):  # the fleet keeps asking: told "open", nothing written
            assert store.admit(ALIAS, time.monotonic(), 5.0) is Admission.OPEN
        keys = client.keys(f"*{prefix}*")
        assert keys
        for key in keys:
            if client.pttl(key) > 0:
                client.pexpire(key, 1)  # the hour is over
        time.sleep(0.02)
        fresh = RedisStore(redis_server.url, prefix=prefix, timeout=0.5)  # e.g. a process started since
        fresh.configure(ALIAS, CFG)
        try:
            info = fresh.info(ALIAS, time.monotonic())
            assert (info.state, info.forced) == ("open", True), info
            assert fresh.admit(ALIAS, time.monotonic(), 5.0) is Admission.OPEN
        finally:
            fresh.close()
    finally:
        client.close()
        store.close()
