"""Streams move on, not back: after content has flowed a break goes to the next model, a stalled model is
not tried again, the whole stream stays inside timeout=, and every attempt keeps its request id. Real SDK
over real HTTP, sync and async."""

from __future__ import annotations

import textwrap
import time
from typing import Any

import pytest

from router import Kind, Router, StreamInterrupted, parse_policy
from router.testing import FakeServer, Fault, anthropic_events

from .conftest import KEYS, USER

ANSWER = "The quick brown fox jumps over the lazy dog near the river bank, then naps in the sun."


def three_models(url: str, attempts: int = 3) -> str:
    return textwrap.dedent(f"""
    version: 1
    defaults:
      retry: {{attempts: {attempts}, backoff: {{initial: 1ms, max: 5ms}}}}
      timeout: {{connect: 1s, read: 5s, total: 20s, stream_idle: 300ms}}
    models:
      primary:  {{provider: anthropic, model: claude-opus-4-6, base_url: "{url}", api_key: "${{KEY_PRIMARY}}"}}
      second:   {{provider: anthropic, model: claude-sonnet-4-6, base_url: "{url}", api_key: "${{KEY_FALLBACK}}"}}
      third:    {{provider: anthropic, model: claude-haiku-4-6, base_url: "{url}", api_key: "${{KEY_THIRD}}"}}
    routes:
      default: [primary, second, third]
    """)


@pytest.fixture
async def r3(fake_server: FakeServer, clock: Any):  # type: ignore[no-untyped-def]
    r = Router(parse_policy(three_models(fake_server.url), env=KEYS), clock=clock)
    yield r
    await r.aclose()


async def collect(r: Router, mode: str, **kw: Any) -> tuple[str, Any]:
    if mode == "sync":
        with r.stream(messages=USER, max_tokens=256, **kw) as s:
            text = "".join(s.text_stream)
            return text, s.get_final_message()
    async with r.astream(messages=USER, max_tokens=256, **kw) as s:
        text = "".join([t async for t in s.text_stream])
        return text, await s.get_final_message()


def _final_text(message: Any) -> str:
    return "".join(b.text for b in message.content if b.type == "text")


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_a_stalled_primary_is_tried_once_and_a_fallback_finishes(fake_server, r3, mode) -> None:
    events = anthropic_events(ANSWER)
    fake_server.plan("claude-opus-4-6", [], default=Fault.sse(events[:6], end="stall", stall=30))
    fake_server.plan("claude-sonnet-4-6", [], default=Fault.sse(anthropic_events(ANSWER)))
    started = time.monotonic()
    text, final = await collect(r3, mode, timeout=5.0)
    # not a speed check: the stall lasts 30 s, so only a router that waited it out gets here that late
    assert time.monotonic() - started < 30.0
    assert text == _final_text(final) and text.count("quick brown fox") == 1 and text.endswith("in the sun.")
    assert fake_server.count("claude-opus-4-6") == 1  # retry.attempts is 3, but a stall is not retried
    broke = final.routing.attempts[0]
    assert broke.outcome is Kind.SERVER_FAILURE and broke.error_type == "timeout"
    assert final.routing.model == "second"


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_a_break_after_content_goes_to_the_next_model_not_the_same(fake_server, r3, mode) -> None:
    fake_server.plan("claude-opus-4-6", [], default=Fault.sse(anthropic_events(ANSWER)[:6], end="cut"))
    fake_server.plan("claude-sonnet-4-6", [], default=Fault.sse(anthropic_events(ANSWER)))
    text, final = await collect(r3, mode)
    assert text == _final_text(final) == ANSWER
    assert fake_server.count("claude-opus-4-6") == 1
    assert [a.model for a in final.routing.attempts] == ["primary", "second"]


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_the_whole_stream_stays_inside_timeout(fake_server, mode) -> None:
    # The primary streams an event every 50 ms forever: content flows, so only timeout= can end it, and
    # then nothing is left for a takeover. (The real clock: the request's deadline is measured on it.)
    fake_server.plan("claude-opus-4-6", [], default=Fault.drip(0.05, phase="sse"))
    r = Router(parse_policy(three_models(fake_server.url), env=KEYS))
    started = time.monotonic()
    with pytest.raises(StreamInterrupted) as info:
        try:
            await collect(r, mode, timeout=0.8)
        finally:
            await r.aclose()
    # not a speed check: the drip goes on for 30 s, so only a router that let it run gets here that late
    assert time.monotonic() - started < 30.0
    assert info.value.attempts[0].error_type == "timeout"


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize("end", ["cut", "stall"])
async def test_cut_and_stalled_streams_keep_their_request_id(fake_server, r3, mode, end) -> None:
    fake_server.plan("claude-opus-4-6", [], default=Fault.sse(anthropic_events(ANSWER)[:6], end=end, stall=30))
    fake_server.plan("claude-sonnet-4-6", [], default=Fault.sse(anthropic_events(ANSWER)))
    _, final = await collect(r3, mode)
    broke = final.routing.attempts[0]
    assert broke.outcome is Kind.SERVER_FAILURE
    assert broke.request_id is not None and broke.request_id.startswith("req_fake_")


