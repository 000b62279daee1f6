"""`Router.stream()` / `astream()`: SDK-shaped stream objects over the failover plan, sync and async.

The stream drivers below are the only streaming code that differs between sync and async; what to emit,
how to resume and when to give up live in `stream_state.Stitcher` and `plan.plan`.
"""

from __future__ import annotations

from collections.abc import AsyncGenerator, AsyncIterator, Generator, Iterator, Mapping
from typing import Any

from anthropic.types import RawMessageStreamEvent

from . import drivers
from .budget import CURRENT, Budget, restore
from .clock import Clock
from .commands import Call, Plan, Reply, Sleep, StoreLike
from .routing import RoutedMessage
from .stream_state import Salvaged, Stitcher


def _events(
    steps: Plan, stitcher: Stitcher, params: Mapping[str, Any], store: StoreLike, clock: Clock
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
            pending = command
            provider = pending.target.provider
            budget = drivers.budget_for(pending, clock)
            token = CURRENT.set(budget)
            try:
                with provider.stream(stitcher.request(params, pending.target.config), pending.timeout) as events:
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


async def _aevents(
    steps: Plan, stitcher: Stitcher, params: Mapping[str, Any], store: StoreLike, clock: Clock
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
            pending = command
            provider = pending.target.provider
            budget = drivers.budget_for(pending, clock)
            token = CURRENT.set(budget)
            try:
                request = stitcher.request(params, pending.target.config)
                async with provider.astream(request, pending.timeout) as events:
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


def _text_of(event: RawMessageStreamEvent) -> str | None:
    if event.type == "content_block_delta" and event.delta.type == "text_delta":
        return event.delta.text
    return None


class RoutedStream:
    """Like the SDK's `MessageStream`: iterate events, or `text_stream`, then `get_final_message()`."""

    def __init__(
        self, steps: Plan, stitcher: Stitcher, params: Mapping[str, Any], store: StoreLike, clock: Clock
    ) -> None:
        self._stitcher = stitcher
        self._iterator = _events(steps, stitcher, params, store, clock)

    def __enter__(self) -> RoutedStream:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[RawMessageStreamEvent]:
        return self._iterator

    def __next__(self) -> RawMessageStreamEvent:
        return next(self._iterator)

    @property
    def text_stream(self) -> Iterator[str]:
        """The text deltas, stitched across models: what the caller would print."""
        for event in self._iterator:
            text = _text_of(event)
            if text is not None:
                yield text

    def until_done(self) -> None:
        for _ in self._iterator:
            pass

    def get_final_message(self) -> RoutedMessage:
        """Wait for the end of the stream; the whole message, with `.routing`."""
        self.until_done()
        final = self._stitcher.final
        assert isinstance(final, RoutedMessage)
        return final

    def get_final_text(self) -> str:
        return "".join(b.text for b in self.get_final_message().content if b.type == "text")

    def close(self) -> None:
        """Stop now: closes the HTTP response and counts nothing against the model."""
        self._iterator.close()


class AsyncRoutedStream:
    """Like the SDK's `AsyncMessageStream`."""

    def __init__(
        self, steps: Plan, stitcher: Stitcher, params: Mapping[str, Any], store: StoreLike, clock: Clock
    ) -> None:
        self._stitcher = stitcher
        self._iterator = _aevents(steps, stitcher, params, store, clock)

    async def __aenter__(self) -> AsyncRoutedStream:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    def __aiter__(self) -> AsyncIterator[RawMessageStreamEvent]:
        return self._iterator

    async def __anext__(self) -> RawMessageStreamEvent:
        return await self._iterator.__anext__()

    @property
    async def text_stream(self) -> AsyncIterator[str]:
        async for event in self._iterator:
            text = _text_of(event)
            if text is not None:
                yield text

    async def until_done(self) -> None:
        async for _ in self._iterator:
            pass

    async def get_final_message(self) -> RoutedMessage:
        await self.until_done()
        final = self._stitcher.final
        assert isinstance(final, RoutedMessage)
        return final

    async def get_final_text(self) -> str:
        message = await self.get_final_message()
        return "".join(b.text for b in message.content if b.type == "text")

    async def close(self) -> None:
        await self._iterator.aclose()
