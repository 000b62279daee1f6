"""An HTTP transport whose every socket connect, read and write ends by the attempt's `Budget`.

httpx's timeouts are per operation: a server that sends one byte a second, or one SSE event now and
then, never trips them. The transport the Anthropic clients use has a network backend that shortens
every socket operation's timeout to what is left of the current attempt's budget. The transport records
what the head said (status, headers), so an attempt whose body later fails keeps its request id.
"""

from __future__ import annotations

import asyncio
import functools
import socket
import ssl
from collections.abc import AsyncIterator, Iterable, Iterator
from typing import Any, cast

import anyio
import anyio.abc
import httpcore2
import httpx2

# A fast path reads and writes the socket of httpcore2's own streams directly. Their classes are private:
# if a release moves them, the streams below fall back to httpcore2's public stream methods (slower, the
# same behaviour) instead of failing at import.
try:
    from httpcore2._backends.anyio import AnyIOStream as _AnyIOStream
except ImportError:  # pragma: no cover - depends on the httpcore2 release
    _AnyIOStream = None  # type: ignore[assignment,misc]
try:
    from httpcore2._backends.sync import SyncStream as _SocketStream
except ImportError:  # pragma: no cover
    _SocketStream = None  # type: ignore[assignment,misc]

from ..budget import CURRENT

# Keep-alive probes as the SDK's default client sets them, so idle pooled connections are noticed.
_SOCKET_OPTIONS: list[tuple[int, int, int]] = [(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)]
for _name, _value in (("TCP_KEEPINTVL", 60), ("TCP_KEEPCNT", 5), ("TCP_KEEPIDLE", 60)):
    if hasattr(socket, _name):
        _SOCKET_OPTIONS.append((socket.IPPROTO_TCP, getattr(socket, _name), _value))


#: The connection limits of the SDKs' default clients.
LIMITS = httpx2.Limits(max_connections=1000, max_keepalive_connections=100, keepalive_expiry=5.0)


@functools.cache
def tls_context() -> ssl.SSLContext:
    """One TLS context for every client: building one reads the CA store, which takes tens of ms."""
    return httpx2.create_ssl_context()  # what the SDKs' own default clients build (honours SSL_CERT_FILE/DIR)


def _bound(timeout: float | None, error: type[Exception]) -> float | None:
    budget = CURRENT.get()
    return timeout if budget is None else budget.bound(timeout, error)


def on_response(response: httpx2.Response) -> None:
    """httpx response hook: the head has arrived (runs before the body is read). The transports below record
    the head themselves; this is for clients on other transports."""
    budget = CURRENT.get()
    if budget is not None:
        budget.status = response.status_code
        budget.headers = response.headers


async def on_response_async(response: httpx2.Response) -> None:
    on_response(response)


def _translated(exc: Exception) -> Exception | None:
    """The httpx2 exception of the same name for an httpcore2 one, as httpx2's own transport raises them;
    None for any other exception (to be re-raised as it is)."""
    if type(exc).__module__.split(".", 1)[0] != "httpcore2":
        return None
    mapped = getattr(httpx2, type(exc).__name__, None)
    if not (isinstance(mapped, type) and issubclass(mapped, httpx2.TransportError)):
        mapped = httpx2.TransportError
    error: Exception = mapped(str(exc))
    return error


# -- sync -------------------------------------------------------------------------------------------


