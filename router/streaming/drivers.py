"""The stream drivers: carry out a plan for a stream, feeding each attempt's events through the Stitcher.

They are the only streaming code that differs between sync and async; what to emit, how to resume and
when to give up live in `stitcher.Stitcher` and `plan.plan`.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, Generator

from anthropic.types import RawMessageStreamEvent

from .. import drivers
from ..breaker import Admission
from ..budget import CURRENT, Budget, restore
from ..clock import Clock
from ..commands import Admit, Call, Plan, Reply, Sleep, StoreLike
from .stitcher import Salvaged, Stitcher


def events(
    steps: Plan, stitcher: Stitcher, store: StoreLike, clock: Clock
) -> Generator[RawMessageStreamEvent, None, None]:
    reply: Reply = None
    pending: Call | None = None
    try:
        while True:
            command = steps.send(reply)
            if isinstance(command, Sleep):
                clock.sleep(command.seconds)
                reply = None
                continue
            if not isinstance(command, Call):
                reply = drivers.store_op(command, store)
                continue
            if command.admit_at is not None:  # (the plan admits streams with Admit; carried out all the same)
                admission = drivers.store_op(Admit(command.target.alias, command.admit_at, command.timeout), store)
                if admission is not Admission.PERMIT:
                    reply = admission
                    continue
            pending = command
            provider = pending.target.provider
            budget = drivers.budget_for(pending, clock)
            token = CURRENT.set(budget)
            try:
                with provider.stream(pending.params, pending.timeout) as events:
                    for event in events:
                        _progress(budget, event)
                        yield from stitcher.feed(event)
                reply = stitcher.finish(budget.request_id)
            except Exception as exc:
                reply = stitcher.failed(drivers.with_wire_facts(provider.classify(exc), budget, pending))
            finally:
                restore(token)
            pending = None
            if isinstance(reply, Salvaged):
                yield from stitcher.closing_events()
    except StopIteration as stop:
        stitcher.final = stop.value
    finally:
        steps.close()
        back = drivers.release_pending(pending, store)
        if back is not None:
            drivers.store_op(back, store)


async def aevents(
    steps: Plan, stitcher: Stitcher, store: StoreLike, clock: Clock
) -> AsyncGenerator[RawMessageStreamEvent, None]:
    reply: Reply = None
    pending: Call | None = None
    try:
        while True:
            command = steps.send(reply)
            if isinstance(command, Sleep):
                await clock.asleep(command.seconds)
                reply = None
                continue
            if not isinstance(command, Call):
                reply = await drivers.astore_op(command, store)
                continue
            if command.admit_at is not None:
                admit = Admit(command.target.alias, command.admit_at, command.timeout)
                admission = await drivers.astore_op(admit, store)
                if admission is not Admission.PERMIT:
                    reply = admission
                    continue
            pending = command
            provider = pending.target.provider
            budget = drivers.budget_for(pending, clock)
            token = CURRENT.set(budget)
            try:
                async with provider.astream(pending.params, pending.timeout) as events:
                    async for event in events:
                        _progress(budget, event)
                        for out in stitcher.feed(event):
                            yield out
                reply = stitcher.finish(budget.request_id)
            except Exception as exc:
                reply = stitcher.failed(drivers.with_wire_facts(provider.classify(exc), budget, pending))
            finally:
                restore(token)
            pending = None
            if isinstance(reply, Salvaged):
                for out in stitcher.closing_events():
                    yield out
    except StopIteration as stop:
        stitcher.final = stop.value
    finally:
        steps.close()
        back = drivers.release_pending(pending, store)
        if back is not None:
            await drivers.astore_op(back, store)


def _progress(budget: Budget, event: RawMessageStreamEvent) -> None:
    # The sockets of Anthropic models already end by the budget; this also bounds providers whose
    # sockets the router does not own, and lifts the first-token limit once content arrives.
    budget.until_head = None  # an event came: the head came before it
    if budget.until_content is not None and getattr(event, "type", None) == "content_block_delta":
        budget.content_started()
    budget.check()
