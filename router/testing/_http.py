"""A minimal HTTP/1.1 layer over asyncio streams: request parsing, responses, chunks, client-gone watch."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import struct
from dataclasses import dataclass
from email.utils import formatdate

from router.testing._pacing import Pacer

__all__ = ["Connection", "HttpError", "Request", "chunk", "response_head"]

_MAX_HEAD = 64 * 1024
_MAX_BODY = 64 * 1024 * 1024
_READ_SIZE = 64 * 1024
LAST_CHUNK = b"0\r\n\r\n"


class HttpError(Exception):
    """A malformed request: answer ``status`` and close the connection."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


@dataclass(frozen=True, slots=True)
class Request:
    """One parsed HTTP request."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes
    keep_alive: bool


def response_head(status: int, reason: str, headers: list[tuple[str, str]]) -> bytes:
    """Status line and headers, ending with the blank line."""
    lines = [f"HTTP/1.1 {status} {reason}", f"date: {formatdate(usegmt=True)}", "server: fake-anthropic"]
    lines.extend(f"{name}: {value}" for name, value in headers)
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def chunk(data: bytes) -> bytes:
    """``data`` as one chunk of a chunked body."""
    return b"%x\r\n%b\r\n" % (len(data), data)


class Connection:
    """One accepted TCP connection: buffered request reading and guarded writes."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        self.reader = reader
        self.writer = writer
        self._buf = bytearray()
        self._eof = False
        self._server_closed = False
        self.gone = asyncio.Event()  # set once the client is known to have closed or reset
        self._watch: asyncio.Task[None] | None = None
        self.pacer: Pacer | None = None  # set while a trickled response is being written
        sock = writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    # -- reading -------------------------------------------------------------------------------

    async def _fill(self) -> bool:
        """Read more bytes into the buffer; False on EOF."""
        if self._eof:
            return False
        try:
            data = await self.reader.read(_READ_SIZE)
        except (ConnectionError, OSError):
            data = b""
        if not data:
            self._eof = True
            self._client_left()
            return False
        self._buf += data
        return True

    async def _read_line_block(self, terminator: bytes, limit: int) -> bytes | None:
        while True:
            idx = self._buf.find(terminator)
            if idx >= 0:
                out = bytes(self._buf[:idx])
                del self._buf[: idx + len(terminator)]
                return out
            if len(self._buf) > limit:
                raise HttpError(431, "request header too large")
            if not await self._fill():
                return None

    async def _read_exactly(self, n: int) -> bytes:
        while len(self._buf) < n:
            if not await self._fill():
                raise HttpError(400, "incomplete request body")
        out = bytes(self._buf[:n])
        del self._buf[:n]
        return out

    async def read_request(self) -> Request | None:
        """The next request, or None if the client closed the connection between requests."""
        head = await self._read_line_block(b"\r\n\r\n", _MAX_HEAD)
        if head is None:
            if self._buf.strip():
                raise HttpError(400, "incomplete request head")
            return None
        lines = head.decode("latin-1").split("\r\n")
        while lines and not lines[0]:  # tolerate stray CRLF between requests
            lines.pop(0)
        parts = lines[0].split(" ") if lines else []
        if len(parts) != 3 or not parts[2].startswith("HTTP/1."):
            raise HttpError(400, "malformed request line")
        method, target, version = parts
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep or not name or name != name.strip():
                raise HttpError(400, "malformed header line")
            key = name.lower()
            headers[key] = f"{headers[key]}, {value.strip()}" if key in headers else value.strip()
        if headers.get("expect", "").lower() == "100-continue":
            self.writer.write(b"HTTP/1.1 100 Continue\r\n\r\n")
        body = await self._read_body(headers)
        connection = headers.get("connection", "").lower()
        keep_alive = "close" not in connection and (version == "HTTP/1.1" or "keep-alive" in connection)
        return Request(method, target.split("?", 1)[0], headers, body, keep_alive)

    async def _read_body(self, headers: dict[str, str]) -> bytes:
        if "chunked" in headers.get("transfer-encoding", "").lower():
            parts: list[bytes] = []
            total = 0
            while True:
                size_line = await self._read_line_block(b"\r\n", 1024)
                if size_line is None:
                    raise HttpError(400, "incomplete chunked body")
                try:
                    size = int(size_line.split(b";", 1)[0].strip(), 16)
                except ValueError:
                    raise HttpError(400, "malformed chunk size") from None
                if size == 0:
                    while await self._read_line_block(b"\r\n", _MAX_HEAD):  # trailers, then blank line
                        pass
                    return b"".join(parts)
                total += size
                if total > _MAX_BODY:
                    raise HttpError(413, "request body too large")
                parts.append(await self._read_exactly(size))
                await self._read_exactly(2)
        raw_length = headers.get("content-length", "0")
        try:
            length = int(raw_length)
        except ValueError:
            raise HttpError(400, "malformed content-length") from None
        if length < 0:
            raise HttpError(400, "malformed content-length")
        if length > _MAX_BODY:
            raise HttpError(413, "request body too large")
        return await self._read_exactly(length)

    # -- watching for the client leaving while we answer ---------------------------------------

    def start_watch(self) -> None:
        """Notice (via ``gone``) a client that closes while the response is being produced."""
        if self._watch is None and not self._eof:
            self._watch = asyncio.get_running_loop().create_task(self._watch_loop())

    async def _watch_loop(self) -> None:
        while await self._fill():
            if len(self._buf) > _MAX_HEAD:  # a client pipelining too much: stop reading
                return

    async def stop_watch(self) -> None:
        """Stop watching; bytes already read stay buffered for the next request."""
        task, self._watch = self._watch, None
        if task is not None and not task.done():
            task.cancel()
        if task is not None:
            with contextlib.suppress(asyncio.CancelledError):
                await task

    async def pause(self, seconds: float) -> bool:
        """Wait ``seconds`` unless the client leaves first; True if the client is gone."""
        if seconds > 0 and not self.gone.is_set():
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(self.gone.wait(), seconds)
        return self.gone.is_set()

    # -- writing ---------------------------------------------------------------------------------

    async def send(self, data: bytes) -> bool:
        """Write and flush ``data`` (in timed pieces while ``pacer`` is set); False if the client is gone."""
        pacer = self.pacer
        if pacer is None or not data:
            return await self._write(data)
        for piece, paced in pacer.pieces(data):
            if paced and await self.pause(pacer.wait()):
                return False
            if not await self._write(piece):
                return False
            if paced:
                pacer.sent()
        return True

    async def _write(self, data: bytes) -> bool:
        if self.gone.is_set() or self.writer.is_closing():
            self._client_left()
            return False
        try:
            self.writer.write(data)
            await self.writer.drain()
        except (ConnectionError, OSError):
            self._client_left()
            return False
        return True

    def _client_left(self) -> None:
        if not self._server_closed:
            self.gone.set()

    def close(self) -> None:
        """Close after flushing what was written (FIN)."""
        self._server_closed = True
        if not self.writer.is_closing():
            self.writer.close()

    def abort_with_rst(self) -> None:
        """Drop the connection with a TCP RST (SO_LINGER 0), discarding unsent data."""
        self._server_closed = True
        sock = self.writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.writer.transport.abort()

    def abort(self) -> None:
        """Drop the connection now (used at server shutdown)."""
        self._server_closed = True
        self.writer.transport.abort()
