"""Claude through the official anthropic SDK: one sync client, one async client per event loop, no SDK retries."""

from __future__ import annotations

import asyncio
import contextlib
import os
import threading
import weakref
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from typing import Any

import anthropic
from anthropic.types import Message, RawMessageStreamEvent

from ..budget import CURRENT
from ..outcome import Failure, Kind, WireError, classify
from ..policy import ModelConfig
from ..redact import scrub_exception
from ..reply import judge, usable
from .deadline import LIMITS, AsyncTransport, Transport
from .deadline import tls_context as _tls

_NO_KEY = ("no API key: set api_key: ${ANTHROPIC_API_KEY} on this model in the policy, or export "
           "ANTHROPIC_API_KEY before the Router is built")


_closing: set[object] = set()  # scheduled closes, kept referenced until they are done


def _keep(future: Any) -> None:
    _closing.add(future)
    future.add_done_callback(_closing.discard)


class _HttpClient(anthropic.DefaultHttpxClient):
    """The SDK's default sync HTTP client on our deadline transport (which also records each response head in
    the attempt's Budget); closed when dropped, as the SDK's own is."""

    def __init__(self) -> None:
        super().__init__(transport=Transport(_tls(), LIMITS), limits=LIMITS)

    def __del__(self) -> None:
        if not self.is_closed:
            with contextlib.suppress(Exception):
                self.close()


class _AsyncHttpClient(anthropic.DefaultAsyncHttpxClient):
    """The async twin. Its connections belong to one event loop; dropped inside that loop, it closes them."""

    def __init__(self) -> None:
        super().__init__(transport=AsyncTransport(_tls(), LIMITS), limits=LIMITS)
        self.loop: asyncio.AbstractEventLoop | None = None

    def __del__(self) -> None:
        if self.is_closed:
            return
        with contextlib.suppress(Exception):
            loop = asyncio.get_running_loop()
            if loop is self.loop:
                _keep(loop.create_task(self.aclose()))


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


_live: weakref.WeakSet[AnthropicProvider] = weakref.WeakSet()
_inherited: list[object] = []  # a forked child's copies of its parent's clients: never used, never closed


def _after_fork_in_child() -> None:
    # Pooled keep-alive sockets are shared with the parent after fork(): a child that reused one would
    # read the parent's answers. Closing them here could disturb the parent's connections, so the child
    # keeps its copies untouched and builds its own clients.
    for provider in list(_live):
        provider._abandon_clients()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)


