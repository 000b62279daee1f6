"""Stream resume that never corrupts an answer: the Stitcher driven sans-IO at every break position, then end to end."""

from __future__ import annotations

import textwrap
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import pytest
from anthropic._models import construct_type
from anthropic.lib.streaming._messages import accumulate_event
from anthropic.types import Message, RawMessageStreamEvent

from router import Router, StreamInterrupted, parse_policy
from router.outcome import Failure, Kind, WireError
from router.policy import ModelConfig
from router.streaming.stitcher import Salvaged, Stitcher
from router.streaming.text_match import PREAMBLE_MAX
from router.testing import FakeServer, Fault, anthropic_events

from .conftest import KEYS, USER

Wire = list[tuple[str, dict[str, Any]]]

ANSWER = (
    "Otters are semi-aquatic mammals that live along rivers, lakes and coasts. They have dense fur that "
    "traps a layer of air, which keeps them warm and dry in cold water. Sea otters use stones as tools to "
    "crack open shellfish, and they often float on their backs while they eat. River otters dig burrows "
    "near the water's edge, usually with an underwater entrance that keeps predators out. Most otters eat "
    "fish, but many also take frogs, crayfish and crabs when they can find them. A group of otters on land "
    "is called a romp, while a group resting in the water is called a raft. Pups stay with their mother "
    "for about a year, learning to swim, dive and hunt before they leave to find a territory of their own."
)
PREAMBLE = "Sure, here it is: "
CONFIG = ModelConfig(alias="m", provider="anthropic", model="claude-opus-4-6")  # resumes with `continue`


def sdk(name: str, data: dict[str, Any]) -> RawMessageStreamEvent:
    """What the SDK's Stream yields for one SSE event (it constructs, it does not validate)."""
    event: RawMessageStreamEvent = construct_type(type_=RawMessageStreamEvent, value=data)  # type: ignore[arg-type]
    return event


def text_wire(text: str | Sequence[str], **kw: Any) -> Wire:
    return anthropic_events(text, **kw)


def cut_after(wire: Wire, sent: int) -> Wire:
    """The events up to the text delta after which `sent` chars of text were sent."""
    total = 0
    for i, (_, data) in enumerate(wire):
        if data["type"] == "content_block_delta" and data["delta"]["type"] == "text_delta":
            total += len(data["delta"]["text"])
            if total == sent:
                return wire[: i + 1]
    raise AssertionError(f"no delta ends at char {sent}")


def upto(wire: Wire, kind: str, nth: int = 1) -> Wire:
    """The events up to and including the nth event of `kind`."""
    seen = 0
    for i, (name, _) in enumerate(wire):
        seen += name == kind
        if seen == nth:
            return wire[: i + 1]
    raise AssertionError(f"fewer than {nth} {kind}")


@dataclass
class Played:
    out: list[RawMessageStreamEvent]  # what the caller received
    result: Message | StreamInterrupted
    attempts: int
    stitcher: Stitcher
    notes: list[str | None]


def play(*attempts: tuple[Wire, str]) -> Played:
    """Drive the Stitcher as the driver and the engine would: begin, feed, finish/failed, one model each."""
    stitcher = Stitcher("resume")
    out: list[RawMessageStreamEvent] = []
    notes: list[str | None] = []
    for n, (wire, end) in enumerate(attempts, 1):
        stitcher.begin(CONFIG)
        reply: Message | Failure | Salvaged
        try:
            for name, data in wire:
                out += stitcher.feed(sdk(name, data))
            if end == "cut":
                raise ConnectionError("the body was cut")
            reply = stitcher.finish("req_1")
        except (ConnectionError, WireError) as exc:
            reply = stitcher.failed(Failure(Kind.SERVER_FAILURE, None, "connection_error", None, exc))
        notes.append(stitcher.takeover_note)
        if isinstance(reply, Salvaged):
            out += stitcher.closing_events()
            assert stitcher.closing_events() == []  # given once
            return Played(out, reply.message, n, stitcher, notes)
        if isinstance(reply, Message):
            return Played(out, reply, n, stitcher, notes)
        interrupted = stitcher.interrupted(reply, [])
        if interrupted is not None:
            return Played(out, interrupted, n, stitcher, notes)
    raise AssertionError("every attempt failed")


