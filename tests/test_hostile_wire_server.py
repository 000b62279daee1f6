"""Tests of the fake server's hostile wire (Fault.raw / trickle / drip / echo_headers / sse, anthropic_events)."""

from __future__ import annotations

import dataclasses
import json
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import anthropic
import openai
import pytest

from router.testing import FakeServer, Fault, anthropic_events

MODEL = "m"
MESSAGES: list[Any] = [{"role": "user", "content": "hi"}]
_clients: list[anthropic.Anthropic | openai.OpenAI] = []


@pytest.fixture(autouse=True)
def _close_clients() -> Iterator[None]:
    yield
    while _clients:
        _clients.pop().close()


def ant(srv: FakeServer, **kw: Any) -> anthropic.Anthropic:
    made = anthropic.Anthropic(base_url=srv.url, api_key="k", max_retries=0, **kw)
    _clients.append(made)
    return made


def oai(srv: FakeServer, api_key: str = "k") -> openai.OpenAI:
    made = openai.OpenAI(base_url=srv.url + "/v1", api_key=api_key, max_retries=0)
    _clients.append(made)
    return made


def request(*, path: str = "/v1/messages", stream: bool = False, close: bool = True) -> bytes:
    body = json.dumps({"model": MODEL, "max_tokens": 8, "messages": MESSAGES, "stream": stream}).encode()
    head = f"POST {path} HTTP/1.1\r\nhost: x\r\nx-api-key: k\r\ncontent-length: {len(body)}\r\n"
    return (head + ("connection: close\r\n" if close else "") + "\r\n").encode() + body


def pieces(sock: socket.socket, timeout: float = 5.0) -> list[bytes]:
    """Every recv() until EOF, as received."""
    sock.settimeout(timeout)
    got = []
    while data := sock.recv(65536):
        got.append(data)
    return got


def read_for(sock: socket.socket, seconds: float) -> tuple[bytes, bool]:
    """What arrives within ``seconds``, and whether the server closed the connection in that time."""
    data, deadline = b"", time.monotonic() + seconds
    while (left := deadline - time.monotonic()) > 0:
        sock.settimeout(left)
        try:
            more = sock.recv(65536)
        except TimeoutError:
            break
        if not more:
            return data, True
        data += more
    return data, False


def read_until(sock: socket.socket, done: Callable[[bytes], bool], timeout: float = 5.0) -> bytes:
    """Read until ``done(data)``; fails if the server closes first or ``timeout`` passes."""
    data, deadline = b"", time.monotonic() + timeout
    while not done(data):
        sock.settimeout(max(0.01, deadline - time.monotonic()))
        more = sock.recv(65536)
        assert more, f"the server closed early after {data!r}"
        data += more
    return data


def exchange(srv: FakeServer, fault: Fault, **kw: Any) -> bytes:
    """Plan ``fault``, send one raw request, return every byte until the server closes."""
    srv.plan(MODEL, [fault])
    with socket.create_connection(("127.0.0.1", srv.port)) as sock:
        sock.sendall(request(**kw))
        return b"".join(pieces(sock))


def dechunk(body: bytes) -> tuple[list[bytes], bool]:
    """The chunks of a chunked body, and whether it ended with the last chunk."""
    chunks = []
    while body:
        size_line, _, rest = body.partition(b"\r\n")
        size = int(size_line, 16)
        if size == 0:
            return chunks, True
        chunks.append(rest[:size])
        body = rest[size + 2:]
    return chunks, False


def failure_of(call: Callable[[], object]) -> Exception:
    try:
        call()
    except Exception as exc:
        return exc
    raise AssertionError("expected the call to fail")


