"""The failover algorithm, written once as a plan that yields commands, and the sync and async drivers.

The plan decides (which model, whether to retry, how long to back off, when to give up) and keeps the
breakers informed; it does no I/O. It yields a `Call` or a `Sleep` and receives the call's result (a
message or a classified `Failure`). `run()` and `arun()` carry out those commands; they are the only
code that differs between sync and async, in the manner of httpx's auth flows.
"""

from __future__ import annotations

import asyncio
import random
import time
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from anthropic.types import Message

from .breaker import Admission, BreakerStore, Lease
from .errors import AllModelsFailed, StreamInterrupted
from .outcome import Failure, Kind
from .policy import BackoffConfig, ModelConfig
from .providers import Provider
from .record import Attempt, RoutedMessage, Routing, attach_routing
from .stream_state import Stitcher


@dataclass(frozen=True, slots=True)
class Target:
    """A model as the engine sees it: its policy entry, the provider that calls it, its credential group."""

    alias: str
    config: ModelConfig
    provider: Provider
    credentials: str  # models sharing this share an API key: an invalid key fails them all alike


@dataclass(frozen=True, slots=True)
class Call:
    target: Target
    timeout: float  # seconds this attempt may take at most
    probe: Lease | None


@dataclass(frozen=True, slots=True)
class Sleep:
    seconds: float


Command = Call | Sleep
Reply = Message | Failure | None
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
    attempts: list[Attempt] = []
    spent_credentials: set[str] = set()
    last: Failure | None = None
    for target in chain:
        alias = target.alias
        config = target.config
        if target.credentials in spent_credentials:
            attempts.append(Attempt(alias, Kind.SAME_CREDENTIALS))
            continue
        if stream is not None and not stream.can_take_over(config):
            attempts.append(Attempt(alias, Kind.CANNOT_RESUME))
            continue
        retry = config.retry
        started = clock()
        model_deadline = started + config.timeout.total
        if deadline is not None and deadline < model_deadline:
            model_deadline = deadline
        for n in range(retry.attempts):
            if n:
                started = clock()
            remaining = model_deadline - started
            if remaining <= 0:
                attempts.append(Attempt(alias, Kind.DEADLINE))
                break
            admission = store.admit(alias, started, remaining)
            if admission is Admission.OPEN:
                attempts.append(Attempt(alias, Kind.BREAKER_OPEN))
                break
            if admission is Admission.COOLING:
                attempts.append(Attempt(alias, Kind.COOLING_DOWN))
                break
            probe = admission if isinstance(admission, Lease) else None
            note = stream.begin(config) if stream is not None else None
            try:
                reply = yield Call(target, remaining, probe)
            except GeneratorExit:  # the caller cancelled: never the model's fault
                store.release(alias, probe=probe)
                raise
            ended = clock()
            if not isinstance(reply, Failure):
                assert reply is not None
                store.record_success(alias, ended, probe=probe)
                attempts.append(
                    Attempt(alias, Kind.SUCCESS, 200, None, getattr(reply, "_request_id", None),
                            ended - started, probe is not None, note)
                )
                return attach_routing(reply, Routing(alias, route, tuple(attempts)))

            last = reply
            detail = reply.note or (f"retry-after {reply.retry_after:g}s" if reply.retry_after is not None else None)
            attempts.append(
                Attempt(alias, reply.kind, reply.status, reply.error_type, reply.request_id,
                        ended - started, probe is not None, detail)
            )
            counted = reply.kind is Kind.SERVER_FAILURE
            opened = store.record_failure(alias, ended, probe=probe) if counted else False
            if not counted:
                store.release(alias, probe=probe)
            if stream is not None:
                interrupted = stream.interrupted(reply, attempts)
                if interrupted is not None:
                    raise interrupted from reply.error
            if counted:
                if opened or probe is not None or reply.should_retry is False or n + 1 >= retry.attempts:
                    break
                delay = backoff_delay(retry.backoff, n, rng)
                if reply.retry_after is not None and reply.retry_after > delay:
                    delay = reply.retry_after
                if clock() + delay >= model_deadline:
                    break  # the wait would outlast this model's budget: move on now
                yield Sleep(delay)
                continue
            if reply.kind in (Kind.CALLER, Kind.UNEXPECTED):
                raise reply.error  # the fallback would fail the same way: the SDK's own exception, unchanged
            if reply.kind is Kind.RATE_LIMITED and reply.retry_after is not None:
                store.cool_down(alias, ended + reply.retry_after)
            elif reply.kind is Kind.ACCOUNT and (reply.status in _KEY_WIDE_STATUSES or reply.status is None):
                spent_credentials.add(target.credentials)
            break
    if stream is not None and stream.emitted:
        raise StreamInterrupted(stream.partial_text(), stream.snapshot(), attempts, "no model left to resume on")
    raise AllModelsFailed(route, attempts) from (last.error if last else None)


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
                try:
                    reply = provider.call(params, command.timeout)
                except Exception as exc:
                    reply = provider.classify(exc)
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
                try:
                    reply = await provider.acall(params, command.timeout)
                except Exception as exc:
                    reply = provider.classify(exc)
            else:
                await asyncio.sleep(command.seconds)
                reply = None
    except StopIteration as stop:
        return _result(stop)
    finally:
        steps.close()