class AnthropicProvider:
    """Calls one Claude model. The sync client is built with the provider, so the first call to a fallback
    does not pay for it; an async client is built per event loop (one is made ready up front)."""

    def __init__(self, config: ModelConfig) -> None:
        self.config = config
        self._overrides = config.outcomes
        t = config.timeout
        self._timeout = anthropic.Timeout(t.read, connect=t.connect)
        self._idle_timeout = anthropic.Timeout(t.stream_idle, connect=t.connect)
        self._lock = threading.Lock()
        self._sync: anthropic.Anthropic | None = None
        self._async: anthropic.AsyncAnthropic | None = None  # the client of the loop used last
        self._async_loop: asyncio.AbstractEventLoop | None = None
        self._by_loop: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, anthropic.AsyncAnthropic] = (
            weakref.WeakKeyDictionary()
        )
        self._spare: anthropic.AsyncAnthropic | None = None  # built up front, taken by the first loop
        self._inflight = 0  # calls and streams under way: a retired provider closes when this reaches 0
        self._retired = False
        with self._lock:
            self._sync = self._build_sync()
            self._spare = self._build_async()
        _live.add(self)

    def __repr__(self) -> str:
        return f"AnthropicProvider({self.config.alias!r}, model={self.config.model!r})"

    # -- clients --------------------------------------------------------------------------------------

    def _client_kwargs(self) -> dict[str, Any]:
        kwargs: dict[str, Any] = {"max_retries": 0, "timeout": self._timeout}
        if self.config.api_key is not None:
            kwargs["api_key"] = self.config.api_key.reveal()
        if self.config.base_url is not None:
            kwargs["base_url"] = self.config.base_url
        return kwargs

    def _build_sync(self) -> anthropic.Anthropic:
        return anthropic.Anthropic(**self._client_kwargs(), http_client=_HttpClient())

    def _build_async(self) -> anthropic.AsyncAnthropic:
        return anthropic.AsyncAnthropic(**self._client_kwargs(), http_client=_AsyncHttpClient())

    def _enter(self) -> anthropic.Anthropic:
        """Count a call in and hand it the client, under one lock, so a retire() cannot close it under us."""
        with self._lock:
            self._inflight += 1
            client = self._sync
            if client is None:
                client = self._sync = self._build_sync()
            return client

    def _aenter(self) -> anthropic.AsyncAnthropic:
        loop = asyncio.get_running_loop()
        with self._lock:
            self._inflight += 1
            if self._async_loop is loop and self._async is not None:
                return self._async
            client = self._by_loop.get(loop)
            if client is None:
                client, self._spare = self._spare or self._build_async(), None
                http = client._client
                if isinstance(http, _AsyncHttpClient):
                    http.loop = loop
                self._by_loop[loop] = client
            self._async, self._async_loop = client, loop
            return client

    def _leave(self) -> bool:
        """True when this was the last call of a retired provider: it is to be closed now."""
        with self._lock:
            self._inflight -= 1
            return self._retired and self._inflight == 0

    def _detach(self) -> tuple[anthropic.Anthropic | None, list[tuple[asyncio.AbstractEventLoop, Any]]]:
        with self._lock:
            sync, self._sync = self._sync, None
            clients = list(self._by_loop.items())
            self._by_loop = weakref.WeakKeyDictionary()
            self._async = self._async_loop = self._spare = None
        return sync, clients

    def _abandon_clients(self) -> None:
        self._lock = threading.Lock()  # first: a lock held by another thread at fork() stays held in the child
        self._inflight = 0
        sync, clients = self._detach()
        _inherited.extend([sync, *clients])

    def retire(self) -> None:
        """A reload replaced this provider: close it once its calls in flight are done."""
        with self._lock:
            self._retired = True
            idle = self._inflight == 0
        if idle:
            self.close()

    # -- calls ----------------------------------------------------------------------------------------

    def _timeout_for(self, budget: float) -> anthropic.Timeout:
        t = self.config.timeout
        if budget >= t.read:
            return self._timeout
        return anthropic.Timeout(budget, connect=min(t.connect, budget))

    # call() and acall() run on every request: what _enter / _timeout_for / _leave / _judged do is spelled out
    # in them (the same steps, under the same lock), since each Python call costs more between SDK calls, with
    # the CPU caches cold, than its few lines suggest.

    def call(self, params: Mapping[str, Any], timeout: float) -> Message:
        with self._lock:  # _enter()
            self._inflight += 1
            client = self._sync
            if client is None:
                client = self._sync = self._build_sync()
        try:
            config = self.config
            reply = client.messages.create(
                model=config.model,
                timeout=self._timeout if timeout >= config.timeout.read else self._timeout_for(timeout),
                **params,
            )
        finally:
            with self._lock:  # _leave()
                self._inflight -= 1
                last = self._retired and self._inflight == 0
            if last:
                self.close()
        return reply if usable(reply) else _judged(reply)

    async def acall(self, params: Mapping[str, Any], timeout: float) -> Message:
        client = self._aenter()
        try:
            config = self.config
            reply = await client.messages.create(
                model=config.model,
                timeout=self._timeout if timeout >= config.timeout.read else self._timeout_for(timeout),
                **params,
            )
        finally:
            with self._lock:  # _leave()
                self._inflight -= 1
                last = self._retired and self._inflight == 0
            if last:
                await self.aclose()
        return reply if usable(reply) else _judged(reply)

    def _stream_timeout(self, budget: float) -> anthropic.Timeout:
        # Between stream events the socket read timeout is the idle limit: a stall raises ReadTimeout.
        t = self.config.timeout
        if budget >= t.stream_idle and budget >= t.connect:
            return self._idle_timeout
        return anthropic.Timeout(min(t.stream_idle, budget), connect=min(t.connect, budget))

    @contextmanager
    def stream(self, params: Mapping[str, Any], timeout: float) -> Iterator[Iterable[RawMessageStreamEvent]]:
        client = self._enter()
        try:
            events = client.messages.create(
                model=self.config.model, stream=True, timeout=self._stream_timeout(timeout), **params
            )
            try:
                _check_event_stream(events)
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
        client = self._aenter()
        try:
            events = await client.messages.create(
                model=self.config.model, stream=True, timeout=self._stream_timeout(timeout), **params
            )
            try:
                _check_event_stream(events)
                yield events
            finally:
                await events.close()
        finally:
            if self._leave():
                await self.aclose()

    def classify(self, exc: BaseException) -> Failure:
        if isinstance(exc, TypeError) and self._lacks_credentials():
            return Failure(Kind.ACCOUNT, None, "missing_credentials", None, exc, note=_NO_KEY)
        key = self._key()
        if key:
            scrub_exception(exc, (key,))  # first: what the failure records is read from the exception
        return classify(exc, self._overrides)

    def _key(self) -> str | None:
        if self.config.api_key is not None:
            return self.config.api_key.reveal()
        client = self._sync
        return client.api_key if client is not None else os.environ.get("ANTHROPIC_API_KEY")

    def _lacks_credentials(self) -> bool:
        client = self._sync or self._build_sync()
        return not client.api_key and not client.auth_token

    # -- closing --------------------------------------------------------------------------------------

    def close(self) -> None:
        # The async clients' connections belong to the event loops that used them, which may run in other
        # threads (a reload from sync code): each is closed on its loop if that loop still runs.
        sync, clients = self._detach()
        if sync is not None:
            sync.close()
        for loop, aclient in clients:
            if loop.is_running():
                _close_on(loop, aclient)

    async def aclose(self) -> None:
        here = asyncio.get_running_loop()
        sync, clients = self._detach()
        if sync is not None:
            sync.close()
        for loop, aclient in clients:
            if loop is here:
                await aclient.close()
            elif loop.is_running():
                _close_on(loop, aclient)


def _judged(reply: object) -> Message:
    if usable(reply):  # the success path: what the head said is only needed to describe a refusal
        return reply
    budget = CURRENT.get()
    if budget is None:
        return judge(reply, None, None, None)
    headers = budget.headers
    content_type = headers.get("content-type") if headers is not None else None
    return judge(reply, budget.status, content_type, budget.request_id)


def _check_event_stream(events: Any) -> None:
    """A 2xx to a streaming request must be an event stream; an HTML page or JSON body is refused here."""
    response = getattr(events, "response", None)
    content_type = response.headers.get("content-type", "") if response is not None else "text/event-stream"
    if "text/event-stream" not in content_type.lower():
        status = response.status_code if response is not None else 200
        shown = content_type.split(";", 1)[0].strip() or "no content-type"
        request_id = response.headers.get("request-id") if response is not None else None
        raise WireError(f"{status} with a {shown} body to a streaming request, not an event stream",
                        status=status, request_id=request_id)
