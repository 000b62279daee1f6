"""Carrying out a plan: the sync and async drivers, the only code that differs between the two.

Each driver sends the plan the answer to its last command and carries out the next: a call on the
model's provider (inside the attempt's Budget), a sleep on the injected clock, or a breaker-store
operation (awaited when the store is async). The stream drivers in `streaming.py` use the same helpers.
"""

from __future__ import annotations

import dataclasses
from typing import Any, NoReturn

from .breaker import Admission
from .budget import CURRENT, LIMIT_NAMES, Budget
from .clock import Clock
from .commands import Call, Peek, Plan, Release, Reply, Sleep, StoreLike, StoreOp
from .outcome import Failure
from .routing import RoutedMessage

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


# run() and arun() carry out every request: astore_op's, budget_for's and release_pending's steps are spelled
# out in them (the same steps), since each Python call between two SDK calls costs more than its lines suggest.


def run(steps: Plan, store: StoreLike, clock: Clock) -> RoutedMessage:
    """Carry out a plan with blocking I/O."""
    reply: Reply = None
    pending: Call | None = None
    try:
        while True:
            command = steps.send(reply)
            if isinstance(command, Call):
                if command.admit_at is not None:  # Admit first, as Admit.run() would; call only if permitted
                    admission: Any = store.admit(command.target.alias, command.admit_at, command.timeout)
                    if admission is not _PERMIT:
                        if hasattr(admission, "__await__"):
                            _refuse(admission, store)
                        reply = admission
                        continue
                pending = command
                provider = command.target.provider
                budget = Budget(command.timeout, command.first_byte, command.first_token, clock.now)
                token = CURRENT.set(budget)
                try:
                    reply = provider.call(command.params, command.timeout)
                except Exception as exc:
                    reply = with_wire_facts(provider.classify(exc), budget, command)
                finally:
                    CURRENT.reset(token)
                pending = None
            elif isinstance(command, Sleep):
                clock.sleep(command.seconds)
                reply = None
            else:
                done: Any = command.run(store)
                if hasattr(done, "__await__"):
                    _refuse(done, store)
                reply = done
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
                if command.admit_at is not None:  # Admit first, as Admit.arun() would; call only if permitted
                    method = getattr(store, "aadmit", None) or store.admit
                    admission = method(command.target.alias, command.admit_at, command.timeout)
                    if hasattr(admission, "__await__"):
                        admission = await admission
                    if admission is not _PERMIT:
                        reply = admission
                        continue
                pending = command
                provider = command.target.provider
                budget = Budget(command.timeout, command.first_byte, command.first_token, clock.now)
                token = CURRENT.set(budget)
                try:
                    reply = await provider.acall(command.params, command.timeout)
                except Exception as exc:
                    reply = with_wire_facts(provider.classify(exc), budget, command)
                finally:
                    CURRENT.reset(token)
                pending = None
            elif isinstance(command, Sleep):
                await clock.asleep(command.seconds)
                reply = None
            else:
                try:
                    answer: Any = command.arun(store)
                    reply = (await answer) if hasattr(answer, "__await__") else answer
                except KeyError as error:
                    reply = _gone(command, error)
    except StopIteration as stop:
        result: RoutedMessage = stop.value
        return result
    finally:
        steps.close()
        if pending is not None and pending.probe is not None:
            await astore_op(Release(pending.target.alias, pending.probe), store)