def streamed_text(out: Sequence[RawMessageStreamEvent]) -> str:
    return "".join(e.delta.text for e in out if e.type == "content_block_delta" and e.delta.type == "text_delta")


def message_text(message: Message) -> str:
    return "".join(b.text for b in message.content if b.type == "text")


def tool_calls(message: Message) -> list[Any]:
    return [b.input for b in message.content if b.type == "tool_use"]


def check_stream(out: Sequence[RawMessageStreamEvent], final: Message) -> None:
    """One well-formed Anthropic stream, whose SDK-accumulated message is the final message."""
    kinds = [e.type for e in out]
    assert kinds[0] == "message_start" and kinds.count("message_start") == 1
    assert kinds[-1] == "message_stop" and kinds.count("message_stop") == 1
    open_index: int | None = None
    next_index = 0
    for e in out:
        if e.type == "content_block_start":
            assert open_index is None and e.index == next_index, kinds
            open_index, next_index = e.index, next_index + 1
        elif e.type in ("content_block_delta", "content_block_stop"):
            assert e.index == open_index, kinds
            open_index = None if e.type == "content_block_stop" else open_index
        elif e.type in ("message_delta", "message_stop"):
            assert open_index is None, kinds
    snapshot = None
    json_bufs: dict[int, bytes] = {}
    for e in out:
        snapshot = accumulate_event(event=e, current_snapshot=snapshot, json_bufs=json_bufs)
    assert snapshot is not None
    assert [(b.type, getattr(b, "text", None)) for b in snapshot.content] == [
        (b.type, getattr(b, "text", None)) for b in final.content]
    assert snapshot.stop_reason == final.stop_reason


def check_answer(played: Played, answer: str, tools: int = 0) -> Message:
    final = played.result
    assert isinstance(final, Message), final
    check_stream(played.out, final)
    assert streamed_text(played.out) == message_text(final) == answer
    assert message_text(final).count(answer) == 1
    assert len(tool_calls(final)) == tools
    return final


# -- breaks inside a text block -------------------------------------------------------------------

def takeover_text(behaviour: str, sent: str, answer: str) -> str:
    """What the taking-over model streams, for each way a model may take over."""
    if behaviour == "continue":
        return answer[len(sent):]
    if behaviour == "overlap":  # repeats the last two words (or so) first
        return answer[sent.rstrip().rfind(" ", 0, max(0, len(sent.rstrip()) - 1)) + 1:]
    if behaviour == "restart":
        return answer
    return PREAMBLE + answer


BEHAVIOURS = ["continue", "overlap", "restart", "preamble"]


@pytest.mark.parametrize("behaviour", BEHAVIOURS)
@pytest.mark.parametrize("sent", [10, 45, 72, 500])
def test_break_inside_text(sent: int, behaviour: str) -> None:
    pieces = [*_words(ANSWER[:sent]), *_words(ANSWER[sent:])]
    broken = cut_after(text_wire(pieces), sent)
    played = play((broken, "cut"), (text_wire(takeover_text(behaviour, ANSWER[:sent], ANSWER)), "done"))
    final = check_answer(played, ANSWER)
    assert final.stop_reason == "end_turn"
    note = played.notes[1] or ""
    expected = {"continue": f"continued at char {sent}", "overlap": "repeated chars dropped",
                "restart": f"restarted its answer: {sent} repeated",
                "preamble": f"after a {len(PREAMBLE)}-char preamble"}
    assert expected[behaviour] in note, note


def _words(text: str) -> list[str]:
    return [text[i:i + 7] for i in range(0, len(text), 7)]  # 7-char pieces: joins fall anywhere


def test_a_restart_is_held_back_until_it_runs_past_the_text_sent() -> None:
    stitcher = Stitcher("resume")
    stitcher.begin(CONFIG)
    for name, data in cut_after(text_wire(_words(ANSWER)), 497):
        stitcher.feed(sdk(name, data))
    stitcher.failed(Failure(Kind.SERVER_FAILURE, None, "connection_error", None, ConnectionError()))
    stitcher.begin(CONFIG)
    out = []
    for name, data in text_wire(_words(ANSWER))[:-3]:  # up to the last delta, no stop
        got = stitcher.feed(sdk(name, data))
        if not streamed_text(out):
            assert sum(len(e.delta.text) for e in got if e.type == "content_block_delta") in (0, 504 - 497)
        out += got
    assert streamed_text(out) == ANSWER[497:]


