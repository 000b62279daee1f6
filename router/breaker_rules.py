"""The breaker's transition rules, as pure functions of a frozen state: no locks, no clock, no I/O.

Every breaker store applies these (the in-memory store under a per-model lock; a shared store can run
the same rules, or test its own atomic scripts against them):

    closed    --counted failure, count reaches threshold-->  open (wait = reset_timeout)
    closed    --success-->                                   closed (count = 0)
    open      --now >= retry_at, someone asks-->             half_open, the asker holds the probe lease
    half_open --probe success-->                             closed (count = 0, wait = reset_timeout)
    half_open --probe failure or lease expiry-->             open (wait doubled, capped at max_reset_timeout)
    half_open --probe neutral (400, cancelled)-->            half_open, lease released for the next asker
    any state --cooling (a 429's retry-after) until T-->     nobody is admitted before T: no call, no probe lease
    any state --reset() (operator)-->                        closed (count = 0, cooldown and lease cleared)
    any state --force_open() (operator)-->                   open until force_close()/reset(): no probe either
    any state --force_close() (operator)-->                  closed (count = 0; a cooldown stays)

Results of calls admitted while closed that land after the breaker opened are ignored, and so are the
reports of a probe whose lease another probe has since taken.
"""

from __future__ import annotations

import dataclasses
import enum
from dataclasses import dataclass

from .policy import BreakerConfig


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
class BreakerState:
    """One model's breaker at one instant. Times are on the router's clock."""

    state: str = "closed"  # "closed" | "open" | "half_open"
    failures: int = 0  # consecutive counted failures while closed
    wait: float = 0.0  # how long the breaker stays open this time (doubles after each failed probe)
    opened_at: float | None = None
    retry_at: float | None = None
    lease: int = 0  # token of the newest probe lease
    lease_until: float | None = None  # the probe holding `lease` must report by then
    cooling_until: float | None = None  # a retry-after asked us not to call before then
    forced: bool = False  # held open by an operator: no probe until force_close() or reset()


@dataclass(frozen=True, slots=True)
class Change:
    """What a rule decided: the new state, the answer for the caller, and the transition (old, new) if any."""

    state: BreakerState
    answer: Admission | Lease | bool | None = None
    transition: tuple[str, str] | None = None


def closed(config: BreakerConfig, cooling_until: float | None = None, lease: int = 0) -> BreakerState:
    return BreakerState(wait=config.reset_timeout, lease=lease, cooling_until=cooling_until)


def holds(state: BreakerState, probe: Lease | None) -> bool:
    """Is `probe` the current probe lease of a half-open breaker, not yet expired by a report?"""
    return (probe is not None and probe.token == state.lease and state.lease_until is not None
            and state.state == "half_open")


def _open(state: BreakerState, now: float, wait: float) -> BreakerState:
    return dataclasses.replace(state, state="open", wait=wait, opened_at=now, retry_at=now + wait, lease_until=None)


def _reopen(state: BreakerState, config: BreakerConfig, now: float) -> BreakerState:
    return _open(state, now, min(state.wait * 2, config.max_reset_timeout))


def admit(state: BreakerState, config: BreakerConfig, now: float, lease_ttl: float) -> Change:
    """May the model be called now? Answer: an Admission, or a Lease (the caller is the probe)."""
    cooling = state.cooling_until is not None and now < state.cooling_until
    if state.state == "closed":
        return Change(state, Admission.COOLING if cooling else Admission.PERMIT)
    if state.forced or (state.retry_at is not None and now < state.retry_at):
        return Change(state, Admission.OPEN)
    if state.lease_until is not None and now < state.lease_until:
        return Change(state, Admission.OPEN)  # someone else is probing
    if state.lease_until is not None:  # the probe never reported within its lease: a hung probe failed
        return Change(_reopen(state, config, now), Admission.OPEN, ("half_open", "open"))
    if cooling:
        return Change(state, Admission.COOLING)
    probing = dataclasses.replace(state, state="half_open", lease=state.lease + 1, lease_until=now + lease_ttl)
    moved = ("open", "half_open") if state.state == "open" else None
    return Change(probing, Lease(probing.lease), moved)


def success(state: BreakerState, config: BreakerConfig, probe: Lease | None) -> Change:
    if probe is None:
        if state.state == "closed" and state.failures:
            return Change(dataclasses.replace(state, failures=0))
        return Change(state)
    if not holds(state, probe):
        return Change(state)  # a stale probe whose lease already expired
    return Change(closed(config, state.cooling_until, state.lease), None, ("half_open", "closed"))


def failure(state: BreakerState, config: BreakerConfig, now: float, probe: Lease | None) -> Change:
    """A counted failure. Answer: True if the breaker is open afterwards."""
    if probe is not None:
        if not holds(state, probe):
            return Change(state, True)
        return Change(_reopen(state, config, now), True, ("half_open", "open"))
    if state.state != "closed":
        return Change(state, True)  # admitted while closed, failed after the breaker opened: counted out
    counted = state.failures + 1
    if counted < config.failure_threshold:
        return Change(dataclasses.replace(state, failures=counted), False)
    opened = _open(dataclasses.replace(state, failures=counted), now, config.reset_timeout)
    return Change(opened, True, ("closed", "open"))


def release(state: BreakerState, probe: Lease | None) -> Change:
    """A neutral outcome: the probe lease goes back, nothing else changes."""
    if holds(state, probe):
        return Change(dataclasses.replace(state, lease_until=None))
    return Change(state)


def cool_down(state: BreakerState, until: float) -> Change:
    if state.cooling_until is None or until > state.cooling_until:
        return Change(dataclasses.replace(state, cooling_until=until))
    return Change(state)


def reset(state: BreakerState, config: BreakerConfig) -> Change:
    """Operator action: closed, count 0, no cooldown, no lease."""
    moved = (state.state, "closed") if state.state != "closed" else None
    return Change(closed(config, None, state.lease), None, moved)


def force_open(state: BreakerState, config: BreakerConfig, now: float) -> Change:
    """Operator action: open now and stay open (no probe) until force_close() or reset()."""
    opened = dataclasses.replace(_open(state, now, state.wait or config.reset_timeout), forced=True, retry_at=None)
    return Change(opened, None, (state.state, "open") if state.state != "open" else None)


def force_close(state: BreakerState, config: BreakerConfig) -> Change:
    """Operator action: closed with a zero count; unlike reset(), a cooldown a retry-after asked for stays."""
    moved = (state.state, "closed") if state.state != "closed" else None
    return Change(closed(config, state.cooling_until, state.lease), None, moved)


def reconfigured(state: BreakerState, config: BreakerConfig) -> BreakerState:
    """A reload changed the thresholds: an open breaker's current wait is kept within the new bounds."""
    return dataclasses.replace(state, wait=min(max(state.wait, config.reset_timeout), config.max_reset_timeout))


def trip(state: BreakerState, config: BreakerConfig, now: float) -> Change:
    """The status page names this model: open now, as if its failures had reached the threshold (the normal
    reset timeout, then a probe decides). Only a closed breaker moves; an open, half-open or forced one is
    left as it is. Answer: True if it tripped."""
    if state.state != "closed" or state.forced:
        return Change(state, False)
    opened = _open(dataclasses.replace(state, failures=config.failure_threshold), now, config.reset_timeout)
    return Change(opened, True, ("closed", "open"))
