"""Stitching one caller-facing stream out of several attempts' streams (sans-IO: events in, events out).

The caller sees one clean Anthropic event stream. Before the first content delta, events are held back,
so a failure there is invisible and the next attempt simply starts over. After content has flowed, a
broken attempt is resumed on the next model: its message_start is swallowed, its blocks are renumbered
to follow the caller's, and its text is joined to the text sent without repeats (`takeover`).
A break once the message is already complete (after message_delta, or after a finished tool call) ends
the message there instead (`Salvaged`). Events are dispatched on their `type`: unknown types pass
through, malformed events raise `WireError`. The driver feeds events and reports how each attempt ended;
the engine's plan asks this object whether a model can take the stream over.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Callable, Mapping
from typing import Any, ClassVar

from anthropic.types import (
    Message,
    MessageDeltaUsage,
    RawContentBlockDeltaEvent,
    RawMessageDeltaEvent,
    RawMessageStopEvent,
    RawMessageStreamEvent,
    Usage,
)
from anthropic.types.raw_message_delta_event import Delta
from pydantic import BaseModel

from ..errors import StreamInterrupted
from ..outcome import Failure, Kind
from ..policy import ModelConfig
from ..routing import Attempt
from .blocks import KNOWN_DELTAS, Block, Content, malformed, reindexed
from .takeover import Takeover
from .usage import Tokens

CONTINUE_PROMPT = (
    "Your previous reply was cut off. Continue it exactly from where it stopped, without repeating "
    "anything and without any preamble."
)
_CLAUDE_VERSION = re.compile(r"claude-(?:opus|sonnet|haiku)-(\d+)(?:-(\d))?(?:-\d{8}|-v\d|$|[^\d])")
Events = list[RawMessageStreamEvent]


@dataclasses.dataclass(frozen=True, slots=True)
class Salvaged:
    """An attempt that failed on the wire when its message was already complete (a break after
    message_delta, or after a finished tool call): `message` is served as the answer, and `failure`
    still counts against the model. The caller must still get `Stitcher.closing_events()`."""

    message: Message
    failure: Failure


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


class Stitcher:
    """The state of one caller-facing stream across attempts."""

    _HANDLERS: ClassVar[dict[str, Callable[[Stitcher, Any], Events]]]

    def __init__(self, on_interrupt: str) -> None:
        self.on_interrupt = on_interrupt
        self.emitted = False  # has any content event reached the caller?
        self.final: Message | None = None
        self._held: Events = []  # events held back until the first content delta
        self._start: Message | None = None  # the message_start message the caller got
        self._updates: dict[str, Any] = {}  # message_delta's fields (stop_reason, ...)
        self._content = Content()
        self._tokens = Tokens()
        self._started: set[int] = set()  # block indexes the current attempt started
        self._attempt_started = False  # the current attempt sent message_start
        self._attempt_delta = False  # ... and message_delta
        self._completed = False  # ... and message_stop (or its message was salvaged)
        self._takeover: Takeover | None = None  # while a takeover needs more than renumbering
        self._last_takeover: Takeover | None = None
        self._closing: Events = []

    # -- questions the plan asks ------------------------------------------------------------------

    def can_take_over(self, config: ModelConfig) -> bool:
        return not self.emitted or resume_method(config) != "restart"

    def begin(self, config: ModelConfig) -> str | None:
        """A new attempt starts on `config`; returns a note for its Attempt record."""
        self._tokens.begin()
        self._content.index_map.clear()
        self._started = set()
        self._attempt_started = self._attempt_delta = self._completed = False
        self._takeover = self._last_takeover = None
        if not self.emitted:
            self._held = []
            self._start, self._updates, self._content = None, {}, Content()
            return None
        method = resume_method(config)
        # A preamble ("Sure, here it is: ") is what a model asked to continue in a user turn may add; one
        # continuing a prefilled assistant turn does not, and its text need not wait to rule one out.
        takeover = Takeover(self._content, self.partial_text(), self._delta, preambles=method == "continue")
        self._last_takeover = takeover
        if not takeover.done:
            self._takeover = takeover
        return f"resumed at char {self._content.text_len} ({method})"

    @property
    def takeover_note(self) -> str | None:
        """How the current (or last) attempt's text joined the text sent, once known; None if it took
        nothing over or sent no text. E.g. "takeover restarted its answer: 240 repeated chars dropped"."""
        return self._last_takeover.note if self._last_takeover is not None else None

    def interrupted(self, failure: Failure, attempts: list[Attempt]) -> StreamInterrupted | None:
        """The exception to raise instead of failing over, if the stream cannot be resumed."""
        if not self.emitted or self._completed:
            return None
        block = self._content.open_block()
        if failure.kind in (Kind.CALLER, Kind.UNEXPECTED):
            reason = "the request failed after content was sent"
        elif self.on_interrupt == "raise":
            reason = "the policy says on_interrupt: raise"
        elif block is not None and block.type != "text":
            reason = f"it broke inside a {block.type} block, which cannot be resumed"
        else:
            return None
        return StreamInterrupted(self.partial_text(), self.snapshot(), attempts, reason)

    # -- the request for an attempt ---------------------------------------------------------------

    def request(self, params: Mapping[str, Any], config: ModelConfig) -> dict[str, Any]:
        partial = self.partial_text() if self.emitted else ""
        if not partial.strip():  # nothing to continue (e.g. only thinking was sent): ask afresh
            return dict(params)
        messages = list(params.get("messages", ()))
        if resume_method(config) == "prefill":
            messages.append({"role": "assistant", "content": partial.rstrip()})
        else:
            messages += [{"role": "assistant", "content": partial}, {"role": "user", "content": CONTINUE_PROMPT}]
        return {**params, "messages": messages}

    # -- events -----------------------------------------------------------------------------------

    def feed(self, event: RawMessageStreamEvent) -> Events:
        """One event of the current attempt in; the events the caller should see out (maybe none).

        Raises WireError(error_type="malformed_stream") for an event that makes no sense where it came."""
        kind = getattr(event, "type", None)
        if kind == "content_block_delta":
            takeover = self._takeover
            if takeover is None:
                return self._delta(event)  # type: ignore[arg-type]
            out = takeover.delta(event)  # type: ignore[arg-type]
            self._sync_takeover()
            return out
        if self._completed:
            return []  # nothing after message_stop reaches the caller
        handler = self._HANDLERS.get(kind) if isinstance(kind, str) else None
        if handler is None:  # ping, or a type added after this code was written: passed through untouched
            return self._out(event) if isinstance(kind, str) else []
        if not self._attempt_started and kind != "message_start":
            raise malformed(f"{kind} before message_start")  # no id, no usage: not a Message
        return handler(self, event)

    def _delta(self, event: RawContentBlockDeltaEvent) -> Events:
        content = self._content
        try:
            caller = content.index_map[event.index]
            kind = event.delta.type
        except (KeyError, TypeError, AttributeError):
            return self._misplaced(event)
        block = content.blocks[caller]
        texts = block.texts
        if texts is not None and kind == "text_delta":
            text = event.delta.text  # type: ignore[union-attr]
            if type(text) is not str:
                raise malformed("text_delta without a string text")
            texts.append(text)
            content.text_len += len(text)
            if self.emitted:
                return [event if event.index == caller else event.model_copy(update={"index": caller})]
            return self._out(reindexed(event, caller))
        return self._other_delta(event, block, caller, kind)

    def _other_delta(self, event: RawContentBlockDeltaEvent, block: Block, caller: int, kind: str) -> Events:
        if block.accepts is not None:
            field = block.accepts.get(kind)
            if field is not None:
                block.apply(field, event.delta)
            elif kind in KNOWN_DELTAS:
                raise malformed(f"{kind} for a {block.type} block (index {event.index})")
        return self._out(reindexed(event, caller))  # an unknown kind of delta: passed through

    def _misplaced(self, event: Any) -> Events:
        """A delta that cannot be placed: after message_stop it is ignored, else the stream is malformed."""
        if self._completed:
            return []
        index = getattr(event, "index", None)
        if not isinstance(getattr(getattr(event, "delta", None), "type", None), str):
            raise malformed(f"content_block_delta without a delta type (index {index!r})")
        if isinstance(index, int) and index in self._started:
            raise malformed(f"content_block_delta for block {index} after its content_block_stop")
        raise malformed(f"content_block_delta for block {index!r}, which never started")

    def _on_message_start(self, event: Any) -> Events:
        if self._attempt_started or self._started:
            raise malformed("message_start after " + ("content" if self._started else "message_start"))
        message = getattr(event, "message", None)
        if message is None or getattr(message, "usage", None) is None:
            raise malformed("message_start without a message and its usage")
        self._attempt_started = True
        self._tokens.count(message.usage)
        if self._start is None:
            self._start = message
            self._held.append(event)
        return []

    def _on_block_start(self, event: Any) -> Events:
        index = getattr(event, "index", None)
        if type(index) is not int or index < 0:
            raise malformed(f"content_block_start with index {index!r}")
        if not isinstance(getattr(getattr(event, "content_block", None), "type", None), str):
            raise malformed(f"content_block_start without a block type (index {index})")
        if index in self._started:
            raise malformed(f"content_block_start for block {index}, which already started")
        self._started.add(index)
        if self._takeover is not None:
            out = self._takeover.block_start(event)
            self._sync_takeover()
            return out
        return self._out(self._content.start(event))

    def _on_block_stop(self, event: Any) -> Events:
        index = getattr(event, "index", None)
        if not isinstance(index, int):
            raise malformed(f"content_block_stop with index {index!r}")
        if self._takeover is not None:
            out = self._takeover.block_stop(index)
            if out is not None:
                self._sync_takeover()
                return out
        caller = self._content.index_map.pop(index, None)
        if caller is None:
            state = "already stopped" if index in self._started else "never started"
            raise malformed(f"content_block_stop for block {index}, which {state}")
        self._content.close(caller)
        return self._out(reindexed(event, caller))

    def _on_message_delta(self, event: Any) -> Events:
        delta = getattr(event, "delta", None)
        if not isinstance(delta, BaseModel):
            raise malformed("message_delta without a delta")
        out = self._end_takeover()
        usage = getattr(event, "usage", None)
        if usage is not None:
            self._tokens.count(usage)
            event = self._tokens.restated(event, usage)
        self._updates.update((name, value) for name, value in delta if value is not None)
        self._attempt_delta = True
        return [*out, *self._out(event)]

    def _on_message_stop(self, event: Any) -> Events:
        out = self._end_takeover()
        self._completed = True
        return [*out, *self._out(event, force=True)]

    def _end_takeover(self) -> Events:
        if self._takeover is None:
            return []
        out = self._takeover.end()
        self._sync_takeover()
        return out

    def _sync_takeover(self) -> None:
        if self._takeover is not None and self._takeover.done:
            self._takeover = None

    def _out(self, event: RawMessageStreamEvent, force: bool = False) -> Events:
        if self.emitted:
            return [event]
        if event.type == "content_block_delta" or force:
            self.emitted = event.type == "content_block_delta" or self.emitted
            held, self._held = self._held, []
            return [*held, event]
        self._held.append(event)
        return []

    # -- how an attempt ended ---------------------------------------------------------------------

    def finish(self, request_id: str | None = None) -> Message | Failure | Salvaged:
        """The attempt's stream ended without an exception."""
        self._end_attempt()
        if not self._completed:
            error = ConnectionError("the stream ended without message_stop")
            failure = Failure(Kind.SERVER_FAILURE, None, "incomplete_stream", request_id, error)
            return self._salvage(failure, request_id) or self._note(failure)
        return self._finalize(request_id)

    def failed(self, failure: Failure) -> Failure | Salvaged:
        """The attempt's stream raised (classified as `failure`)."""
        self._end_attempt()
        return self._salvage(failure, failure.request_id) or self._note(failure)

    def closing_events(self) -> Events:
        """After a Salvaged: the events that end the caller's stream (once; then [])."""
        out, self._closing = self._closing, []
        return out

    def _end_attempt(self) -> None:
        self._tokens.end()
        if self._takeover is not None:
            # Text held back to judge whether it repeats what was sent was never sent: it is dropped, so
            # the message says what the stream said. The next model resumes from the text actually sent.
            self._takeover.abandon()
            self._takeover = None

    def _finalize(self, request_id: str | None) -> Message:
        self.final = self.snapshot(final=True)
        if request_id:
            object.__setattr__(self.final, "_request_id", request_id)
        return self.final

    def _salvage(self, failure: Failure, request_id: str | None) -> Salvaged | None:
        """The message, if it is complete without resuming: the closing events are queued for the caller."""
        if not self.emitted:
            return None
        if not self._completed:
            closing = self._closing_for_salvage()
            if closing is None:
                return None
            self._closing, self._completed = closing, True
        note = f"{self._note_text()}, with its message complete (stop_reason {self._updates.get('stop_reason')})"
        return Salvaged(self._finalize(request_id), dataclasses.replace(failure, note=note))

    def _closing_for_salvage(self) -> Events | None:
        content = self._content
        tool_call = content.has_tool_call()
        closing: Events = []
        block = content.open_block()
        if block is not None:
            if not (tool_call and block.type == "text" and content.open is not None):
                return None  # broke inside a block: resume (or StreamInterrupted)
            closing.append(content.stop(content.open))  # text after a tool call: the call is the answer
        if tool_call and (closing or not self._attempt_delta):
            self._updates.update(stop_reason="tool_use", stop_sequence=None)
            closing.append(self._synthesized_delta())
        elif not self._attempt_delta:
            return None  # every block closed, but the message may go on: resume
        closing.append(RawMessageStopEvent(type="message_stop"))
        return closing

    def _synthesized_delta(self) -> RawMessageDeltaEvent:
        totals = self._tokens.totals()
        usage = MessageDeltaUsage(output_tokens=totals.get("output_tokens", 0), input_tokens=totals.get("input_tokens"),
                                  cache_creation_input_tokens=totals.get("cache_creation_input_tokens"),
                                  cache_read_input_tokens=totals.get("cache_read_input_tokens"))
        return RawMessageDeltaEvent(type="message_delta", delta=Delta(stop_reason="tool_use", stop_sequence=None),
                                    usage=usage)

    def _note_text(self) -> str:
        return f"stream broke after {self._content.text_len} chars"

    def _note(self, failure: Failure) -> Failure:
        if not self.emitted:
            return failure
        return dataclasses.replace(failure, note=self._note_text())

    # -- the caller's message ---------------------------------------------------------------------

    def partial_text(self) -> str:
        return self._content.partial_text()

    def snapshot(self, final: bool = False) -> Message:
        """The caller's message so far (or in full), with usage summed over every attempt.

        Built by copying the SDK's own objects with the streamed fields filled in: nothing is re-validated."""
        start = self._start or _empty_message()
        usage = start.usage.model_copy(update=self._tokens.usage_update())
        update = {**self._updates, "content": self._content.built(), "usage": usage}
        if not final:
            update["stop_reason"] = None
        return start.model_copy(update=update)


Stitcher._HANDLERS = {
    "message_start": Stitcher._on_message_start,
    "content_block_start": Stitcher._on_block_start,
    "content_block_stop": Stitcher._on_block_stop,
    "message_delta": Stitcher._on_message_delta,
    "message_stop": Stitcher._on_message_stop,
}


def _empty_message() -> Message:
    """For a stream that never sent message_start (built on demand: a Message at import costs ~8 ms)."""
    return Message(id="", type="message", role="assistant", model="", content=[], stop_reason=None,
                   stop_sequence=None, usage=Usage(input_tokens=0, output_tokens=0))