def test_a_continuation_that_matches_nothing_is_held_at_most_the_preamble_bound() -> None:
    stitcher = Stitcher("resume")
    stitcher.begin(CONFIG)
    for name, data in cut_after(text_wire(_words(ANSWER)), 49):
        stitcher.feed(sdk(name, data))
    stitcher.failed(Failure(Kind.SERVER_FAILURE, None, "connection_error", None, ConnectionError()))
    stitcher.begin(CONFIG)
    fed = 0
    out: list[RawMessageStreamEvent] = []
    for name, data in text_wire(["zq "] * 200)[:-3]:
        out += stitcher.feed(sdk(name, data))
        if data["type"] == "content_block_delta":
            fed += 3
            assert bool(streamed_text(out)) == (fed > PREAMBLE_MAX), fed
    assert stitcher.takeover_note == "takeover continued at char 49"


def test_a_prefill_takeover_is_not_held_back_for_a_preamble() -> None:
    prefill = ModelConfig(alias="old", provider="anthropic", model="claude-sonnet-4-5")
    stitcher = Stitcher("resume")
    stitcher.begin(CONFIG)
    for name, data in cut_after(text_wire(_words(ANSWER)), 49):
        stitcher.feed(sdk(name, data))
    stitcher.failed(Failure(Kind.SERVER_FAILURE, None, "connection_error", None, ConnectionError()))
    assert stitcher.begin(prefill) == "resumed at char 49 (prefill)"
    out: list[RawMessageStreamEvent] = []
    for name, data in text_wire(_words(ANSWER[49:]))[:4]:  # message_start, block start, 2 deltas
        out += stitcher.feed(sdk(name, data))
    assert streamed_text(out) == ANSWER[49:63]  # released as it came: nothing to wait for
    assert stitcher.takeover_note == "takeover continued at char 49"


def test_a_model_that_answers_again_in_other_words_is_appended_and_noted() -> None:
    broken = cut_after(text_wire(_words(ANSWER)), 70)  # 7-char pieces: 70 chars
    other = ANSWER[:40] + " -- said differently, otters are lovely animals."
    played = play((broken, "cut"), (text_wire(other), "done"))
    final = played.result
    assert isinstance(final, Message)
    assert streamed_text(played.out) == message_text(final) == ANSWER[:70] + other
    assert played.notes[1] == "takeover did not match the text sent: appended as a continuation"


# -- breaks between blocks, after message_delta, after a tool call ----------------------------------

B1 = ANSWER[: ANSWER.index("water. ") + 7]  # "... warm and dry in cold water. "
B2 = ANSWER[len(B1):]


@pytest.mark.parametrize("behaviour", BEHAVIOURS)
def test_break_between_text_blocks(behaviour: str) -> None:
    wire = text_wire("", text_blocks=[B1, B2])
    broken = upto(wire, "content_block_stop")
    blocks = {"continue": [B2], "overlap": [takeover_text("overlap", B1, ANSWER)], "restart": [B1, B2],
              "preamble": [PREAMBLE + B1, B2]}
    played = play((broken, "cut"), (text_wire("", text_blocks=blocks[behaviour]), "done"))
    final = check_answer(played, ANSWER)
    assert "".join(b.text for b in final.content if b.type == "text") == ANSWER  # type: ignore[union-attr]


def test_break_after_a_text_block_runs_overlap_trimming() -> None:
    # Issue item 3: "...river bank.near the river bank." across two blocks.
    first = "The heron waited near the river bank."
    played = play((upto(text_wire(first), "content_block_stop"), "cut"),
                  (text_wire(" near the river bank. Then it flew away."), "done"))
    check_answer(played, first + " Then it flew away.")


