"""Carrying out a plan: the sync and async drivers, the only code that differs between the two.

Each driver sends the plan the answer to its last command and carries out the next: a call on the
model's provider (inside the attempt's Budget), a sleep on the injected clock, or a breaker-store
operation (awaited when the store is async). `serve()` / `aserve()` make a quiet request's first call
(`router.start`) before starting its plan. The stream drivers in `streaming/` use the same helpers.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NoReturn

from anthropic.types import Message

from .breaker import Admission
from .budget import CURRENT, LIMIT_NAMES, Budget
from .clock import Clock
from .commands import Admit, Call, Peek, Plan, Release, Reply, Sleep, StoreLike, StoreOp
from .outcome import Failure
from .routing import RoutedMessage, served_deferred
from .start import Start

_PERMIT = Admission.PERMIT  # bound once: reading an enum member off its class costs ~0.15 µs on Python 3.11


def budget_for(call: Call, clock: Clock) -> Budget:
    return Budget(call.timeout, call.first_byte, call.first_token, now=clock.now)


def with_wire_facts(failure: Failure, budget: Budget, call: Call) -> Failure:
    """Add what the response head and the budget know to a classified failure: its request id (a body that
    failed after the head still had one), and which limit cut an attempt that ran out of time."""
    request_id = failure.request_id or budget.request_id
    note = failure.note
    if failure.timed_out and budget.why is not None:
        limit = call.limit if budget.why == "total" else LIMIT_NAMES[budget.why]
        cut = f"no answer within {budget.seconds:.3g}s ({limit})" if budget.why == "total" else f"cut by {limit}"
        note = f"{note}; {cut}" if note else cut
    if request_id is failure.request_id and note is failure.note:
        return failure
    return dataclasses.replace(failure, request_id=request_id, note=note)


def store_op(command: StoreOp, store: StoreLike) -> Reply:
    """A breaker-store operation, on a sync store."""
    result = command.run(store)
    if hasattr(result, "__await__"):  # (inspect.isawaitable costs 5x this, on every operation)
        _refuse(result, store)
    return result


def _refuse(result: Any, store: StoreLike) -> NoReturn:
    """A sync driver was handed an async store."""
    close = getattr(result, "close", None)
    if close is not None:
        close()  # never awaited: say so instead of leaking a coroutine
    raise TypeError(f"{type(store).__name__} is an async breaker store: use acomplete() / astream()")


async def astore_op(command: StoreOp, store: StoreLike) -> Reply:
    """A breaker-store operation, awaited when the store is async."""
    try:
        answer: Any = command.arun(store)
        return (await answer) if hasattr(answer, "__await__") else answer  # type: ignore[no-any-return]
    except KeyError as error:
        return _gone(command, error)


def _gone(command: StoreOp, error: KeyError) -> Reply:
    """The store no longer knows the model (a reload removed it meanwhile): a Peek's answer is None."""
    if isinstance(command, Peek):
        return None
    raise error


def release_pending(pending: Call | None, store: StoreLike) -> Release | None:
    """The caller went away during a call: its probe lease goes back (cancelling is never the model's fault)."""
    if pending is None or pending.probe is None:
        return None
    return Release(pending.target.alias, pending.probe)


def attempt(call: Call, clock: Clock) -> Reply:
    """Make `call` on its model's provider inside the attempt's Budget: the message, or the classified failure."""
    provider = call.target.provider
    budget = Budget(call.timeout, call.first_byte, call.first_token, clock.now)
    token = CURRENT.set(budget)
    try:
        return provider.call(call.params, call.timeout)
    except Exception as exc:
        return with_wire_facts(provider.classify(exc), budget, call)
    finally:
        CURRENT.reset(token)


async def aattempt(call: Call, clock: Clock) -> Reply:
    """`attempt()`, awaiting the provider."""
    provider = call.target.provider
    budget = Budget(call.timeout, call.first_byte, call.first_token, clock.now)
    token = CURRENT.set(budget)
    try:
        return await provider.acall(call.params, call.timeout)
    except Exception as exc:
        return with_wire_facts(provider.classify(exc), budget, call)
    finally:
        CURRENT.reset(token)


