"""Stitching one caller-facing stream out of several attempts' streams (sans-IO: events in, events out).

The caller sees one clean Anthropic event stream. Before the first content delta, events are held back,
so a failure there is invisible and the next attempt simply starts over. After content has flowed, a
broken attempt is resumed on the next model: its message_start and the start of the block being
continued are swallowed, its blocks are renumbered to follow the caller's, and any text it repeats at
the join is trimmed. The driver feeds events and reports how each attempt ended; the engine's plan
asks this object whether a model can take the stream over.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Mapping
from typing import Any, TypeVar

from anthropic.types import (
    ContentBlock,
    Message,
    RawContentBlockDeltaEvent,
    RawContentBlockStartEvent,
    RawContentBlockStopEvent,
    RawMessageDeltaEvent,
    RawMessageStartEvent,
    RawMessageStopEvent,
    RawMessageStreamEvent,
    TextDelta,
    Usage,
)

from .errors import StreamInterrupted
from .outcome import Failure, Kind
from .policy import ModelConfig
from .record import Attempt

CONTINUE_PROMPT = (
    "Your previous reply was cut off. Continue it exactly from where it stopped, without repeating "
    "anything and without any preamble."
)
_CLAUDE_VERSION = re.compile(r"claude-(?:opus|sonnet|haiku)-(\d+)(?:-(\d))?(?:-\d{8}|-v\d|$|[^\d])")
_Indexed = TypeVar("_Indexed", RawContentBlockStartEvent, RawContentBlockDeltaEvent, RawContentBlockStopEvent)
_TAIL = 64  # how much of the emitted text a continuation is compared against for overlap


def resume_method(config: ModelConfig) -> str:
    """How a broken stream resumes on this model: the policy's `resume`, else a per-model default."""
    if config.resume is not None:
        return config.resume
    if config.provider == "anthropic" and _prefill_accepted(config.model):
        return "prefill"
    return "continue"


def _prefill_accepted(model: str) -> bool:
    """Claude models before 4.6 accept a trailing assistant message (prefill); 4.6+ reject it with a 400."""
    if "claude-3" in model:
        return True
    found = _CLAUDE_VERSION.search(model)
    if found is None:
        return False  # unknown: continue works everywhere
    return (int(found.group(1)), int(found.group(2) or 0)) < (4, 6)


def _overlap(tail: str, head: str) -> int:
    """How much of `head` repeats the end of `tail`. Whitespace-only and word-aligned overlaps count;
    a short match inside a word ("Hell" + "lo") is taken as new text."""
    for k in range(min(len(tail), len(head)), 0, -1):
        if not tail.endswith(head[:k]):
            continue
        before = tail[-k - 1] if k < len(tail) else " "
        if head[:k].strip() == "" or k >= 16 or not (before.isalnum() and head[0].isalnum()):
            return k
    return 0


def _may_still_overlap(tail: str, held: str) -> bool:
    """True while `held` could still be the start of a longer repeat of the end of `tail`."""
    return any(tail.startswith(held, j) and len(tail) - j > len(held) for j in range(len(tail)))


