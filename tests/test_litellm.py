"""Fallback to other providers through real litellm over real HTTP to the fake server's OpenAI endpoint."""

from __future__ import annotations

import subprocess
import sys
import textwrap

import litellm
import pytest
from anthropic.types import Message, TextBlock, ToolUseBlock

from router import AllModelsFailed, Kind, Router, parse_policy
from router.testing import FakeServer, Fault

from .conftest import KEYS, USER

TOOLS = [
    {
        "name": "get_weather",
        "description": "Current weather in a city.",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    }
]


def mixed_policy(url: str, *, read: str = "5s", attempts: int = 1) -> str:
    return textwrap.dedent(f"""
    version: 1
    defaults:
      retry: {{attempts: {attempts}, backoff: {{initial: 1ms, max: 2ms}}}}
      timeout: {{connect: 1s, read: {read}, total: 30s}}
    models:
      claude: {{provider: anthropic, model: claude-primary, base_url: "{url}", api_key: "${{KEY_PRIMARY}}"}}
      gpt:    {{provider: litellm, model: openai/gpt-fallback, base_url: "{url}/v1", api_key: "${{KEY_FALLBACK}}"}}
      claude-via-litellm: {{provider: litellm, model: anthropic/claude-wrapped, base_url: "{url}",
                            api_key: "${{KEY_THIRD}}"}}
    routes:
      default: [claude, gpt]
      gpt_only: [gpt]
      wrapped: [claude-via-litellm, gpt]
    """)


@pytest.fixture
def mixed(fake_server: FakeServer, clock):
    made: list[Router] = []

    def make(**kw: object) -> Router:
        r = Router(parse_policy(mixed_policy(fake_server.url, **kw), env=KEYS), clock=clock)  # type: ignore[arg-type]
        made.append(r)
        return r

    yield make
    for r in made:
        r.close()


def test_openai_fallback_answers_as_an_anthropic_message(fake_server: FakeServer, mixed) -> None:
    fake_server.plan("claude-primary", default=Fault.status(500))
    fake_server.plan("gpt-fallback", default=Fault.ok(text="Bonjour", input_tokens=11, output_tokens=2))
    r = mixed()
    for _ in range(4):
        msg = r.complete(messages=USER, max_tokens=32, system="Answer in French.")
        assert isinstance(msg, Message)
        assert msg.routing.model == "gpt"
        assert msg.content == [TextBlock(type="text", text="Bonjour")]
        assert msg.stop_reason == "end_turn"
        assert (msg.usage.input_tokens, msg.usage.output_tokens) == (11, 2)
    assert fake_server.count("claude-primary") == 3
    assert r.breakers()["claude"].state == "open"
    sent = fake_server.received("gpt-fallback")[0]
    assert sent.path == "/v1/chat/completions"
    assert sent.body["messages"][0] == {"role": "system", "content": "Answer in French."}
    assert sent.headers["authorization"] == f"Bearer {KEYS['KEY_FALLBACK']}"
    assert msg.routing.attempts[-1].request_id.startswith("req_fake_")


@pytest.mark.parametrize("stop_reason", ["max_tokens", "stop_sequence", "end_turn"])
def test_stop_reasons_map_back(fake_server: FakeServer, mixed, stop_reason: str) -> None:
    fake_server.plan("gpt-fallback", default=Fault.ok(text="x", stop_reason=stop_reason))
    msg = mixed().complete(messages=USER, max_tokens=8, route="gpt_only")
    # OpenAI has one "stop" for both end_turn and stop_sequence: litellm maps it back to end_turn.
    assert msg.stop_reason == {"stop_sequence": "end_turn"}.get(stop_reason, stop_reason)


