"""Tests of router.testing's fake server, driven by the real anthropic / openai SDKs over real HTTP."""

from __future__ import annotations

import asyncio
import dataclasses
import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import anthropic
import httpx2
import openai
import pytest

from router.testing import FakeServer, Fault, ReceivedRequest
from router.testing.faults import split_words

MODEL = "claude-a"
MESSAGES: list[Any] = [{"role": "user", "content": "hi"}]


_open_clients: list[anthropic.Anthropic | openai.OpenAI] = []


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    """Close every SDK client a test made, so no client socket is left to the garbage collector."""
    yield
    while _open_clients:
        _open_clients.pop().close()


def client(srv: FakeServer, **kw: Any) -> anthropic.Anthropic:
    made = anthropic.Anthropic(base_url=srv.url, api_key="k", max_retries=0, **kw)
    _open_clients.append(made)
    return made


def create(srv: FakeServer, model: str = MODEL, **kw: Any) -> anthropic.types.Message:
    return client(srv, **kw).messages.create(model=model, max_tokens=32, messages=MESSAGES)


def text_of(message: anthropic.types.Message) -> str:
    return "".join(block.text for block in message.content if block.type == "text")


def stream_text(srv: FakeServer, got: list[str], model: str = MODEL, **kw: Any) -> Any:
    """Stream with messages.stream(), appending each text delta to ``got``; returns the last snapshot."""
    with client(srv, **kw).messages.stream(model=model, max_tokens=32, messages=MESSAGES) as stream:
        for text in stream.text_stream:
            got.append(text)
        return stream.current_message_snapshot


def failure_of(call: Callable[[], object]) -> Exception:
    """The exception ``call`` raises (any class: which one a cut or stalled body gives is the SDK's business)."""
    try:
        call()
    except Exception as exc:
        return exc
    raise AssertionError("expected the call to fail")