@pytest.mark.parametrize("end", ["cut", "done"])
def test_break_after_message_delta_is_complete_without_resuming(end: str) -> None:
    wire = text_wire(ANSWER, stop_reason="max_tokens")
    played = play((upto(wire, "message_delta"), end), (text_wire("NEVER"), "done"))
    final = check_answer(played, ANSWER)
    assert played.attempts == 1 and final.stop_reason == "max_tokens"


@pytest.mark.parametrize("behaviour", ["continue", "restart"])
def test_break_after_a_finished_tool_call_ends_the_message_there(behaviour: str) -> None:
    wire = text_wire("Let me check the weather.", tool_use=("get_weather", {"city": "Paris"}))
    broken = upto(wire, "content_block_stop", 2)
    again = text_wire("Let me check the weather." if behaviour == "restart" else "",
                      tool_use=("get_weather", {"city": "Paris"}))
    played = play((broken, "cut"), (again, "done"))
    final = check_answer(played, "Let me check the weather.", tools=1)
    assert played.attempts == 1 and final.stop_reason == "tool_use"
    assert tool_calls(final) == [{"city": "Paris"}]
    assert [e.type for e in played.out[-2:]] == ["message_delta", "message_stop"]


def test_break_inside_text_after_a_tool_call_keeps_the_one_call() -> None:
    wire = text_wire("", text_blocks=[], tool_use=("f", {"a": 1}))
    tool_then_text = [*wire[:-2], ("content_block_start", {"type": "content_block_start", "index": 1,
                                                          "content_block": {"type": "text", "text": ""}}),
                      ("content_block_delta", {"type": "content_block_delta", "index": 1,
                                               "delta": {"type": "text_delta", "text": "Calling f now"}})]
    played = play((tool_then_text, "cut"), (text_wire("NEVER"), "done"))
    final = check_answer(played, "Calling f now", tools=1)
    assert final.stop_reason == "tool_use" and played.attempts == 1


@pytest.mark.parametrize("inside", ["tool_use", "thinking"])
def test_break_inside_tool_use_or_thinking_after_content_raises(inside: str) -> None:
    if inside == "tool_use":
        wire = text_wire("Let me check.", tool_use=("get_weather", {"city": "Paris"}))
        broken = upto(wire, "content_block_delta", 4)  # 3 text deltas, then 1 of the 3 JSON pieces
    else:
        wire = text_wire("Done.", thinking="Let me think about otters for a while.")
        broken = upto(wire, "content_block_delta", 3)
    played = play((broken, "cut"), (text_wire("NEVER"), "done"))
    assert isinstance(played.result, StreamInterrupted)
    assert f"inside a {inside} block" in played.result.reason
    assert played.result.partial_text == streamed_text(played.out)


def test_break_inside_tool_use_before_content_restarts_invisibly() -> None:
    wire = text_wire("", tool_use=("f", {"a": 1}))
    played = play((upto(wire, "content_block_start"), "cut"), (text_wire("", tool_use=("f", {"a": 2})), "done"))
    final = check_answer(played, "", tools=1)
    assert tool_calls(final) == [{"a": 2}]


@pytest.mark.parametrize("behaviour", ["continue", "restart"])
def test_a_takeover_that_thinks_first_closes_the_broken_block_and_still_joins(behaviour: str) -> None:
    thought = "Otters, right."
    broken = cut_after(text_wire(_words(ANSWER), thinking=thought), 70)
    again = text_wire(takeover_text(behaviour, ANSWER[:70], ANSWER), thinking="Go on from there.")
    played = play((broken, "cut"), (again, "done"))
    final = check_answer(played, ANSWER)
    assert [b.type for b in final.content] == ["thinking", "text", "thinking", "text"]


# -- a second break during the takeover -----------------------------------------------------------

@pytest.mark.parametrize("second", [28, 105])  # inside the held-back repeat / after new text flowed
@pytest.mark.parametrize("third", ["continue", "restart", "preamble"])
def test_a_second_break_during_a_takeover(second: int, third: str) -> None:
    pieces = _words(ANSWER)
    first = cut_after(text_wire(pieces), 70)
    restart = cut_after(text_wire(pieces), second)  # the second model restarts, then breaks
    sent = 70 if second < 70 else second
    played = play((first, "cut"), (restart, "cut"), (text_wire(takeover_text(third, ANSWER[:sent], ANSWER)), "done"))
    check_answer(played, ANSWER)
    if second < 70:
        assert played.notes[1] == f"takeover broke while its text was held back: {second} chars dropped"