def test_tool_call_round_trip_through_the_fallback(fake_server: FakeServer, mixed) -> None:
    fake_server.plan("claude-primary", default=Fault.status(529))
    fake_server.plan(
        "gpt-fallback", [Fault.ok(text="", tool_use=("get_weather", {"city": "Paris"}))],
        default=Fault.ok(text="It is sunny in Paris."),
    )
    r = mixed()
    question = [{"role": "user", "content": "Weather in Paris?"}]
    first = r.complete(messages=question, max_tokens=64, tools=TOOLS)
    assert first.stop_reason == "tool_use"
    call = first.content[-1]
    assert isinstance(call, ToolUseBlock)
    assert (call.name, call.input) == ("get_weather", {"city": "Paris"})
    follow_up = [
        *question,
        {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in first.content]},
        {"role": "user", "content": [{"type": "tool_result", "tool_use_id": call.id, "content": "sunny"}]},
    ]
    second = r.complete(messages=follow_up, max_tokens=64, tools=TOOLS)
    assert second.content[0].text == "It is sunny in Paris."  # type: ignore[union-attr]
    sent = fake_server.received("gpt-fallback")[1].body
    assert sent["tools"][0]["function"]["name"] == "get_weather"
    assert sent["messages"][1]["tool_calls"][0]["id"] == call.id
    assert sent["messages"][2] == {"role": "tool", "tool_call_id": call.id, "content": "sunny"}


OPENAI_SIDE = {
    "500": (Fault.status(500), Kind.SERVER_FAILURE, 500, "api_error"),
    "503": (Fault.status(503), Kind.SERVER_FAILURE, 503, "api_error"),
    "429 retry-after": (Fault.status(429, retry_after=2), Kind.RATE_LIMITED, 429, "rate_limit_error"),
    "timeout": (Fault.hang(2.0), Kind.SERVER_FAILURE, None, "timeout"),
    "reset": (Fault.reset(), Kind.SERVER_FAILURE, None, "connection_error"),
    "401": (Fault.status(401), Kind.ACCOUNT, 401, "authentication_error"),
}


@pytest.mark.parametrize("name", list(OPENAI_SIDE))
def test_openai_side_failures_are_classified_by_real_status(fake_server: FakeServer, mixed, name: str) -> None:
    fault, kind, status, error_type = OPENAI_SIDE[name]
    fake_server.plan("gpt-fallback", [fault])
    r = mixed(read="0.2s")
    with pytest.raises(AllModelsFailed) as exc:
        r.complete(messages=USER, max_tokens=8, route="gpt_only")
    a = exc.value.attempts[0]
    assert (a.model, a.outcome, a.status, a.error_type) == ("gpt", kind, status, error_type)
    if status is not None:
        assert a.request_id == "req_fake_1"
    if name == "429 retry-after":
        assert a.detail == "retry-after 2s"
        assert r.breakers()["gpt"].cooling_until is not None
    assert r.breakers()["gpt"].failures == (1 if kind is Kind.SERVER_FAILURE else 0)


def test_connection_refused_through_litellm(fake_server: FakeServer, clock) -> None:
    dead = FakeServer().start()
    url = dead.url
    dead.stop()
    r = Router(parse_policy(mixed_policy(url), env=KEYS), clock=clock)
    with pytest.raises(AllModelsFailed) as exc:
        r.complete(messages=USER, max_tokens=8, route="gpt_only")
    a = exc.value.attempts[0]
    assert (a.outcome, a.status, a.error_type) == (Kind.SERVER_FAILURE, None, "connection_error")


def test_openai_side_400_is_raised_at_once(fake_server: FakeServer, mixed) -> None:
    fake_server.plan("claude-primary", default=Fault.status(500))
    fake_server.plan("gpt-fallback", [Fault.status(400, message="Invalid value for tool_choice")])
    r = mixed()
    with pytest.raises(litellm.BadRequestError):
        r.complete(messages=USER, max_tokens=8, route="gpt_only")
    assert r.breakers()["gpt"].failures == 0


def test_anthropic_529_through_litellm_counts_as_529(fake_server: FakeServer, mixed) -> None:
    fake_server.plan("claude-wrapped", default=Fault.status(529, should_retry=True))
    r = mixed()
    msg = r.complete(messages=USER, max_tokens=8, route="wrapped")
    a = msg.routing.attempts[0]
    assert (a.model, a.outcome, a.status, a.error_type) == (
        "claude-via-litellm", Kind.SERVER_FAILURE, 529, "overloaded_error"
    )
    assert a.request_id == "req_fake_1"
    assert msg.routing.model == "gpt"


