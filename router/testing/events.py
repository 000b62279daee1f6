"""anthropic_events: the (event, data) list of a well-formed Anthropic Messages stream, for Fault.sse."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any

from router.testing import wire
from router.testing._values import split_words

__all__ = ["anthropic_events"]

Event = tuple[str, dict[str, Any]]


def anthropic_events(
    text: str | Sequence[str] = "Hello",
    *,
    tool_use: tuple[str, Mapping[str, Any]] | None = None,
    thinking: str | None = None,
    stop_reason: str | None = None,
    message_id: str = "msg_sse_1",
    model: str = "claude-sse",
    input_tokens: int = 10,
    output_tokens: int | None = None,
    text_blocks: Sequence[str | Sequence[str]] | None = None,
) -> list[tuple[str, dict[str, Any]]]:
    """Every ``(event_name, data)`` of a complete Anthropic Messages stream, in order; cut the list
    anywhere and pass it to :meth:`Fault.sse`.

    ``message_start`` (``usage.input_tokens=input_tokens``), then, block indexes counting from 0: a
    thinking block if ``thinking`` is given (its text as word-ish ``thinking_delta`` s, then a
    ``signature_delta`` of ``"sig_" + message_id``); one text block per entry of ``text_blocks``, or
    one for ``text`` (none when ``text`` is empty); a str is split into word-ish deltas with
    :func:`router.testing.faults.split_words`, a sequence is the deltas as given; a ``tool_use``
    block if ``tool_use=(name, input)`` (id ``toolu_sse_1``, the input JSON as 3 ``input_json_delta``
    pieces); then ``message_delta`` (``stop_reason`` defaults to ``"tool_use"`` with a tool call,
    else ``"end_turn"``; ``output_tokens`` defaults to the number of deltas, at least 1) and
    ``message_stop``. No ``ping``.
    """
    blocks: list[tuple[dict[str, Any], list[dict[str, Any]]]] = []
    if thinking is not None:
        deltas = [{"type": "thinking_delta", "thinking": t} for t in split_words(thinking)]
        deltas.append({"type": "signature_delta", "signature": f"sig_{message_id}"})
        blocks.append(({"type": "thinking", "thinking": "", "signature": ""}, deltas))
    for entry in _text_entries(text, text_blocks):
        pieces = split_words(entry) if isinstance(entry, str) else tuple(entry)
        blocks.append(({"type": "text", "text": ""}, [{"type": "text_delta", "text": t} for t in pieces]))
    if tool_use is not None:
        name, tool_input = tool_use
        block = {"type": "tool_use", "id": "toolu_sse_1", "name": name, "input": {}}
        blocks.append((block, [{"type": "input_json_delta", "partial_json": p} for p in _thirds(tool_input)]))
    events: list[Event] = [("message_start", _message_start(message_id, model, input_tokens))]
    for index, (block, deltas) in enumerate(blocks):
        events.append(("content_block_start", {"type": "content_block_start", "index": index, "content_block": block}))
        events += [("content_block_delta", {"type": "content_block_delta", "index": index, "delta": d}) for d in deltas]
        events.append(("content_block_stop", {"type": "content_block_stop", "index": index}))
    count = sum(len(deltas) for _, deltas in blocks) - (thinking is not None)  # the signature is no token
    reason = stop_reason or ("tool_use" if tool_use is not None else "end_turn")
    delta = {"stop_reason": reason, "stop_sequence": None}
    usage = {"output_tokens": output_tokens if output_tokens is not None else max(1, count)}
    events.append(("message_delta", {"type": "message_delta", "delta": delta, "usage": usage}))
    events.append(("message_stop", {"type": "message_stop"}))
    return events


def _text_entries(
    text: str | Sequence[str], text_blocks: Sequence[str | Sequence[str]] | None
) -> list[str | Sequence[str]]:
    if text_blocks is not None:
        if isinstance(text_blocks, str):
            raise TypeError("text_blocks must be a sequence of blocks, not a string")
        return list(text_blocks)
    return [text] if len(text) else []


def _thirds(tool_input: Mapping[str, Any]) -> list[str]:
    """The tool input's JSON in three pieces that join back to it."""
    arguments = json.dumps(dict(tool_input))
    third = max(1, len(arguments) // 3)
    return [arguments[:third], arguments[third:2 * third], arguments[2 * third:]]


def _message_start(message_id: str, model: str, input_tokens: int) -> dict[str, Any]:
    message: dict[str, Any] = {
        "id": message_id,
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": [],
        "stop_reason": None,
        "stop_sequence": None,
        "usage": wire.anthropic_usage(input_tokens, 1),
    }
    return {"type": "message_start", "message": message}