def wait_until(predicate: Callable[[], bool], timeout: float = 3.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline and not predicate():
        time.sleep(0.01)
    return predicate()


def stream_text(srv: FakeServer, got: list[str], **kw: Any) -> anthropic.types.Message:
    with ant(srv, **kw).messages.stream(model=MODEL, max_tokens=8, messages=MESSAGES) as stream:
        got.extend(stream.text_stream)
        return stream.get_final_message()


# -- Fault.raw -------------------------------------------------------------------------------------


def test_raw_sends_exactly_the_given_bytes(fake_server: FakeServer) -> None:
    fault = Fault.raw(200, "<p>hé</p>", {"Content-Type": "text/html", "X-Odd": "1"})
    assert exchange(fake_server, fault) == (
        b"HTTP/1.1 200 OK\r\nContent-Type: text/html\r\nX-Odd: 1\r\nrequest-id: req_fake_1\r\n"
        b"content-length: 10\r\n\r\n<p>h\xc3\xa9</p>"
    )
    no_content = b"HTTP/1.1 204 No Content\r\nrequest-id: req_fake_2\r\ncontent-length: 0\r\n\r\n"
    assert exchange(fake_server, Fault.raw(204)) == no_content
    redirect = exchange(fake_server, Fault.raw(302, headers={"location": "/elsewhere", "request-id": "mine"}))
    assert redirect == b"HTTP/1.1 302 Found\r\nlocation: /elsewhere\r\nrequest-id: mine\r\ncontent-length: 0\r\n\r\n"
    on_openai = exchange(fake_server, Fault.raw(200, b"{}", {"request-id": "r"}), path="/v1/chat/completions")
    assert on_openai == b"HTTP/1.1 200 OK\r\nrequest-id: r\r\nx-request-id: req_fake_4\r\ncontent-length: 2\r\n\r\n{}"


def test_raw_length_int_larger_than_body_truncates_and_closes(fake_server: FakeServer) -> None:
    fake_server.plan(MODEL, [Fault.raw(200, b'{"id": "msg_1"', {"content-type": "application/json"}, length=100)])
    with socket.create_connection(("127.0.0.1", fake_server.port)) as sock:
        sock.sendall(request(close=False))  # a keep-alive request: the server closes anyway
        data, closed = read_for(sock, 3.0)
    assert closed
    assert data.endswith(b"\r\ncontent-length: 100\r\n\r\n" + b'{"id": "msg_1"')


def test_raw_length_none_reads_until_eof(fake_server: FakeServer) -> None:
    fake_server.plan(MODEL, [Fault.raw(200, b"until eof", length=None), Fault.raw(200, b"abc", length=2)])
    for body, length in ((b"until eof", None), (b"abc", b"2")):
        with socket.create_connection(("127.0.0.1", fake_server.port)) as sock:
            sock.sendall(request(close=False))
            data, closed = read_for(sock, 3.0)
        head, _, got = data.partition(b"\r\n\r\n")
        assert closed and got == body
        assert b"transfer-encoding" not in head.lower()
        assert (b"content-length" in head) == (length is not None)


def test_raw_exact_length_keeps_the_connection(fake_server: FakeServer) -> None:
    fake_server.plan(MODEL, [Fault.raw(200, b"one"), Fault.raw(201, b"two")])
    with socket.create_connection(("127.0.0.1", fake_server.port)) as sock:
        sock.sendall(request(close=False) + request(close=True))
        data = b"".join(pieces(sock))
    assert data.count(b"HTTP/1.1 ") == 2 and data.endswith(b"\r\n\r\ntwo") and b"201 Created" in data


@pytest.mark.parametrize(
    ("status", "body", "content_type"),
    [
        (200, "<html>maintenance</html>", "text/html"),
        (200, "plain", None),
        (204, "", None),
        (200, '{"id": "msg_1", "type": "mess', "application/json"),
        (200, "null", "application/json"),
        (200, "{}", "application/json"),
        (200, "[]", "application/json"),
        (200, '{"type":"error","error":{"type":"overloaded_error","message":"Overloaded"}}', "application/json"),
    ],
)
def test_raw_bodies_reach_the_sdk_as_sent(
    fake_server: FakeServer, status: int, body: str, content_type: str | None
) -> None:
    headers = {"content-type": content_type} if content_type else None
    fake_server.plan(MODEL, [Fault.raw(status, body, headers)])
    raw = ant(fake_server).messages.with_raw_response.create(model=MODEL, max_tokens=8, messages=MESSAGES)
    assert (raw.status_code, raw.http_response.content) == (status, body.encode())
    assert raw.headers.get("content-type") == content_type
    assert raw.headers["request-id"] == "req_fake_1"


def test_raw_on_the_openai_endpoint_and_error_statuses(fake_server: FakeServer) -> None:
    error = '{"error": {"message": "boom", "type": "server_error"}}'
    fake_server.plan(MODEL, [Fault.raw(200, error, {"content-type": "application/json"})])
    raw = oai(fake_server).chat.completions.with_raw_response.create(model=MODEL, messages=MESSAGES)
    assert raw.http_response.content == error.encode()
    assert raw.headers["x-request-id"] == raw.headers["request-id"] == "req_fake_1"
    fake_server.plan(MODEL, [Fault.raw(503, "upstream down", {"content-type": "text/plain"})])
    with pytest.raises(anthropic.ServiceUnavailableError) as info:
        ant(fake_server).messages.create(model=MODEL, max_tokens=8, messages=MESSAGES)
    assert info.value.response.text == "upstream down"


# -- Fault.trickle ---------------------------------------------------------------------------------


def test_trickle_sends_the_same_bytes_in_paced_pieces(fake_server: FakeServer) -> None:
    raw = Fault.raw(200, b"x" * 40, {"request-id": "r"})
    plain = exchange(fake_server, raw)
    fake_server.plan(MODEL, [Fault.trickle(raw, rate=400, chunk=10)])  # a piece every 25 ms
    with socket.create_connection(("127.0.0.1", fake_server.port)) as sock:
        sock.sendall(request())
        got = pieces(sock)
    assert b"".join(got) == plain
    assert len(got[0]) < len(plain)  # the first bytes came before the rest existed
    assert len(got) >= 4  # 12 pieces of <= 10 bytes, 25 ms apart: even a slow reader sees several


def test_trickle_phases(fake_server: FakeServer) -> None:
    raw = Fault.raw(200, b"B" * 200, {"request-id": "r"})
    fake_server.plan(MODEL, [Fault.trickle(raw, rate=1000, chunk=20, phase="head")])
    with socket.create_connection(("127.0.0.1", fake_server.port)) as sock:
        sock.sendall(request())
        head_trickled = pieces(sock)
    assert sum(b"B" in p for p in head_trickled) == 1  # the body went in one write
    assert len(head_trickled) >= 2  # the ~70-byte head took several
    fake_server.plan(MODEL, [Fault.trickle(raw, rate=1000, chunk=40, phase="body")])
    with socket.create_connection(("127.0.0.1", fake_server.port)) as sock:
        sock.sendall(request())
        body_trickled = pieces(sock)
    assert body_trickled[0].startswith(b"HTTP/1.1 200 OK") and b"\r\n\r\n" in body_trickled[0]
    assert len(body_trickled) >= 3 and b"".join(body_trickled) == b"".join(head_trickled)


def test_trickle_plays_any_fault_through_the_sdk(fake_server: FakeServer) -> None:
    cut = Fault.stream_cut(after=2)
    fake_server.plan(MODEL, [Fault.trickle(rate=50_000, chunk=16), Fault.trickle(cut, rate=50_000, chunk=16)])
    msg = ant(fake_server).messages.create(model=MODEL, max_tokens=8, messages=MESSAGES)
    assert msg.content[0].type == "text" and msg.content[0].text == "Hello from m"
    got: list[str] = []
    err = failure_of(lambda: stream_text(fake_server, got))
    assert not isinstance(err, anthropic.APIStatusError) and got == ["Hello ", "from "]
    fake_server.plan(MODEL, [Fault.trickle(Fault.status(529), rate=50_000, chunk=8, phase="body")])
    with pytest.raises(anthropic.OverloadedError):
        ant(fake_server).messages.create(model=MODEL, max_tokens=8, messages=MESSAGES)


def test_trickle_stops_when_the_client_leaves(fake_server: FakeServer) -> None:
    fake_server.plan(MODEL, [Fault.trickle(rate=100)])  # ~600 bytes at 100 B/s: about 6 s
    with socket.create_connection(("127.0.0.1", fake_server.port)) as sock:
        sock.sendall(request())
        data = read_until(sock, lambda d: len(d) >= 6)
        more, closed = read_for(sock, 0.1)
    assert (data + more).startswith(b"HTTP/1") and b"\r\n\r\n" not in data + more and not closed
    assert wait_until(lambda: fake_server.disconnects(MODEL) == 1)


def test_trickle_and_drip_end_at_server_stop() -> None:
    for fault in (Fault.trickle(rate=100), Fault.drip(0.02, phase="body", seconds=60)):
        srv = FakeServer().start()
        srv.plan(MODEL, [fault])
        try:
            with socket.create_connection(("127.0.0.1", srv.port)) as sock:
                sock.sendall(request())
                assert read_until(sock, lambda d: len(d) >= 15).startswith(b"HTTP/1.1 200 OK")
                started = time.monotonic()
                srv.stop()
                assert time.monotonic() - started < 3
                assert closed_by_server(sock)
        finally:
            srv.stop()


def closed_by_server(sock: socket.socket) -> bool:
    """Whether the server ends the connection (FIN or RST) within 3 s."""
    try:
        return read_for(sock, 3.0)[1]
    except ConnectionError:
        return True


# -- Fault.drip ------------------------------------------------------------------------------------


def test_drip_head_never_ends_the_head(fake_server: FakeServer) -> None:
    fake_server.plan(MODEL, [Fault.drip(0.02, phase="head"), Fault.drip(0.02, phase="head")])
    for path in ("/v1/messages", "/v1/chat/completions"):
        with socket.create_connection(("127.0.0.1", fake_server.port)) as sock:
            sock.sendall(request(path=path))
            data = read_until(sock, lambda d: b"\r\nx-pad: xxx" in d)
            more, closed = read_for(sock, 0.1)
        assert data.startswith(b"HTTP/1.1 200 OK\r\n") and b"request-id: req_fake_" in data and not closed
        assert set((data + more).partition(b"x-pad: ")[2]) == {ord("x")} and b"\r\n\r\n" not in data + more
        assert (b"x-request-id" in data) == (path != "/v1/messages")
    assert wait_until(lambda: fake_server.disconnects(MODEL) == 2)


def test_drip_body_and_sse_on_a_non_stream_request(fake_server: FakeServer) -> None:
    fake_server.plan(MODEL, [Fault.drip(0.02, phase="body"), Fault.drip(0.02, phase="sse")])
    for _ in range(2):
        with socket.create_connection(("127.0.0.1", fake_server.port)) as sock:
            sock.sendall(request())
            data = read_until(sock, lambda d: len(d.partition(b"\r\n\r\n")[2]) >= 3)
            more, closed = read_for(sock, 0.1)
        head, _, body = (data + more).partition(b"\r\n\r\n")
        assert b"content-type: application/json" in head and b"content-length: 1000000" in head
        assert b"request-id: req_fake_" in head and not closed
        assert 3 <= len(body) < 1000 and body.strip() == b""
    assert wait_until(lambda: fake_server.disconnects(MODEL) == 2)


def test_drip_defeats_a_per_read_timeout_until_seconds(fake_server: FakeServer) -> None:
    fake_server.plan(MODEL, [Fault.drip(0.02, phase="body", seconds=0.8)])
    started = time.monotonic()
    sdk = ant(fake_server, timeout=0.4)
    err = failure_of(lambda: sdk.messages.create(model=MODEL, max_tokens=8, messages=MESSAGES))
    assert time.monotonic() - started >= 0.75  # every read got a byte within 0.4 s: only `seconds` ended it
    assert isinstance(err, anthropic.APIConnectionError)
    assert fake_server.disconnects(MODEL) == 0  # the server ended it


def test_drip_sse_sends_deltas_forever(fake_server: FakeServer) -> None:
    fake_server.plan(MODEL, [Fault.drip(0.02, phase="sse")])
    kinds: list[str] = []
    with ant(fake_server).messages.stream(model=MODEL, max_tokens=8, messages=MESSAGES) as stream:
        for event in stream:
            kinds.append(event.type)
            if kinds.count("text") == 5:
                break
        assert stream.current_message_snapshot.content[0].type == "text"
        assert stream.current_message_snapshot.content[0].text == "a " * 5
    assert kinds[:2] == ["message_start", "content_block_start"]
    assert wait_until(lambda: fake_server.disconnects(MODEL) == 1)
    fake_server.plan(MODEL, [Fault.drip(0.02, phase="sse")])
    got = []
    with oai(fake_server).chat.completions.create(model=MODEL, messages=MESSAGES, stream=True) as chunks:
        for c in chunks:
            assert c.choices[0].finish_reason is None
            got.append(c.choices[0].delta.content)
            if len(got) == 4:
                break
    assert got == ["", "a ", "a ", "a "]
    assert wait_until(lambda: fake_server.disconnects(MODEL) == 2)


def test_drip_ping_sends_only_pings(fake_server: FakeServer) -> None:
    expected = {"/v1/messages": b'event: ping\ndata: {"type": "ping"}\n\n', "/v1/chat/completions": b": ping\n\n"}
    for path, ping in expected.items():
        data = exchange(fake_server, Fault.drip(0.02, phase="ping", seconds=0.3), path=path, stream=True)
        head, _, body = data.partition(b"\r\n\r\n")
        chunks, ended = dechunk(body)
        assert b"content-type: text/event-stream" in head and b"request-id: req_fake_" in head
        assert not ended and len(chunks) >= 3 and set(chunks) == {ping}
    assert fake_server.disconnects(MODEL) == 0


# -- Fault.echo_headers ----------------------------------------------------------------------------


def test_echo_headers_leaks_the_callers_key(fake_server: FakeServer) -> None:
    secret = "sk-ant-api03-ECHOEDsecret"
    faults = [Fault.echo_headers(), Fault.echo_headers(529), Fault.echo_headers(401, error_type="x_error")]
    fake_server.plan(MODEL, faults)
    sdk = ant(fake_server, default_headers={"x-api-key": secret})
    with pytest.raises(anthropic.BadRequestError) as info:
        sdk.messages.create(model=MODEL, max_tokens=8, messages=MESSAGES)
    assert f"x-api-key: {secret}" in info.value.message and "authorization: Bearer k" in info.value.message
    assert info.value.type == "invalid_request_error" and info.value.request_id == "req_fake_1"
    with pytest.raises(anthropic.OverloadedError) as over:
        sdk.messages.create(model=MODEL, max_tokens=8, messages=MESSAGES)
    assert over.value.type == "overloaded_error" and secret in str(over.value)
    with pytest.raises(anthropic.AuthenticationError) as auth:
        sdk.messages.create(model=MODEL, max_tokens=8, messages=MESSAGES)
    assert auth.value.type == "x_error" and secret in str(auth.value)
    fake_server.plan(MODEL, [Fault.echo_headers()])
    with pytest.raises(openai.BadRequestError) as oinfo:
        oai(fake_server, api_key=secret).chat.completions.create(model=MODEL, messages=MESSAGES)
    assert f"authorization: Bearer {secret}" in oinfo.value.message


# -- Fault.sse -------------------------------------------------------------------------------------


def test_sse_sends_events_verbatim(fake_server: FakeServer) -> None:
    events = [("message_start", {"a": "é", "b": [1]}), ("", "[DONE]"), ("weird", "{not json")]
    for stream in (True, False):
        head, _, body = exchange(fake_server, Fault.sse(events), stream=stream).partition(b"\r\n\r\n")
        assert head.startswith(b"HTTP/1.1 200 OK") and b"request-id: req_fake_" in head
        assert b"content-type: text/event-stream" in head and b"transfer-encoding: chunked" in head
        sent = [b'event: message_start\ndata: {"a":"\xc3\xa9","b":[1]}\n\n', b"data: [DONE]\n\n"]
        assert dechunk(body) == ([*sent, b"event: weird\ndata: {not json\n\n"], True)


def test_sse_status_headers_and_interval(fake_server: FakeServer) -> None:
    headers = {"Content-Type": "text/plain", "x-h": "1"}
    fault = Fault.sse([("ping", {"type": "ping"})] * 4, interval=0.03, status=529, headers=headers)
    fake_server.plan(MODEL, [fault])
    with socket.create_connection(("127.0.0.1", fake_server.port)) as sock:
        sock.sendall(request())
        got = pieces(sock)
    head = got[0].partition(b"\r\n\r\n")[0]
    assert head.startswith(b"HTTP/1.1 529 ") and b"Content-Type: text/plain" in head and b"x-h: 1" in head
    assert b"text/event-stream" not in head and len(got) >= 3


def test_sse_end_cut_and_stall(fake_server: FakeServer) -> None:
    events = [("a", "1"), ("b", "2")]
    sent = [b"event: a\ndata: 1\n\n", b"event: b\ndata: 2\n\n"]
    assert dechunk(exchange(fake_server, Fault.sse(events, end="cut")).partition(b"\r\n\r\n")[2]) == (sent, False)
    fake_server.plan(MODEL, [Fault.sse(events, end="stall", stall=0.4), Fault.sse(events, end="stall")])
    with socket.create_connection(("127.0.0.1", fake_server.port)) as sock:
        sock.sendall(request())
        first = read_until(sock, lambda d: d.endswith(sent[1] + b"\r\n"))
        assert dechunk(first.partition(b"\r\n\r\n")[2]) == (sent, False)
        rest, closed = read_for(sock, 3.0)
        assert closed and rest == b""  # the 0.4 s stall ran out: cut, nothing more sent
    assert fake_server.disconnects(MODEL) == 0
    with socket.create_connection(("127.0.0.1", fake_server.port)) as sock:
        sock.sendall(request())
        read_until(sock, lambda d: d.endswith(sent[1] + b"\r\n"))
        assert not read_for(sock, 0.1)[1]
    assert wait_until(lambda: fake_server.disconnects(MODEL) == 1)  # the 60 s stall: the client left


# -- anthropic_events ------------------------------------------------------------------------------


def test_anthropic_events_parse_into_the_built_message(fake_server: FakeServer) -> None:
    tool_input = {"city": "Paris", "days": [1, 2], "units": None}
    events = anthropic_events(
        "Hello brave world", tool_use=("get_weather", tool_input), thinking="Let me think",
        message_id="msg_x", model="claude-x", input_tokens=7, output_tokens=42,
    )
    assert [data["index"] for name, data in events if name == "content_block_start"] == [0, 1, 2]
    assert all(data["type"] == name for name, data in events)
    fake_server.plan(MODEL, [Fault.sse(events)])
    got: list[str] = []
    msg = stream_text(fake_server, got)
    assert got == ["Hello ", "brave ", "world"]
    assert (msg.id, msg.model, msg.stop_reason, msg.stop_sequence) == ("msg_x", "claude-x", "tool_use", None)
    assert (msg.usage.input_tokens, msg.usage.output_tokens) == (7, 42)
    thinking, text, tool = msg.content
    assert thinking.type == "thinking" and (thinking.thinking, thinking.signature) == ("Let me think", "sig_msg_x")
    assert text.type == "text" and text.text == "Hello brave world"
    assert tool.type == "tool_use" and (tool.id, tool.name, tool.input) == ("toolu_sse_1", "get_weather", tool_input)


def test_anthropic_events_blocks_and_defaults(fake_server: FakeServer) -> None:
    events = anthropic_events(text_blocks=[["a", "b"], "c d"], stop_reason="max_tokens")
    fake_server.plan(MODEL, [Fault.sse(events)])
    got: list[str] = []
    msg = stream_text(fake_server, got)
    assert got == ["a", "b", "c ", "d"]
    assert [b.text for b in msg.content if b.type == "text"] == ["ab", "c d"]
    assert (msg.stop_reason, msg.usage.output_tokens, msg.id, msg.model) == ("max_tokens", 4, "msg_sse_1", "claude-sse")
    only_tool = anthropic_events("", tool_use=("t", {}))
    assert [d["content_block"]["type"] for n, d in only_tool if n == "content_block_start"] == ["tool_use"]
    assert only_tool[-2][1]["delta"]["stop_reason"] == "tool_use"
    delta = {"stop_reason": "end_turn", "stop_sequence": None}
    assert anthropic_events()[-2][1] == {"type": "message_delta", "delta": delta, "usage": {"output_tokens": 1}}


def test_anthropic_events_cut_at_every_boundary(fake_server: FakeServer) -> None:
    events = anthropic_events("one two three", tool_use=("t", {"k": "v"}))
    fake_server.plan(MODEL, [Fault.sse(events[:k], end="cut") for k in range(1, len(events))])
    for k in range(1, len(events)):
        got: list[str] = []
        err = failure_of(lambda: stream_text(fake_server, got))  # noqa: B023 - called at once
        assert not isinstance(err, anthropic.APIStatusError)
        assert "one two three".startswith("".join(got))
        assert len(got) == sum(1 for n, d in events[:k] if n == "content_block_delta" and d["index"] == 0)
    assert fake_server.disconnects(MODEL) == 0


# -- Fault values ----------------------------------------------------------------------------------


def test_hostile_fault_values() -> None:
    assert Fault.trickle(rate=10) == Fault.trickle(Fault.ok(), rate=10)
    assert hash(Fault.sse([("a", {"b": 1})])) == hash(Fault.sse([("a", '{"b":1}')]))
    assert Fault.raw(body="é").body == "é".encode()
    assert Fault.echo_headers(529).error_type == "overloaded_error"
    with pytest.raises(dataclasses.FrozenInstanceError):
        Fault.raw().body = b"x"  # type: ignore[misc]
    bad: list[Callable[[], Fault]] = [
        lambda: Fault.raw(101),
        lambda: Fault.raw(length=-1),
        lambda: Fault.raw(headers={"a\r\nb": "c"}),
        lambda: Fault.trickle(rate=0),
        lambda: Fault.trickle(rate=1, chunk=0),
        lambda: Fault.drip(0, phase="body"),
        lambda: Fault.drip(1, phase="tail"),  # type: ignore[arg-type]
        lambda: Fault.sse([], end="never"),  # type: ignore[arg-type]
        lambda: Fault.echo_headers(200),
    ]
    for make in bad:
        with pytest.raises(ValueError):
            make()
