"""Streaming with failover before and after the first token: real SDK over real HTTP, sync and async."""

from __future__ import annotations

import textwrap
import time

import pytest
from anthropic.types import Message

from router import AllModelsFailed, Kind, Router, StreamInterrupted, parse_policy
from router.streaming.stitcher import CONTINUE_PROMPT, resume_method
from router.testing import FakeServer, Fault

from .conftest import KEYS, USER

PRIMARY, FALLBACK, OLD = "claude-opus-4-6", "claude-sonnet-4-6", "claude-haiku-4-5"
BROKEN = ["Hello", " wor"]


def stream_policy(url: str, *, on_interrupt: str = "resume", fallback_resume: str = "", chain: str = "") -> str:
    resume = f", resume: {fallback_resume}" if fallback_resume else ""
    return textwrap.dedent(f"""
    version: 1
    defaults:
      retry: {{attempts: 1}}
      timeout: {{connect: 1s, read: 2s, total: 20s, stream_idle: 300ms}}
    streaming: {{on_interrupt: {on_interrupt}}}
    models:
      primary:  {{provider: anthropic, model: {PRIMARY}, base_url: "{url}", api_key: "${{KEY_PRIMARY}}"}}
      fallback: {{provider: anthropic, model: {FALLBACK}, base_url: "{url}", api_key: "${{KEY_FALLBACK}}"{resume}}}
      old:      {{provider: anthropic, model: {OLD}, base_url: "{url}", api_key: "${{KEY_THIRD}}"}}
    routes:
      default: {chain or "[primary, fallback]"}
      to_old: [primary, old]
    """)


@pytest.fixture
async def srouter(fake_server: FakeServer, clock):
    made: list[Router] = []

    def make(**kw: str) -> Router:
        r = Router(parse_policy(stream_policy(fake_server.url, **kw), env=KEYS), clock=clock)
        made.append(r)
        return r

    yield make
    for r in made:  # async clients must be closed on the loop that used them
        await r.aclose()


def collect(r: Router, route: str = "default", **kw: object) -> tuple[list[str], Message]:
    with r.stream(messages=USER, max_tokens=64, route=route, **kw) as s:
        parts = list(s.text_stream)
        return parts, s.get_final_message()


async def acollect(r: Router, route: str = "default", **kw: object) -> tuple[list[str], Message]:
    async with r.astream(messages=USER, max_tokens=64, route=route, **kw) as s:
        parts = [t async for t in s.text_stream]
        return parts, await s.get_final_message()


BREAKS = {
    "error event": Fault.stream_error(after=2, deltas=BROKEN),
    "cut body": Fault.stream_cut(after=2, deltas=BROKEN),
    "stall past stream_idle": Fault.stream_stall(after=2, seconds=2.0, deltas=BROKEN),
    "end without message_stop": Fault.stream_no_stop(after=2, deltas=BROKEN),
}
ERROR_TYPES = {"error event": "overloaded_error", "cut body": "connection_error",
               "stall past stream_idle": "timeout", "end without message_stop": "incomplete_stream"}


