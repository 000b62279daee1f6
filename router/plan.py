"""The failover algorithm, written once: a generator that decides and yields commands, and does no I/O.

It picks the model, gives each attempt its budget, keeps the breakers informed, decides whether to
retry, how long to back off, and when to give up; `drivers.run()` / `arun()` (and the stream drivers)
carry out what it yields. Events leave through the funnel it is given.

How a request's `timeout=` is shared along a chain: while another model of the route could still serve
the request, one attempt may take at most half of what is left (a stream: half for its first content,
then all that is left); the last model that can serve gets everything left. A model that timed out is
not tried again in the same request while another model can serve it; a stream that stalled never is.
"""

from __future__ import annotations

import itertools
import random
from collections.abc import Callable, Generator, Mapping, Sequence
from typing import Any

from anthropic.types import Message

from .breaker import Admission, BreakerInfo, Lease
from .commands import (
    Admit,
    Call,
    Command,
    CoolDown,
    Enqueue,
    Failed,
    Keeper,
    Peek,
    Plan,
    Release,
    Reply,
    Sleep,
    Succeeded,
    Target,
)
from .errors import AllModelsFailed, Queued, StreamInterrupted
from .events import AttemptStarted, Failover, Funnel, RequestStarted, StreamResumed
from .outcome import Failure, Kind
from .policy import BackoffConfig, Exhausted
from .request_state import RequestState
from .routing import Attempt, RoutedMessage, Routing, attach_routing, request_id_of, served_deferred
from .streaming.stitcher import Salvaged, Stitcher, resume_method

Steps = Generator[Command, Reply, None]
Made = tuple[float, Reply]  # a quiet first call the driver made before the plan started: when, and its reply
RAISE = Exhausted()
_serials = itertools.count(1)
#: A waiting request looks again this often while another request holds the half-open probe.
PROBE_POLL = 0.05
# Enum members read on every request, bound once: on Python 3.11 `Admission.OPEN` costs ~0.15 µs a read (the
# enum metaclass's __getattr__ keeps attribute loads on the class off the interpreter's fast path).
_OPEN, _COOLING, _SUCCESS = Admission.OPEN, Admission.COOLING, Kind.SUCCESS


def backoff_delay(config: BackoffConfig, retry_index: int, rng: random.Random) -> float:
    """Exponential backoff with +/- jitter: initial * 2**retry_index, capped at max."""
    base = min(config.max, config.initial * (2.0**retry_index))
    if config.jitter:
        base *= 1.0 + rng.uniform(-config.jitter, config.jitter)
    return max(0.0, base)


def plan(
    route: str,
    chain: Sequence[Target],
    params: Mapping[str, Any],
    clock: Callable[[], float],
    rng: random.Random,
    emit: Funnel,
    deadline: float | None = None,
    stream: Stitcher | None = None,
    exhausted: Exhausted = RAISE,
    keeper: Keeper | None = None,
    made: Made | None = None,
) -> Plan:
    """Serve one request from the first model of `chain` that can answer.

    With `stream`, the request is a stream: models that cannot take over a stream that already sent
    content are passed over, and an interruption that cannot be resumed raises StreamInterrupted.
    When every model failed, `exhausted` decides: raise AllModelsFailed, wait for a model to be callable
    again (then go down the chain once more), or keep the request with `keeper` and raise Queued.

    `made`: the driver already made this quiet request's first call (`router.start`): the time it was admitted
    at and its reply. The plan goes on as if it had yielded that call (`quiet_call`) itself.
    """
    listening = emit.listening if made is None else False  # a quiet request stays quiet: told all or nothing
    started = clock() if made is None else made[0]
    req = RequestState(route, chain, params, clock, rng, deadline, stream, emit, started, next(_serials))
    req.listening = listening  # (set after: a keyword argument costs the dataclass's __init__ more)
    if listening:
        emit(RequestStarted(route, stream is not None, req.started, req.serial))
    try:
        waited_until = req.started + exhausted.wait_max if exhausted.mode == "wait" else None
        rounds = 0
        while True:
            served = None
            for index, target in enumerate(chain):  # one pass down the chain
                if req.spent_credentials or stream is not None:
                    skipped = _passed_over(req, target)
                    if skipped is not None:
                        req.add(Attempt(target.alias, skipped))
                        continue
                served = yield from _try_model(req, index, target, made)
                made = None
                if served is not None:
                    break
            if served is not None:
                if listening:
                    routing = served.routing
                    req.ended(routing.model, None, routing.attempts)
                return served
            if stream is not None and stream.emitted:
                reason = "no model left to resume on"
                raise StreamInterrupted(stream.partial_text(), stream.snapshot(), req.attempts, reason)
            if waited_until is None or not (yield from _wait(req, waited_until, rounds)):
                break
            rounds += 1
        cause = req.last.error if req.last else None
        if exhausted.mode == "queue" and keeper is not None and stream is None:
            ticket = yield Enqueue(keeper, route, params)
            if isinstance(ticket, str):
                raise Queued(route, ticket, req.attempts) from cause
            raise AllModelsFailed(route, req.attempts, getattr(ticket, "reason", "not queued")) from cause
        why = f"waited {clock() - req.started:.3g}s (on_exhausted.wait.max)" if waited_until is not None else None
        raise AllModelsFailed(route, req.attempts, why) from cause
    except BaseException as exc:  # a cancelled or abandoned request ends too (error "CancelledError", "GeneratorExit")
        req.ended(None, exc)
        raise


