"""A model taking over a broken stream: its text is held back until `TextMatch` knows how it joins the text sent.

The takeover's text blocks are held whole (start, deltas, stop) while the match is open; they may span
several blocks, since a restart repeats every block. Once decided, the repeat is cut from the front and
the rest is released: into the caller's broken text block if one is still open (the takeover "adopts"
it), else into new caller blocks that follow the caller's numbering. A held block that ends up with no
text is never started for the caller; one still open is started lazily, on its first text.
"""

from __future__ import annotations

from collections.abc import Callable

from anthropic.types import RawContentBlockDeltaEvent, RawContentBlockStartEvent, RawMessageStreamEvent, TextDelta

from .blocks import KNOWN_DELTAS, Content, malformed
from .text_match import TextMatch

Events = list[RawMessageStreamEvent]


class _Held:
    """One of the takeover's text blocks, held back while its text is matched."""

    __slots__ = ("deltas", "index", "start", "stopped")

    def __init__(self, start: RawContentBlockStartEvent) -> None:
        self.index = start.index
        self.start = start
        self.deltas: list[tuple[RawContentBlockDeltaEvent, str]] = []
        self.stopped = False


class Takeover:
    """The events of one taking-over attempt that need more than renumbering (see the module docstring)."""

    def __init__(
        self, content: Content, sent: str, normal: Callable[[RawContentBlockDeltaEvent], Events], preambles: bool
    ) -> None:
        self.content = content
        block = content.open_block()
        self.adopt = content.open if block is not None and block.type == "text" else None
        self.match = TextMatch(sent, preambles) if sent else None  # None: nothing (more) to match
        self.held: list[_Held] = []
        self.lazy: dict[int, RawContentBlockStartEvent] = {}  # takeover index -> its start, not sent yet
        self.note: str | None = None
        self._normal = normal  # the Stitcher's own handling of a delta

    @property
    def done(self) -> bool:
        """Nothing left to do: the Stitcher can go back to its plain path."""
        return self.match is None and self.adopt is None and not self.lazy

    def held_chars(self) -> int:
        return sum(len(text) for held in self.held for _, text in held.deltas)

    # -- the takeover's events --------------------------------------------------------------------

    def block_start(self, event: RawContentBlockStartEvent) -> Events:
        block = event.content_block
        if block.type == "text":
            initial = block.text if isinstance(block.text, str) else ""
            if initial:  # text in the start itself: treated like a first delta
                block = block.model_copy(update={"text": ""})
                event = event.model_copy(update={"content_block": block})
            if self.match is not None:
                self.held.append(_Held(event))
                return self._text(self.held[-1], _text_delta(event.index, initial), initial) if initial else []
            if self.adopt is not None:
                caller = self._take_adopt(event.index)
                return [self.content.add_text(caller, _text_delta(event.index, initial), initial)] if initial else []
            out: Events = [self.content.start(event)]
            return out + self._normal(_text_delta(event.index, initial)) if initial else out
        out = self._decide() if self.held else []
        out += self._close_adopt()
        out.append(self.content.start(event))
        return out

    def delta(self, event: RawContentBlockDeltaEvent) -> Events:
        held = next((h for h in self.held if h.index == event.index), None)
        if held is not None:
            if held.stopped:
                raise malformed(f"content_block_delta for block {event.index} after its content_block_stop")
            kind = getattr(event.delta, "type", None)
            if kind == "text_delta":
                text = getattr(event.delta, "text", None)
                if type(text) is not str:
                    raise malformed("text_delta without a string text")
                return self._text(held, event, text)
            if not isinstance(kind, str) or (kind in KNOWN_DELTAS and kind != "citations_delta"):
                raise malformed(f"{kind} for text block {event.index}")
            if kind == "citations_delta" and getattr(event.delta, "citation", None) is None:
                raise malformed("citations_delta without a citation")
            return [*self._decide(), *self.delta(event)]  # a citation or a new kind of delta: decide first
        start = self.lazy.get(event.index)
        if start is not None:
            if getattr(event.delta, "text", None) == "":
                return []
            del self.lazy[event.index]
            return [self.content.start(start), *self._normal(event)]
        return self._normal(event)

    def block_stop(self, index: int) -> Events | None:
        """The takeover's content_block_stop; None when it is an ordinary block's."""
        for held in self.held:
            if held.index == index:
                if held.stopped:
                    raise malformed(f"a second content_block_stop for block {index}")
                held.stopped = True  # keep holding: a restart goes on in its next block
                return []
        if self.lazy.pop(index, None) is not None:
            return []  # it said nothing new: never started for the caller
        return None

    def end(self) -> Events:
        """message_delta or message_stop: judge what is held, and close the caller's broken block."""
        out = self._decide() if self.held else []
        self.match = None
        return out + self._close_adopt()

    def abandon(self) -> None:
        """The attempt broke: held text was never sent, so it is dropped (the next model resumes from the
        text actually sent). The caller's broken block, if still open, stays open for the next model."""
        if self.held:
            self.note = f"takeover broke while its text was held back: {self.held_chars()} chars dropped"
        self.held = []
        self.lazy.clear()

    # -- deciding ---------------------------------------------------------------------------------

    def _text(self, held: _Held, event: RawContentBlockDeltaEvent, text: str) -> Events:
        held.deltas.append((event, text))
        assert self.match is not None
        return self._decide() if self.match.feed(text) else []

    def _decide(self) -> Events:
        """Cut the repeat from the front of the held text and release the rest."""
        match = self.match
        assert match is not None
        match.force()
        self.note = match.note
        drop = match.dropped or 0
        self.match = None
        out: Events = []
        for held in self.held:
            kept: list[tuple[RawContentBlockDeltaEvent, str]] = []
            for event, text in held.deltas:
                if drop >= len(text):
                    drop -= len(text)
                    continue
                if drop:
                    event, text = _trimmed(event, text[drop:]), text[drop:]
                    drop = 0
                kept.append((event, text))
            out += self._release(held, kept)
        self.held = []
        return out

    def _release(self, held: _Held, kept: list[tuple[RawContentBlockDeltaEvent, str]]) -> Events:
        content = self.content
        if not kept:
            if not held.stopped:  # still streaming: it goes on in the broken block, or starts on its first text
                if self.adopt is not None:
                    self._take_adopt(held.index)
                else:
                    self.lazy[held.index] = held.start
            return []
        out: Events = []
        if self.adopt is not None:
            caller = self._take_adopt(held.index)
        else:
            out.append(content.start(held.start))
            caller = content.index_map[held.index]
        out += (content.add_text(caller, event, text) for event, text in kept)
        if held.stopped:
            del content.index_map[held.index]
            out.append(content.stop(caller))
        return out

    def _take_adopt(self, index: int) -> int:
        caller = self.adopt
        assert caller is not None
        self.adopt = None
        self.content.adopt(index, caller)
        return caller

    def _close_adopt(self) -> Events:
        """The takeover moved on without adding to the caller's broken text block: close it."""
        if self.adopt is None:
            return []
        caller, self.adopt = self.adopt, None
        return [self.content.stop(caller)]


def _text_delta(index: int, text: str) -> RawContentBlockDeltaEvent:
    delta = TextDelta(type="text_delta", text=text)
    return RawContentBlockDeltaEvent(type="content_block_delta", index=index, delta=delta)


def _trimmed(event: RawContentBlockDeltaEvent, text: str) -> RawContentBlockDeltaEvent:
    return event.model_copy(update={"delta": event.delta.model_copy(update={"text": text})})