def test_stitcher_joins_the_streamed_pieces_of_every_block_kind() -> None:
    # The Stitcher keeps each block's streamed pieces and joins them when the message is built (one long
    # str grown per delta would be quadratic in the answer's length); this pins what the join must produce
    # for thinking, text (with its start value) and a tool call whose JSON arrives in fragments.
    from anthropic.types import (
        InputJSONDelta,
        RawContentBlockDeltaEvent,
        RawContentBlockStartEvent,
        RawContentBlockStopEvent,
        RawMessageDeltaEvent,
        RawMessageStartEvent,
        RawMessageStopEvent,
        SignatureDelta,
        TextBlock,
        TextDelta,
        ThinkingBlock,
        ThinkingDelta,
        ToolUseBlock,
        Usage,
    )
    from anthropic.types.message_delta_usage import MessageDeltaUsage
    from anthropic.types.raw_message_delta_event import Delta

    from router.policy import ModelConfig
    from router.streaming.stitcher import Stitcher

    def delta(index: int, d: object) -> RawContentBlockDeltaEvent:
        return RawContentBlockDeltaEvent(type="content_block_delta", index=index, delta=d)  # type: ignore[arg-type]

    start = Message(id="msg_1", type="message", role="assistant", model=PRIMARY, content=[], stop_reason=None,
                    stop_sequence=None, usage=Usage(input_tokens=7, output_tokens=1))
    events = [
        RawMessageStartEvent(type="message_start", message=start),
        RawContentBlockStartEvent(type="content_block_start", index=0,
                                  content_block=ThinkingBlock(type="thinking", thinking="", signature="")),
        *[delta(0, ThinkingDelta(type="thinking_delta", thinking=p)) for p in ("Let me ", "think", ".")],
        delta(0, SignatureDelta(type="signature_delta", signature="sig")),
        RawContentBlockStopEvent(type="content_block_stop", index=0),
        RawContentBlockStartEvent(type="content_block_start", index=1,
                                  content_block=TextBlock(type="text", text="A")),
        *[delta(1, TextDelta(type="text_delta", text=p)) for p in ("b", "c" * 3000, "d")],
        RawContentBlockStopEvent(type="content_block_stop", index=1),
        RawContentBlockStartEvent(type="content_block_start", index=2,
                                  content_block=ToolUseBlock(type="tool_use", id="tu_1", name="f", input={})),
        *[delta(2, InputJSONDelta(type="input_json_delta", partial_json=p)) for p in ('{"ci', 'ty": "Pa', 'ris"}')],
        RawContentBlockStopEvent(type="content_block_stop", index=2),
        RawMessageDeltaEvent(type="message_delta", delta=Delta(stop_reason="tool_use", stop_sequence=None),
                             usage=MessageDeltaUsage(output_tokens=42)),
        RawMessageStopEvent(type="message_stop"),
    ]
    stitcher = Stitcher("resume")
    stitcher.begin(ModelConfig(alias="primary", provider="anthropic", model=PRIMARY))
    out = [e for event in events for e in stitcher.feed(event)]
    assert out == events  # one healthy attempt: the caller sees the provider's events unchanged
    final = stitcher.finish("req_1")
    assert isinstance(final, Message)
    thinking, text, tool = final.content
    assert (thinking.type, thinking.thinking, thinking.signature) == ("thinking", "Let me think.", "sig")
    assert (text.type, text.text) == ("text", "Ab" + "c" * 3000 + "d")
    assert (tool.type, tool.input) == ("tool_use", {"city": "Paris"})
    assert stitcher.partial_text() == "Ab" + "c" * 3000 + "d"
    assert (final.stop_reason, final.usage.input_tokens, final.usage.output_tokens) == ("tool_use", 7, 42)


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_529_before_streaming_fails_over_cleanly(fake_server: FakeServer, srouter, mode: str) -> None:
    fake_server.plan(PRIMARY, [Fault.status(529)])
    fake_server.plan(FALLBACK, [Fault.ok(deltas=["All ", "from ", "fallback"])])
    r = srouter()
    events = []
    if mode == "sync":
        with r.stream(messages=USER, max_tokens=64) as s:
            events = [e.type for e in s]
            final = s.get_final_message()
    else:
        async with r.astream(messages=USER, max_tokens=64) as s:
            events = [e.type async for e in s]
            final = await s.get_final_message()
    assert events.count("message_start") == 1 and events[0] == "message_start" and events[-1] == "message_stop"
    assert final.content[0].text == "All from fallback"  # type: ignore[union-attr]
    assert final.model == FALLBACK and final.routing.model == "fallback"  # type: ignore[attr-defined]
    assert [a.outcome for a in final.routing.attempts] == [Kind.SERVER_FAILURE, Kind.SUCCESS]  # type: ignore[attr-defined]


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("name", list(BREAKS))
async def test_mid_stream_break_resumes_on_the_fallback(
    fake_server: FakeServer, srouter, name: str, mode: str
) -> None:
    fake_server.plan(PRIMARY, [BREAKS[name]])
    fake_server.plan(FALLBACK, [Fault.ok(deltas=["ld", "!"])])
    r = srouter()
    parts, final = collect(r) if mode == "sync" else await acollect(r)
    assert parts == ["Hello", " wor", "ld", "!"]
    assert "".join(parts) == final.content[0].text == "Hello world!"  # type: ignore[union-attr]
    assert final.stop_reason == "end_turn"
    info = r.breakers()["primary"]
    assert (info.state, info.failures) == ("closed", 1)
    broke, resumed = final.routing.attempts  # type: ignore[attr-defined]
    assert (broke.model, broke.outcome, broke.error_type) == ("primary", Kind.SERVER_FAILURE, ERROR_TYPES[name])
    assert broke.detail == "stream broke after 9 chars"
    assert (resumed.model, resumed.outcome) == ("fallback", Kind.SUCCESS)
    assert resumed.detail.startswith("resumed at char 9 (continue)")
    assert "takeover continued at char 9" in resumed.detail  # the Stitcher's takeover_note
    assert resumed.request_id and resumed.request_id.startswith("req_fake_")