# -- forward compatibility and malformed streams ----------------------------------------------------

UNKNOWN_EVENT = ("future_event", {"type": "future_event", "payload": {"x": 1}})
PING = ("ping", {"type": "ping"})


def test_unknown_event_types_and_pings_pass_through_and_change_nothing() -> None:
    wire = text_wire(["Hello", " world"])
    wire = [wire[0], UNKNOWN_EVENT, *wire[:4][1:], UNKNOWN_EVENT, PING, *wire[4:]]
    played = play((wire, "done"))
    final = check_answer(played, "Hello world")
    types = [e.type for e in played.out]
    assert types.count("future_event") == 2 and types.count("ping") == 1
    assert types.index("future_event") > types.index("message_start")
    assert final.usage.input_tokens == 10


def test_an_unknown_delta_type_for_a_known_block_passes_through() -> None:
    wire = text_wire(["Hello", " world"])
    odd = ("content_block_delta", {"type": "content_block_delta", "index": 0,
                                   "delta": {"type": "future_delta", "glow": True}})
    played = play(([*wire[:3], odd, *wire[3:]], "done"))
    check_answer(played, "Hello world")
    assert [getattr(e.delta, "type", None) for e in played.out if e.type == "content_block_delta"] == [
        "text_delta", "future_delta", "text_delta"]


def _delta(index: int, delta: dict[str, Any]) -> tuple[str, dict[str, Any]]:
    return "content_block_delta", {"type": "content_block_delta", "index": index, "delta": delta}


MALFORMED = {
    "delta for a block that never started": lambda w: [*w[:2], _delta(5, {"type": "text_delta", "text": "x"})],
    "delta after its block stopped": lambda w: [*w[:5], _delta(0, {"type": "text_delta", "text": "x"})],
    "stop for a block that never started": lambda w: [*w[:3], ("content_block_stop", {"type": "content_block_stop",
                                                                                      "index": 3})],
    "start for an index already open": lambda w: [*w[:3], w[1]],
    "known delta for the wrong block": lambda w: [*w[:2], _delta(0, {"type": "input_json_delta", "partial_json": "{"})],
    "text_delta without text": lambda w: [*w[:2], _delta(0, {"type": "text_delta"})],
    "message_start after content": lambda w: [*w[:3], w[0]],
    "delta without a delta": lambda w: [*w[:2], ("content_block_delta", {"type": "content_block_delta", "index": 0})],
}


@pytest.mark.parametrize("name", list(MALFORMED))
def test_malformed_events_raise_wire_error(name: str) -> None:
    wire = MALFORMED[name](text_wire(["Hello", " world"]))
    stitcher = Stitcher("resume")
    stitcher.begin(CONFIG)
    with pytest.raises(WireError) as caught:
        for event_name, data in wire:
            stitcher.feed(sdk(event_name, data))
    assert caught.value.error_type == "malformed_stream"


@pytest.mark.parametrize("name", ["delta for a block that never started", "start for an index already open"])
def test_a_malformed_stream_before_content_fails_over_invisibly(name: str) -> None:
    bad = MALFORMED[name](text_wire(["Hello", " world"]))
    bad = [e for e in bad if not (e[0] == "content_block_delta" and e[1]["delta"].get("text") in ("Hello", " world"))]
    played = play((bad, "done"), (text_wire(["All ", "good"]), "done"))
    check_answer(played, "All good")
    assert played.attempts == 2


# -- usage ----------------------------------------------------------------------------------------

def _with_usage(wire: Wire, start: dict[str, int], delta: dict[str, int]) -> Wire:
    out = [(n, dict(d)) for n, d in wire]
    out[0][1]["message"] = {**out[0][1]["message"], "usage": start}
    out[-2][1]["usage"] = delta
    return out


