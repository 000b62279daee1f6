"""Every reply is judged: a 2xx that is not a Message is a counted server failure and fails over, with the
attempt saying what was wrong; too-long prompts move on; echoed keys never reach the caller. Real SDK
(and litellm where named) over real HTTP to router.testing's hostile wire."""

from __future__ import annotations

import logging

import anthropic
import pytest

from router import AllModelsFailed, Kind
from router.testing import FakeServer, Fault

from .conftest import KEYS, USER

JSON = {"content-type": "application/json"}

BAD_2XX = {
    "html": (Fault.raw(200, "<html><body>Maintenance</body></html>", {"content-type": "text/html"}), "text/html"),
    "no content-type": (Fault.raw(200, "it works!"), "no content-type"),
    "204": (Fault.raw(204, ""), "empty body"),
    "empty json": (Fault.raw(200, "", JSON), "not valid JSON"),
    "truncated json": (Fault.raw(200, '{"id": "msg_1", "type": "mess', JSON), "not valid JSON"),
    "null": (Fault.raw(200, "null", JSON), "null"),
    "empty object": (Fault.raw(200, "{}", JSON), "not a Message"),
    "list": (Fault.raw(200, "[]", JSON), "JSON list"),
    "no content": (Fault.raw(200, '{"id":"m","type":"message","role":"assistant","content":null,"model":"x",'
                               '"usage":{"input_tokens":1,"output_tokens":1}}', JSON), "not a Message"),
    "error envelope": (
        Fault.raw(200, '{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}', JSON),
        "error envelope (overloaded_error",
    ),
}


@pytest.mark.parametrize("name", list(BAD_2XX))
def test_a_2xx_that_is_not_a_message_is_a_counted_failure_and_fails_over(make_router, fake_server, name) -> None:
    fault, said = BAD_2XX[name]
    fake_server.plan("claude-primary", [fault])
    r = make_router()
    msg = r.complete(messages=USER, max_tokens=32)
    assert msg.routing.model == "fallback"
    assert msg.content[0].text == "Hello from claude-fallback"
    first = msg.routing.attempts[0]
    assert first.outcome is Kind.SERVER_FAILURE, first
    assert said in (first.detail or ""), first.detail
    assert first.request_id is not None and first.request_id.startswith("req_fake_")  # from the head
    assert r.breakers()["primary"].failures == 1  # counted, not recorded as a success


@pytest.mark.parametrize("name", ["html", "null", "error envelope", "truncated json"])
async def test_a_2xx_that_is_not_a_message_fails_over_async(make_router, fake_server, name) -> None:
    fake_server.plan("claude-primary", [BAD_2XX[name][0]])
    r = make_router()
    msg = await r.acomplete(messages=USER, max_tokens=32)
    assert msg.routing.model == "fallback"
    assert msg.routing.attempts[0].outcome is Kind.SERVER_FAILURE
    await r.aclose()


def test_an_html_200_neither_closes_a_half_open_breaker_nor_resets_the_count(make_router, fake_server, clock) -> None:
    html = BAD_2XX["html"][0]
    r = make_router(reset="1s")
    # Two counted 500s and one HTML 200: three consecutive failures, the breaker opens.
    fake_server.plan("claude-primary", [Fault.status(500), Fault.status(500), html, html])
    for _ in range(3):
        assert r.complete(messages=USER, max_tokens=32).routing.model == "fallback"
    assert r.breakers()["primary"].state == "open"
    clock.advance(1.5)
    msg = r.complete(messages=USER, max_tokens=32)  # the probe gets HTML: the breaker must reopen
    assert msg.routing.attempts[0].probe and msg.routing.attempts[0].outcome is Kind.SERVER_FAILURE
    assert r.breakers()["primary"].state == "open"
    assert fake_server.count("claude-primary") == 4


def test_a_streaming_request_answered_with_html_fails_over_invisibly(make_router, fake_server) -> None:
    fake_server.plan("claude-primary", [BAD_2XX["html"][0]])
    r = make_router()
    with r.stream(messages=USER, max_tokens=32) as s:
        text = "".join(s.text_stream)
        final = s.get_final_message()
    assert text == "Hello from claude-fallback" == final.content[0].text
    first = final.routing.attempts[0]
    assert first.outcome is Kind.SERVER_FAILURE and "text/html" in (first.detail or "")


def test_request_id_is_kept_when_the_body_fails_after_the_head(make_router, fake_server) -> None:
    # A content-length longer than the body: the head (with its request-id) arrives, then the body is cut.
    fake_server.plan("claude-primary", [Fault.raw(200, '{"id": "msg_1", "ty', JSON, length=4000)])
    r = make_router()
    msg = r.complete(messages=USER, max_tokens=32)
    first = msg.routing.attempts[0]
    assert first.outcome is Kind.SERVER_FAILURE and first.error_type == "connection_error"
    assert first.request_id is not None and first.request_id.startswith("req_fake_")


# -- prompts too long for one model ------------------------------------------------------------------


