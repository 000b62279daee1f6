"""`Router.stream()` / `astream()`: SDK-shaped stream objects over the failover plan, sync and async.

The drivers below are the only streaming code that differs between sync and async; what to emit, how
to resume and when to give up live in `stream_state.Stitcher` and `engine.plan`.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncGenerator, AsyncIterator, Generator, Iterator, Mapping
from typing import Any

from anthropic.types import RawMessageStreamEvent

from . import engine
from .record import RoutedMessage
from .stream_state import Stitcher


def _events(
    steps: engine.Plan, stitcher: Stitcher, params: Mapping[str, Any]
) -> Generator[RawMessageStreamEvent, None, None]:
    reply: engine.Reply = None
    try:
        while True:
            command = steps.send(reply)
            if isinstance(command, engine.Sleep):
                time.sleep(command.seconds)
                reply = None
                continue
            provider = command.target.provider
            try:
                deadline = time.monotonic() + command.timeout
                with provider.stream(stitcher.request(params, command.target.config), command.timeout) as events:
                    for event in events:
                        _check(deadline)
                        yield from stitcher.feed(event)
                reply = stitcher.finish(_request_id(events))
            except Exception as exc:
                reply = stitcher.failed(provider.classify(exc))
    except StopIteration as stop:
        stitcher.final = stop.value
    finally:
        steps.close()


async def _aevents(
    steps: engine.Plan, stitcher: Stitcher, params: Mapping[str, Any]
) -> AsyncGenerator[RawMessageStreamEvent, None]:
    reply: engine.Reply = None
    try:
        while True:
            command = steps.send(reply)
            if isinstance(command, engine.Sleep):
                await asyncio.sleep(command.seconds)
                reply = None
                continue
            provider = command.target.provider
            try:
                request = stitcher.request(params, command.target.config)
                deadline = time.monotonic() + command.timeout
                async with provider.astream(request, command.timeout) as events:
                    async for event in events:
                        _check(deadline)
                        for out in stitcher.feed(event):
                            yield out
                reply = stitcher.finish(_request_id(events))
            except Exception as exc:
                reply = stitcher.failed(provider.classify(exc))
    except StopIteration as stop:
        stitcher.final = stop.value
    finally:
        steps.close()


def _check(deadline: float) -> None:
    # stream_idle bounds each wait; this bounds the whole attempt (its share of the request's timeout=
    # and of the model's timeout.total), so a slow but steady stream cannot run on past it.
    if time.monotonic() > deadline:
        raise TimeoutError("the stream outlived its time budget")


def _request_id(events: object) -> str | None:
    """The provider's request id for a stream (the SDK's Stream keeps its HTTP response)."""
    headers = getattr(getattr(events, "response", None), "headers", None)
    return headers.get("request-id") if headers is not None else None


def _text_of(event: RawMessageStreamEvent) -> str | None:
    if event.type == "content_block_delta" and event.delta.type == "text_delta":
        return event.delta.text
    return None


class RoutedStream:
    """Like the SDK's `MessageStream`: iterate events, or `text_stream`, then `get_final_message()`."""

    def __init__(self, steps: engine.Plan, stitcher: Stitcher, params: Mapping[str, Any]) -> None:
        self._stitcher = stitcher
        self._iterator = _events(steps, stitcher, params)

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

    def __init__(self, steps: engine.Plan, stitcher: Stitcher, params: Mapping[str, Any]) -> None:
        self._stitcher = stitcher
        self._iterator = _aevents(steps, stitcher, params)

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
