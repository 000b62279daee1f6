"""Wire formats: Anthropic Messages and OpenAI Chat Completions bodies, error bodies and SSE events."""

from __future__ import annotations

import json
import time
from http import HTTPStatus
from typing import Any

__all__ = [
    "anthropic_error",
    "anthropic_message",
    "anthropic_stream_close",
    "anthropic_stream_delta",
    "anthropic_stream_error",
    "anthropic_stream_open",
    "anthropic_usage",
    "estimate_input_tokens",
    "html_page",
    "openai_completion",
    "openai_error",
    "openai_stream_close",
    "openai_stream_delta",
    "openai_stream_error",
    "openai_stream_open",
    "reason_phrase",
    "sse_event",
]

_REASONS = {
    400: "Bad Request",
    401: "Unauthorized",
    402: "Payment Required",
    403: "Forbidden",
    404: "Not Found",
    408: "Request Timeout",
    409: "Conflict",
    413: "Request Entity Too Large",
    422: "Unprocessable Entity",
    429: "Too Many Requests",
    500: "Internal Server Error",
    502: "Bad Gateway",
    503: "Service Temporarily Unavailable",
    504: "Gateway Time-out",
    529: "Site is overloaded",
}

_FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
}


def dumps(obj: object) -> bytes:
    """Compact JSON, UTF-8."""
    return json.dumps(obj, separators=(",", ":"), ensure_ascii=False).encode()


def reason_phrase(code: int) -> str:
    """The HTTP reason phrase for ``code``."""
    if code in _REASONS:
        return _REASONS[code]
    try:
        return HTTPStatus(code).phrase
    except ValueError:
        return "Error"


