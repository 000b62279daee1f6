"""Every deadline is real: `timeout=` and `timeout.total` cut an attempt in wall time whatever the server
sends (slow heads, slow bodies, an event now and then, pings only), sync and async, streaming and not;
a silent model is left for the next one and not retried. Real SDK over real HTTP to router.testing.

The bounds asserted are loose on purpose (seconds against a server that would take 30 s or forever):
they show that the cut happens, not how fast the machine is.
"""

from __future__ import annotations

import time

import pytest

from router import AllModelsFailed, Kind, StreamInterrupted
from router.clock import SYSTEM
from router.testing import Fault

from .conftest import USER


@pytest.fixture
def make_router(make_router):  # type: ignore[no-untyped-def]
    """Routers on the real clock: these deadlines are measured against real sockets."""
    def make(*args, **kwargs):  # type: ignore[no-untyped-def]
        return make_router(*args, clock=SYSTEM, **kwargs)

    return make

DRIPS = {
    "slow head": Fault.drip(0.05, phase="head"),
    "slow body": Fault.drip(0.05, phase="body"),
    "an event now and then": Fault.drip(0.05, phase="sse"),
    "pings only": Fault.drip(0.05, phase="ping"),
    "trickled answer": Fault.trickle(Fault.ok(text="x" * 400), rate=40),
}
TIMEOUT = 0.6
SLACK = 2.0  # what a loaded machine may add; the servers above would go on for 10 s to forever


def _one_model(make_router, **kw):
    return make_router(models=("primary",), read="5s", **kw)


@pytest.mark.parametrize("name", list(DRIPS))
def test_timeout_holds_against_a_trickling_server(make_router, fake_server, name) -> None:
    fake_server.plan("claude-primary", [], default=DRIPS[name])
    r = _one_model(make_router)
    started = time.monotonic()
    with pytest.raises(AllModelsFailed) as info:
        r.complete(messages=USER, max_tokens=32, timeout=TIMEOUT)
    assert time.monotonic() - started < TIMEOUT + SLACK
    attempt = info.value.attempts[0]
    assert attempt.outcome is Kind.SERVER_FAILURE and attempt.error_type == "timeout", attempt


@pytest.mark.parametrize("name", list(DRIPS))
async def test_timeout_holds_against_a_trickling_server_async(make_router, fake_server, name) -> None:
    fake_server.plan("claude-primary", [], default=DRIPS[name])
    r = _one_model(make_router)
    started = time.monotonic()
    with pytest.raises(AllModelsFailed):
        await r.acomplete(messages=USER, max_tokens=32, timeout=TIMEOUT)
    assert time.monotonic() - started < TIMEOUT + SLACK
    await r.aclose()


@pytest.mark.parametrize("name", list(DRIPS))
def test_timeout_holds_for_streams(make_router, fake_server, name) -> None:
    fake_server.plan("claude-primary", [], default=DRIPS[name])
    r = _one_model(make_router)
    started = time.monotonic()
    with pytest.raises((AllModelsFailed, StreamInterrupted)), r.stream(messages=USER, max_tokens=32,
                                                                        timeout=TIMEOUT) as s:
        for _ in s.text_stream:
            pass
    assert time.monotonic() - started < TIMEOUT + SLACK


@pytest.mark.parametrize("name", list(DRIPS))
async def test_timeout_holds_for_async_streams(make_router, fake_server, name) -> None:
    fake_server.plan("claude-primary", [], default=DRIPS[name])
    r = _one_model(make_router)
    started = time.monotonic()
    with pytest.raises((AllModelsFailed, StreamInterrupted)):
        async with r.astream(messages=USER, max_tokens=32, timeout=TIMEOUT) as s:
            async for _ in s.text_stream:
                pass
    assert time.monotonic() - started < TIMEOUT + SLACK
    await r.aclose()


def test_timeout_total_alone_bounds_an_attempt(make_router, fake_server) -> None:
    fake_server.plan("claude-primary", [], default=Fault.drip(0.05, phase="body"))
    r = make_router(models=("primary",), read="5s", extra_model=", timeout: {total: 600ms}")
    started = time.monotonic()
    with pytest.raises(AllModelsFailed):
        r.complete(messages=USER, max_tokens=32)
    assert time.monotonic() - started < 0.6 + SLACK


# -- a silent model does not eat the budget ----------------------------------------------------------


def test_a_hung_model_leaves_the_fallback_its_share_of_timeout(make_router, fake_server) -> None:
    fake_server.plan("claude-primary", [], default=Fault.hang(30))
    r = make_router(attempts=3, read="10s")
    msg = r.complete(messages=USER, max_tokens=32, timeout=2.0)
    assert msg.routing.model == "fallback"
    first = msg.routing.attempts[0]
    assert first.outcome is Kind.SERVER_FAILURE and first.error_type == "timeout"
    assert "half of what was left of timeout=" in (first.detail or ""), first.detail
    assert fake_server.count("claude-primary") == 1  # not retried although attempts: 3
    assert first.duration_s < 2.0 * 0.5 + SLACK


async def test_a_hung_model_leaves_the_fallback_its_share_async(make_router, fake_server) -> None:
    fake_server.plan("claude-primary", [], default=Fault.hang(30))
    r = make_router(attempts=3, read="10s")
    msg = await r.acomplete(messages=USER, max_tokens=32, timeout=2.0)
    assert msg.routing.model == "fallback"
    assert fake_server.count("claude-primary") == 1
    await r.aclose()