def test_a_fallback_that_repeats_the_text_is_trimmed(fake_server: FakeServer, srouter) -> None:
    fake_server.plan(PRIMARY, [BREAKS["cut body"]])
    fake_server.plan(FALLBACK, [Fault.ok(deltas=["Hello", " world", "!"])])
    parts, final = collect(srouter())
    assert "".join(parts) == "Hello world!" == final.content[0].text  # type: ignore[union-attr]


def test_a_resume_that_breaks_while_its_repeat_is_held_back_keeps_stream_and_message_equal(
    fake_server: FakeServer, srouter
) -> None:
    # The second model starts repeating the sent text ("Hello", held back to judge the overlap) and
    # breaks; the third resumes. The held-back text was never sent, so it must not be in the message
    # either (found by the chaos soak: the final message said "Hello from Hello from ...").
    fake_server.plan(PRIMARY, [Fault.stream_cut(after=2, deltas=["Hello", " from"])])
    fake_server.plan(FALLBACK, [Fault.stream_cut(after=1, deltas=["Hello", " from", " b"])])
    fake_server.plan(OLD, [Fault.ok(deltas=["Hello", " from", " c"])])
    parts, final = collect(srouter(chain="[primary, fallback, old]"))
    assert "".join(parts) == final.content[0].text == "Hello from c"  # type: ignore[union-attr]
    assert [a.model for a in final.routing.attempts] == ["primary", "fallback", "old"]  # type: ignore[attr-defined]


def test_usage_sums_every_attempt(fake_server: FakeServer, srouter) -> None:
    fake_server.plan(PRIMARY, [Fault.stream_error(after=2, deltas=BROKEN, )])
    fake_server.plan(FALLBACK, [Fault.ok(deltas=["ld"], input_tokens=30, output_tokens=5)])
    _, final = collect(srouter())
    # The broken attempt reported 1 output token in message_start (billed too); the fallback 5.
    assert final.usage.output_tokens == 1 + 5
    assert final.usage.input_tokens > 30


def test_continue_sends_the_partial_text_then_a_user_turn(fake_server: FakeServer, srouter) -> None:
    fake_server.plan(PRIMARY, [BREAKS["cut body"]])
    fake_server.plan(FALLBACK, [Fault.ok(deltas=["ld"])])
    collect(srouter(fallback_resume="continue"))
    sent = fake_server.received(FALLBACK)[0].body["messages"]
    assert sent[-2:] == [{"role": "assistant", "content": "Hello wor"}, {"role": "user", "content": CONTINUE_PROMPT}]
    assert sent[-1]["role"] == "user"  # no trailing assistant message: Claude 4.6+ rejects prefill


def test_prefill_sends_a_trailing_assistant_message_to_older_claude(fake_server: FakeServer, srouter) -> None:
    fake_server.plan(PRIMARY, [Fault.stream_cut(after=2, deltas=["Hello", " there "])])
    fake_server.plan(OLD, [Fault.ok(deltas=[" friend"])])
    _, final = collect(srouter(), route="to_old")
    sent = fake_server.received(OLD)[0].body["messages"]
    assert sent[-1] == {"role": "assistant", "content": "Hello there"}  # no trailing whitespace: the API rejects it
    assert final.content[0].text == "Hello there friend"  # type: ignore[union-attr]


