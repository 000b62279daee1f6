"""`Router.stream()` / `astream()`: SDK-shaped stream objects over the failover plan, sync and async."""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterator

from anthropic.types import RawMessageStreamEvent

from ..clock import Clock
from ..commands import Plan, StoreLike
from ..routing import RoutedMessage
from .drivers import aevents, events
from .stitcher import Stitcher


def _text_of(event: RawMessageStreamEvent) -> str | None:
    if event.type == "content_block_delta" and event.delta.type == "text_delta":
        return event.delta.text
    return None


class RoutedStream:
    """Like the SDK's `MessageStream`: iterate events, or `text_stream`, then `get_final_message()`."""

    def __init__(self, steps: Plan, stitcher: Stitcher, store: StoreLike, clock: Clock) -> None:
        self._stitcher = stitcher
        self._iterator = events(steps, stitcher, store, clock)

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

    def __init__(self, steps: Plan, stitcher: Stitcher, store: StoreLike, clock: Clock) -> None:
        self._stitcher = stitcher
        self._iterator = aevents(steps, stitcher, store, clock)

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
