"""Property-based tests of the breaker store: hypothesis state machines against a reference model.

The store is driven through its public protocol with an injected clock (plain floats, in steps of 1/4 s
so every sum is exact). Callers hold "tickets": an admission that was PERMIT or a probe `Lease` and has
not been reported yet, so reports arrive late, out of order and interleaved, as they do under concurrency.

Two machines share the rules:

- `TestWellBehavedCallers`: a probe reports only while its lease is live (unexpired, same half-open
  episode); otherwise it stays silent, as a hung probe would. Every invariant must hold.
- `TestLateProbeReports`: a probe may also report after its lease expired and someone else took over
  the half-open state (a probe call that outlived its lease). The invariants must still hold.

After every step the store's `info()` must equal the reference model's, and these invariants are checked
independently of the model:

1. closed: the breaker opens exactly at `failure_threshold` consecutive counted failures;
2. a non-counted outcome (neutral release, cool-down, a COOLING answer) never changes the count;
3. open and `now < retry_at`: admit never answers PERMIT or a lease;
4. half-open: at most one live probe lease (handed out, not reported, not expired, same episode), and a
   late probe's report (its lease expired and was taken over) changes nothing;
5. a failed (or hung) probe reopens with the wait doubled, capped at `max_reset_timeout`;
6. a probe success closes the breaker and the count restarts at 0.
"""

from __future__ import annotations

import itertools
import random
import threading
import time
from dataclasses import dataclass, field

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, initialize, invariant, precondition, rule

from router.breaker import Admission, BreakerInfo, Lease, MemoryStore
from router.policy import BreakerConfig

ALIAS = "m"
START = 1000.0
QUARTERS = st.integers(1, 160).map(lambda n: n / 4)  # 0.25 s .. 40 s, exact in binary


@dataclass
class Ticket:
    """One admitted call that has not reported yet."""

    number: int
    lease: Lease | None  # the probe lease, for a probe
    episode: int  # the model's episode (bumped on every state change) when it was admitted
    lease_until: float | None  # probes only

    @property
    def probe(self) -> bool:
        return self.lease is not None