def test_resume_defaults() -> None:
    from router.policy import ModelConfig

    def method(provider: str, model: str) -> str:
        return resume_method(ModelConfig(alias="m", provider=provider, model=model))

    assert method("anthropic", "claude-sonnet-4-5") == "prefill"
    assert method("anthropic", "claude-3-5-haiku-20241022") == "prefill"
    assert method("anthropic", "claude-sonnet-4-20250514") == "prefill"
    assert method("anthropic", "claude-opus-4-6") == "continue"
    assert method("anthropic", "claude-opus-5") == "continue"
    assert method("litellm", "openai/gpt-4.1") == "continue"


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_on_interrupt_raise_carries_the_partial_text(fake_server: FakeServer, srouter, mode: str) -> None:
    fake_server.plan(PRIMARY, [BREAKS["error event"]])
    r = srouter(on_interrupt="raise")
    seen: list[str] = []
    with pytest.raises(StreamInterrupted) as exc:
        if mode == "sync":
            with r.stream(messages=USER, max_tokens=64) as s:
                seen.extend(s.text_stream)
        else:
            async with r.astream(messages=USER, max_tokens=64) as s:
                async for text in s.text_stream:
                    seen.append(text)
    assert exc.value.partial_text == "Hello wor" == "".join(seen)
    assert exc.value.partial_message.content[0].text == "Hello wor"  # type: ignore[union-attr]
    assert exc.value.attempts[0].error_type == "overloaded_error"
    assert fake_server.count(FALLBACK) == 0


def test_per_call_on_interrupt_overrides_the_policy(fake_server: FakeServer, srouter) -> None:
    fake_server.plan(PRIMARY, [BREAKS["cut body"]])
    with pytest.raises(StreamInterrupted, match="on_interrupt: raise"):
        collect(srouter(), on_interrupt="raise")


def test_three_broken_streams_open_the_breaker(fake_server: FakeServer, srouter) -> None:
    fake_server.plan(PRIMARY, [BREAKS["error event"], BREAKS["cut body"], BREAKS["end without message_stop"]])
    fake_server.plan(FALLBACK, default=Fault.ok(deltas=["ld"]))
    r = srouter()
    for _ in range(3):
        assert "".join(collect(r)[0]) == "Hello world"
    assert r.breakers()["primary"].state == "open"
    _, final = collect(r)
    assert fake_server.count(PRIMARY) == 3
    assert final.routing.attempts[0].outcome is Kind.BREAKER_OPEN  # type: ignore[attr-defined]


def test_break_inside_tool_use_before_anything_was_sent_restarts(fake_server: FakeServer, srouter) -> None:
    fake_server.plan(PRIMARY, [Fault.stream_cut(after=0, text="").with_tool_use("get_weather", {"city": "Paris"})])
    fake_server.plan(FALLBACK, [Fault.ok(text="").with_tool_use("get_weather", {"city": "Rome"})])
    with srouter().stream(messages=USER, max_tokens=64) as s:
        final = s.get_final_message()
    assert final.stop_reason == "tool_use"
    assert final.content[0].input == {"city": "Rome"}  # type: ignore[union-attr]
    assert final.routing.attempts[1].detail is None  # a clean restart, not a resume  # type: ignore[attr-defined]


def test_break_inside_tool_use_after_content_raises(fake_server: FakeServer, srouter) -> None:
    fake_server.plan(PRIMARY, [Fault.stream_cut(after=3, text="Let me check.", deltas=["Let ", "me check."])
                               .with_tool_use("get_weather", {"city": "Paris"})])
    with pytest.raises(StreamInterrupted, match="inside a tool_use block") as exc:
        collect(srouter())
    assert exc.value.partial_text == "Let me check."
    assert fake_server.count(FALLBACK) == 0


def test_no_model_left_to_resume_on_raises_stream_interrupted(fake_server: FakeServer, srouter) -> None:
    fake_server.plan(PRIMARY, [BREAKS["cut body"]])
    fake_server.plan(FALLBACK, [Fault.status(503)])
    with pytest.raises(StreamInterrupted, match="no model left") as exc:
        collect(srouter())
    assert exc.value.partial_text == "Hello wor"


def test_resume_restart_model_is_passed_over_once_text_was_sent(fake_server: FakeServer, srouter) -> None:
    fake_server.plan(PRIMARY, [BREAKS["cut body"]])
    with pytest.raises(StreamInterrupted) as exc:
        collect(srouter(fallback_resume="restart"))
    assert [a.outcome for a in exc.value.attempts] == [Kind.SERVER_FAILURE, Kind.CANNOT_RESUME]
    assert fake_server.count(FALLBACK) == 0