def _wait(req: RequestState, until: float, rounds: int) -> Generator[Command, Reply, bool]:
    """`on_exhausted: wait`: sleep until the soonest moment a model of the chain may be tried again, if that
    is before `until` and the request's deadline. False when no model will be callable in time.

    A model whose breaker is half-open with another request's probe in flight is looked at again every
    PROBE_POLL (jittered), so waiting requests never stampede a recovering model: the probe rule holds."""
    now = req.clock()
    limit = until if req.deadline is None else min(until, req.deadline)
    soonest: tuple[float, str] | None = None
    for target in req.chain:
        if target.credentials in req.spent_credentials:
            continue
        info = yield Peek(target.alias, now)
        if not isinstance(info, BreakerInfo) or info.forced:
            continue
        at = next_chance(info, now)
        if info.state == "closed" and info.cooling_until is None:  # it failed this pass without opening
            at = now + backoff_delay(target.config.retry.backoff, rounds, req.rng)
        elif info.state == "half_open" and info.probe_in_flight:
            at += PROBE_POLL * req.rng.uniform(0.0, 1.0)  # jitter: waiting requests do not move in step
        if soonest is None or at < soonest[0]:
            soonest = (at, target.alias)
    if soonest is None or soonest[0] >= limit:
        return False
    at, alias = soonest
    folded = None
    if req.held is not None:  # the last round sent nothing: it folds into the wait before it
        folded = req.attempts[req.held]
        del req.attempts[req.held:]
    yield Sleep(max(0.0, at - now))
    waited = req.clock() - now
    if folded is not None:
        waited += folded.duration_s
        req.looks += 1
    else:
        req.held, req.looks = len(req.attempts), 1
    detail = f"{req.looks} looks, the last for {alias}" if req.looks > 1 else f"for {alias}"
    req.attempts.append(Attempt(alias, Kind.WAITED, duration_s=waited, detail=detail))
    return True


def next_chance(info: BreakerInfo, now: float) -> float:
    """The soonest moment a model may be tried again, as far as its breaker says (`now`: callable now)."""
    at = now
    if info.state == "open" and info.retry_at is not None:
        at = info.retry_at
    elif info.state == "half_open" and info.probe_in_flight:
        at = now + PROBE_POLL
    if info.cooling_until is not None and info.cooling_until > at:
        at = info.cooling_until
    return at


def _passed_over(req: RequestState, target: Target) -> Kind | None:
    if target.credentials in req.spent_credentials:
        return Kind.SAME_CREDENTIALS
    if req.stream is not None and not req.stream.can_take_over(target.config):
        return Kind.CANNOT_RESUME
    return None