@pytest.mark.parametrize("mode", ["sync", "async"])
@pytest.mark.parametrize(
    "bad",
    [("content_block_delta", '{"type": "content_block_delta", "index": 0, "delta": {"type": "text_de'),
     ("content_block_delta", {"type": "content_block_delta", "index": 7,
                              "delta": {"type": "text_delta", "text": "x"}})],
    ids=["truncated json", "delta for a block that never started"],
)
async def test_a_malformed_event_after_content_is_a_break_like_any_other(fake_server, r3, mode, bad) -> None:
    events = anthropic_events(ANSWER)
    fake_server.plan("claude-opus-4-6", [], default=Fault.sse([*events[:6], bad, *events[6:]]))
    fake_server.plan("claude-sonnet-4-6", [], default=Fault.sse(anthropic_events(ANSWER)))
    text, final = await collect(r3, mode)
    assert text == _final_text(final) and text.count("quick brown fox") == 1
    assert final.routing.attempts[0].outcome is Kind.SERVER_FAILURE


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_an_unknown_event_after_content_changes_nothing(fake_server, r3, mode) -> None:
    events = anthropic_events(ANSWER)
    novel = ("content_block_annotation", {"type": "content_block_annotation", "index": 0, "note": "new"})
    fake_server.plan("claude-opus-4-6", [], default=Fault.sse([*events[:6], novel, *events[6:]]))
    text, final = await collect(r3, mode)
    assert text == _final_text(final) == ANSWER
    assert [a.model for a in final.routing.attempts] == ["primary"]


@pytest.mark.parametrize("mode", ["sync", "async"])
async def test_litellm_streams_report_the_same_usage_as_complete(fake_server, mode) -> None:
    url = fake_server.url
    policy = textwrap.dedent(f"""
    version: 1
    defaults:
      retry: {{attempts: 1}}
      timeout: {{connect: 2s, read: 10s, total: 60s, first_byte: 60s, first_token: 60s}}
    models:
      gpt: {{provider: litellm, model: openai/gpt-usage, base_url: "{url}/v1", api_key: "${{KEY_PRIMARY}}"}}
    routes:
      default: [gpt]
    """)
    fake_server.plan("gpt-usage", [], default=Fault.ok(deltas=["Hi", " there"], input_tokens=21, output_tokens=5))
    r = Router(parse_policy(policy, env=KEYS))
    try:
        whole = r.complete(messages=USER, max_tokens=32) if mode == "sync" else await r.acomplete(
            messages=USER, max_tokens=32)
        text, streamed = await collect(r, mode)
    finally:
        await r.aclose()
    assert text == "Hi there"
    assert (streamed.usage.input_tokens, streamed.usage.output_tokens) == (
        whole.usage.input_tokens, whole.usage.output_tokens) == (21, 5)
