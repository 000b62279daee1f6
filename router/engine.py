"""The failover algorithm, written once as a plan that yields commands, and the sync and async drivers.

The plan decides (which model, how long an attempt may take, whether to retry, how long to back off,
when to give up) and keeps the breakers informed; it does no I/O. It yields a `Call` or a `Sleep` and
receives the call's result (a message, a classified `Failure`, or a stream `Salvaged` from a failure).
`run()` and `arun()` carry out those commands; they are the only code that differs between sync and
async, in the manner of httpx's auth flows.

How a request's `timeout=` is shared along a chain: while another model of the route could still serve
the request, one attempt may take at most half of what is left (a stream: half for its first content,
then all that is left); the last model that can serve gets everything left. A model that timed out is
not tried again in the same request while another model can serve it.
"""

from __future__ import annotations

import asyncio
import dataclasses
import random
import time
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from anthropic.types import Message

from .breaker import Admission, BreakerStore, Lease
from .budget import CURRENT, LIMIT_NAMES, Budget
from .errors import AllModelsFailed, StreamInterrupted
from .outcome import Failure, Kind
from .policy import BackoffConfig, ModelConfig
from .providers import Provider
from .record import Attempt, RoutedMessage, Routing, attach_routing
from .stream_state import Salvaged, Stitcher


@dataclass(frozen=True, slots=True)
class Target:
    """A model as the engine sees it: its policy entry, the provider that calls it, its credential group."""

    alias: str
    config: ModelConfig
    provider: Provider
    credentials: str  # models sharing this share an API key: an invalid key fails them all alike


@dataclass(frozen=True, slots=True)
class Call:
    """Call `target` once. `timeout` is the attempt's hard end (seconds from now); a stream must also
    send its response head within `first_byte` and its first content within `first_token`."""

    target: Target
    timeout: float
    probe: Lease | None
    first_byte: float | None = None
    first_token: float | None = None
    limit: str = "timeout.total"  # what set `timeout`, for the attempt record


@dataclass(frozen=True, slots=True)
class Sleep:
    seconds: float


Command = Call | Sleep
Reply = Message | Failure | Salvaged | None
Plan = Generator[Command, Reply, RoutedMessage]

# Account errors that are about the key itself, so every model using the same key would fail the same
# way. A 403 can be about one model only (no access to it), so it is not here.
_KEY_WIDE_STATUSES = frozenset({401, 402, 429})


def backoff_delay(config: BackoffConfig, retry_index: int, rng: random.Random) -> float:
    """Exponential backoff with +/- jitter: initial * 2**retry_index, capped at max."""
    base = min(config.max, config.initial * (2.0**retry_index))
    if config.jitter:
        base *= 1.0 + rng.uniform(-config.jitter, config.jitter)
    return max(0.0, base)


@dataclass(slots=True)
class _Request:
    """What one request has learnt so far (mutable: the plan's working state)."""

    route: str
    chain: Sequence[Target]
    store: BreakerStore
    clock: Callable[[], float]
    rng: random.Random
    deadline: float | None
    stream: Stitcher | None
    attempts: list[Attempt] = field(default_factory=list)
    spent_credentials: set[str] = field(default_factory=set)
    last: Failure | None = None

    def others_can_serve(self, index: int, now: float) -> bool:
        """Could a model after chain[index] still be called now? (Reads breaker state; takes nothing.)"""
        for target in self.chain[index + 1:]:
            if target.credentials in self.spent_credentials:
                continue
            if self.stream is not None and not self.stream.can_take_over(target.config):
                continue
            try:
                info = self.store.info(target.alias, now)
            except KeyError:  # removed by a reload meanwhile
                continue
            if info.cooling_until is not None:
                continue
            if info.state == "closed" or (info.state == "half_open" and not info.probe_in_flight):
                return True
        return False


def plan(
    route: str,
    chain: Sequence[Target],
    store: BreakerStore,
    clock: Callable[[], float],
    rng: random.Random,
    deadline: float | None = None,
    stream: Stitcher | None = None,
) -> Plan:
    """Serve one request from the first model of `chain` that can answer.

    With `stream`, the request is a stream: models that cannot take over a stream that already sent
    content are passed over, and an interruption that cannot be resumed raises StreamInterrupted.
    """
    req = _Request(route, chain, store, clock, rng, deadline, stream)
    for index, target in enumerate(chain):
        skipped = _passed_over(req, target)
        if skipped is not None:
            req.attempts.append(Attempt(target.alias, skipped))
            continue
        served = yield from _try_model(req, index, target)
        if served is not None:
            return served
    if stream is not None and stream.emitted:
        raise StreamInterrupted(stream.partial_text(), stream.snapshot(), req.attempts, "no model left to resume on")
    raise AllModelsFailed(route, req.attempts) from (req.last.error if req.last else None)