def wait_until(predicate: Callable[[], bool], timeout: float = 3.0) -> bool:
    """Poll ``predicate`` (the server thread updates counters asynchronously)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.01)
    return predicate()


# -- success ---------------------------------------------------------------------------------------


def test_json_success_parses_as_message(fake_server: FakeServer) -> None:
    raw = client(fake_server).messages.with_raw_response.create(model=MODEL, max_tokens=32, messages=MESSAGES)
    msg = raw.parse()
    assert isinstance(msg, anthropic.types.Message)
    assert msg.id.startswith("msg_fake_")
    assert msg.type == "message" and msg.role == "assistant" and msg.model == MODEL
    assert text_of(msg) == "Hello from claude-a"
    assert msg.stop_reason == "end_turn" and msg.stop_sequence is None
    assert msg.usage.input_tokens > 0 and msg.usage.output_tokens > 0
    assert raw.headers["request-id"].startswith("req_fake_")
    assert raw.headers["content-type"] == "application/json"


def test_ok_options_shape_the_message(fake_server: FakeServer) -> None:
    fault = Fault.ok(text="custom", stop_reason="max_tokens", input_tokens=7, output_tokens=9)
    fake_server.plan(MODEL, [fault])
    msg = create(fake_server)
    assert text_of(msg) == "custom"
    assert msg.stop_reason == "max_tokens"
    assert (msg.usage.input_tokens, msg.usage.output_tokens) == (7, 9)


def test_sse_success_gives_full_text_and_stop_reason(fake_server: FakeServer) -> None:
    with client(fake_server).messages.stream(model=MODEL, max_tokens=32, messages=MESSAGES) as stream:
        events = [event.type for event in stream]
        final = stream.get_final_message()
        assert stream.request_id is not None and stream.request_id.startswith("req_fake_")
        assert stream.response.headers["content-type"].startswith("text/event-stream")
    assert text_of(final) == "Hello from claude-a"
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens == 3
    assert events[0] == "message_start" and events[-1] == "message_stop"
    middle = {"content_block_start", "content_block_delta", "content_block_stop", "message_delta"}
    assert middle <= set(events)


def test_sse_explicit_deltas_arrive_as_given(fake_server: FakeServer) -> None:
    fault = Fault.ok(deltas=["a", "bc", " d"], delta_delay=0.01, stop_reason="stop_sequence")
    fake_server.plan(MODEL, [fault])
    got: list[str] = []
    snapshot = stream_text(fake_server, got)
    assert got == ["a", "bc", " d"]
    assert snapshot.stop_reason == "stop_sequence"


def test_raw_stream_events_are_the_real_sequence(fake_server: FakeServer) -> None:
    stream = client(fake_server).messages.create(model=MODEL, max_tokens=32, messages=MESSAGES, stream=True)
    assert [event.type for event in stream] == [
        "message_start",
        "content_block_start",
        "content_block_delta",
        "content_block_delta",
        "content_block_delta",
        "content_block_stop",
        "message_delta",
        "message_stop",
    ]  # the server also sends a ping after content_block_start; the SDK drops it


# -- status faults ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "exc", "error_type"),
    [
        (400, anthropic.BadRequestError, "invalid_request_error"),
        (401, anthropic.AuthenticationError, "authentication_error"),
        (402, anthropic.PaymentRequiredError, "billing_error"),
        (403, anthropic.PermissionDeniedError, "permission_error"),
        (404, anthropic.NotFoundError, "not_found_error"),
        (408, anthropic.RequestTimeoutError, "timeout_error"),
        (413, anthropic.ContentTooLargeError, "request_too_large"),
        (422, anthropic.UnprocessableEntityError, "invalid_request_error"),
        (429, anthropic.RateLimitError, "rate_limit_error"),
        (500, anthropic.InternalServerError, "api_error"),
        (502, anthropic.InternalServerError, "api_error"),
        (503, anthropic.ServiceUnavailableError, "api_error"),
        (504, anthropic.GatewayTimeoutError, "timeout_error"),
        (529, anthropic.OverloadedError, "overloaded_error"),
    ],
)
def test_status_fault_raises_the_sdk_error(
    fake_server: FakeServer, code: int, exc: type[anthropic.APIStatusError], error_type: str
) -> None:
    fake_server.plan(MODEL, [Fault.status(code)])
    with pytest.raises(exc) as info:
        create(fake_server)
    err = info.value
    assert err.status_code == code
    assert err.type == error_type
    assert err.request_id is not None and err.request_id.startswith("req_fake_")
    assert isinstance(err.body, dict) and err.body["request_id"] == err.request_id
    assert err.body["type"] == "error" and err.body["error"]["message"]


def test_status_fault_headers(fake_server: FakeServer) -> None:
    fake_server.plan(
        MODEL,
        [
            Fault.status(529, retry_after=2, retry_after_ms=1500, should_retry=True, headers={"X-E": "1"}),
            Fault.status(429, retry_after=0.5, should_retry=False),
            Fault.status(500),
        ],
    )
    with pytest.raises(anthropic.OverloadedError) as first:
        create(fake_server)
    headers = first.value.response.headers
    assert headers["retry-after"] == "2"
    assert headers["retry-after-ms"] == "1500"
    assert headers["x-should-retry"] == "true"
    assert headers["x-e"] == "1"
    with pytest.raises(anthropic.RateLimitError) as second:
        create(fake_server)
    assert second.value.response.headers["retry-after"] == "0.5"
    assert second.value.response.headers["x-should-retry"] == "false"
    assert "retry-after-ms" not in second.value.response.headers
    with pytest.raises(anthropic.InternalServerError) as third:
        create(fake_server)
    for name in ("retry-after", "retry-after-ms", "x-should-retry"):
        assert name not in third.value.response.headers


def test_status_fault_error_code_and_message(fake_server: FakeServer) -> None:
    fake_server.plan(MODEL, [Fault.status(400, message="bad thing", error_code="some_code")])
    with pytest.raises(anthropic.BadRequestError) as info:
        create(fake_server)
    assert info.value.api_message == "bad thing"
    assert info.value.error_code == "some_code"


def test_html_502_has_no_request_id(fake_server: FakeServer) -> None:
    fake_server.plan(MODEL, [Fault.html()])
    with pytest.raises(anthropic.InternalServerError) as info:
        create(fake_server)
    assert info.value.status_code == 502
    assert info.value.request_id is None
    assert info.value.type is None
    assert info.value.response.headers["content-type"] == "text/html"
    assert "<html>" in info.value.response.text


def test_reset_is_a_connection_error(fake_server: FakeServer) -> None:
    fake_server.plan(MODEL, [Fault.reset()])
    with pytest.raises(anthropic.APIConnectionError) as info:
        create(fake_server)
    assert not isinstance(info.value, anthropic.APITimeoutError)
    assert fake_server.count(MODEL) == 1


def test_hang_is_a_timeout(fake_server: FakeServer) -> None:
    fake_server.plan(MODEL, [Fault.hang(30)])
    with pytest.raises(anthropic.APITimeoutError):
        create(fake_server, timeout=0.2)


# -- stream faults ---------------------------------------------------------------------------------


def test_stream_error_after_two_deltas(fake_server: FakeServer) -> None:
    fake_server.plan(MODEL, [Fault.stream_error(after=2)])
    got: list[str] = []
    with pytest.raises(anthropic.APIStatusError) as info:
        stream_text(fake_server, got)
    err = info.value
    assert type(err) is anthropic.APIStatusError  # status 200 is not >= 500: no InternalServerError subclass
    assert err.status_code == 200
    assert err.type == "overloaded_error"
    assert err.request_id is not None
    assert got == ["Hello ", "from "]


def test_stream_error_as_first_event(fake_server: FakeServer) -> None:
    fake_server.plan(MODEL, [Fault.stream_error(after=0, error_type="api_error", message="boom")])
    got: list[str] = []
    with pytest.raises(anthropic.APIStatusError) as info:
        stream_text(fake_server, got)
    assert (info.value.status_code, info.value.type, info.value.api_message) == (200, "api_error", "boom")
    assert got == []


def test_stream_error_on_non_stream_request_is_a_status_error(fake_server: FakeServer) -> None:
    fake_server.plan(MODEL, [Fault.stream_error(), Fault.stream_error(error_type="api_error")])
    with pytest.raises(anthropic.OverloadedError):
        create(fake_server)
    with pytest.raises(anthropic.InternalServerError) as info:
        create(fake_server)
    assert (info.value.status_code, info.value.type) == (500, "api_error")


def test_stream_cut_breaks_the_stream_after_its_deltas(fake_server: FakeServer) -> None:
    fake_server.plan(MODEL, [Fault.stream_cut(after=2)])
    got: list[str] = []
    err = failure_of(lambda: stream_text(fake_server, got))
    assert not isinstance(err, anthropic.APIStatusError)  # a broken body, not an error the server reported
    assert got == ["Hello ", "from "]
    assert fake_server.disconnects(MODEL) == 0  # the server closed it: not a client disconnect


def test_stream_cut_on_non_stream_request_is_a_reset(fake_server: FakeServer) -> None:
    fake_server.plan(MODEL, [Fault.stream_cut()])
    with pytest.raises(anthropic.APIConnectionError):
        create(fake_server)


def test_stream_stall_times_the_client_out_mid_body(fake_server: FakeServer) -> None:
    fake_server.plan(MODEL, [Fault.stream_stall(after=2, seconds=30)])
    got: list[str] = []
    started = time.monotonic()
    err = failure_of(lambda: stream_text(fake_server, got, timeout=0.2))
    assert time.monotonic() - started < 10  # the client's read timeout ended it, not the 30 s stall
    assert not isinstance(err, anthropic.APIStatusError)
    assert got == ["Hello ", "from "]
    assert wait_until(lambda: fake_server.disconnects(MODEL) == 1)  # the client left the stalled stream


def test_stream_stall_on_non_stream_request_is_a_hang(fake_server: FakeServer) -> None:
    fake_server.plan(MODEL, [Fault.stream_stall(seconds=30)])
    with pytest.raises(anthropic.APITimeoutError):
        create(fake_server, timeout=0.2)


def test_stream_no_stop_ends_without_exception(fake_server: FakeServer) -> None:
    fake_server.plan(MODEL, [Fault.stream_no_stop(after=2), Fault.stream_no_stop()])
    got: list[str] = []
    snapshot = stream_text(fake_server, got)
    assert got == ["Hello ", "from "]
    assert snapshot.stop_reason is None  # no message_delta ever came
    assert create(fake_server).stop_reason == "end_turn"  # non-stream: a plain success


async def test_async_stream_faults_break_the_stream_the_same_way(fake_server: FakeServer) -> None:
    fake_server.plan(MODEL, [Fault.stream_error(), Fault.stream_cut()])
    aclient = anthropic.AsyncAnthropic(base_url=fake_server.url, api_key="k", max_retries=0)
    failures: list[Exception] = []
    for _ in range(2):
        got: list[str] = []
        try:
            async with aclient.messages.stream(model=MODEL, max_tokens=32, messages=MESSAGES) as stream:
                async for text in stream.text_stream:
                    got.append(text)
        except Exception as exc:
            failures.append(exc)
        assert got == ["Hello ", "from "]
    await aclient.close()
    assert len(failures) == 2
    error, cut = failures
    assert isinstance(error, anthropic.APIStatusError) and error.type == "overloaded_error"  # the error event
    assert not isinstance(cut, anthropic.APIStatusError)  # the cut: a broken body, nothing the server reported
    assert fake_server.disconnects(MODEL) == 0


def test_disconnects_counts_a_client_closing_a_slow_stream(fake_server: FakeServer) -> None:
    fake_server.plan(MODEL, [Fault.ok(deltas=["x"] * 200, delta_delay=0.02)])
    with client(fake_server).messages.stream(model=MODEL, max_tokens=32, messages=MESSAGES) as stream:
        for _ in stream.text_stream:
            break
    assert wait_until(lambda: fake_server.disconnects(MODEL) == 1)
    assert fake_server.disconnects("other") == 0


# -- plans, counters, auth, routing ----------------------------------------------------------------


def test_plan_order_then_default_and_replace(fake_server: FakeServer) -> None:
    fake_server.plan(MODEL, [Fault.status(500), Fault.ok(text="second")], default=Fault.status(529))
    with pytest.raises(anthropic.InternalServerError):
        create(fake_server)
    assert text_of(create(fake_server)) == "second"
    for _ in range(2):
        with pytest.raises(anthropic.OverloadedError):
            create(fake_server)
    assert text_of(create(fake_server, model="claude-b")) == "Hello from claude-b"  # other models unaffected
    fake_server.plan(MODEL, [Fault.status(429)])
    with pytest.raises(anthropic.RateLimitError):
        create(fake_server)
    assert create(fake_server).stop_reason == "end_turn"  # the default default is ok


def test_counters_received_and_reset(fake_server: FakeServer) -> None:
    fake_server.plan(MODEL, [Fault.status(503)])
    with pytest.raises(anthropic.ServiceUnavailableError):
        create(fake_server)
    create(fake_server)
    oai(fake_server).chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
    assert fake_server.count(MODEL) == 3
    assert fake_server.count("nobody") == 0
    received = fake_server.received(MODEL)
    assert [r.path for r in received] == ["/v1/messages", "/v1/messages", "/v1/chat/completions"]
    first = received[0]
    assert isinstance(first, ReceivedRequest)
    assert first.headers["authorization"] == "Bearer k"  # SDK 2.12 sends api_key as a Bearer token
    assert "anthropic-version" in first.headers
    assert all(name == name.lower() for name in first.headers)
    assert first.body == {"model": MODEL, "max_tokens": 32, "messages": MESSAGES}
    with pytest.raises(dataclasses.FrozenInstanceError):
        first.path = "/x"  # type: ignore[misc]
    fake_server.plan(MODEL, [Fault.status(500)])
    fake_server.reset()
    assert fake_server.count(MODEL) == 0 and fake_server.received(MODEL) == []
    assert create(fake_server).stop_reason == "end_turn"  # the plan is gone too


def test_auth_styles(fake_server: FakeServer) -> None:
    bearer = anthropic.Anthropic(base_url=fake_server.url, auth_token="t", max_retries=0)
    _open_clients.append(bearer)
    assert bearer.messages.create(model=MODEL, max_tokens=8, messages=MESSAGES).type == "message"
    assert fake_server.received(MODEL)[-1].headers["authorization"] == "Bearer t"
    body = {"model": MODEL, "max_tokens": 8, "messages": MESSAGES}
    resp = httpx2.post(fake_server.url + "/v1/messages", json=body, headers={"x-api-key": "k"})
    assert resp.status_code == 200 and resp.json()["type"] == "message"

    fake_server.plan(MODEL, [Fault.status(500)])
    for headers in ({}, {"x-api-key": ""}, {"authorization": "Bearer"}, {"authorization": "Basic abc"}):
        resp = httpx2.post(fake_server.url + "/v1/messages", json=body, headers=headers)
        assert resp.status_code == 401
        assert resp.json()["error"]["type"] == "authentication_error"
        assert resp.headers["request-id"].startswith("req_fake_")
    with pytest.raises(anthropic.InternalServerError):  # a 401 does not consume the plan
        create(fake_server)


def test_unknown_path_and_bad_json(fake_server: FakeServer) -> None:
    resp = httpx2.post(fake_server.url + "/v1/nope", json={}, headers={"x-api-key": "k"})
    assert resp.status_code == 404 and resp.json()["error"]["type"] == "not_found_error"
    resp = httpx2.get(fake_server.url + "/v1/messages", headers={"x-api-key": "k"})
    assert resp.status_code == 404
    for content in (b"{not json", b"[1, 2]"):
        resp = httpx2.post(fake_server.url + "/v1/messages", content=content, headers={"x-api-key": "k"})
        assert resp.status_code == 400
        assert resp.json()["error"]["type"] == "invalid_request_error"
    resp = httpx2.post(fake_server.url + "/v1/chat/completions", content=b"{", headers={"x-api-key": "k"})
    assert resp.status_code == 400 and resp.json()["error"]["type"] == "invalid_request_error"
    assert "request_id" not in resp.json()  # the OpenAI error shape


def test_keep_alive_and_connection_close(fake_server: FakeServer) -> None:
    body = {"model": MODEL, "max_tokens": 8, "messages": MESSAGES}
    with httpx2.Client(base_url=fake_server.url, headers={"x-api-key": "k"}) as http:
        first = http.post("/v1/messages", json=body)
        second = http.post("/v1/messages", json=body)
        assert first.status_code == second.status_code == 200
        assert "connection" not in second.headers
        closing = http.post("/v1/messages", json=body, headers={"connection": "close"})
        assert closing.headers["connection"] == "close"
        assert http.post("/v1/messages", json=body).status_code == 200  # the client reconnects


def test_raw_http_pipelined_and_chunked_requests(fake_server: FakeServer) -> None:
    payload = b'{"model": "m", "max_tokens": 1, "messages": []}'
    chunked = b"%x\r\n%b\r\n0\r\n\r\n" % (len(payload), payload)
    with socket.create_connection(("127.0.0.1", fake_server.port)) as sock:
        sock.sendall(
            b"POST /v1/messages HTTP/1.1\r\nhost: x\r\nx-api-key: k\r\ntransfer-encoding: chunked\r\n\r\n"
            + chunked
            + b"POST /v1/messages?beta=true HTTP/1.1\r\nhost: x\r\nx-api-key: k\r\nconnection: close\r\n"
            + b"content-length: %d\r\n\r\n%b" % (len(payload), payload)
        )
        data = b""
        while chunk := sock.recv(65536):
            data += chunk
    assert data.count(b"HTTP/1.1 200 OK") == 2
    assert [r.path for r in fake_server.received("m")] == ["/v1/messages", "/v1/messages"]


# -- OpenAI endpoint -------------------------------------------------------------------------------


def oai(srv: FakeServer) -> openai.OpenAI:
    made = openai.OpenAI(base_url=srv.url + "/v1", api_key="k", max_retries=0)
    _open_clients.append(made)
    return made


def test_openai_json(fake_server: FakeServer) -> None:
    raw = oai(fake_server).chat.completions.with_raw_response.create(
        model="gpt-x", messages=[{"role": "user", "content": "hi"}]
    )
    completion = raw.parse()
    assert completion.model == "gpt-x"
    assert completion.choices[0].message.content == "Hello from gpt-x"
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage is not None and completion.usage.completion_tokens == 3
    assert raw.headers["x-request-id"].startswith("req_fake_")
    assert fake_server.received("gpt-x")[0].headers["authorization"] == "Bearer k"


def test_openai_sse(fake_server: FakeServer) -> None:
    fake_server.plan("gpt-x", [Fault.ok(text="one two three", stop_reason="max_tokens")])
    stream = oai(fake_server).chat.completions.create(
        model="gpt-x",
        messages=[{"role": "user", "content": "hi"}],
        stream=True,
        stream_options={"include_usage": True},
    )
    chunks = list(stream)
    assert "".join(c.choices[0].delta.content or "" for c in chunks if c.choices) == "one two three"
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["length"]
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 3


def test_openai_status_and_stream_faults(fake_server: FakeServer) -> None:
    fake_server.plan(
        "gpt-x",
        [
            Fault.status(429, retry_after=1, should_retry=True),
            Fault.status(529),
            Fault.stream_error(after=1),
            Fault.stream_no_stop(after=1),
            Fault.stream_cut(after=1),
        ],
    )
    oclient = oai(fake_server)
    messages: list[Any] = [{"role": "user", "content": "hi"}]
    with pytest.raises(openai.RateLimitError) as info:
        oclient.chat.completions.create(model="gpt-x", messages=messages)
    assert info.value.request_id is not None and info.value.request_id.startswith("req_fake_")
    assert info.value.type == "rate_limit_error"
    assert info.value.response.headers["retry-after"] == "1"
    assert info.value.response.headers["x-should-retry"] == "true"
    assert info.value.response.headers["request-id"] == info.value.request_id
    with pytest.raises(openai.InternalServerError) as info5:
        oclient.chat.completions.create(model="gpt-x", messages=messages)
    assert info5.value.status_code == 529

    def texts(got: list[str] | None = None) -> list[str]:
        got = [] if got is None else got
        for c in oclient.chat.completions.create(model="gpt-x", messages=messages, stream=True):
            if c.choices:
                assert c.choices[0].finish_reason is None
                got.append(c.choices[0].delta.content or "")
        return got

    with pytest.raises(openai.APIError) as err:  # from the data: {"error": {...}} chunk
        texts()
    assert not isinstance(err.value, openai.APIStatusError)
    assert err.value.type == "overloaded_error"
    assert texts() == ["", "Hello "]  # no_stop: no finish_reason, no [DONE], no exception
    # The cut: the first two chunks, no finish_reason (texts() checks), then the body breaks. Which
    # exception the SDK turns that into is its own business; only that it is not a reported error is ours.
    got: list[str] = []
    cut = failure_of(lambda: texts(got))
    assert not isinstance(cut, (openai.APIStatusError, AssertionError))
    assert got == ["", "Hello "]
    assert fake_server.disconnects("gpt-x") == 0  # the server closed it


# -- load and lifecycle ----------------------------------------------------------------------------


async def test_burst_of_200_concurrent_async_requests(fake_server: FakeServer) -> None:
    aclient = anthropic.AsyncAnthropic(base_url=fake_server.url, api_key="k", max_retries=0)
    results = await asyncio.gather(
        *(aclient.messages.create(model=MODEL, max_tokens=8, messages=MESSAGES) for _ in range(200))
    )
    await aclient.close()
    assert all(text_of(r) == "Hello from claude-a" for r in results)
    assert len({r.id for r in results}) == 200
    assert fake_server.count(MODEL) == 200


async def test_burst_of_500_concurrent_connections(fake_server: FakeServer) -> None:
    request = (
        b"POST /v1/messages HTTP/1.1\r\nhost: x\r\nx-api-key: k\r\nconnection: close\r\n"
        b'content-length: 14\r\n\r\n{"model": "b"}'
    )

    async def one() -> bytes:
        reader, writer = await asyncio.open_connection("127.0.0.1", fake_server.port)
        writer.write(request)
        data = await reader.read()
        writer.close()
        await writer.wait_closed()
        return data

    responses = await asyncio.gather(*(one() for _ in range(500)))
    assert all(r.startswith(b"HTTP/1.1 200 OK") for r in responses)
    assert fake_server.count("b") == 500


def test_stop_does_not_wait_for_hanging_handlers() -> None:
    srv = FakeServer().start()
    srv.plan(MODEL, [Fault.hang(600)])
    errors: list[BaseException] = []

    def call() -> None:
        try:
            create(srv, timeout=60)
        except BaseException as exc:
            errors.append(exc)

    caller = threading.Thread(target=call, daemon=True)
    caller.start()
    assert wait_until(lambda: srv.count(MODEL) == 1)
    srv.stop()
    caller.join(10)
    assert not caller.is_alive()
    assert len(errors) == 1 and isinstance(errors[0], anthropic.APIConnectionError)
    srv.stop()  # idempotent


def test_lifecycle() -> None:
    srv = FakeServer(port=0)
    with pytest.raises(RuntimeError):
        _ = srv.url
    with srv:
        assert srv.start() is srv  # idempotent
        assert srv.url == f"http://127.0.0.1:{srv.port}"
        assert create(srv).type == "message"
    with pytest.raises(anthropic.APIConnectionError):
        create(srv)
    with FakeServer() as taken, pytest.raises(OSError):
        FakeServer(port=taken.port).start()


# -- Fault values ----------------------------------------------------------------------------------


def test_fault_values() -> None:
    fault = Fault.ok(deltas=["a", "b"])
    assert fault.deltas == ("a", "b") and fault.text_for("m") == "ab"
    assert Fault.ok().text_for("m") == "Hello from m"
    with pytest.raises(dataclasses.FrozenInstanceError):
        fault.delay = 1.0  # type: ignore[misc]
    assert Fault.status(503).error_type == "api_error"
    assert Fault.status(418).error_type == "invalid_request_error"
    assert Fault.status(529, error_type="api_error").error_type == "api_error"
    assert Fault.status(500, headers={"X-A": "b"}).headers == (("x-a", "b"),)
    assert Fault.ok() == Fault.ok() and hash(Fault.status(500)) == hash(Fault.status(500))
    for text in ["Hello from claude-a", "  lead and trail  ", "", "one\ntwo  three"]:
        assert "".join(split_words(text)) == text
    assert split_words("Hello from x") == ("Hello ", "from ", "x")
    with pytest.raises(ValueError):
        Fault.status(200)
    with pytest.raises(ValueError):
        Fault.stream_cut(after=-1)
    with pytest.raises(TypeError):
        Fault.ok(deltas="abc")