@pytest.mark.parametrize(("start", "delta", "expected"), [
    ({"input_tokens": 0, "output_tokens": 1}, {"input_tokens": 21, "output_tokens": 5}, (21, 5)),  # litellm
    ({"input_tokens": 21, "output_tokens": 1}, {"output_tokens": 5}, (21, 5)),  # Anthropic
    ({"input_tokens": 21, "output_tokens": 1}, {"input_tokens": 21, "output_tokens": 5}, (21, 5)),  # both: once
])
def test_usage_takes_input_tokens_from_wherever_they_come(
    start: dict[str, int], delta: dict[str, int], expected: tuple[int, int]
) -> None:
    played = play((_with_usage(text_wire("Hi there"), start, delta), "done"))
    final = check_answer(played, "Hi there")
    assert (final.usage.input_tokens, final.usage.output_tokens) == expected


def test_usage_sums_attempts_with_cache_fields() -> None:
    first = _with_usage(text_wire(_words(ANSWER)), {"input_tokens": 21, "output_tokens": 1,
                                                    "cache_read_input_tokens": 7}, {"output_tokens": 99})
    second = _with_usage(text_wire(ANSWER[42:]), {"input_tokens": 0, "output_tokens": 1},
                         {"input_tokens": 30, "output_tokens": 9, "cache_creation_input_tokens": 4})
    played = play((cut_after(first, 42), "cut"), (second, "done"))
    usage = check_answer(played, ANSWER).usage
    assert (usage.input_tokens, usage.output_tokens) == (21 + 30, 1 + 9)  # the broken attempt is billed too
    assert (usage.cache_read_input_tokens, usage.cache_creation_input_tokens) == (7, 4)
    last_delta = [e for e in played.out if e.type == "message_delta"][-1]
    assert (last_delta.usage.input_tokens, last_delta.usage.output_tokens) == (51, 10)  # the caller's, too


# -- end to end: the real SDK over real HTTP, primary cut at a boundary -----------------------------
# These need the engine to consume what the Stitcher returns (Salvaged, WireError as a counted failure).

PRIMARY, FALLBACK = "claude-opus-4-6", "claude-sonnet-4-6"


def e2e_policy(url: str) -> str:
    return textwrap.dedent(f"""
    version: 1
    defaults:
      retry: {{attempts: 1}}
      timeout: {{connect: 1s, read: 2s, total: 20s, stream_idle: 500ms}}
    models:
      primary:  {{provider: anthropic, model: {PRIMARY}, base_url: "{url}", api_key: "${{KEY_PRIMARY}}"}}
      fallback: {{provider: anthropic, model: {FALLBACK}, base_url: "{url}", api_key: "${{KEY_FALLBACK}}"}}
    routes:
      default: [primary, fallback]
    """)


@pytest.fixture
async def erouter(fake_server: FakeServer, clock: Any):  # type: ignore[no-untyped-def]
    r = Router(parse_policy(e2e_policy(fake_server.url), env=KEYS), clock=clock)
    yield r
    await r.aclose()


async def stream_all(r: Router, mode: str) -> tuple[list[Any], list[str], Message]:
    if mode == "sync":
        with r.stream(messages=USER, max_tokens=1024) as s:
            events = list(s)
            final = s.get_final_message()
    else:
        async with r.astream(messages=USER, max_tokens=1024) as s:
            events = [e async for e in s]
            final = await s.get_final_message()
    return events, [t for t in (_text_of(e) for e in events) if t is not None], final


def _text_of(event: Any) -> str | None:
    if event.type == "content_block_delta" and event.delta.type == "text_delta":
        return str(event.delta.text)
    return None


