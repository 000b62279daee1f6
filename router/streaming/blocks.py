"""The caller's side of a stitched stream: its content blocks as streamed so far, and the per-attempt index map."""

from __future__ import annotations

import json
from typing import Any, TypeVar

from anthropic.types import (
    ContentBlock,
    RawContentBlockDeltaEvent,
    RawContentBlockStartEvent,
    RawContentBlockStopEvent,
)

from ..outcome import WireError

_Indexed = TypeVar("_Indexed", RawContentBlockStartEvent, RawContentBlockDeltaEvent, RawContentBlockStopEvent)

#: The delta types this router understands, and for each block type it knows, the ones that block takes
#: (and the field each one grows). A known delta sent to a block that cannot take it is a malformed stream;
#: a delta of a type not listed here passes through untouched, as do all deltas of a block type not listed.
KNOWN_DELTAS = frozenset({"text_delta", "citations_delta", "thinking_delta", "signature_delta", "input_json_delta"})
_TOOL = {"input_json_delta": "partial_json"}
_ACCEPTS: dict[str, dict[str, str]] = {
    "text": {"text_delta": "text", "citations_delta": "citations"},
    "thinking": {"thinking_delta": "thinking", "signature_delta": "signature"},
    "redacted_thinking": {},
    "tool_use": _TOOL,
    "server_tool_use": _TOOL,
    "mcp_tool_use": _TOOL,
}


def malformed(detail: str) -> WireError:
    """The error for an event that makes no sense where it came: a counted server failure."""
    return WireError(detail, error_type="malformed_stream")


def reindexed(event: _Indexed, caller_index: int) -> _Indexed:
    return event if event.index == caller_index else event.model_copy(update={"index": caller_index})


class Block:
    """One block of the caller's message: the SDK's block from content_block_start, and what streamed in.

    Streamed pieces ("text", "thinking", "partial_json") are kept in lists and joined when read: growing
    one str per delta would copy it every time (quadratic in a long answer)."""

    __slots__ = ("accepts", "done", "pieces", "start", "texts", "type")

    def __init__(self, start: ContentBlock) -> None:
        self.start = start
        self.type: str = start.type
        self.accepts = _ACCEPTS.get(self.type)  # None: a block type this router does not know
        self.pieces: dict[str, list[str]] = {}
        self.done: dict[str, Any] = {}  # fields set whole: a thinking block's signature, a tool call's input
        self.texts: list[str] | None = None  # a text block's pieces (the hot path appends to it directly)
        if self.type == "text":
            self.texts = self.pieces["text"] = []

    @property
    def complete(self) -> bool:
        """For a tool call: its JSON arrived in full (content_block_stop)."""
        return "input" in self.done

    def grow(self, field: str, piece: str) -> None:
        if field in self.pieces:
            self.pieces[field].append(piece)
        else:
            self.pieces[field] = [piece]

    def apply(self, field: str, delta: Any) -> None:
        """A known delta for this block: grow its field (or set it, for a signature or a citation)."""
        value = getattr(delta, "citation" if field == "citations" else field, None)
        if field == "citations":
            if value is None:
                raise malformed("citations_delta without a citation")
            self.done.setdefault("citations", list(getattr(self.start, "citations", None) or [])).append(value)
            return
        if type(value) is not str:
            raise malformed(f"{delta.type} without a string {field}")
        if field == "signature":
            self.done["signature"] = value
        else:
            self.grow(field, value)

    def joined(self, field: str) -> str:
        """The field as streamed so far: its value at content_block_start, then every delta."""
        return str(getattr(self.start, field, "") or "") + "".join(self.pieces.get(field, ()))

    def close(self) -> None:
        """content_block_stop: a tool call's JSON is complete and can be parsed."""
        if "partial_json" in self.pieces or self.accepts is _TOOL:
            raw = "".join(self.pieces.pop("partial_json", ()))
            try:
                self.done["input"] = json.loads(raw) if raw else getattr(self.start, "input", None) or {}
            except ValueError:
                self.done["input"] = {}

    def build(self) -> ContentBlock:
        grown = {field: self.joined(field) for field, got in self.pieces.items() if got and field != "partial_json"}
        update = grown | self.done
        return self.start.model_copy(update=update) if update else self.start


class Content:
    """The blocks the caller has been sent, which one is open, and where the current attempt's blocks go."""

    __slots__ = ("blocks", "index_map", "open", "text_len")

    def __init__(self) -> None:
        self.blocks: list[Block] = []
        self.index_map: dict[int, int] = {}  # the attempt's open block indexes -> the caller's
        self.open: int | None = None  # caller index of the open block
        self.text_len = 0

    def start(self, event: RawContentBlockStartEvent) -> RawContentBlockStartEvent:
        """A new caller block for the attempt's block `event.index`; the event the caller gets."""
        caller = len(self.blocks)
        self.index_map[event.index] = caller
        self.blocks.append(Block(event.content_block))
        self.open = caller
        return reindexed(event, caller)

    def adopt(self, index: int, caller: int) -> None:
        """The attempt's block `index` continues the caller's open block `caller`."""
        self.index_map[index] = caller

    def add_text(self, caller: int, event: RawContentBlockDeltaEvent, text: str) -> RawContentBlockDeltaEvent:
        texts = self.blocks[caller].texts
        assert texts is not None
        texts.append(text)
        self.text_len += len(text)
        return reindexed(event, caller)

    def close(self, caller: int) -> None:
        self.blocks[caller].close()
        if self.open == caller:
            self.open = None

    def stop(self, caller: int) -> RawContentBlockStopEvent:
        """Close a caller block that the wire did not close for it: the content_block_stop the router sends."""
        self.close(caller)
        return RawContentBlockStopEvent(type="content_block_stop", index=caller)

    def open_block(self) -> Block | None:
        return self.blocks[self.open] if self.open is not None else None

    def partial_text(self) -> str:
        return "".join(b.joined("text") for b in self.blocks if b.type == "text")

    def has_tool_call(self) -> bool:
        return any(b.type == "tool_use" and b.complete for b in self.blocks)

    def built(self) -> list[ContentBlock]:
        """The blocks for a Message: a tool call whose JSON never finished is left out."""
        return [b.build() for b in self.blocks if b.type != "tool_use" or b.complete]
