"""Claude through the official anthropic SDK: one sync and one async client per model, no SDK retries."""

from __future__ import annotations

import asyncio
import contextlib
import functools
import ssl
import threading
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import anthropic
import httpx2
from anthropic.types import Message, RawMessageStreamEvent

from ..outcome import Failure, classify
from ..policy import ModelConfig


@functools.cache
def _tls() -> ssl.SSLContext:
    """One TLS context for every model's clients: building one reads the CA store, which takes tens of ms."""
    return httpx2.create_ssl_context()  # what the SDK's own default client builds (honours SSL_CERT_FILE/DIR)


_closing: set[object] = set()  # scheduled closes, kept referenced until they are done


def _keep(future: Any) -> None:
    _closing.add(future)
    future.add_done_callback(_closing.discard)


class _HttpClient(anthropic.DefaultHttpxClient):
    """The SDK's default sync HTTP client on the shared TLS context; closed when dropped, as the SDK's own is."""

    def __del__(self) -> None:
        if not self.is_closed:
            with contextlib.suppress(Exception):
                self.close()


class _AsyncHttpClient(anthropic.DefaultAsyncHttpxClient):
    """The async twin: when dropped inside a running event loop, its connections are closed on that loop."""

    def __del__(self) -> None:
        if not self.is_closed:
            with contextlib.suppress(Exception):
                _keep(asyncio.get_running_loop().create_task(self.aclose()))


def _close_on(loop: asyncio.AbstractEventLoop, client: anthropic.AsyncAnthropic) -> None:
    """Close an async client on the event loop its connections belong to, from any thread."""
    try:
        here = asyncio.get_running_loop()
    except RuntimeError:
        here = None
    if here is loop:
        _keep(loop.create_task(client.close()))
    else:
        _keep(asyncio.run_coroutine_threadsafe(client.close(), loop))


class AnthropicProvider:
    """Calls one Claude model. Its clients are built with the provider (so the first call to a fallback does
    not pay for them) and reused for every call; after close() they are rebuilt on the next call."""

    def __init__(self, config: ModelConfig) -> None:
        self.config = config
        self._overrides = config.outcomes
        t = config.timeout
        self._timeout = anthropic.Timeout(t.read, connect=t.connect)
        self._idle_timeout = anthropic.Timeout(t.stream_idle, connect=t.connect)
        self._sync: anthropic.Anthropic | None = None
        self._async: anthropic.AsyncAnthropic | None = None
        self._lock = threading.Lock()
        self._inflight = 0  # calls and streams under way: a retired provider closes when this reaches 0
        self._retired = False
        self._loop: asyncio.AbstractEventLoop | None = None  # where the async client's connections live
        self._sync_client()
        self._async_client()

    def __repr__(self) -> str:
        return f"AnthropicProvider({self.config.alias!r}, model={self.config.model!r})"

    def _client_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"max_retries": 0, "timeout": self._timeout}
        if self.config.api_key is not None:
            kwargs["api_key"] = self.config.api_key.reveal()
        if self.config.base_url is not None:
            kwargs["base_url"] = self.config.base_url
        return kwargs

    def _sync_client(self) -> anthropic.Anthropic:
        with self._lock:
            if self._sync is None:
                http = _HttpClient(verify=_tls())
                self._sync = anthropic.Anthropic(**self._client_kwargs(), http_client=http)
            return self._sync

    def _async_client(self) -> anthropic.AsyncAnthropic:
        with self._lock:
            if self._async is None:
                http = _AsyncHttpClient(verify=_tls())
                self._async = anthropic.AsyncAnthropic(**self._client_kwargs(), http_client=http)
            return self._async

    def _timeout_for(self, budget: float) -> anthropic.Timeout:
        t = self.config.timeout
        if budget >= t.read:
            return self._timeout
        return anthropic.Timeout(budget, connect=min(t.connect, budget))

    def _enter(self) -> None:
        with self._lock:
            self._inflight += 1

    def _leave(self) -> bool:
        """True when this was the last call of a retired provider: it is to be closed now."""
        with self._lock:
            self._inflight -= 1
            return self._retired and self._inflight == 0

    def retire(self) -> None:
        """A reload replaced this provider: close it once its calls in flight are done."""
        with self._lock:
            self._retired = True
            idle = self._inflight == 0
        if idle:
            self.close()

    def call(self, params: Mapping[str, Any], timeout: float) -> Message:
        self._enter()  # before taking the client, so a retire() cannot close it under us
        try:
            client = self._sync or self._sync_client()
            message: Message = client.messages.create(
                model=self.config.model, timeout=self._timeout_for(timeout), **params
            )
        finally:
            if self._leave():
                self.close()
        return message

    async def acall(self, params: Mapping[str, Any], timeout: float) -> Message:
        self._enter()  # before taking the client, so a retire() cannot close it under us
        try:
            client = self._async or self._async_client()
            self._loop = asyncio.get_running_loop()
            message: Message = await client.messages.create(
                model=self.config.model, timeout=self._timeout_for(timeout), **params
            )
        finally:
            if self._leave():
                await self.aclose()
        return message

    def _stream_timeout(self, budget: float) -> anthropic.Timeout:
        # Between stream events the socket read timeout is the idle limit: a stall raises ReadTimeout.
        t = self.config.timeout
        if budget >= t.stream_idle and budget >= t.connect:
            return self._idle_timeout
        return anthropic.Timeout(min(t.stream_idle, budget), connect=min(t.connect, budget))

    @contextmanager
    def stream(self, params: Mapping[str, Any], timeout: float) -> Iterator[Iterable[RawMessageStreamEvent]]:
        self._enter()  # before taking the client, so a retire() cannot close it under us
        try:
            client = self._sync or self._sync_client()
            events = client.messages.create(
                model=self.config.model, stream=True, timeout=self._stream_timeout(timeout), **params
            )
            try:
                yield events
            finally:
                events.close()
        finally:
            if self._leave():
                self.close()

    @asynccontextmanager
    async def astream(
        self, params: Mapping[str, Any], timeout: float
    ) -> AsyncIterator[AsyncIterable[RawMessageStreamEvent]]:
        self._enter()  # before taking the client, so a retire() cannot close it under us
        try:
            client = self._async or self._async_client()
            self._loop = asyncio.get_running_loop()
            events = await client.messages.create(
                model=self.config.model, stream=True, timeout=self._stream_timeout(timeout), **params
            )
            try:
                yield events
            finally:
                await events.close()
        finally:
            if self._leave():
                await self.aclose()

    def classify(self, exc: BaseException) -> Failure:
        return classify(exc, self._overrides)

    def close(self) -> None:
        # The async client's connections belong to the event loop that used them, which may run in another
        # thread (a reload from sync code): they are closed on that loop, if it still runs.
        with self._lock:
            sync, self._sync = self._sync, None
            aclient, self._async = self._async, None
            loop, self._loop = self._loop, None
        if sync is not None:
            sync.close()
        if aclient is not None and loop is not None and loop.is_running():
            _close_on(loop, aclient)

    async def aclose(self) -> None:
        with self._lock:
            aclient, self._async = self._async, None
            self._loop = None
        if aclient is not None:
            await aclient.close()
        self.close()
