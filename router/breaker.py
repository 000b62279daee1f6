"""Per-model circuit breakers: pybreaker holds state and counters, an admission layer decides who may call.

Transitions, all decided under a short per-model lock that is never held across I/O:

    closed    --counted failure, count reaches threshold-->  open (wait = reset_timeout)
    closed    --success-->                                   closed (count = 0)
    open      --now >= retry_at, someone asks-->             half_open, the asker holds the probe lease
    half_open --probe success-->                             closed (count = 0, wait = reset_timeout)
    half_open --probe failure or lease expiry-->             open (wait doubled, capped at max_reset_timeout)
    half_open --probe neutral (400, cancelled)-->            half_open, lease released for the next asker
    any state --cooling (a 429's retry-after) until T-->     nobody is admitted before T: no call, no probe lease
    any state --reset() (operator)-->                        closed (count = 0, cooldown and lease cleared)

Results of calls admitted while closed that land after the breaker opened are ignored.
"""

from __future__ import annotations

import enum
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import pybreaker

from .policy import BreakerConfig

log = logging.getLogger("router.breaker")


class Admission(enum.Enum):
    """The answer to "may I call this model now?"."""

    PERMIT = "permit"  # closed: go ahead
    OPEN = "open"  # do not call; move on
    COOLING = "cooling"  # rate limited until a retry-after passes; do not call


@dataclass(frozen=True, slots=True)
class Lease:
    """The answer "half-open, and you are the probe": go ahead, and report back with `probe=` this lease.

    A report carrying a lease that is no longer the current one (it expired and another probe took
    over) changes nothing, so a late probe can never close, reopen or free another probe's breaker."""

    token: int


@dataclass(frozen=True, slots=True)
class BreakerInfo:
    """A snapshot of one model's breaker. Times are on the router's (monotonic) clock."""

    state: str  # "closed" | "open" | "half_open"
    failures: int
    opened_at: float | None
    retry_at: float | None
    probe_in_flight: bool = False
    cooling_until: float | None = None


#: Called after a state change, outside any lock: (alias, old_state, new_state).
TransitionHook = Callable[[str, str, str], None]


class BreakerStore(Protocol):
    """Where breaker state lives. Every decision is one call, so a shared store can make each atomic."""

    def configure(self, alias: str, config: BreakerConfig) -> None: ...

    def forget(self, alias: str) -> None: ...

    def admit(self, alias: str, now: float, lease_ttl: float) -> Admission | Lease: ...

    def record_success(self, alias: str, now: float, *, probe: Lease | None) -> None: ...

    def record_failure(self, alias: str, now: float, *, probe: Lease | None) -> bool:
        """Count a failure; open the breaker if it reaches the threshold. True if the breaker is open."""
        ...

    def release(self, alias: str, *, probe: Lease | None) -> None:
        """A neutral outcome (caller error, cancellation): nothing changes but the probe lease is freed."""
        ...

    def cool_down(self, alias: str, until: float) -> None: ...

    def reset(self, alias: str) -> None:
        """Operator action: close the breaker, zero its count, end any cooldown and probe lease."""
        ...

    def info(self, alias: str, now: float) -> BreakerInfo: ...


_PYBREAKER_NAMES = {
    pybreaker.STATE_CLOSED: "closed",
    pybreaker.STATE_OPEN: "open",
    pybreaker.STATE_HALF_OPEN: "half_open",
}


class _Slot:
    """One model's breaker: pybreaker's state and counter, plus the monotonic times pybreaker lacks."""

    __slots__ = ("breaker", "config", "cooling_until", "lease", "lease_until", "lock", "opened_at", "retry_at",
                 "storage", "wait")

    def __init__(self, alias: str, config: BreakerConfig) -> None:
        self.lock = threading.Lock()
        self.storage = pybreaker.CircuitMemoryStorage(pybreaker.STATE_CLOSED)
        # pybreaker holds the state and the counter; the thresholds and times are ours (config, below),
        # so its own fail_max / reset_timeout are never read and not set.
        self.breaker = pybreaker.CircuitBreaker(state_storage=self.storage, name=alias)
        self.config = config
        self.wait = config.reset_timeout
        self.opened_at: float | None = None
        self.retry_at: float | None = None
        self.lease_until: float | None = None
        self.lease = 0  # token of the newest probe lease
        self.cooling_until: float | None = None

    @property
    def state(self) -> str:
        return _PYBREAKER_NAMES[self.storage.state]

    def holds(self, probe: Lease | None) -> bool:
        """Is `probe` the current, unexpired-by-report probe lease of a half-open breaker?"""
        return (
            probe is not None and probe.token == self.lease and self.lease_until is not None
            and self.state == "half_open"
        )

    def open(self, now: float, wait: float) -> None:
        self.wait = wait
        self.opened_at = now
        self.retry_at = now + wait
        self.lease_until = None
        self.breaker.open()

    def close(self) -> None:
        self.wait = self.config.reset_timeout
        self.opened_at = self.retry_at = self.lease_until = None
        self.breaker.close()  # pybreaker resets the failure counter on close

    def reopen_after_failed_probe(self, now: float) -> None:
        self.open(now, min(self.wait * 2, self.config.max_reset_timeout))