def _try_model(
    req: RequestState, index: int, target: Target, made: Made | None = None,
) -> Generator[Command, Reply, RoutedMessage | None]:
    """Up to `retry.attempts` tries of one model; the message if one served, None to move on. `made`: the
    first try's quiet call, already made, and its reply."""
    alias, config = target.alias, target.config
    started = req.clock() if made is None else req.started
    model_deadline = started + config.timeout.total
    if req.deadline is not None and req.deadline < model_deadline:
        model_deadline = req.deadline
    for n in range(config.retry.attempts):
        if n:
            started = req.clock()
        remaining = model_deadline - started
        if remaining <= 0:
            req.add(Attempt(alias, Kind.DEADLINE))
            return None
        quiet = req.deadline is None and req.stream is None and not req.listening
        if made is not None:  # the driver made this first attempt's quiet call before the plan started
            reply: Reply = made[1]
            made = None
        elif quiet:
            reply = yield quiet_call(target, req.params, remaining, started)
        else:
            reply = yield Admit(alias, started, remaining)
        probe: Lease | None = None
        note: str | None = None
        if isinstance(reply, (Admission, Lease)):  # the store's answer: not called (yet)
            if reply is _OPEN or reply is _COOLING:
                req.add(Attempt(alias, Kind.BREAKER_OPEN if reply is _OPEN else Kind.COOLING_DOWN))
                return None
            probe = reply if isinstance(reply, Lease) else None
            shared = req.deadline is not None and (yield from req.others_can_serve(index, started))
            if quiet:  # _begin() would only note the model
                req.last_model = alias
            else:
                note = _begin(req, target, probe, started)
            reply = yield _call(req, target, remaining, probe, started, shared)  # a cancelled caller: the
            # driver hands the probe lease back
        else:
            req.last_model = alias  # called as admitted
        ended = req.clock()
        if isinstance(reply, Message):
            yield Succeeded(alias, ended, probe)
            return _served(req, alias, reply, ended - started, probe is not None, note)
        assert isinstance(reply, (Failure, Salvaged)), reply
        failure = reply.failure if isinstance(reply, Salvaged) else reply
        opened = yield from _record(req, target, failure, probe, started, ended, isinstance(reply, Salvaged))
        if isinstance(reply, Salvaged):  # the stream broke where nothing was missing: the answer stands
            message = reply.message
            if failure.request_id:
                object.__setattr__(message, "_request_id", failure.request_id)
            return attach_routing(message, Routing(alias, req.route, tuple(req.attempts)))
        delay = yield from _retry_delay(req, index, target, failure, n, opened, probe)
        if delay is None or req.clock() + delay >= model_deadline:
            return None  # move on (a wait that would outlast this model's budget too)
        yield Sleep(delay)
    return None


def _served(
    req: RequestState, alias: str, reply: Message, duration: float, probe: bool, note: str | None,
) -> RoutedMessage:
    """The message that served, with its routing record: built now if someone listens for the attempt's
    event, else when the caller first reads `.routing` (most never do)."""
    detail = note if req.stream is None else _takeover(req, note)
    if not req.listening:
        return served_deferred(reply, req.route, alias, tuple(req.attempts), duration, probe, detail)
    req.served(Attempt(alias, _SUCCESS, 200, None, request_id_of(reply), duration, probe, detail), reply)
    return attach_routing(reply, Routing(alias, req.route, tuple(req.attempts)))


def quiet_call(target: Target, params: Mapping[str, Any], timeout: float, now: float) -> Call:
    """A quiet attempt's one command (no timeout=, not a stream, nobody listening): nothing is decided
    between its admission and its call, so the driver admits it and calls only if permitted."""
    # (all positional: a keyword argument makes a dataclass's __init__ cost half as much again)
    return Call(target, params, timeout, None, None, None, "timeout.total", now)


def _begin(req: RequestState, target: Target, probe: Lease | None, now: float) -> str | None:
    """An attempt starts: events, and the stitcher's note when it resumes a stream."""
    alias = target.alias
    note = req.stream.begin(target.config) if req.stream is not None else None
    req.flush()
    if req.listening:
        if req.last_model is not None and req.last_model != alias and req.last is not None:
            req.emit(Failover(req.route, req.last_model, alias, req.last.kind, now, req.serial))
        req.emit(AttemptStarted(req.route, alias, probe is not None, now, req.serial))
        if note is not None and req.stream is not None:
            req.emit(StreamResumed(req.route, alias, len(req.stream.partial_text()), resume_method(target.config),
                                   now, req.serial))
    req.last_model = alias
    return note