def _passed_over(req: _Request, target: Target) -> Kind | None:
    if target.credentials in req.spent_credentials:
        return Kind.SAME_CREDENTIALS
    if req.stream is not None and not req.stream.can_take_over(target.config):
        return Kind.CANNOT_RESUME
    return None


def _try_model(req: _Request, index: int, target: Target) -> Generator[Command, Reply, RoutedMessage | None]:
    """Up to `retry.attempts` tries of one model; the message if one served, None to move on."""
    alias, config = target.alias, target.config
    started = req.clock()
    model_deadline = started + config.timeout.total
    if req.deadline is not None and req.deadline < model_deadline:
        model_deadline = req.deadline
    for n in range(config.retry.attempts):
        if n:
            started = req.clock()
        remaining = model_deadline - started
        if remaining <= 0:
            req.attempts.append(Attempt(alias, Kind.DEADLINE))
            return None
        admission = req.store.admit(alias, started, remaining)
        if admission is Admission.OPEN or admission is Admission.COOLING:
            req.attempts.append(Attempt(alias, Kind.BREAKER_OPEN if admission is Admission.OPEN else Kind.COOLING_DOWN))
            return None
        probe = admission if isinstance(admission, Lease) else None
        call = _call(req, index, target, remaining, probe, started)
        note = req.stream.begin(config) if req.stream is not None else None
        try:
            reply = yield call
        except GeneratorExit:  # the caller cancelled: never the model's fault
            req.store.release(alias, probe=probe)
            raise
        ended = req.clock()
        if isinstance(reply, Message):
            req.store.record_success(alias, ended, probe=probe)
            req.attempts.append(Attempt(alias, Kind.SUCCESS, 200, None, getattr(reply, "_request_id", None),
                                        ended - started, probe is not None, _takeover(req, note)))
            return attach_routing(reply, Routing(alias, req.route, tuple(req.attempts)))
        assert reply is not None and not isinstance(reply, Sleep)
        failure = reply.failure if isinstance(reply, Salvaged) else reply
        opened = _record(req, target, failure, probe, started, ended, isinstance(reply, Salvaged))
        if isinstance(reply, Salvaged):  # the stream broke where nothing was missing: the answer stands
            message = reply.message
            if failure.request_id:
                object.__setattr__(message, "_request_id", failure.request_id)
            return attach_routing(message, Routing(alias, req.route, tuple(req.attempts)))
        delay = _retry_delay(req, index, target, failure, n, opened, probe)
        if delay is None or req.clock() + delay >= model_deadline:
            return None  # move on (a wait that would outlast this model's budget too)
        yield Sleep(delay)
    return None


def _call(req: _Request, index: int, target: Target, remaining: float, probe: Lease | None, now: float) -> Call:
    """The budget of one attempt: see the module docstring for how `timeout=` is shared."""
    t = target.config.timeout
    timeout, limit = remaining, "the request's timeout=" if req.deadline is not None else "timeout.total"
    share: float | None = None
    if req.deadline is not None and req.others_can_serve(index, now):
        share = (req.deadline - now) / 2
    if req.stream is None:
        if share is not None and share < timeout:
            timeout, limit = share, "half of what was left of timeout=, since another model could still serve"
        return Call(target, timeout, probe, limit=limit)
    first_token = t.first_token if share is None else min(t.first_token, share)
    return Call(target, timeout, probe, min(t.first_byte, first_token), first_token, limit)