def test_a_prompt_too_long_for_one_model_moves_on_without_counting(make_router, fake_server) -> None:
    too_long = Fault.status(400, message="prompt is too long: 210000 tokens > 200000 maximum")
    fake_server.plan("claude-primary", [too_long])
    r = make_router()
    msg = r.complete(messages=USER, max_tokens=32)
    assert msg.routing.model == "fallback"
    assert msg.routing.attempts[0].outcome is Kind.TOO_LARGE
    assert r.breakers()["primary"].failures == 0


def test_other_400s_are_still_raised_at_once(make_router, fake_server) -> None:
    fake_server.plan("claude-primary", [Fault.status(400, message="Output blocked by content filtering policy")])
    r = make_router()
    with pytest.raises(anthropic.BadRequestError):
        r.complete(messages=USER, max_tokens=32)
    assert fake_server.count("claude-fallback") == 0


# -- keys echoed back by a server ----------------------------------------------------------------------


def test_a_key_echoed_into_error_text_never_reaches_the_caller(make_router, fake_server, caplog) -> None:
    caplog.set_level(logging.DEBUG)
    fake_server.plan("claude-primary", [], default=Fault.echo_headers(500))
    fake_server.plan("claude-fallback", [], default=Fault.echo_headers(503))
    r = make_router()
    with pytest.raises(AllModelsFailed) as info:
        r.complete(messages=USER, max_tokens=32)
    exc = info.value
    texts = [str(exc), repr(exc), repr(exc.attempts)]
    link: BaseException | None = exc
    while link is not None:
        texts += [str(link), repr(link), repr(getattr(link, "body", None))]
        link = link.__cause__ or link.__context__
    texts += [rec.getMessage() for rec in caplog.records]
    assert "[redacted]" in str(exc.__cause__)  # the server did echo the key...
    for key in (KEYS["KEY_PRIMARY"], KEYS["KEY_FALLBACK"]):
        assert not any(key in t for t in texts)  # ...but not the keys


def test_a_caller_error_that_echoes_the_key_is_raised_without_it(make_router, fake_server) -> None:
    fake_server.plan("claude-primary", [Fault.echo_headers(400)])
    r = make_router()
    with pytest.raises(anthropic.BadRequestError) as info:
        r.complete(messages=USER, max_tokens=32)
    assert KEYS["KEY_PRIMARY"] not in str(info.value) and KEYS["KEY_PRIMARY"] not in repr(info.value.body)


# -- the same through litellm --------------------------------------------------------------------------


def _litellm_policy(url: str) -> str:
    return f"""
    version: 1
    defaults:
      retry: {{attempts: 1}}
      timeout: {{connect: 2s, read: 5s, total: 30s}}
    models:
      gpt:      {{provider: litellm, model: openai/gpt-x, base_url: "{url}/v1", api_key: "${{KEY_PRIMARY}}"}}
      fallback: {{provider: anthropic, model: claude-fallback, base_url: "{url}", api_key: "${{KEY_FALLBACK}}"}}
    routes:
      default: [gpt, fallback]
    """


@pytest.mark.parametrize(
    "fault",
    [
        Fault.raw(200, '{"error": {"message": "upstream exploded", "type": "server_error"}}', JSON),
        Fault.raw(200, "<html>proxy</html>", {"content-type": "text/html"}),
        Fault.raw(200, '{"id": "x", "obj', JSON),
    ],
    ids=["error object", "html", "truncated"],
)
def test_litellm_2xx_that_is_not_a_completion_fails_over(make_router, fake_server: FakeServer, fault) -> None:
    fake_server.plan("gpt-x", [fault])
    r = make_router(_litellm_policy(fake_server.url))
    msg = r.complete(messages=USER, max_tokens=32)
    assert msg.routing.model == "fallback"
    assert msg.routing.attempts[0].outcome is Kind.SERVER_FAILURE, msg.routing.attempts[0]
    assert r.breakers()["gpt"].failures == 1


def test_litellm_context_window_exceeded_moves_on(make_router, fake_server: FakeServer) -> None:
    fake_server.plan("gpt-x", [Fault.status(400, message="This model's maximum context length is 8192 tokens",
                                            error_code="context_length_exceeded")])
    r = make_router(_litellm_policy(fake_server.url))
    msg = r.complete(messages=USER, max_tokens=32)
    assert msg.routing.model == "fallback"
    assert msg.routing.attempts[0].outcome is Kind.TOO_LARGE


def test_a_key_inside_a_2xx_error_envelope_is_masked_in_the_attempt(make_router, fake_server) -> None:
    body = ('{"type":"error","error":{"type":"api_error","message":"bad key ' + KEYS["KEY_PRIMARY"] + '"}}')
    fake_server.plan("claude-primary", [Fault.raw(200, body, JSON)])
    r = make_router()
    msg = r.complete(messages=USER, max_tokens=32)
    first = msg.routing.attempts[0]
    assert "error envelope" in (first.detail or "") and "[redacted]" in (first.detail or "")
    assert KEYS["KEY_PRIMARY"] not in repr(msg.routing)