def _call(req: RequestState, target: Target, remaining: float, probe: Lease | None, now: float, shared: bool) -> Call:
    """The budget of one attempt (`shared`: another model could still serve): see the module docstring."""
    if req.deadline is None:  # no timeout= to share: the model's own budget
        if req.stream is None:
            return Call(target, req.params, remaining, probe)
        share: float | None = None
        timeout, limit = remaining, "timeout.total"
    else:
        share = (req.deadline - now) / 2 if shared else None
        timeout, limit = remaining, "the request's timeout="
        if req.stream is None:
            if share is not None and share < timeout:
                timeout, limit = share, "half of what was left of timeout=, since another model could still serve"
            return Call(target, req.params, timeout, probe, limit=limit)
    t = target.config.timeout
    first_token = t.first_token if share is None else min(t.first_token, share)
    request = req.stream.request(req.params, target.config)  # a resumed stream asks to continue the answer
    return Call(target, request, timeout, probe, min(t.first_byte, first_token), first_token, limit)


def _record(
    req: RequestState, target: Target, failure: Failure, probe: Lease | None, started: float, ended: float,
    salvaged: bool = False,
) -> Generator[Command, Reply, bool]:
    """Tell the breaker and the attempt list about a failure; raise what must reach the caller now
    (not when the stream was salvaged: its answer is complete). True if the breaker is open afterwards."""
    alias, retry = target.alias, target.config.retry
    req.last = failure
    detail = failure.note
    if failure.retry_after is not None:
        capped = min(failure.retry_after, retry.max_retry_after)
        taken = f"retry-after {failure.retry_after:g}s" + (f", capped at {capped:g}s" if capped < failure.retry_after
                                                          else "")
        detail = f"{detail}; {taken}" if detail else taken
    req.add(Attempt(alias, failure.kind, failure.status, failure.error_type, failure.request_id,
                    ended - started, probe is not None, _takeover(req, detail)))
    opened = False
    if failure.counts:
        opened = bool((yield Failed(alias, ended, probe)))
    else:
        yield Release(alias, probe)
    if salvaged:
        return opened
    if req.stream is not None:
        interrupted = req.stream.interrupted(failure, req.attempts)
        if interrupted is not None:
            raise interrupted from failure.error
    if failure.raises:
        raise failure.error  # the fallback would fail the same way: the SDK's own exception, unchanged
    if failure.kind is Kind.RATE_LIMITED and failure.retry_after is not None:
        yield CoolDown(alias, ended + min(failure.retry_after, retry.max_retry_after))
    elif failure.spends_key:
        req.spent_credentials |= {target.credentials}
    return opened


def _retry_delay(
    req: RequestState, index: int, target: Target, failure: Failure, n: int, opened: bool, probe: Lease | None
) -> Generator[Command, Reply, float | None]:
    """Seconds to wait before trying the same model again, or None to move on to the next model."""
    retry = target.config.retry
    if not failure.counts or opened or probe is not None or failure.should_retry is False:
        return None
    if n + 1 >= retry.attempts:
        return None
    if failure.timed_out and req.stream is not None:
        return None  # a stream that stalled is never tried again on the same model in the same request
    streamed = req.stream is not None and req.stream.emitted
    if (failure.timed_out or streamed) and (yield from req.others_can_serve(index, req.clock())):
        return None  # a silent model, or a stream that already showed text: another model takes over now
    delay = backoff_delay(retry.backoff, n, req.rng)
    if failure.retry_after is not None and failure.retry_after > delay:
        delay = min(failure.retry_after, retry.max_retry_after)
    return delay


def _takeover(req: RequestState, detail: str | None) -> str | None:
    """An attempt's detail, with what the stitcher learnt about a takeover."""
    note = req.stream.takeover_note if req.stream is not None else None
    if not note:
        return detail
    return f"{detail}; {note}" if detail else note