async def test_async_fallback_through_litellm(fake_server: FakeServer, mixed) -> None:
    fake_server.plan("claude-primary", default=Fault.status(503))
    r = mixed()
    msgs = [await r.acomplete(messages=USER, max_tokens=8) for _ in range(4)]
    assert [m.routing.model for m in msgs] == ["gpt"] * 4
    assert msgs[0].content[0].text == "Hello from gpt-fallback"  # type: ignore[union-attr]
    assert fake_server.count("claude-primary") == 3
    await r.aclose()


def test_litellm_is_imported_only_by_the_first_litellm_call(fake_server: FakeServer, tmp_path) -> None:
    path = tmp_path / "mixed.yaml"
    path.write_text(mixed_policy(fake_server.url))
    code = textwrap.dedent(f"""
        import sys
        from router import Router, load_policy
        r = Router(load_policy({str(path)!r}, env={KEYS!r}))
        print("after load", "litellm" in sys.modules)
        r.complete(messages=[{{"role": "user", "content": "Hi"}}], max_tokens=8)
        print("after claude call", "litellm" in sys.modules)
        r.complete(messages=[{{"role": "user", "content": "Hi"}}], max_tokens=8, route="gpt_only")
        print("after gpt call", "litellm" in sys.modules)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split("\n")[:3] == ["after load False", "after claude call False", "after gpt call True"]


def test_litellm_policy_without_the_extra_names_the_pip_command(tmp_path) -> None:
    path = tmp_path / "p.yaml"
    path.write_text(
        "version: 1\nmodels:\n  gpt: {provider: litellm, model: openai/gpt-4.1}\nroutes: {default: [gpt]}\n"
    )
    code = f"import sys; sys.modules['litellm'] = None\nimport router\nrouter.load_policy({str(path)!r})"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert out.returncode == 1
    assert "router.policy.PolicyError" in out.stderr or "PolicyError" in out.stderr
    assert "p.yaml:3" in out.stderr and "pip install 'failover-router[litellm]'" in out.stderr


def test_request_features_convert_to_the_openai_request(fake_server: FakeServer, mixed) -> None:
    image = {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": "iVBORw0KGgo="}}
    messages = [
        {"role": "user", "content": "Hi"},
        {"role": "assistant", "content": "Hello."},
        {"role": "user", "content": [{"type": "text", "text": "What is this?"}, image]},
    ]
    callbacks_before = (list(litellm.callbacks), list(litellm.success_callback), list(litellm.failure_callback))
    mixed().complete(
        messages=messages, max_tokens=16, route="gpt_only",
        system=[{"type": "text", "text": "You are terse."}], stop_sequences=["END"],
    )
    body = fake_server.received("gpt-fallback")[0].body
    assert body["messages"][0]["role"] == "system" and "You are terse." in str(body["messages"][0]["content"])
    assert [m["role"] for m in body["messages"][1:]] == ["user", "assistant", "user"]
    image_part = body["messages"][3]["content"][1]
    assert image_part["type"] == "image_url"
    assert image_part["image_url"]["url"].startswith("data:image/png;base64,iVBORw0KGgo=")
    assert body["stop"] == ["END"] and body["max_tokens"] == 16
    # No litellm Router, and no global callbacks left behind by ours.
    assert (list(litellm.callbacks), list(litellm.success_callback), list(litellm.failure_callback)) == (
        callbacks_before
    )


def test_warm_up_imports_litellm_at_load(fake_server: FakeServer, tmp_path) -> None:
    path = tmp_path / "mixed.yaml"
    path.write_text(mixed_policy(fake_server.url))
    code = textwrap.dedent(f"""
        import sys
        from router import Router, load_policy
        r = Router(load_policy({str(path)!r}, env={KEYS!r}), warm_up=True)
        print("litellm" in sys.modules)
    """)
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.stdout.strip() == "True", out.stderr