def serve(start: Start, store: StoreLike, clock: Clock) -> RoutedMessage:
    """Carry out one request with blocking I/O: its quiet first call here (`router.start`), then its plan
    unless that call served. (Admit's and Succeeded's run() and attempt() are spelled out: this is every
    healthy request, and each Python call between two SDK calls costs several times what it does in a loop.)"""
    target = start.first
    if target is None:
        return run(start.plan(), store, clock)
    alias, at, timeout = target.alias, start.at, target.config.timeout.total
    answer: Any = store.admit(alias, at, timeout)
    if answer is not _PERMIT:
        if hasattr(answer, "__await__"):
            _refuse(answer, store)
        return run(start.plan((at, answer)), store, clock)
    provider = target.provider
    budget = Budget(timeout, None, None, clock.now)
    token = CURRENT.set(budget)
    try:
        reply: Reply = provider.call(start.args[2], timeout)
    except Exception as exc:
        reply = with_wire_facts(provider.classify(exc), budget, start.call())
    finally:
        CURRENT.reset(token)
    if not isinstance(reply, Message):
        return run(start.plan((at, reply)), store, clock)
    ended = clock.now()
    done = store.record_success(alias, ended, probe=None)
    if done is not None and hasattr(done, "__await__"):
        _refuse(done, store)
    return served_deferred(reply, start.args[0], alias, (), ended - at)


async def aserve(start: Start, store: StoreLike, clock: Clock) -> RoutedMessage:
    """`serve()` with asyncio: an async store's operations are awaited (Admit's and Succeeded's arun())."""
    target = start.first
    if target is None:
        return await arun(start.plan(), store, clock)
    alias, at, timeout = target.alias, start.at, target.config.timeout.total
    answer: Any = (getattr(store, "aadmit", None) or store.admit)(alias, at, timeout)
    if hasattr(answer, "__await__"):
        answer = await answer
    if answer is not _PERMIT:
        return await arun(start.plan((at, answer)), store, clock)
    provider = target.provider
    budget = Budget(timeout, None, None, clock.now)
    token = CURRENT.set(budget)
    try:
        reply: Reply = await provider.acall(start.args[2], timeout)
    except Exception as exc:
        reply = with_wire_facts(provider.classify(exc), budget, start.call())
    finally:
        CURRENT.reset(token)
    if not isinstance(reply, Message):
        return await arun(start.plan((at, reply)), store, clock)
    ended = clock.now()
    done = (getattr(store, "arecord_success", None) or store.record_success)(alias, ended, probe=None)
    if done is not None and hasattr(done, "__await__"):
        await done
    return served_deferred(reply, start.args[0], alias, (), ended - at)


def run(steps: Plan, store: StoreLike, clock: Clock) -> RoutedMessage:
    """Carry out a plan with blocking I/O."""
    reply: Reply = None
    pending: Call | None = None
    try:
        while True:
            command = steps.send(reply)
            if isinstance(command, Call):
                if command.admit_at is not None:  # admit first; call only if permitted
                    reply = store_op(Admit(command.target.alias, command.admit_at, command.timeout), store)
                    if reply is not _PERMIT:
                        continue
                pending = command
                reply = attempt(command, clock)
                pending = None
            elif isinstance(command, Sleep):
                clock.sleep(command.seconds)
                reply = None
            else:
                reply = store_op(command, store)
    except StopIteration as stop:
        result: RoutedMessage = stop.value
        return result
    finally:
        steps.close()
        if pending is not None and pending.probe is not None:
            store_op(Release(pending.target.alias, pending.probe), store)


async def arun(steps: Plan, store: StoreLike, clock: Clock) -> RoutedMessage:
    """Carry out a plan with asyncio."""
    reply: Reply = None
    pending: Call | None = None
    try:
        while True:
            command = steps.send(reply)
            if isinstance(command, Call):
                if command.admit_at is not None:  # admit first; call only if permitted
                    reply = await astore_op(Admit(command.target.alias, command.admit_at, command.timeout), store)
                    if reply is not _PERMIT:
                        continue
                pending = command
                reply = await aattempt(command, clock)
                pending = None
            elif isinstance(command, Sleep):
                await clock.asleep(command.seconds)
                reply = None
            else:
                reply = await astore_op(command, store)
    except StopIteration as stop:
        result: RoutedMessage = stop.value
        return result
    finally:
        steps.close()
        if pending is not None and pending.probe is not None:
            await astore_op(Release(pending.target.alias, pending.probe), store)