def estimate_input_tokens(body: dict[str, Any]) -> int:
    """A stable, plausible input token count: ~4 characters per token of the prompt."""
    prompt = json.dumps([body.get("system"), body.get("messages")], separators=(",", ":"))
    return max(1, len(prompt) // 4)


def _sse(event: str, data: dict[str, Any]) -> bytes:
    return b"event: " + event.encode() + b"\ndata: " + dumps(data) + b"\n\n"


def sse_event(event: str, data: str) -> bytes:
    """``event: {event}\ndata: {data}\n\n`` with ``data`` verbatim; no ``event:`` line when ``event`` is empty."""
    head = b"event: " + event.encode() + b"\n" if event else b""
    return head + b"data: " + data.encode() + b"\n\n"


def _data(data: dict[str, Any] | str) -> bytes:
    payload = data.encode() if isinstance(data, str) else dumps(data)
    return b"data: " + payload + b"\n\n"


# -- Anthropic Messages -------------------------------------------------------------------------


def anthropic_error(
    error_type: str, message: str, request_id: str | None, error_code: str | None = None
) -> bytes:
    """The Anthropic error body ``{"type": "error", "error": {...}, "request_id": ...}``."""
    error: dict[str, Any] = {"type": error_type, "message": message}
    if error_code is not None:
        error["details"] = {"error_code": error_code}
    return dumps({"type": "error", "error": error, "request_id": request_id})


def anthropic_usage(input_tokens: int, output_tokens: int) -> dict[str, Any]:
    """A Message's ``usage`` object."""
    return {
        "input_tokens": input_tokens,
        "output_tokens": output_tokens,
        "cache_creation_input_tokens": 0,
        "cache_read_input_tokens": 0,
        "service_tier": "standard",
    }


def anthropic_message(
    msg_id: str,
    model: str,
    text: str,
    stop_reason: str,
    input_tokens: int,
    output_tokens: int,
    tool_use: tuple[str, str, str] | None = None,
) -> bytes:
    """A complete non-streaming Message; `tool_use` is (id, name, input JSON) for a tool call after the text."""
    content: list[dict[str, Any]] = [{"type": "text", "text": text}] if text else []
    if tool_use is not None:
        tool_id, name, arguments = tool_use
        content.append({"type": "tool_use", "id": tool_id, "name": name, "input": json.loads(arguments)})
    return dumps(
        {
            "id": msg_id,
            "type": "message",
            "role": "assistant",
            "model": model,
            "content": content,
            "stop_reason": stop_reason,
            "stop_sequence": None,
            "usage": anthropic_usage(input_tokens, output_tokens),
        }
    )


def anthropic_block_start(index: int, block: dict[str, Any]) -> bytes:
    return _sse("content_block_start", {"type": "content_block_start", "index": index, "content_block": block})


def anthropic_block_stop(index: int) -> bytes:
    return _sse("content_block_stop", {"type": "content_block_stop", "index": index})


def anthropic_json_delta(index: int, partial_json: str) -> bytes:
    """One ``content_block_delta`` with an ``input_json_delta`` (a piece of a tool call's input)."""
    delta = {"type": "input_json_delta", "partial_json": partial_json}
    return _sse("content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta})


def anthropic_tool_stream(
    text_deltas: tuple[str, ...], tool_use: tuple[str, str, str]
) -> tuple[list[bytes], list[bytes], int]:
    """For a streamed tool call: (the block start that opens the stream, one item per delta, last index).

    Text deltas (block 0, when any) come first, then the tool_use block's input in three pieces. An item
    may carry the block stop/start in front of its delta, so a fault "after N deltas" can land anywhere.
    """
    tool_id, name, arguments = tool_use
    tool_block = {"type": "tool_use", "id": tool_id, "name": name, "input": {}}
    third = max(1, len(arguments) // 3)
    pieces = [arguments[:third], arguments[third:2 * third], arguments[2 * third:]]
    if text_deltas:
        first = {"type": "text", "text": ""}
        items = [anthropic_stream_delta(t) for t in text_deltas]
        switch = anthropic_block_stop(0) + anthropic_block_start(1, tool_block)
        items.append(switch + anthropic_json_delta(1, pieces[0]))
        items += [anthropic_json_delta(1, p) for p in pieces[1:]]
        return [anthropic_block_start(0, first)], items, 1
    return [anthropic_block_start(0, tool_block)], [anthropic_json_delta(0, p) for p in pieces], 0


def anthropic_stream_open(
    msg_id: str, model: str, input_tokens: int, first_block: list[bytes] | None = None
) -> list[bytes]:
    """``message_start``, ``content_block_start`` and ``ping``: the events before the first delta."""
    message: dict[str, Any] = {
        "id": msg_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": anthropic_usage(input_tokens, 1),
    }
    block = first_block if first_block is not None else [anthropic_block_start(0, {"type": "text", "text": ""})]
    return [
        _sse("message_start", {"type": "message_start", "message": message}),
        *block,
        _sse("ping", {"type": "ping"}),
    ]


def anthropic_stream_delta(text: str) -> bytes:
    """One ``content_block_delta`` with a ``text_delta``."""
    return _sse(
        "content_block_delta",
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": text}},
    )


def anthropic_stream_close(stop_reason: str, output_tokens: int, last_index: int = 0) -> list[bytes]:
    """``content_block_stop``, ``message_delta`` and ``message_stop``."""
    return [
        anthropic_block_stop(last_index),
        _sse(
            "message_delta",
            {
                "type": "message_delta",
                "delta": {"stop_reason": stop_reason, "stop_sequence": None},
                "usage": {"output_tokens": output_tokens},
            },
        ),
        _sse("message_stop", {"type": "message_stop"}),
    ]


def anthropic_stream_error(error_type: str, message: str, request_id: str | None) -> bytes:
    """The mid-stream ``error`` event."""
    error = {"type": error_type, "message": message}
    return _sse("error", {"type": "error", "error": error, "request_id": request_id})


# -- OpenAI Chat Completions ----------------------------------------------------------------------


def openai_error(error_type: str, message: str, error_code: str | None = None) -> bytes:
    """The OpenAI error body ``{"error": {"message", "type", "param", "code"}}``."""
    return dumps({"error": _openai_error_object(error_type, message, error_code)})


def _openai_error_object(error_type: str, message: str, error_code: str | None) -> dict[str, Any]:
    return {"message": message, "type": error_type, "param": None, "code": error_code}


def _openai_usage(input_tokens: int, output_tokens: int) -> dict[str, Any]:
    return {
        "prompt_tokens": input_tokens,
        "completion_tokens": output_tokens,
        "total_tokens": input_tokens + output_tokens,
    }


def openai_completion(
    completion_id: str,
    model: str,
    text: str,
    stop_reason: str,
    input_tokens: int,
    output_tokens: int,
    tool_use: tuple[str, str, str] | None = None,
) -> bytes:
    """A complete non-streaming ``chat.completion``; `tool_use` is (id, name, arguments JSON)."""
    message: dict[str, Any] = {"role": "assistant", "content": text or None, "refusal": None}
    if tool_use is not None:
        tool_id, name, arguments = tool_use
        message["tool_calls"] = [
            {"id": tool_id, "type": "function", "function": {"name": name, "arguments": arguments}}
        ]
    return dumps(
        {
            "id": completion_id,
            "object": "chat.completion",
            "created": int(time.time()),
            "model": model,
            "choices": [
                {
                    "index": 0,
                    "message": message,
                    "logprobs": None,
                    "finish_reason": _FINISH_REASONS.get(stop_reason, "stop"),
                }
            ],
            "usage": _openai_usage(input_tokens, output_tokens),
            "system_fingerprint": None,
        }
    )


def _chunk(
    completion_id: str, model: str, delta: dict[str, Any], finish_reason: str | None
) -> dict[str, Any]:
    return {
        "id": completion_id,
        "object": "chat.completion.chunk",
        "created": int(time.time()),
        "model": model,
        "system_fingerprint": None,
        "choices": [{"index": 0, "delta": delta, "logprobs": None, "finish_reason": finish_reason}],
    }


def openai_stream_open(completion_id: str, model: str) -> list[bytes]:
    """The first chunk (``role: assistant``, empty content)."""
    return [_data(_chunk(completion_id, model, {"role": "assistant", "content": ""}, None))]


def openai_stream_delta(completion_id: str, model: str, text: str) -> bytes:
    """One content chunk."""
    return _data(_chunk(completion_id, model, {"content": text}, None))


def openai_stream_close(
    completion_id: str,
    model: str,
    stop_reason: str,
    input_tokens: int,
    output_tokens: int,
    include_usage: bool,
) -> list[bytes]:
    """The ``finish_reason`` chunk, the usage chunk if asked for, and ``[DONE]``."""
    events = [_data(_chunk(completion_id, model, {}, _FINISH_REASONS.get(stop_reason, "stop")))]
    if include_usage:
        usage_chunk = _chunk(completion_id, model, {}, None)
        usage_chunk["choices"] = []
        usage_chunk["usage"] = _openai_usage(input_tokens, output_tokens)
        events.append(_data(usage_chunk))
    events.append(_data("[DONE]"))
    return events


def openai_stream_error(error_type: str, message: str) -> bytes:
    """A ``data: {"error": {...}}`` chunk, as OpenAI-compatible servers send mid-stream."""
    return _data({"error": _openai_error_object(error_type, message, None)})


# -- other ----------------------------------------------------------------------------------------


def html_page(code: int) -> bytes:
    """An nginx-like HTML error page."""
    title = f"{code} {reason_phrase(code)}"
    return (
        "<html>\r\n"
        f"<head><title>{title}</title></head>\r\n"
        "<body>\r\n"
        f"<center><h1>{title}</h1></center>\r\n"
        "<hr><center>nginx</center>\r\n"
        "</body>\r\n"
        "</html>\r\n"
    ).encode()