class MemoryStore:
    """Breaker state in this process's memory, one lock per model."""

    def __init__(self, on_transition: TransitionHook | None = None) -> None:
        self._slots: dict[str, _Slot] = {}
        self._lock = threading.Lock()
        self._hooks: tuple[TransitionHook, ...] = (on_transition,) if on_transition is not None else ()

    def subscribe(self, hook: TransitionHook) -> None:
        """Also call `hook(alias, old, new)` after every transition (a Router subscribes its event funnel)."""
        self._hooks = (*self._hooks, hook)

    def configure(self, alias: str, config: BreakerConfig) -> None:
        with self._lock:
            slot = self._slots.get(alias)
            if slot is None:
                self._slots[alias] = _Slot(alias, config)
                return
        with slot.lock:
            slot.config = config
            slot.wait = min(max(slot.wait, config.reset_timeout), config.max_reset_timeout)

    def forget(self, alias: str) -> None:
        with self._lock:
            self._slots.pop(alias, None)

    def _slot(self, alias: str) -> _Slot:
        try:
            return self._slots[alias]
        except KeyError:
            raise KeyError(f"no breaker for model {alias!r}; configure() it first") from None

    def admit(self, alias: str, now: float, lease_ttl: float) -> Admission | Lease:
        slot = self._slots.get(alias)
        if slot is None:  # removed from the policy by a reload while this request was on its way
            return Admission.OPEN
        cooling = slot.cooling_until is not None and now < slot.cooling_until
        if slot.storage.state == pybreaker.STATE_CLOSED:
            return Admission.COOLING if cooling else Admission.PERMIT
        transition: tuple[str, str] | None = None
        decision: Admission | Lease
        with slot.lock:
            state = slot.state
            if state == "closed":
                decision = Admission.PERMIT
            elif slot.retry_at is not None and now < slot.retry_at:
                decision = Admission.OPEN
            elif slot.lease_until is not None and now < slot.lease_until:
                decision = Admission.OPEN  # someone else is probing
            elif slot.lease_until is not None:
                # The probe holder never reported back within its lease: a hung probe is a failure.
                slot.reopen_after_failed_probe(now)
                transition = ("half_open", "open")
                decision = Admission.OPEN
            elif cooling:
                decision = Admission.COOLING  # a model that asked us to wait is not probed either
            else:
                if state == "open":
                    slot.breaker.half_open()
                    transition = ("open", "half_open")
                slot.lease_until = now + lease_ttl
                slot.lease += 1
                decision = Lease(slot.lease)
        if transition:
            self._emit(alias, *transition)
        if decision is Admission.PERMIT and cooling:
            return Admission.COOLING
        return decision

    def record_success(self, alias: str, now: float, *, probe: Lease | None) -> None:
        slot = self._slots.get(alias)
        if slot is None:  # results of calls to a model a reload removed meanwhile are dropped
            return
        if probe is None:
            if slot.storage.state == pybreaker.STATE_CLOSED and slot.storage.counter:
                with slot.lock:
                    if slot.state == "closed":
                        slot.storage.reset_counter()
            return
        with slot.lock:
            if not slot.holds(probe):
                return  # a stale probe whose lease already expired
            slot.close()
        self._emit(alias, "half_open", "closed")

    def record_failure(self, alias: str, now: float, *, probe: Lease | None) -> bool:
        slot = self._slots.get(alias)
        if slot is None:
            return True
        with slot.lock:
            state = slot.state
            if probe is not None:
                if not slot.holds(probe):
                    return True
                slot.reopen_after_failed_probe(now)
                transition = ("half_open", "open")
            elif state != "closed":
                return True  # admitted while closed, failed after the breaker opened: already counted out
            else:
                slot.storage.increment_counter()
                if slot.storage.counter < slot.config.failure_threshold:
                    return False
                slot.open(now, slot.config.reset_timeout)
                transition = ("closed", "open")
        self._emit(alias, *transition)
        return True

    def release(self, alias: str, *, probe: Lease | None) -> None:
        slot = self._slots.get(alias)
        if probe is None or slot is None:
            return
        with slot.lock:
            if slot.holds(probe):
                slot.lease_until = None

    def cool_down(self, alias: str, until: float) -> None:
        slot = self._slots.get(alias)
        if slot is None:
            return
        with slot.lock:
            if slot.cooling_until is None or until > slot.cooling_until:
                slot.cooling_until = until

    def reset(self, alias: str) -> None:
        slot = self._slot(alias)
        with slot.lock:
            old = slot.state
            slot.cooling_until = None
            slot.close()
            slot.storage.reset_counter()
        if old != "closed":
            self._emit(alias, old, "closed")

    def info(self, alias: str, now: float) -> BreakerInfo:
        slot = self._slot(alias)
        with slot.lock:
            state = slot.state
            if state == "open" and slot.retry_at is not None and now >= slot.retry_at:
                state = "half_open"  # it is half-open by time; the move happens when someone asks
            cooling = slot.cooling_until if slot.cooling_until and now < slot.cooling_until else None
            return BreakerInfo(
                state=state,
                failures=slot.storage.counter,
                opened_at=slot.opened_at,
                retry_at=slot.retry_at,
                probe_in_flight=slot.lease_until is not None and now < slot.lease_until,
                cooling_until=cooling,
            )

    def _emit(self, alias: str, old: str, new: str) -> None:
        for hook in self._hooks:
            try:
                hook(alias, old, new)
            except Exception:  # a buggy hook must never break a call
                log.exception("breaker transition hook failed for %s (%s -> %s)", alias, old, new)
