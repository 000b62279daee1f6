"""Fault: what the fake server does with one request (success, error status, reset, stall...)."""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["DEFAULT_ERROR_TYPES", "Fault", "FaultKind", "split_words"]

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
]

#: Anthropic ``error.type`` the real API uses for each HTTP status.
DEFAULT_ERROR_TYPES: Mapping[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    408: "timeout_error",
    409: "conflict_error",
    413: "request_too_large",
    422: "invalid_request_error",
    429: "rate_limit_error",
    500: "api_error",
    502: "api_error",
    503: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}

_DEFAULT_STALL_SECONDS = 60.0


def split_words(text: str) -> tuple[str, ...]:
    """Split ``text`` into word-ish chunks that keep their spaces, so ``"".join(chunks) == text``."""
    return tuple(re.findall(r"\s+\S*\s*|\S+\s*", text))


def _deltas(deltas: Sequence[str] | None) -> tuple[str, ...] | None:
    if deltas is None:
        return None
    if isinstance(deltas, str):
        raise TypeError("deltas must be a sequence of strings, not a string")
    return tuple(deltas)


def _seconds(name: str, value: float) -> float:
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value!r}")
    return float(value)


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


def _after(after: int) -> int:
    if after < 0:
        raise ValueError(f"after must be >= 0, got {after!r}")
    return after