class Stitcher:
    """The state of one caller-facing stream across attempts."""

    def __init__(self, on_interrupt: str) -> None:
        self.on_interrupt = on_interrupt
        self.emitted = False  # has any content event reached the caller?
        self.final: Message | None = None
        self._held: list[RawMessageStreamEvent] = []
        self._start: Message | None = None  # the first attempt's message_start message
        self._updates: dict[str, Any] = {}  # message_delta's fields (stop_reason, ...)
        self._blocks: list[_Block] = []
        self._open: int | None = None  # caller index of the open block
        self._text_len = 0
        self._input_tokens = 0
        self._output_tokens = 0
        self._attempt_out = 0
        self._index_map: dict[int, int] = {}
        self._resuming = False
        self._hold: str | None = None  # continuation text held back until overlap can be judged
        self._tail = ""
        self._completed = False

    # -- questions the plan asks ------------------------------------------------------------------

    def can_take_over(self, config: ModelConfig) -> bool:
        return not self.emitted or resume_method(config) != "restart"

    def begin(self, config: ModelConfig) -> str | None:
        """A new attempt starts on `config`; returns a note for its Attempt record."""
        self._index_map = {}
        self._attempt_out = 0
        self._completed = False
        self._hold = None
        if not self.emitted:
            self._held = []
            self._start, self._updates, self._blocks, self._open = None, {}, [], None
            self._resuming = False
            return None
        self._resuming = True
        self._tail = self._open_text()[-_TAIL:]
        self._hold = "" if self._tail else None
        return f"resumed at char {self._text_len} ({resume_method(config)})"

    def interrupted(self, failure: Failure, attempts: list[Attempt]) -> StreamInterrupted | None:
        """The exception to raise instead of failing over, if the stream cannot be resumed."""
        if not self.emitted:
            return None
        if failure.kind in (Kind.CALLER, Kind.UNEXPECTED):
            reason = "the request failed after content was sent"
        elif self.on_interrupt == "raise":
            reason = "the policy says on_interrupt: raise"
        elif self._open is not None and self._blocks[self._open].type != "text":
            reason = f"it broke inside a {self._blocks[self._open].type} block, which cannot be resumed"
        else:
            return None
        return StreamInterrupted(self.partial_text(), self.snapshot(), attempts, reason)

    # -- the request for an attempt ---------------------------------------------------------------

    def request(self, params: Mapping[str, Any], config: ModelConfig) -> dict[str, Any]:
        if not self.emitted:
            return dict(params)
        partial = self.partial_text()
        messages = list(params.get("messages", ()))
        if resume_method(config) == "prefill":
            messages.append({"role": "assistant", "content": partial.rstrip()})
        else:
            messages += [{"role": "assistant", "content": partial}, {"role": "user", "content": CONTINUE_PROMPT}]
        return {**params, "messages": messages}

    # -- events -----------------------------------------------------------------------------------

    def feed(self, event: RawMessageStreamEvent) -> list[RawMessageStreamEvent]:
        """One event of the current attempt in; the events the caller should see out (maybe none)."""
        if isinstance(event, RawContentBlockDeltaEvent):
            return self._delta(event)
        if isinstance(event, RawMessageStartEvent):
            usage = event.message.usage
            self._input_tokens += usage.input_tokens or 0
            self._attempt_out = usage.output_tokens or 0
            if self._start is None:
                self._start = event.message
                self._held.append(event)
            return []
        if isinstance(event, RawContentBlockStartEvent):
            block = event.content_block
            if self._resuming and event.index == 0 and self._open is not None and block.type == "text":
                self._index_map[0] = self._open  # the continuation of the block that broke
                return []
            caller_index = len(self._blocks)
            self._index_map[event.index] = caller_index
            self._blocks.append(_Block(block))
            self._open = caller_index
            return self._out(self._reindexed(event, caller_index))
        if isinstance(event, RawContentBlockStopEvent):
            flushed = self._flush_hold()
            caller_index = self._index_map.get(event.index, event.index)
            self._close_block(caller_index)
            return [*flushed, *self._out(self._reindexed(event, caller_index))]
        if isinstance(event, RawMessageDeltaEvent):
            flushed = self._flush_hold()
            self._attempt_out = max(self._attempt_out, event.usage.output_tokens or 0)
            self._updates.update((name, value) for name, value in event.delta if value is not None)
            return [*flushed, *self._out(event)]
        if isinstance(event, RawMessageStopEvent):
            self._completed = True
            return self._out(event, force=True)
        return []

    def _delta(self, event: RawContentBlockDeltaEvent) -> list[RawMessageStreamEvent]:
        caller_index = self._index_map.get(event.index, event.index)
        delta = event.delta
        if delta.type == "text_delta":
            text = delta.text
            if self._hold is not None:
                self._hold += text
                if _may_still_overlap(self._tail, self._hold):
                    return []
                return self._flush_hold()
            self._append_text(caller_index, text)
            return self._out(self._reindexed(event, caller_index))
        if caller_index < len(self._blocks):
            block = self._blocks[caller_index]
            if delta.type == "input_json_delta":
                block.grow("partial_json", delta.partial_json)
            elif delta.type == "thinking_delta":
                block.grow("thinking", delta.thinking)
            elif delta.type == "signature_delta":
                block.done["signature"] = delta.signature
        return self._out(self._reindexed(event, caller_index))

    @staticmethod
    def _reindexed(event: _Indexed, caller_index: int) -> _Indexed:
        return event if event.index == caller_index else event.model_copy(update={"index": caller_index})

    def _flush_hold(self) -> list[RawMessageStreamEvent]:
        if self._hold is None or self._open is None:
            self._hold = None
            return []
        text = self._hold[_overlap(self._tail, self._hold):]
        self._hold = None
        if not text:
            return []
        self._append_text(self._open, text)
        return self._out(
            RawContentBlockDeltaEvent(
                type="content_block_delta", index=self._open, delta=TextDelta(type="text_delta", text=text)
            )
        )

    def _out(self, event: RawMessageStreamEvent, force: bool = False) -> list[RawMessageStreamEvent]:
        if self.emitted:
            return [event]
        if event.type == "content_block_delta" or force:
            self.emitted = event.type == "content_block_delta" or self.emitted
            held, self._held = self._held, []
            return [*held, event]
        self._held.append(event)
        return []

    def _append_text(self, caller_index: int, text: str) -> None:
        self._blocks[caller_index].grow("text", text)
        self._text_len += len(text)

    def _close_block(self, caller_index: int) -> None:
        if caller_index < len(self._blocks):
            self._blocks[caller_index].close()
        if self._open == caller_index:
            self._open = None

    def _open_text(self) -> str:
        if self._open is None or self._blocks[self._open].type != "text":
            return ""
        return self._blocks[self._open].joined("text")

    # -- how an attempt ended ---------------------------------------------------------------------

    def finish(self, request_id: str | None = None) -> Message | Failure:
        """The attempt's stream ended without an exception."""
        self._output_tokens += self._attempt_out
        if not self._completed:
            error = ConnectionError("the stream ended without message_stop")
            return self._note(Failure(Kind.SERVER_FAILURE, None, "incomplete_stream", request_id, error))
        self.final = self.snapshot(final=True)
        if request_id:
            object.__setattr__(self.final, "_request_id", request_id)
        return self.final

    def failed(self, failure: Failure) -> Failure:
        self._output_tokens += self._attempt_out
        # Text held back to judge whether it repeats what was sent was never sent: drop it, so the message
        # says what the stream said. The next model resumes from the text actually sent.
        self._hold = None
        return self._note(failure)

    def _note(self, failure: Failure) -> Failure:
        if not self.emitted:
            return failure
        return dataclasses.replace(failure, note=f"stream broke after {self._text_len} chars")

    def partial_text(self) -> str:
        return "".join(b.joined("text") for b in self._blocks if b.type == "text")

    def snapshot(self, final: bool = False) -> Message:
        """The caller's message so far (or in full), with usage summed over every attempt.

        Built by copying the SDK's own objects with the streamed fields filled in: nothing is re-validated."""
        start = self._start or _empty_message()
        tokens = {"input_tokens": self._input_tokens, "output_tokens": self._output_tokens}
        usage = start.usage.model_copy(update=tokens)
        content = [b.build() for b in self._blocks if b.type != "tool_use" or "input" in b.done]
        update = {**self._updates, "content": content, "usage": usage}
        if not final:
            update["stop_reason"] = None
        return start.model_copy(update=update)