def _sse(wire: Wire, end: str = "done") -> Fault:
    return Fault.sse(wire, end=end)  # type: ignore[arg-type]


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("behaviour", ["continue", "restart", "preamble"])
@pytest.mark.parametrize("sent", [10, 45, 72, 500])
async def test_e2e_cut_inside_text(
    fake_server: FakeServer, erouter: Router, behaviour: str, mode: str, sent: int
) -> None:
    pieces = [*_words(ANSWER[:sent]), *_words(ANSWER[sent:])]
    fake_server.plan(PRIMARY, [_sse(cut_after(anthropic_events(pieces, model=PRIMARY), sent), "cut")])
    takeover = takeover_text(behaviour, ANSWER[:sent], ANSWER)
    fake_server.plan(FALLBACK, [_sse(anthropic_events(takeover, model=FALLBACK))])
    events, parts, final = await stream_all(erouter, mode)
    assert "".join(parts) == message_text(final) == ANSWER
    check_stream(events, final)
    assert final.stop_reason == "end_turn"
    assert [a.model for a in final.routing.attempts] == ["primary", "fallback"]  # type: ignore[attr-defined]


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("behaviour", ["continue", "restart", "preamble"])
async def test_e2e_cut_between_blocks(fake_server: FakeServer, erouter: Router, behaviour: str, mode: str) -> None:
    primary = upto(anthropic_events("", text_blocks=[B1, B2], model=PRIMARY), "content_block_stop")
    blocks = {"continue": [B2], "restart": [B1, B2], "preamble": [PREAMBLE + B1, B2]}[behaviour]
    fake_server.plan(PRIMARY, [_sse(primary, "cut")])
    fake_server.plan(FALLBACK, [_sse(anthropic_events("", text_blocks=blocks, model=FALLBACK))])
    events, parts, final = await stream_all(erouter, mode)
    assert "".join(parts) == message_text(final) == ANSWER
    check_stream(events, final)


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("end", ["cut", "done"])
async def test_e2e_cut_after_message_delta_needs_no_resume(
    fake_server: FakeServer, erouter: Router, end: str, mode: str
) -> None:
    fake_server.plan(PRIMARY, [_sse(upto(anthropic_events(ANSWER, model=PRIMARY), "message_delta"), end)])
    fake_server.plan(FALLBACK, [_sse(anthropic_events("NEVER", model=FALLBACK))])
    events, parts, final = await stream_all(erouter, mode)
    assert "".join(parts) == message_text(final) == ANSWER
    check_stream(events, final)
    assert fake_server.count(FALLBACK) == 0
    assert erouter.breakers()["primary"].failures == 1  # it still failed on the wire


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_e2e_cut_after_a_tool_call_calls_it_once(fake_server: FakeServer, erouter: Router, mode: str) -> None:
    wire = anthropic_events("Let me check the weather.", tool_use=("get_weather", {"city": "Paris"}), model=PRIMARY)
    fake_server.plan(PRIMARY, [_sse(upto(wire, "content_block_stop", 2), "cut")])
    fake_server.plan(FALLBACK, [_sse(anthropic_events("", tool_use=("get_weather", {"city": "Rome"}), model=FALLBACK))])
    events, parts, final = await stream_all(erouter, mode)
    check_stream(events, final)
    assert "".join(parts) == message_text(final) == "Let me check the weather."
    assert final.stop_reason == "tool_use" and tool_calls(final) == [{"city": "Paris"}]
    assert fake_server.count(FALLBACK) == 0
    assert erouter.breakers()["primary"].failures == 1


async def test_e2e_unknown_event_types_pass_through(fake_server: FakeServer, erouter: Router) -> None:
    wire = anthropic_events(["Hello", " world"], model=PRIMARY)
    fake_server.plan(PRIMARY, [_sse([wire[0], UNKNOWN_EVENT, *wire[1:4], UNKNOWN_EVENT, *wire[4:]])])
    events, parts, final = await stream_all(erouter, "sync")
    assert "".join(parts) == message_text(final) == "Hello world"
    assert [e.type for e in events].count("future_event") == 2
    assert fake_server.count(FALLBACK) == 0


async def test_e2e_malformed_stream_before_content_fails_over_invisibly(
    fake_server: FakeServer, erouter: Router
) -> None:
    wire = anthropic_events(["Hello", " world"], model=PRIMARY)
    fake_server.plan(PRIMARY, [_sse([*wire[:2], _delta(3, {"type": "text_delta", "text": "x"}), *wire[2:]])])
    fake_server.plan(FALLBACK, [_sse(anthropic_events(["All ", "good"], model=FALLBACK))])
    _, parts, final = await stream_all(erouter, "async")
    assert "".join(parts) == message_text(final) == "All good"
    broke = final.routing.attempts[0]  # type: ignore[attr-defined]
    assert (broke.outcome, broke.error_type) == (Kind.SERVER_FAILURE, "malformed_stream")