class _Stream(httpcore2.NetworkStream):
    """A network stream whose every read and write is bounded by the attempt's Budget. On httpcore2's own
    socket stream (plain or TLS) it reads and writes the socket itself, exactly as that stream does, so a
    socket operation costs one Python frame instead of three plus a context manager."""

    def __init__(self, inner: httpcore2.NetworkStream) -> None:
        self._inner = inner
        self._sock: socket.socket | None = inner.get_extra_info("socket") if type(inner) is _SocketStream else None

    def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        budget = CURRENT.get()
        if budget is not None:
            timeout = budget.bound(timeout, httpcore2.ReadTimeout)
        sock = self._sock
        if sock is None:
            return self._inner.read(max_bytes, timeout)
        try:  # httpcore2's SyncStream.read, with its exception map spelled out
            sock.settimeout(timeout)
            return sock.recv(max_bytes)
        except TimeoutError as exc:  # socket.timeout
            raise httpcore2.ReadTimeout(exc) from exc
        except OSError as exc:
            raise httpcore2.ReadError(exc) from exc

    def write(self, buffer: bytes, timeout: float | None = None) -> None:
        budget = CURRENT.get()
        if budget is not None:
            timeout = budget.bound(timeout, httpcore2.WriteTimeout)
        sock = self._sock
        if sock is None:
            self._inner.write(buffer, timeout)
            return
        if not buffer:
            return
        try:  # httpcore2's SyncStream.write, with its exception map spelled out
            view = memoryview(buffer)
            while view:
                sock.settimeout(timeout)
                n = sock.send(view)
                view = view[n:]
        except TimeoutError as exc:  # socket.timeout
            raise httpcore2.WriteTimeout(exc) from exc
        except OSError as exc:
            raise httpcore2.WriteError(exc) from exc

    def close(self) -> None:
        self._inner.close()

    def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore2.NetworkStream:
        inner = self._inner.start_tls(ssl_context, server_hostname, _bound(timeout, httpcore2.ConnectTimeout))
        return _Stream(inner)

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _Backend(httpcore2.NetworkBackend):
    def __init__(self) -> None:
        self._inner = httpcore2.SyncBackend()

    def connect_tcp(
        self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore2.NetworkStream:
        bounded = _bound(timeout, httpcore2.ConnectTimeout)
        return _Stream(self._inner.connect_tcp(host, port, bounded, local_address, socket_options))

    def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore2.NetworkStream:
        bounded = _bound(timeout, httpcore2.ConnectTimeout)
        return _Stream(self._inner.connect_unix_socket(path, bounded, socket_options))

    def sleep(self, seconds: float) -> None:
        self._inner.sleep(seconds)


def _core_request(request: httpx2.Request) -> httpcore2.Request:
    url = request.url
    return httpcore2.Request(
        method=request.method,
        url=httpcore2.URL(scheme=url.raw_scheme, host=url.raw_host, port=url.port, target=url.raw_path),
        headers=request.headers.raw,
        content=request.stream,
        extensions=request.extensions,
    )


class _Body(httpx2.SyncByteStream):
    def __init__(self, inner: Iterable[bytes]) -> None:
        self._inner = inner

    def __iter__(self) -> Iterator[bytes]:
        try:
            yield from self._inner
        except Exception as exc:
            mapped = _translated(exc)
            if mapped is None:
                raise
            raise mapped from exc

    def close(self) -> None:
        close = getattr(self._inner, "close", None)
        if close is not None:
            try:
                close()
            except Exception as exc:
                mapped = _translated(exc)
                if mapped is None:
                    raise
                raise mapped from exc


class Transport(httpx2.BaseTransport):
    """httpx2's HTTP/1.1 transport, on a network backend that honours the attempt's Budget."""

    def __init__(self, ssl_context: ssl.SSLContext, limits: httpx2.Limits) -> None:
        self._pool = httpcore2.ConnectionPool(
            ssl_context=ssl_context,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            socket_options=_SOCKET_OPTIONS,
            network_backend=_Backend(),
        )

    def handle_request(self, request: httpx2.Request) -> httpx2.Response:
        try:
            resp = self._pool.handle_request(_core_request(request))
        except Exception as exc:
            mapped = _translated(exc)
            if mapped is None:
                raise
            raise mapped from exc
        stream = cast("Iterable[bytes]", resp.stream)  # a sync pool's (httpx2's own transport asserts it)
        response = httpx2.Response(resp.status, headers=resp.headers, stream=_Body(stream), extensions=resp.extensions)
        budget = CURRENT.get()
        if budget is not None:  # the head has arrived: what it said outlives a body that fails later
            budget.status = response.status_code
            budget.headers = response.headers
        return response

    def close(self) -> None:
        self._pool.close()


# -- async ------------------------------------------------------------------------------------------


#: asyncio's own timeout scope (3.11+): on asyncio it bounds an await as anyio.fail_after does, for under half
#: its cost per socket operation. None before 3.11: then httpcore2's anyio stream bounds each operation itself.
_asyncio_timeout = getattr(asyncio, "timeout", None)


class _AsyncStream(httpcore2.AsyncNetworkStream):
    """The async twin of `_Stream`. On httpcore2's anyio stream (plain or TLS) it reads and writes that stream's
    anyio byte stream itself, as httpcore2's does, with the same exceptions, but under asyncio's timeout scope
    instead of anyio's fail_after (the router's async API runs on asyncio only)."""

    def __init__(self, inner: httpcore2.AsyncNetworkStream) -> None:
        self._inner = inner
        self._stream: anyio.abc.ByteStream | None = (
            inner._stream if _asyncio_timeout is not None and type(inner) is _AnyIOStream else None
        )

    async def read(self, max_bytes: int, timeout: float | None = None) -> bytes:
        budget = CURRENT.get()
        if budget is not None:
            timeout = budget.bound(timeout, httpcore2.ReadTimeout)
        stream = self._stream
        if stream is None or _asyncio_timeout is None:  # (the second: for mypy; never true with a stream)
            return await self._inner.read(max_bytes, timeout)
        try:  # httpcore2's AnyIOStream.read, with its exception map spelled out
            async with _asyncio_timeout(timeout):
                try:
                    return await stream.receive(max_bytes=max_bytes)
                except anyio.EndOfStream:
                    return b""
        except TimeoutError as exc:
            raise httpcore2.ReadTimeout(exc) from exc
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, anyio.EndOfStream) as exc:
            raise httpcore2.ReadError(exc) from exc

    async def write(self, buffer: bytes, timeout: float | None = None) -> None:
        budget = CURRENT.get()
        if budget is not None:
            timeout = budget.bound(timeout, httpcore2.WriteTimeout)
        stream = self._stream
        if stream is None or _asyncio_timeout is None:  # (the second: for mypy; never true with a stream)
            await self._inner.write(buffer, timeout)
            return
        if not buffer:
            return
        try:  # httpcore2's AnyIOStream.write, with its exception map spelled out
            async with _asyncio_timeout(timeout):
                await stream.send(item=buffer)
        except TimeoutError as exc:
            raise httpcore2.WriteTimeout(exc) from exc
        except (anyio.BrokenResourceError, anyio.ClosedResourceError, anyio.EndOfStream) as exc:
            raise httpcore2.WriteError(exc) from exc

    async def aclose(self) -> None:
        await self._inner.aclose()

    async def start_tls(
        self, ssl_context: ssl.SSLContext, server_hostname: str | None = None, timeout: float | None = None
    ) -> httpcore2.AsyncNetworkStream:
        bounded = _bound(timeout, httpcore2.ConnectTimeout)
        return _AsyncStream(await self._inner.start_tls(ssl_context, server_hostname, bounded))

    def get_extra_info(self, info: str) -> Any:
        return self._inner.get_extra_info(info)


