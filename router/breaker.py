"""Per-model circuit breakers: pybreaker holds state and counters, the rules decide, the store applies them.

The transition rules are pure functions in `breaker_rules` (their table is at its top). `MemoryStore`
applies them under a short per-model lock that is never held across I/O, keeping each model's state and
failure count in a `pybreaker.CircuitBreaker` and the times pybreaker lacks (monotonic, on the router's
clock) beside it. The hot path (a closed breaker, a success with no failures counted) takes no lock.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

import pybreaker

from . import breaker_rules as rules
from .breaker_rules import Admission, BreakerState, Change, Lease
from .policy import BreakerConfig

__all__ = ["Admission", "BreakerInfo", "BreakerStore", "Lease", "MemoryStore", "TransitionHook"]

log = logging.getLogger("router.breaker")


@dataclass(frozen=True, slots=True)
class BreakerInfo:
    """A snapshot of one model's breaker. Times are on the router's (monotonic) clock."""

    state: str  # "closed" | "open" | "half_open"
    failures: int
    opened_at: float | None
    retry_at: float | None
    probe_in_flight: bool = False
    cooling_until: float | None = None
    forced: bool = False  # held open by an operator (force_open) until force_close() or reset()


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

    def force_open(self, alias: str, now: float) -> None:
        """Operator action: open the breaker and keep it open, with no probe, until force_close()/reset()."""
        ...

    def force_close(self, alias: str) -> None:
        """Operator action: close the breaker and zero its count (a cooldown stays)."""
        ...

    def info(self, alias: str, now: float) -> BreakerInfo: ...


_PYBREAKER_NAMES = {
    pybreaker.STATE_CLOSED: "closed",
    pybreaker.STATE_OPEN: "open",
    pybreaker.STATE_HALF_OPEN: "half_open",
}
# admit()'s answers, bound once: reading an enum member off its class costs ~0.15 µs on Python 3.11.
_PERMIT, _OPEN, _COOLING = Admission.PERMIT, Admission.OPEN, Admission.COOLING


class _Slot:
    """One model's breaker: pybreaker's state and counter, plus the monotonic times pybreaker lacks."""

    __slots__ = ("breaker", "closed", "config", "cooling_until", "failures", "forced", "lease", "lease_until", "lock",
                 "moves", "opened_at", "retry_at", "storage", "wait")

    def __init__(self, alias: str, config: BreakerConfig) -> None:
        self.lock = threading.Lock()
        self.storage = pybreaker.CircuitMemoryStorage(pybreaker.STATE_CLOSED)
        # pybreaker holds the state and the counter; thresholds and times are ours (the rules read config),
        # so its own fail_max / reset_timeout are never read and not set.
        self.breaker = pybreaker.CircuitBreaker(state_storage=self.storage, name=alias)
        self.moves = {"open": self.breaker.open, "half_open": self.breaker.half_open, "closed": self.breaker.close}
        self.config = config
        self.wait = config.reset_timeout
        self.opened_at: float | None = None
        self.retry_at: float | None = None
        self.lease = 0
        self.lease_until: float | None = None
        self.cooling_until: float | None = None
        self.forced = False
        # pybreaker's state and counter as plain attributes, for the lock-free hot path (its properties cost a
        # Python call each); write() is the only thing that changes either.
        self.closed = True
        self.failures = 0

    def read(self) -> BreakerState:
        return BreakerState(_PYBREAKER_NAMES[self.storage.state], self.storage.counter, self.wait, self.opened_at,
                            self.retry_at, self.lease, self.lease_until, self.cooling_until, self.forced)

    def write(self, new: BreakerState) -> None:
        if _PYBREAKER_NAMES[self.storage.state] != new.state:
            self.moves[new.state]()  # pybreaker's close() also zeroes its counter
            self.closed = new.state == "closed"
        if self.storage.counter > new.failures:
            self.storage.reset_counter()
        while self.storage.counter < new.failures:
            self.storage.increment_counter()
        self.failures = new.failures
        self.wait, self.opened_at, self.retry_at = new.wait, new.opened_at, new.retry_at
        self.lease, self.lease_until, self.cooling_until = new.lease, new.lease_until, new.cooling_until
        self.forced = new.forced


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
            slot.write(rules.reconfigured(slot.read(), config))

    def forget(self, alias: str) -> None:
        with self._lock:
            self._slots.pop(alias, None)

    def _slot(self, alias: str) -> _Slot:
        try:
            return self._slots[alias]
        except KeyError:
            raise KeyError(f"no breaker for model {alias!r}; configure() it first") from None

    def _apply(self, alias: str, slot: _Slot, rule: Callable[[BreakerState, BreakerConfig], Change]) -> Change:
        with slot.lock:
            change = rule(slot.read(), slot.config)
            slot.write(change.state)
        if change.transition is not None:
            self._emit(alias, *change.transition)
        return change

    def admit(self, alias: str, now: float, lease_ttl: float) -> Admission | Lease:
        slot = self._slots.get(alias)
        if slot is None:  # removed from the policy by a reload while this request was on its way
            return _OPEN
        if slot.closed:  # the hot path: no lock
            cooling = slot.cooling_until is not None and now < slot.cooling_until
            return _COOLING if cooling else _PERMIT
        answer = self._apply(alias, slot, lambda s, c: rules.admit(s, c, now, lease_ttl)).answer
        assert isinstance(answer, (Admission, Lease))
        return answer

    def record_success(self, alias: str, now: float, *, probe: Lease | None) -> None:
        slot = self._slots.get(alias)
        if slot is None:  # results of calls to a model a reload removed meanwhile are dropped
            return
        if probe is None and (not slot.closed or not slot.failures):
            return  # the hot path: nothing to reset
        self._apply(alias, slot, lambda s, c: rules.success(s, c, probe))

    def record_failure(self, alias: str, now: float, *, probe: Lease | None) -> bool:
        slot = self._slots.get(alias)
        if slot is None:
            return True
        return bool(self._apply(alias, slot, lambda s, c: rules.failure(s, c, now, probe)).answer)

    def release(self, alias: str, *, probe: Lease | None) -> None:
        slot = self._slots.get(alias)
        if probe is not None and slot is not None:
            self._apply(alias, slot, lambda s, c: rules.release(s, probe))

    def cool_down(self, alias: str, until: float) -> None:
        slot = self._slots.get(alias)
        if slot is not None:
            self._apply(alias, slot, lambda s, c: rules.cool_down(s, until))

    def reset(self, alias: str) -> None:
        self._apply(alias, self._slot(alias), rules.reset)

    def force_open(self, alias: str, now: float) -> None:
        self._apply(alias, self._slot(alias), lambda s, c: rules.force_open(s, c, now))

    def force_close(self, alias: str) -> None:
        self._apply(alias, self._slot(alias), rules.force_close)

    def info(self, alias: str, now: float) -> BreakerInfo:
        slot = self._slot(alias)
        with slot.lock:
            s = slot.read()
        state = s.state
        if state == "open" and s.retry_at is not None and now >= s.retry_at:
            state = "half_open"  # it is half-open by time; the move happens when someone asks
        cooling = s.cooling_until if s.cooling_until is not None and now < s.cooling_until else None
        return BreakerInfo(state if not s.forced else "open", s.failures, s.opened_at, s.retry_at,
                           s.lease_until is not None and now < s.lease_until, cooling, s.forced)

    def _emit(self, alias: str, old: str, new: str) -> None:
        for hook in self._hooks:
            try:
                hook(alias, old, new)
            except Exception:  # a buggy hook must never break a call
                log.exception("breaker transition hook failed for %s (%s -> %s)", alias, old, new)

    def trip(self, alias: str, now: float) -> bool:
        """Open a closed breaker now as if it had reached its threshold (the status page names the model);
        it half-opens after reset_timeout like any open breaker. True if it tripped."""
        slot = self._slots.get(alias)
        if slot is None:
            return False
        return bool(self._apply(alias, slot, lambda s, c: rules.trip(s, c, now)).answer)