def litellm_usage_policy(url: str) -> str:  # generous first_byte/first_token: litellm imports slowly
    return textwrap.dedent(f"""
    version: 1
    defaults:
      retry: {{attempts: 1}}
      timeout: {{connect: 1s, read: 5s, total: 90s, stream_idle: 5s, first_byte: 60s, first_token: 60s}}
    models:
      gpt: {{provider: litellm, model: openai/gpt-usage, base_url: "{url}/v1", api_key: "${{KEY_FALLBACK}}"}}
    routes:
      default: [gpt]
    """)


async def test_e2e_usage_through_litellm_counts_input_tokens(fake_server: FakeServer, clock: Any) -> None:
    fake_server.plan("gpt-usage", [Fault.ok(deltas=["Hi", " there"], input_tokens=21, output_tokens=5)])
    r = Router(parse_policy(litellm_usage_policy(fake_server.url), env=KEYS), clock=clock)
    try:
        _, parts, final = await stream_all(r, "async")
    finally:
        await r.aclose()
    assert "".join(parts) == "Hi there"
    assert (final.usage.input_tokens, final.usage.output_tokens) == (21, 5)


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("inside", ["tool_use", "thinking"])
async def test_e2e_cut_inside_tool_use_or_thinking_after_content(
    fake_server: FakeServer, erouter: Router, inside: str, mode: str
) -> None:
    # Text reached the caller, then the stream broke inside a block that cannot be resumed: one clear
    # error with what was received, and no tool call made twice (none is made at all).
    if inside == "tool_use":
        wire = anthropic_events("Let me check.", tool_use=("get_weather", {"city": "Paris"}), model=PRIMARY)
        cut = upto(wire, "content_block_delta", len([e for e in wire if e[0] == "content_block_delta"]) - 1)
    else:
        wire = anthropic_events("", text_blocks=["Let me check."], model=PRIMARY)
        thinking = anthropic_events("", thinking="Considering the weather in Paris.", model=PRIMARY)
        cut = [*upto(wire, "content_block_stop"), *[(n, {**d, "index": 1}) if "index" in d else (n, d)
                                                    for n, d in thinking[1:3]]]
    fake_server.plan(PRIMARY, [_sse(cut, "cut")])
    fake_server.plan(FALLBACK, [_sse(anthropic_events("NEVER", model=FALLBACK))])
    with pytest.raises(StreamInterrupted) as info:
        await stream_all(erouter, mode)
    assert info.value.partial_text == "Let me check."
    assert tool_calls(info.value.partial_message) == []
    assert fake_server.count(FALLBACK) == 0


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("behaviour", ["continue", "restart", "preamble"])
async def test_e2e_takeover_through_litellm(fake_server: FakeServer, clock: Any, behaviour: str, mode: str) -> None:
    sent = 72
    url = fake_server.url
    policy = textwrap.dedent(f"""
    version: 1
    defaults:
      retry: {{attempts: 1}}
      timeout: {{connect: 2s, read: 10s, total: 60s, stream_idle: 2s, first_byte: 60s, first_token: 60s}}
    models:
      primary: {{provider: anthropic, model: {PRIMARY}, base_url: "{url}", api_key: "${{KEY_PRIMARY}}"}}
      gpt:     {{provider: litellm, model: openai/gpt-takeover, base_url: "{url}/v1", api_key: "${{KEY_FALLBACK}}"}}
    routes:
      default: [primary, gpt]
    """)
    pieces = [*_words(ANSWER[:sent]), *_words(ANSWER[sent:])]
    fake_server.plan(PRIMARY, [_sse(cut_after(anthropic_events(pieces, model=PRIMARY), sent), "cut")])
    fake_server.plan("gpt-takeover", [Fault.ok(deltas=_words(takeover_text(behaviour, ANSWER[:sent], ANSWER)))])
    r = Router(parse_policy(policy, env=KEYS), clock=clock)
    try:
        _, parts, final = await stream_all(r, mode)
    finally:
        await r.aclose()
    assert "".join(parts) == message_text(final) == ANSWER
    assert [a.model for a in final.routing.attempts] == ["primary", "gpt"]  # type: ignore[attr-defined]