def test_a_silent_model_is_not_retried_while_another_can_serve(make_router, fake_server) -> None:
    fake_server.plan("claude-primary", [], default=Fault.hang(30))
    r = make_router(attempts=3, read="300ms")  # no timeout=: the read timeout finds the silence
    msg = r.complete(messages=USER, max_tokens=32)
    assert msg.routing.model == "fallback"
    assert fake_server.count("claude-primary") == 1


def test_a_silent_last_model_is_retried_within_its_budget(make_router, fake_server) -> None:
    fake_server.plan("claude-primary", [Fault.hang(30)], default=Fault.ok())
    r = make_router(models=("primary",), attempts=2, read="300ms")
    msg = r.complete(messages=USER, max_tokens=32)
    assert msg.routing.model == "primary" and fake_server.count("claude-primary") == 2


def test_the_last_model_that_can_serve_gets_all_that_is_left(make_router, fake_server) -> None:
    # With the fallback's breaker open, the primary is the only model left: no share is kept back for
    # the fallback, so a slow but healthy primary is not cut at half the budget.
    url = fake_server.url
    r = make_router(f"""
    version: 1
    defaults:
      breaker: {{failure_threshold: 1, reset_timeout: 1m}}
      retry: {{attempts: 1}}
      timeout: {{connect: 2s, read: 5s, total: 30s}}
    models:
      primary:  {{provider: anthropic, model: claude-primary, base_url: "{url}", api_key: "${{KEY_PRIMARY}}"}}
      fallback: {{provider: anthropic, model: claude-fallback, base_url: "{url}", api_key: "${{KEY_FALLBACK}}"}}
    routes:
      default: [primary, fallback]
      fallback_only: [fallback]
    """)
    fake_server.plan("claude-fallback", [Fault.status(500)])
    with pytest.raises(AllModelsFailed):
        r.complete(messages=USER, max_tokens=32, route="fallback_only")
    assert r.breakers()["fallback"].state == "open"
    fake_server.plan("claude-primary", [], default=Fault.ok(delay=0.8))
    msg = r.complete(messages=USER, max_tokens=32, timeout=1.4)  # half would be 0.7 s: too short
    assert msg.routing.model == "primary"


def test_a_stream_that_sends_no_head_is_left_at_first_byte(make_router, fake_server) -> None:
    fake_server.plan("claude-primary", [], default=Fault.drip(0.05, phase="head"))
    r = make_router(read="10s", extra_model=", timeout: {first_byte: 300ms, stream_idle: 10s}")
    started = time.monotonic()
    with r.stream(messages=USER, max_tokens=32) as s:
        text = "".join(s.text_stream)
    assert text == "Hello from claude-fallback"
    first = s.get_final_message().routing.attempts[0]
    assert first.error_type == "timeout" and "timeout.first_byte" in (first.detail or ""), first.detail
    assert time.monotonic() - started < 0.3 + SLACK


def test_a_stream_that_sends_no_content_is_left_at_first_token(make_router, fake_server) -> None:
    fake_server.plan("claude-primary", [], default=Fault.drip(0.05, phase="ping"))
    r = make_router(read="10s", extra_model=", timeout: {first_token: 400ms, stream_idle: 10s}")
    with r.stream(messages=USER, max_tokens=32) as s:
        text = "".join(s.text_stream)
    assert text == "Hello from claude-fallback"
    first = s.get_final_message().routing.attempts[0]
    assert first.error_type == "timeout" and "timeout.first_token" in (first.detail or ""), first.detail


# -- the same through litellm (an OpenAI-compatible server) ------------------------------------------

LITELLM_DRIPS = ["slow head", "slow body", "an event now and then", "pings only"]


def _litellm_router(make_router, url: str):
    from router.providers.litellm_provider import load_litellm

    load_litellm()  # seconds of import, not to be counted in the timed request
    return make_router(f"""
    version: 1
    defaults:
      retry: {{attempts: 1}}
      timeout: {{connect: 2s, read: 5s, total: 30s, stream_idle: 5s}}
    models:
      gpt: {{provider: litellm, model: openai/gpt-x, base_url: "{url}/v1", api_key: "${{KEY_PRIMARY}}"}}
    routes:
      default: [gpt]
    """)


@pytest.mark.parametrize("stream", [False, True], ids=["complete", "stream"])
@pytest.mark.parametrize("name", LITELLM_DRIPS)
def test_timeout_holds_through_litellm(make_router, fake_server, name, stream) -> None:
    fake_server.plan("gpt-x", [], default=DRIPS[name])
    r = _litellm_router(make_router, fake_server.url)
    started = time.monotonic()
    with pytest.raises((AllModelsFailed, StreamInterrupted)):
        if stream:
            with r.stream(messages=USER, max_tokens=32, timeout=TIMEOUT) as s:
                for _ in s.text_stream:
                    pass
        else:
            r.complete(messages=USER, max_tokens=32, timeout=TIMEOUT)
    assert time.monotonic() - started < TIMEOUT + SLACK


@pytest.mark.parametrize("stream", [False, True], ids=["complete", "stream"])
@pytest.mark.parametrize("name", LITELLM_DRIPS)
async def test_timeout_holds_through_litellm_async(make_router, fake_server, name, stream) -> None:
    fake_server.plan("gpt-x", [], default=DRIPS[name])
    r = _litellm_router(make_router, fake_server.url)
    started = time.monotonic()
    with pytest.raises((AllModelsFailed, StreamInterrupted)):
        if stream:
            async with r.astream(messages=USER, max_tokens=32, timeout=TIMEOUT) as s:
                async for _ in s.text_stream:
                    pass
        else:
            await r.acomplete(messages=USER, max_tokens=32, timeout=TIMEOUT)
    assert time.monotonic() - started < TIMEOUT + SLACK