def test_every_model_failing_before_content_is_all_models_failed(fake_server: FakeServer, srouter) -> None:
    fake_server.plan(PRIMARY, [Fault.status(500)])
    fake_server.plan(FALLBACK, [Fault.stream_error(after=0)])
    with pytest.raises(AllModelsFailed):
        collect(srouter())


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_closing_early_releases_the_connection_and_counts_nothing(
    fake_server: FakeServer, srouter, mode: str
) -> None:
    fake_server.plan(PRIMARY, [Fault.ok(deltas=["a", "b", "c", "d", "e"], delta_delay=0.1)])
    r = srouter()
    if mode == "sync":
        s = r.stream(messages=USER, max_tokens=64)
        assert next(iter(s.text_stream)) == "a"
        s.close()
    else:
        s = r.astream(messages=USER, max_tokens=64)
        assert await s.text_stream.__anext__() == "a"
        await s.close()
    for _ in range(100):  # the server notices the close within a few ms
        if fake_server.disconnects(PRIMARY) == 1:
            break
        time.sleep(0.01)
    assert fake_server.disconnects(PRIMARY) == 1
    info = r.breakers()["primary"]
    assert (info.state, info.failures) == ("closed", 0)


# -- through litellm ------------------------------------------------------------------------------

def litellm_policy(url: str) -> str:
    return textwrap.dedent(f"""
    version: 1
    defaults:
      retry: {{attempts: 1}}
      timeout: {{connect: 1s, read: 2s, total: 20s, stream_idle: 300ms}}
    models:
      claude: {{provider: anthropic, model: {PRIMARY}, base_url: "{url}", api_key: "${{KEY_PRIMARY}}"}}
      gpt:    {{provider: litellm, model: openai/gpt-fallback, base_url: "{url}/v1", api_key: "${{KEY_FALLBACK}}"}}
      claude2: {{provider: anthropic, model: {FALLBACK}, base_url: "{url}", api_key: "${{KEY_THIRD}}"}}
    routes:
      claude_first: [claude, gpt]
      gpt_first: [gpt, claude2]
    """)


@pytest.fixture
async def lrouter(fake_server: FakeServer, clock):
    r = Router(parse_policy(litellm_policy(fake_server.url), env=KEYS), clock=clock)
    yield r
    await r.aclose()


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_claude_break_resumes_on_an_openai_model(fake_server: FakeServer, lrouter: Router, mode: str) -> None:
    fake_server.plan(PRIMARY, [BREAKS["error event"]])
    fake_server.plan("gpt-fallback", [Fault.ok(deltas=["ld", "!"])])
    parts, final = collect(lrouter, "claude_first") if mode == "sync" else await acollect(lrouter, "claude_first")
    assert "".join(parts) == "Hello world!" == final.content[0].text  # type: ignore[union-attr]
    sent = fake_server.received("gpt-fallback")[0].body["messages"]
    assert sent[-2:] == [{"role": "assistant", "content": "Hello wor"}, {"role": "user", "content": CONTINUE_PROMPT}]
    assert final.routing.model == "gpt"  # type: ignore[attr-defined]


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("name", ["cut body", "stall past stream_idle", "end without message_stop", "error event"])
async def test_openai_stream_break_resumes_on_claude(
    fake_server: FakeServer, lrouter: Router, name: str, mode: str
) -> None:
    fake_server.plan("gpt-fallback", [BREAKS[name]])
    fake_server.plan(FALLBACK, [Fault.ok(deltas=["ld", "!"])])
    parts, final = collect(lrouter, "gpt_first") if mode == "sync" else await acollect(lrouter, "gpt_first")
    assert "".join(parts) == "Hello world!" == final.content[0].text  # type: ignore[union-attr]
    broke = final.routing.attempts[0]  # type: ignore[attr-defined]
    assert (broke.model, broke.outcome) == ("gpt", Kind.SERVER_FAILURE)
    assert lrouter.breakers()["gpt"].failures == 1


async def test_openai_stream_before_content_fails_over_cleanly(fake_server: FakeServer, lrouter: Router) -> None:
    fake_server.plan("gpt-fallback", [Fault.status(503)])
    fake_server.plan(FALLBACK, [Fault.ok(deltas=["Hi", " there"])])
    parts, final = await acollect(lrouter, "gpt_first")
    assert parts == ["Hi", " there"]
    assert final.routing.attempts[0].status == 503  # type: ignore[attr-defined]
