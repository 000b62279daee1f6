"""Fault: what the fake server does with one request (success, error status, reset, stall, hostile wire...)."""

from __future__ import annotations

import dataclasses
import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

from router.testing._values import DEFAULT_ERROR_TYPES, header_pairs, positive, split_words
from router.testing._values import after as _after
from router.testing._values import deltas as _deltas
from router.testing._values import seconds as _seconds

__all__ = ["DEFAULT_ERROR_TYPES", "DripPhase", "Fault", "FaultKind", "SseEnd", "TricklePhase", "split_words"]

FaultKind = Literal[
    "ok",
    "status",
    "html",
    "reset",
    "hang",
    "stream_error",
    "stream_cut",
    "stream_stall",
    "stream_no_stop",
    "raw",
    "trickle",
    "drip",
    "echo_headers",
    "sse",
]
TricklePhase = Literal["all", "head", "body"]
DripPhase = Literal["head", "body", "sse", "ping"]
SseEnd = Literal["done", "cut", "stall"]

_DEFAULT_STALL_SECONDS = 60.0


@dataclass(frozen=True, slots=True)
class Fault:
    """One scripted response. Build it with the class-method constructors, e.g. ``Fault.status(529)``.

    ``after`` (stream faults) counts text deltas sent before the fault; when the text has fewer
    deltas than ``after``, all of them are sent and then the fault plays.
    """

    kind: FaultKind = "ok"
    text: str | None = None
    deltas: tuple[str, ...] | None = None
    delay: float = 0.0
    delta_delay: float = 0.0
    stop_reason: str = "end_turn"
    input_tokens: int | None = None
    output_tokens: int | None = None
    status_code: int = 200
    error_type: str | None = None
    message: str | None = None
    retry_after: float | None = None
    retry_after_ms: float | None = None
    should_retry: bool | None = None
    error_code: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    seconds: float = 0.0
    after: int = 0
    tool_use: tuple[str, str] | None = None  # (tool name, input as JSON): a tool call after the text
    # The hostile-wire faults (raw, trickle, drip, sse): see their constructors.
    body: bytes = b""
    length: int | Literal["auto"] | None = "auto"
    inner: Fault | None = None
    rate: float = 0.0
    chunk: int = 1
    phase: TricklePhase | DripPhase = "all"
    interval: float = 0.0
    events: tuple[tuple[str, str], ...] = ()  # (event name or "", data line as sent)
    end: SseEnd = "done"

    # -- constructors ------------------------------------------------------------------------

    @classmethod
    def ok(
        cls,
        text: str | None = None,
        deltas: Sequence[str] | None = None,
        delay: float = 0.0,
        delta_delay: float = 0.0,
        stop_reason: str = "end_turn",
        input_tokens: int | None = None,
        output_tokens: int | None = None,
        tool_use: tuple[str, Mapping[str, Any]] | None = None,
    ) -> Fault:
        """A success: JSON message, or a complete SSE stream when the request streams.

        ``tool_use=(name, input)`` adds a tool call after the text and makes the stop reason
        ``tool_use`` (``tool_calls`` on the OpenAI endpoint; streamed tool calls: Anthropic endpoint only).
        """
        tool = (tool_use[0], json.dumps(dict(tool_use[1]))) if tool_use is not None else None
        if tool is not None and stop_reason == "end_turn":
            stop_reason = "tool_use"
        return cls(
            tool_use=tool,
            kind="ok",
            text=text,
            deltas=_deltas(deltas),
            delay=_seconds("delay", delay),
            delta_delay=_seconds("delta_delay", delta_delay),
            stop_reason=stop_reason,
            input_tokens=input_tokens,
            output_tokens=output_tokens,
        )

    @classmethod
    def status(
        cls,
        code: int,
        *,
        error_type: str | None = None,
        message: str | None = None,
        retry_after: float | None = None,
        retry_after_ms: float | None = None,
        should_retry: bool | None = None,
        error_code: str | None = None,
        headers: Mapping[str, str] | None = None,
        delay: float = 0.0,
    ) -> Fault:
        """An HTTP error with the real error body and headers (``request-id``, ``retry-after``,
        ``retry-after-ms``, ``x-should-retry``, plus ``headers``)."""
        if not 400 <= code <= 599:
            raise ValueError(f"status code must be 4xx or 5xx, got {code}")
        fallback = "api_error" if code >= 500 else "invalid_request_error"
        etype = error_type or DEFAULT_ERROR_TYPES.get(code, fallback)
        return cls(
            kind="status",
            status_code=code,
            error_type=etype,
            message=message,
            retry_after=retry_after,
            retry_after_ms=retry_after_ms,
            should_retry=should_retry,
            error_code=error_code,
            headers=tuple((k.lower(), v) for k, v in (headers or {}).items()),
            delay=_seconds("delay", delay),
        )

    @classmethod
    def html(cls, code: int = 502) -> Fault:
        """An nginx-like HTML error page (``text/html``, no ``request-id``)."""
        return cls(kind="html", status_code=code)

    @classmethod
    def reset(cls, delay: float = 0.0) -> Fault:
        """Read the request, then abort the TCP connection with RST and no response."""
        return cls(kind="reset", delay=_seconds("delay", delay))

    @classmethod
    def hang(cls, seconds: float) -> Fault:
        """Read the request and send nothing for ``seconds``, then close the connection."""
        return cls(kind="hang", seconds=_seconds("seconds", seconds))

    @classmethod
    def stream_error(
        cls,
        after: int = 2,
        error_type: str = "overloaded_error",
        message: str | None = None,
        text: str | None = None,
        deltas: Sequence[str] | None = None,
        delay: float = 0.0,
        delta_delay: float = 0.0,
    ) -> Fault:
        """A 200 SSE stream that sends an ``error`` event after ``after`` deltas (0: as the first event).

        On a non-streaming request: the status error for ``error_type`` (529 if overloaded, else 500).
        """
        return cls._stream(
            "stream_error", after, text, deltas, delay, delta_delay,
            error_type=error_type, message=message, status_code=529 if error_type == "overloaded_error" else 500,
        )

    @classmethod
    def stream_cut(
        cls,
        after: int = 2,
        text: str | None = None,
        deltas: Sequence[str] | None = None,
        delay: float = 0.0,
        delta_delay: float = 0.0,
    ) -> Fault:
        """After ``after`` deltas, close the connection mid-body (chunked body left unterminated).

        On a non-streaming request: like :meth:`reset`.
        """
        return cls._stream("stream_cut", after, text, deltas, delay, delta_delay)

    @classmethod
    def stream_stall(
        cls,
        after: int = 2,
        seconds: float = _DEFAULT_STALL_SECONDS,
        text: str | None = None,
        deltas: Sequence[str] | None = None,
        delay: float = 0.0,
        delta_delay: float = 0.0,
    ) -> Fault:
        """After ``after`` deltas, send nothing for ``seconds``, then close (body unterminated).

        On a non-streaming request: like :meth:`hang`.
        """
        return cls._stream(
            "stream_stall", after, text, deltas, delay, delta_delay, seconds=_seconds("seconds", seconds)
        )

    @classmethod
    def stream_no_stop(
        cls,
        after: int = 2,
        text: str | None = None,
        deltas: Sequence[str] | None = None,
        delay: float = 0.0,
        delta_delay: float = 0.0,
    ) -> Fault:
        """After ``after`` deltas, end the body cleanly without the closing events.

        Anthropic: no ``content_block_stop`` / ``message_delta`` / ``message_stop``; OpenAI: no
        ``finish_reason`` and no ``[DONE]``. On a non-streaming request: like :meth:`ok`.
        """
        return cls._stream("stream_no_stop", after, text, deltas, delay, delta_delay)

    @classmethod
    def _stream(
        cls, kind: FaultKind, after: int, text: str | None, deltas: Sequence[str] | None, delay: float,
        delta_delay: float, **extra: Any,
    ) -> Fault:
        """The fields every stream fault shares, checked once."""
        return cls(
            kind=kind,
            after=_after(after),
            text=text,
            deltas=_deltas(deltas),
            delay=_seconds("delay", delay),
            delta_delay=_seconds("delta_delay", delta_delay),
            **extra,
        )

    # -- the hostile wire ---------------------------------------------------------------------

    @classmethod
    def raw(
        cls,
        status: int = 200,
        body: bytes | str = b"",
        headers: Mapping[str, str] | None = None,
        *,
        length: int | Literal["auto"] | None = "auto",
        delay: float = 0.0,
    ) -> Fault:
        """Exactly this status line, these headers and these body bytes (a str is UTF-8 encoded).

        No content-type unless ``headers`` has one (header names are sent as given), no ``date`` or
        ``server``; ``request-id: req_fake_N`` (and ``x-request-id`` on the OpenAI endpoint) is added
        unless ``headers`` names it. ``length="auto"``: ``content-length: len(body)`` (unless ``headers``
        names one; even on a 204); an int: that ``content-length`` as is (larger than the body: a
        truncated body, then the connection is closed); None: no content-length and no chunking, the
        body then close (read until EOF). Never adds ``transfer-encoding``. The connection is kept
        alive only when the server's own framing was exact. Same bytes on both endpoints, streaming
        or not.
        """
        if not 200 <= status <= 599:
            raise ValueError(f"status must be 200..599, got {status}")
        if isinstance(length, int) and length < 0:
            raise ValueError(f"length must be >= 0, got {length}")
        data = body.encode() if isinstance(body, str) else bytes(body)
        return cls(
            kind="raw", status_code=status, body=data, headers=header_pairs(headers), length=length,
            delay=_seconds("delay", delay),
        )

    @classmethod
    def trickle(
        cls, inner: Fault | None = None, *, rate: float, chunk: int = 1, phase: TricklePhase = "all"
    ) -> Fault:
        """Play ``inner`` (default :meth:`ok`) exactly as usual, but write its bytes in pieces of
        ``chunk`` bytes at ``rate`` bytes per second: a pause of ``chunk / rate`` s before each piece
        but the first. A piece never spans two of the server's writes (e.g. two SSE events) nor the
        end of the head, so some pieces are shorter: no byte is ever held back.

        ``phase="head"``: only the status line and headers are trickled, the body goes at full speed;
        ``"body"``: the head at full speed, then the body (JSON, chunked SSE...) trickled; ``"all"``:
        both. Any fault can be trickled (stream faults too; a trickle inside a trickle: the inner
        pace wins). Stops at once when the client leaves (counted in ``disconnects``) or the server stops.
        """
        if chunk < 1:
            raise ValueError(f"chunk must be >= 1, got {chunk}")
        if phase not in ("all", "head", "body"):
            raise ValueError(f"phase must be 'all', 'head' or 'body', got {phase!r}")
        return cls(
            kind="trickle", inner=inner if inner is not None else cls.ok(), rate=positive("rate", rate),
            chunk=chunk, phase=phase,
        )

    @classmethod
    def drip(cls, interval: float, *, phase: DripPhase, seconds: float = 30.0) -> Fault:
        """A response that never finishes: one unit every ``interval`` until ``seconds`` have passed
        (then the connection is closed) or the client leaves (counted in ``disconnects``).

        ``"head"``: ``HTTP/1.1 200 OK``, ``request-id``, then ``x-pad: `` and one byte per interval (the
        head never ends); ``"body"``: a complete JSON head with ``content-length: 1000000``, then one
        space per interval; ``"sse"``: an event stream with ``message_start`` and
        ``content_block_start`` at once, then one ``"a "`` text delta per interval (OpenAI: a role
        chunk, then one content chunk per interval), never the end (on a non-streaming request:
        like ``"body"``); ``"ping"``: an event stream of only ``event: ping`` events (OpenAI: ``: ping``
        comment lines), streaming request or not.
        """
        if phase not in ("head", "body", "sse", "ping"):
            raise ValueError(f"phase must be 'head', 'body', 'sse' or 'ping', got {phase!r}")
        return cls(
            kind="drip", interval=positive("interval", interval), phase=phase,
            seconds=_seconds("seconds", seconds),
        )

    @classmethod
    def echo_headers(cls, code: int = 400, *, error_type: str | None = None) -> Fault:
        """Like :meth:`status`, but ``error.message`` lists every request header the server received as
        ``name: value`` pairs (``x-api-key`` and ``authorization`` included): a server that echoes the
        caller's credentials into its error text. Both endpoints."""
        return dataclasses.replace(cls.status(code, error_type=error_type), kind="echo_headers")

    @classmethod
    def sse(
        cls,
        events: Sequence[tuple[str, str | Mapping[str, Any]]],
        *,
        end: SseEnd = "done",
        interval: float = 0.0,
        stall: float = _DEFAULT_STALL_SECONDS,
        status: int = 200,
        headers: Mapping[str, str] | None = None,
    ) -> Fault:
        """A chunked ``text/event-stream`` response (with ``request-id``) of exactly these events,
        ``interval`` seconds apart, whether or not the request asked to stream.

        Each ``(name, data)`` is sent as ``event: {name}\ndata: {data}\n\n``: a mapping as compact
        JSON, a str verbatim (malformed JSON, ``[DONE]``...); an empty name sends no ``event:`` line.
        ``headers`` are added (a name given there replaces the server's own, e.g. ``content-type``).
        ``end="done"``: the chunked body ends cleanly; ``"cut"``: the connection is closed with the body
        unterminated; ``"stall"``: nothing more for ``stall`` seconds (or until the client leaves), then
        cut. See :func:`router.testing.anthropic_events` for a well-formed Anthropic stream to cut.
        """
        if not 200 <= status <= 599:
            raise ValueError(f"status must be 200..599, got {status}")
        if end not in ("done", "cut", "stall"):
            raise ValueError(f"end must be 'done', 'cut' or 'stall', got {end!r}")
        encoded = tuple((str(name), _sse_data(data)) for name, data in events)
        return cls(
            kind="sse", events=encoded, end=end, interval=_seconds("interval", interval),
            seconds=_seconds("stall", stall), status_code=status, headers=header_pairs(headers),
        )

    # -- helpers used by the server -----------------------------------------------------------

    def with_tool_use(self, name: str, tool_input: Mapping[str, Any]) -> Fault:
        """This fault with a tool call after the text; a stream fault's ``after`` then counts the tool
        input's three pieces too, so ``Fault.stream_cut(after=1, text="").with_tool_use(...)`` breaks
        inside the tool_use block."""
        stop_reason = "tool_use" if self.stop_reason == "end_turn" else self.stop_reason
        return dataclasses.replace(self, tool_use=(name, json.dumps(dict(tool_input))), stop_reason=stop_reason)

    def text_for(self, model: str) -> str:
        """The full response text for ``model``."""
        if self.text is not None:
            return self.text
        if self.deltas is not None:
            return "".join(self.deltas)
        return f"Hello from {model}"

    def deltas_for(self, model: str) -> tuple[str, ...]:
        """The text_delta chunks the stream sends for ``model``."""
        if self.deltas is not None:
            return self.deltas
        return split_words(self.text_for(model))



def _sse_data(data: str | Mapping[str, Any]) -> str:
    if isinstance(data, str):
        return data
    return json.dumps(dict(data), separators=(",", ":"), ensure_ascii=False)