class _Block:
    """One block of the caller's message: the SDK's block from content_block_start, and what streamed in.

    Streamed pieces ("text", "thinking", "partial_json") are kept in lists and joined when read: growing
    one str per delta would copy it every time (quadratic in a long answer)."""

    __slots__ = ("done", "pieces", "start")

    def __init__(self, start: ContentBlock) -> None:
        self.start = start
        self.pieces: dict[str, list[str]] = {}
        self.done: dict[str, Any] = {}  # fields set whole: a thinking block's signature, a tool call's input

    @property
    def type(self) -> str:
        return self.start.type

    def grow(self, field: str, piece: str) -> None:
        if field in self.pieces:
            self.pieces[field].append(piece)
        else:
            self.pieces[field] = [piece]

    def joined(self, field: str) -> str:
        """The field as streamed so far: its value at content_block_start, then every delta."""
        return str(getattr(self.start, field, "") or "") + "".join(self.pieces.get(field, ()))

    def close(self) -> None:
        """content_block_stop: a tool call's JSON is complete and can be parsed."""
        if "partial_json" in self.pieces:
            raw = "".join(self.pieces.pop("partial_json"))
            try:
                self.done["input"] = json.loads(raw) if raw else {}
            except ValueError:
                self.done["input"] = {}

    def build(self) -> ContentBlock:
        update = {field: self.joined(field) for field in self.pieces if field != "partial_json"} | self.done
        return self.start.model_copy(update=update) if update else self.start


def _empty_message() -> Message:
    """For a stream that never sent message_start (built on demand: a Message at import costs ~8 ms)."""
    return Message(id="", type="message", role="assistant", model="", content=[], stop_reason=None,
                   stop_sequence=None, usage=Usage(input_tokens=0, output_tokens=0))