def _record(
    req: _Request, target: Target, failure: Failure, probe: Lease | None, started: float, ended: float,
    salvaged: bool = False,
) -> bool:
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
    req.attempts.append(Attempt(alias, failure.kind, failure.status, failure.error_type, failure.request_id,
                                ended - started, probe is not None, _takeover(req, detail)))
    counted = failure.kind is Kind.SERVER_FAILURE
    opened = req.store.record_failure(alias, ended, probe=probe) if counted else False
    if not counted:
        req.store.release(alias, probe=probe)
    if salvaged:
        return opened
    if req.stream is not None:
        interrupted = req.stream.interrupted(failure, req.attempts)
        if interrupted is not None:
            raise interrupted from failure.error
    if failure.kind in (Kind.CALLER, Kind.UNEXPECTED):
        raise failure.error  # the fallback would fail the same way: the SDK's own exception, unchanged
    if failure.kind is Kind.RATE_LIMITED and failure.retry_after is not None:
        req.store.cool_down(alias, ended + min(failure.retry_after, retry.max_retry_after))
    elif failure.kind is Kind.ACCOUNT and (failure.status in _KEY_WIDE_STATUSES or failure.status is None):
        req.spent_credentials.add(target.credentials)
    return opened


def _retry_delay(
    req: _Request, index: int, target: Target, failure: Failure, n: int, opened: bool, probe: Lease | None
) -> float | None:
    """Seconds to wait before trying the same model again, or None to move on to the next model."""
    retry = target.config.retry
    if failure.kind is not Kind.SERVER_FAILURE:
        return None
    if opened or probe is not None or failure.should_retry is False or n + 1 >= retry.attempts:
        return None
    stalled = failure.error_type == "timeout"
    if stalled and req.stream is not None:
        return None  # a stream that stalled is never tried again on the same model in the same request
    streamed = req.stream is not None and req.stream.emitted
    if (stalled or streamed) and req.others_can_serve(index, req.clock()):
        return None  # a silent model, or a stream that already showed text: another model takes over now
    delay = backoff_delay(retry.backoff, n, req.rng)
    if failure.retry_after is not None and failure.retry_after > delay:
        delay = min(failure.retry_after, retry.max_retry_after)
    return delay


def _takeover(req: _Request, detail: str | None) -> str | None:
    """An attempt's detail, with what the stitcher learnt about a takeover."""
    note = req.stream.takeover_note if req.stream is not None else None
    if not note:
        return detail
    return f"{detail}; {note}" if detail else note


# -- drivers ------------------------------------------------------------------------------------------


def budget_for(call: Call) -> Budget:
    return Budget(call.timeout, call.first_byte, call.first_token)


def with_wire_facts(failure: Failure, budget: Budget, call: Call) -> Failure:
    """Add what the response head and the budget know to a classified failure: its request id (a body that
    failed after the head still had one), and which limit cut an attempt that ran out of time."""
    request_id = failure.request_id or budget.request_id
    note = failure.note
    if failure.error_type == "timeout" and budget.why is not None:
        limit = call.limit if budget.why == "total" else LIMIT_NAMES[budget.why]
        cut = f"no answer within {budget.seconds:.3g}s ({limit})" if budget.why == "total" else f"cut by {limit}"
        note = f"{note}; {cut}" if note else cut
    if request_id is failure.request_id and note is failure.note:
        return failure
    return dataclasses.replace(failure, request_id=request_id, note=note)


def _result(stop: StopIteration) -> RoutedMessage:
    value: RoutedMessage = stop.value
    return value


def run(steps: Plan, params: Mapping[str, Any]) -> RoutedMessage:
    """Carry out a plan with blocking I/O."""
    reply: Reply = None
    try:
        while True:
            command = steps.send(reply)
            if isinstance(command, Call):
                provider = command.target.provider
                budget = budget_for(command)
                token = CURRENT.set(budget)
                try:
                    reply = provider.call(params, command.timeout)
                except Exception as exc:
                    reply = with_wire_facts(provider.classify(exc), budget, command)
                finally:
                    CURRENT.reset(token)
            else:
                time.sleep(command.seconds)
                reply = None
    except StopIteration as stop:
        return _result(stop)
    finally:
        steps.close()


async def arun(steps: Plan, params: Mapping[str, Any]) -> RoutedMessage:
    """Carry out a plan with asyncio."""
    reply: Reply = None
    try:
        while True:
            command = steps.send(reply)
            if isinstance(command, Call):
                provider = command.target.provider
                budget = budget_for(command)
                token = CURRENT.set(budget)
                try:
                    reply = await provider.acall(params, command.timeout)
                except Exception as exc:
                    reply = with_wire_facts(provider.classify(exc), budget, command)
                finally:
                    CURRENT.reset(token)
            else:
                await asyncio.sleep(command.seconds)
                reply = None
    except StopIteration as stop:
        return _result(stop)
    finally:
        steps.close()