class _AsyncBackend(httpcore2.AsyncNetworkBackend):
    def __init__(self) -> None:
        self._inner = httpcore2.AnyIOBackend()

    async def connect_tcp(
        self, host: str, port: int, timeout: float | None = None, local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore2.AsyncNetworkStream:
        bounded = _bound(timeout, httpcore2.ConnectTimeout)
        return _AsyncStream(await self._inner.connect_tcp(host, port, bounded, local_address, socket_options))

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore2.AsyncNetworkStream:
        bounded = _bound(timeout, httpcore2.ConnectTimeout)
        return _AsyncStream(await self._inner.connect_unix_socket(path, bounded, socket_options))

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class _AsyncBody(httpx2.AsyncByteStream):
    def __init__(self, inner: Any) -> None:
        self._inner = inner

    async def __aiter__(self) -> AsyncIterator[bytes]:
        try:
            async for part in self._inner:
                yield part
        except Exception as exc:
            mapped = _translated(exc)
            if mapped is None:
                raise
            raise mapped from exc

    async def aclose(self) -> None:
        close = getattr(self._inner, "aclose", None)
        if close is not None:
            try:
                await close()
            except Exception as exc:
                mapped = _translated(exc)
                if mapped is None:
                    raise
                raise mapped from exc


class AsyncTransport(httpx2.AsyncBaseTransport):
    """The async twin of `Transport`."""

    def __init__(self, ssl_context: ssl.SSLContext, limits: httpx2.Limits) -> None:
        self._pool = httpcore2.AsyncConnectionPool(
            ssl_context=ssl_context,
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            socket_options=_SOCKET_OPTIONS,
            network_backend=_AsyncBackend(),
        )

    async def handle_async_request(self, request: httpx2.Request) -> httpx2.Response:
        try:
            resp = await self._pool.handle_async_request(_core_request(request))
        except Exception as exc:
            mapped = _translated(exc)
            if mapped is None:
                raise
            raise mapped from exc
        response = httpx2.Response(
            resp.status, headers=resp.headers, stream=_AsyncBody(resp.stream), extensions=resp.extensions
        )
        budget = CURRENT.get()
        if budget is not None:  # the head has arrived (see Transport)
            budget.status = response.status_code
            budget.headers = response.headers
        return response

    async def aclose(self) -> None:
        await self._pool.aclose()