@dataclass
class Reference:
    """The breaker as the store documents it (breaker.py), in the simplest code that says so."""

    config: BreakerConfig
    state: str = "closed"
    count: int = 0
    wait: float = 0.0
    opened_at: float | None = None
    retry_at: float | None = None
    lease_until: float | None = None
    holder: int | None = None  # the ticket number of the current probe lease
    cooling_until: float | None = None
    episode: int = 0
    transitions: list[tuple[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        self.wait = self.config.reset_timeout

    def _move(self, new: str) -> None:
        self.transitions.append((self.state, new))
        self.state = new
        self.episode += 1

    def _open(self, now: float, wait: float) -> None:
        self.wait = wait
        self.opened_at = now
        self.retry_at = now + wait
        self.lease_until = self.holder = None
        self._move("open")

    def _reopen(self, now: float) -> None:
        self._open(now, min(self.wait * 2, self.config.max_reset_timeout))

    def holds(self, ticket: Ticket) -> bool:
        return ticket.probe and ticket.number == self.holder and self.lease_until is not None and (
            self.state == "half_open")

    def admit(self, now: float, ttl: float, number: int) -> Admission | str:
        """An Admission, or "lease" when the asker (ticket `number`) becomes the probe."""
        cooling = self.cooling_until is not None and now < self.cooling_until
        if self.state == "closed":
            return Admission.COOLING if cooling else Admission.PERMIT
        assert self.retry_at is not None
        if now < self.retry_at:
            return Admission.OPEN
        if self.lease_until is not None and now < self.lease_until:
            return Admission.OPEN  # someone else is probing
        if self.lease_until is not None:
            self._reopen(now)  # the probe never reported within its lease: a hung probe is a failure
            return Admission.OPEN
        if cooling:
            return Admission.COOLING  # a model that asked us to wait is not probed either
        if self.state == "open":
            self._move("half_open")
        self.lease_until = now + ttl
        self.holder = number
        return "lease"

    def success(self, ticket: Ticket) -> None:
        if not ticket.probe:
            if self.state == "closed":
                self.count = 0
            return
        if not self.holds(ticket):
            return
        self.wait = self.config.reset_timeout
        self.opened_at = self.retry_at = self.lease_until = self.holder = None
        self.count = 0
        self._move("closed")

    def failure(self, now: float, ticket: Ticket) -> bool:
        if ticket.probe:
            if self.holds(ticket):
                self._reopen(now)
            return True
        if self.state != "closed":
            return True
        self.count += 1
        if self.count < self.config.failure_threshold:
            return False
        self._open(now, self.config.reset_timeout)
        return True

    def release(self, ticket: Ticket) -> None:
        if self.holds(ticket):
            self.lease_until = self.holder = None

    def cool_down(self, until: float) -> None:
        if self.cooling_until is None or until > self.cooling_until:
            self.cooling_until = until

    def info(self, now: float) -> BreakerInfo:
        state = self.state
        if state == "open" and self.retry_at is not None and now >= self.retry_at:
            state = "half_open"
        cooling = self.cooling_until if self.cooling_until and now < self.cooling_until else None
        return BreakerInfo(
            state=state,
            failures=self.count,
            opened_at=self.opened_at,
            retry_at=self.retry_at,
            probe_in_flight=self.lease_until is not None and now < self.lease_until,
            cooling_until=cooling,
        )


class BreakerMachine(RuleBasedStateMachine):
    """Random admissions, outcomes, cool-downs and clock moves against one model's breaker."""

    late_probe_reports = False  # subclasses: may a probe report after its lease stopped being live?

    def __init__(self) -> None:
        super().__init__()
        self.now = START
        self.numbers = itertools.count(1)
        self.emitted: list[tuple[str, str]] = []
        self.store = MemoryStore(lambda alias, old, new: self.emitted.append((old, new)))
        self.ref: Reference | None = None
        self.outstanding: dict[int, Ticket] = {}

    @initialize(
        threshold=st.integers(1, 4),
        reset=st.sampled_from([1.0, 8.0]),
        cap_factor=st.sampled_from([1.0, 2.0, 3.5, 64.0]),
    )
    def configure(self, threshold: int, reset: float, cap_factor: float) -> None:
        config = BreakerConfig(failure_threshold=threshold, reset_timeout=reset, max_reset_timeout=reset * cap_factor)
        self.store.configure(ALIAS, config)
        self.ref = Reference(config)

    # -- helpers ------------------------------------------------------------------------------------

    @property
    def model(self) -> Reference:
        assert self.ref is not None
        return self.ref

    def live(self, ticket: Ticket) -> bool:
        """A probe lease that still stands: not reported, not expired, and the half-open episode it began
        has not ended. (A non-probe ticket is never a lease.)"""
        m = self.model
        return (
            ticket.probe
            and ticket.number in self.outstanding
            and m.state == "half_open"
            and ticket.episode == m.episode
            and ticket.lease_until is not None
            and self.now < ticket.lease_until
        )

    def calls(self) -> list[Ticket]:
        return [t for t in self.outstanding.values() if not t.probe]

    def probes(self) -> list[Ticket]:
        return [t for t in self.outstanding.values() if t.probe]

    def live_probes(self) -> list[Ticket]:
        return [t for t in self.outstanding.values() if self.live(t)]

    def stale_probes(self) -> list[Ticket]:
        return [t for t in self.outstanding.values() if t.probe and not self.live(t)]

    def info(self) -> BreakerInfo:
        return self.store.info(ALIAS, self.now)

    # -- what a caller can be told and can report ---------------------------------------------------

    def do_admit(self, ttl: float) -> None:
        m = self.model
        before = m.info(self.now)
        was_open_before_retry = m.state != "closed" and m.retry_at is not None and self.now < m.retry_at
        state_before, wait_before = m.state, m.wait
        lease_expired = m.state != "closed" and m.lease_until is not None and self.now >= m.lease_until
        number = next(self.numbers)
        expected = m.admit(self.now, ttl, number)
        got = self.store.admit(ALIAS, self.now, ttl)
        kind = "lease" if isinstance(got, Lease) else got
        assert kind == expected, f"admit at {self.now}: store said {got}, reference {expected}"
        # 3. open before retry_at: nobody gets through
        if was_open_before_retry:
            assert got is Admission.OPEN
        # 4. at most one live probe lease
        if isinstance(got, Lease):
            live = [t.number for t in self.live_probes()]
            assert not live, f"a probe lease at {self.now} while ticket(s) {live} hold a live one"
            assert all(t.lease != got for t in self.probes()), "a lease token was handed out twice"
        # 5. a hung probe counts as failed: reopened, wait doubled and capped
        if lease_expired and state_before == "half_open":
            info = self.info()
            assert info.state == "open"
            assert info.retry_at == self.now + min(2 * wait_before, m.config.max_reset_timeout)
        # 2. a COOLING answer changes nothing
        if got is Admission.COOLING:
            assert self.info().failures == before.failures
        if got is Admission.PERMIT or isinstance(got, Lease):
            lease = got if isinstance(got, Lease) else None
            ticket = Ticket(number, lease, m.episode, self.now + ttl if lease else None)
            self.outstanding[number] = ticket

    def do_report(self, ticket: Ticket, outcome: str) -> None:
        was_live = self.live(ticket)
        if outcome == "hang":  # the caller never reports (its process died, or its probe hangs forever)
            del self.outstanding[ticket.number]
            return
        if ticket.probe and not was_live and not self.late_probe_reports:
            del self.outstanding[ticket.number]
            return  # a well-behaved probe whose lease ran out stays silent
        m = self.model
        before = self.info()
        state_before, count_before, wait_before = m.state, m.count, m.wait
        superseded = ticket.probe and m.holder != ticket.number  # its lease was taken over or ended
        if outcome == "succeed":
            m.success(ticket)
            self.store.record_success(ALIAS, self.now, probe=ticket.lease)
            if was_live:  # 6. a probe success closes and restarts the count
                info = self.info()
                assert (info.state, info.failures, info.retry_at) == ("closed", 0, None)
        elif outcome == "fail":
            expected = m.failure(self.now, ticket)
            got = self.store.record_failure(ALIAS, self.now, probe=ticket.lease)
            assert got is expected
            info = self.info()
            if not ticket.probe and state_before == "closed":
                # 1. opens exactly at the threshold
                reached = count_before + 1 >= m.config.failure_threshold
                assert got is reached
                assert info.state == ("open" if reached else "closed")
                assert info.failures == count_before + 1
                if reached:
                    assert (info.opened_at, info.retry_at) == (self.now, self.now + m.config.reset_timeout)
            if was_live:  # 5. a failed probe doubles the wait, up to the cap
                assert info.state == "open"
                assert info.retry_at == self.now + min(2 * wait_before, m.config.max_reset_timeout)
        else:  # neutral: a 400, a 429, a cancellation: not the model's fault
            m.release(ticket)
            self.store.release(ALIAS, probe=ticket.lease)
            after = self.info()
            # 2. a non-counted outcome never changes the count (nor the state)
            assert (after.failures, after.state, after.retry_at) == (before.failures, before.state, before.retry_at)
        del self.outstanding[ticket.number]
        if superseded:  # a late probe whose lease is no longer the current one changes nothing at all
            assert self.info() == before, f"late probe {ticket.number} ({outcome}) changed the breaker"

    # -- rules --------------------------------------------------------------------------------------

    @rule(ttl=st.sampled_from([0.25, 1.0, 8.0, 50.0]))
    def admit(self, ttl: float) -> None:
        self.do_admit(ttl)

    @precondition(lambda self: self.ref is not None and self.calls())
    @rule(outcome=st.sampled_from(["succeed", "fail", "neutral", "hang"]), pick=st.integers(0, 1000))
    def call_reports(self, outcome: str, pick: int) -> None:
        calls = self.calls()
        self.do_report(calls[pick % len(calls)], outcome)

    @precondition(lambda self: self.ref is not None and self.probes())
    @rule(outcome=st.sampled_from(["succeed", "fail", "neutral", "hang"]), pick=st.integers(0, 1000))
    def probe_reports(self, outcome: str, pick: int) -> None:
        probes = self.probes()
        self.do_report(probes[pick % len(probes)], outcome)

    @precondition(lambda self: self.late_probe_reports and self.ref is not None
                  and self.stale_probes() and self.live_probes())
    @rule(outcome=st.sampled_from(["succeed", "fail", "neutral"]))
    def late_probe_report(self, outcome: str) -> None:
        """A probe whose lease was taken over reports at last, while the current probe is still out."""
        self.do_report(min(self.stale_probes(), key=lambda t: t.number), outcome)

    @precondition(lambda self: self.ref is not None and self.live_probes())
    @rule(offset=st.sampled_from([0.0, 0.25]))
    def lease_runs_out(self, offset: float) -> None:
        """The probe in flight hangs past its lease, and then someone else asks for the model."""
        self.now = max(t.lease_until or self.now for t in self.live_probes()) + offset
        self.do_admit(1.0)

    @precondition(lambda self: self.ref is not None and self.live_probes())
    @rule(ttl=st.sampled_from([1.0, 50.0]), then=st.sampled_from([None, "succeed", "fail", "neutral"]))
    def another_probe_takes_over(self, ttl: float, then: str | None) -> None:
        """The probe in flight outlives its lease: the breaker reopens, and once the (doubled) wait is over
        a new probe goes out while the old one is still running. Then (late callers only) the old probe
        may report at once."""
        old = self.live_probes()[0]
        self.lease_runs_out(0.0)
        if self.model.retry_at is not None:
            self.now = max(self.now, self.model.retry_at)
        self.do_admit(ttl)
        if then is not None and self.late_probe_reports and old.number in self.outstanding:
            self.do_report(old, then)

    @precondition(lambda self: self.ref is not None)
    @rule(
        outcomes=st.lists(st.sampled_from(["succeed", "fail", "neutral", "hang"]), min_size=2, max_size=6),
        order=st.permutations(range(6)),
    )
    def burst(self, outcomes: list[str], order: list[int]) -> None:
        """Several callers ask at once, then report in some other order."""
        before = set(self.outstanding)
        for _ in outcomes:
            self.do_admit(8.0)
        admitted = [self.outstanding[n] for n in sorted(set(self.outstanding) - before)]
        for i in (i for i in order if i < len(admitted)):
            if admitted[i].number in self.outstanding:
                self.do_report(admitted[i], outcomes[i])

    @precondition(lambda self: self.ref is not None)
    @rule(probe_ttl=st.sampled_from([None, 1.0, 50.0]))
    def trip(self, probe_ttl: float | None) -> None:
        """A burst of failures, as a shortcut to the interesting states: closed -> open, and maybe, once
        the wait is over, the next caller becomes the probe."""
        for _ in range(self.model.config.failure_threshold):
            if self.model.state != "closed" or self.info().cooling_until is not None:
                break
            self.do_admit(1.0)
            self.do_report(max(self.calls(), key=lambda t: t.number), "fail")
        if probe_ttl is not None and self.model.state == "open" and self.model.retry_at is not None:
            self.now = max(self.now, self.model.retry_at)
            self.do_admit(probe_ttl)

    @precondition(lambda self: self.ref is not None)
    @rule(seconds=QUARTERS)
    def rate_limited(self, seconds: float) -> None:
        before = self.info()
        self.model.cool_down(self.now + seconds)
        self.store.cool_down(ALIAS, self.now + seconds)
        after = self.info()
        assert (after.failures, after.state) == (before.failures, before.state)  # 2.

    # -- the clock ----------------------------------------------------------------------------------

    @rule(seconds=QUARTERS)
    def advance(self, seconds: float) -> None:
        self.now += seconds

    @precondition(lambda self: self.ref is not None)
    @rule(which=st.sampled_from(["retry_at", "lease", "cooling"]), offset=st.sampled_from([-0.25, 0.0, 0.25]))
    def advance_to_a_boundary(self, which: str, offset: float) -> None:
        m = self.model
        target = {"retry_at": m.retry_at, "lease": m.lease_until, "cooling": m.cooling_until}[which]
        if target is not None and target + offset > self.now:
            self.now = target + offset

    # -- invariants ---------------------------------------------------------------------------------

    @invariant()
    def store_matches_reference(self) -> None:
        if self.ref is None:
            return
        assert self.info() == self.model.info(self.now)
        assert self.emitted == self.model.transitions

    @invariant()
    def at_most_one_live_probe(self) -> None:
        if self.ref is None:
            return
        live = [t.number for t in self.live_probes()]
        assert len(live) <= 1, f"tickets {live} all hold live probe leases at {self.now}"

    @invariant()
    def count_stays_below_threshold_while_closed(self) -> None:
        if self.ref is None:
            return
        info = self.info()
        if info.state == "closed":
            assert 0 <= info.failures < self.model.config.failure_threshold


class WellBehaved(BreakerMachine):
    late_probe_reports = False


class LateProbeReports(BreakerMachine):
    late_probe_reports = True


_SETTINGS = settings(max_examples=300, stateful_step_count=50, deadline=None,
                     suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much])

TestWellBehavedCallers = WellBehaved.TestCase
TestWellBehavedCallers.settings = _SETTINGS
TestLateProbeReports = LateProbeReports.TestCase
TestLateProbeReports.settings = _SETTINGS


# ---- late probes, spelled out ----------------------------------------------------------------------

CFG = BreakerConfig(failure_threshold=1, reset_timeout=10.0, max_reset_timeout=60.0)


def _probe_outlives_its_lease() -> tuple[MemoryStore, Lease, Lease]:
    """Probe A outlives its lease; the breaker reopens and later lets probe C through."""
    store = MemoryStore()
    store.configure(ALIAS, CFG)
    assert store.admit(ALIAS, 0.0, 5.0) is Admission.PERMIT
    assert store.record_failure(ALIAS, 0.0, probe=None) is True  # open until 10
    a = store.admit(ALIAS, 10.0, 5.0)  # A: lease until 15
    assert isinstance(a, Lease)
    assert store.admit(ALIAS, 16.0, 5.0) is Admission.OPEN  # A's lease expired: reopened until 36
    c = store.admit(ALIAS, 36.0, 50.0)  # C: lease until 86
    assert isinstance(c, Lease) and c != a
    return store, a, c


def test_a_late_release_from_an_old_probe_does_not_free_the_current_probes_lease() -> None:
    store, a, _ = _probe_outlives_its_lease()
    store.release(ALIAS, probe=a)  # A, late, ends with a 429, a 400 or a cancellation
    assert store.info(ALIAS, 37.0).probe_in_flight, "C's lease was dropped by A's late release"
    assert store.admit(ALIAS, 37.0, 50.0) is Admission.OPEN, "a second probe while C is still in flight"


def test_a_late_success_or_failure_from_an_old_probe_changes_nothing() -> None:
    for report in ("success", "failure"):
        store, a, c = _probe_outlives_its_lease()
        before = store.info(ALIAS, 37.0)
        if report == "success":
            store.record_success(ALIAS, 37.0, probe=a)
        else:
            assert store.record_failure(ALIAS, 37.0, probe=a) is True
        assert store.info(ALIAS, 37.0) == before, report
        store.record_success(ALIAS, 38.0, probe=c)  # C's own result still counts
        assert store.info(ALIAS, 38.0).state == "closed"


# ---- real threads on one store ------------------------------------------------------------------------


def test_threads_racing_on_one_store_never_hold_two_probe_leases() -> None:
    """32 threads admit and report at random while the (injected) clock jumps past retry times. Leases are
    long, so a probe always reports within its lease: then no two threads may ever probe at once, and
    the transitions the store reports form one valid path."""
    config = BreakerConfig(failure_threshold=2, reset_timeout=1.0, max_reset_timeout=4.0)
    transitions: list[tuple[str, str]] = []
    lock = threading.Lock()

    def hook(alias: str, old: str, new: str) -> None:
        with lock:
            transitions.append((old, new))

    store = MemoryStore(hook)
    store.configure(ALIAS, config)
    clock = [START]
    probing = [0]
    violations: list[str] = []
    counts = {"probe_ok": 0, "probe_fail": 0, "probe_neutral": 0, "probes": 0}
    start = threading.Barrier(33)

    def worker(seed: int) -> None:
        rng = random.Random(seed)
        start.wait()
        for _ in range(300):
            admission = store.admit(ALIAS, clock[0], 1e6)
            if admission is not Admission.PERMIT and not isinstance(admission, Lease):
                continue
            probe = admission if isinstance(admission, Lease) else None
            if probe:
                with lock:
                    probing[0] += 1
                    counts["probes"] += 1
                    if probing[0] > 1:
                        violations.append(f"{probing[0]} probes at once")
            outcome = rng.choice(["ok", "fail", "fail", "neutral"])
            if probe:
                with lock:
                    probing[0] -= 1
                    counts[f"probe_{outcome}"] += 1
            if outcome == "ok":
                store.record_success(ALIAS, clock[0], probe=probe)
            elif outcome == "fail":
                store.record_failure(ALIAS, clock[0], probe=probe)
            else:
                store.release(ALIAS, probe=probe)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(32)]
    for t in threads:
        t.start()
    start.wait()
    give_up = time.monotonic() + 60
    while any(t.is_alive() for t in threads) and time.monotonic() < give_up:
        clock[0] += 0.5  # the only writer; readers see whole floats
        time.sleep(0.001)
    assert not any(t.is_alive() for t in threads), "deadlock: a worker never finished"
    assert violations == []
    # Every probe was admitted by open->half_open or by a released lease, and ended by its own outcome.
    moves = {pair: transitions.count(pair) for pair in set(transitions)}
    assert moves.get(("half_open", "closed"), 0) == counts["probe_ok"]
    assert moves.get(("half_open", "open"), 0) == counts["probe_fail"]
    assert moves.get(("open", "half_open"), 0) <= counts["probes"]
    assert moves.get(("open", "half_open"), 0) + counts["probe_neutral"] >= counts["probes"]
    opened = moves.get(("closed", "open"), 0)
    closed = moves.get(("half_open", "closed"), 0)
    final = store.info(ALIAS, clock[0])
    assert opened - closed == (0 if final.state == "closed" else 1)
