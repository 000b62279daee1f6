"""Per-connection request loop: routing, auth, and playing a Fault as Anthropic or OpenAI wire traffic."""

from __future__ import annotations

import json
from dataclasses import replace

from router.testing import wire
from router.testing._exchange import Api, Exchange, send_simple
from router.testing._hostile import play_drip, play_raw, play_sse
from router.testing._http import LAST_CHUNK, Connection, HttpError, Request, chunk, response_head
from router.testing._pacing import Pace, Pacer
from router.testing.batches import BATCH_ENDPOINT, Reply
from router.testing.faults import Fault, FaultKind
from router.testing.state import ReceivedRequest, ServerState

__all__ = ["serve_connection"]

_ROUTES: dict[tuple[str, str], Api] = {
    ("POST", "/v1/messages"): "anthropic",
    ("POST", "/v1/chat/completions"): "openai",
}

_BATCHES = "/v1/messages/batches"

_DEFAULT_MESSAGES = {
    "invalid_request_error": "Invalid request",
    "authentication_error": "invalid x-api-key",
    "billing_error": "Your credit balance is too low to access the Anthropic API.",
    "permission_error": "Your API key does not have permission to use the specified resource.",
    "not_found_error": "Not found",
    "request_too_large": "Request exceeds the maximum allowed number of bytes.",
    "rate_limit_error": "Number of request tokens has exceeded your per-minute rate limit",
    "timeout_error": "Request timed out",
    "api_error": "Internal server error",
    "overloaded_error": "Overloaded",
}

# Faults that only make sense on a stream, as played on a non-streaming request.
_NON_STREAM_KIND: dict[str, FaultKind] = {
    "stream_cut": "reset",
    "stream_stall": "hang",
    "stream_no_stop": "ok",
}

# The hostile-wire faults: a client leaving any of them early counts as a disconnect, stream or not.
_HOSTILE_KINDS = frozenset({"raw", "trickle", "drip", "echo_headers", "sse"})


async def serve_connection(conn: Connection, state: ServerState) -> None:
    """Answer requests on ``conn`` until the client or a fault closes it."""
    while True:
        try:
            request = await conn.read_request()
        except HttpError as exc:
            body = wire.anthropic_error("invalid_request_error", exc.message, None)
            await send_simple(conn, exc.status, "application/json", body, [("connection", "close")])
            conn.close()
            return
        if request is None:
            conn.close()
            return
        conn.start_watch()
        try:
            keep = await _answer(conn, state, request)
        finally:
            await conn.stop_watch()
        if not keep or not request.keep_alive or conn.gone.is_set():
            conn.close()
            return


async def _answer(conn: Connection, state: ServerState, request: Request) -> bool:
    """Answer one request; False if the connection must not be reused."""
    number = state.next_id()
    if request.path.startswith(_BATCHES):
        return await _batch(conn, state, request, number)
    api = _ROUTES.get((request.method, request.path))
    if api is None:
        message = f"Not found: {request.method} {request.path}"
        body = wire.anthropic_error("not_found_error", message, f"req_fake_{number}")
        headers = [("request-id", f"req_fake_{number}")]
        return await send_simple(conn, 404, "application/json", body, headers)
    try:
        parsed = json.loads(request.body)
    except (ValueError, UnicodeDecodeError):
        parsed = None
    if not isinstance(parsed, dict):
        ex = Exchange(conn, state, api, request, {}, "", number)
        return await _status(ex, Fault.status(400, message="The request body is not valid JSON."))
    model = parsed.get("model")
    ex = Exchange(conn, state, api, request, parsed, model if isinstance(model, str) else "", number)
    state.record(ex.model, ReceivedRequest(request.path, dict(request.headers), parsed))
    if not _authorised(request.headers):
        return await _status(ex, Fault.status(401, message="x-api-key header is required"))
    return await _play(ex, state.next_fault(ex.model))


async def _batch(conn: Connection, state: ServerState, request: Request, number: int) -> bool:
    """A Message Batches request: create, retrieve, results or cancel (a fault planned for BATCH_ENDPOINT
    answers it instead)."""
    try:
        parsed = json.loads(request.body) if request.body else {}
    except (ValueError, UnicodeDecodeError):
        parsed = None
    ex = Exchange(conn, state, "anthropic", request, parsed if isinstance(parsed, dict) else {}, BATCH_ENDPOINT,
                  number)
    state.record(BATCH_ENDPOINT, ReceivedRequest(request.path, dict(request.headers), ex.body))
    if not _authorised(request.headers):
        return await _status(ex, Fault.status(401, message="x-api-key header is required"))
    fault = state.next_fault(BATCH_ENDPOINT)
    if fault.kind != "ok":
        return await _play(ex, fault)
    if parsed is None:
        return await _status(ex, Fault.status(400, message="The request body is not valid JSON."))
    reply = _batch_reply(state, request, parsed, number)
    return await send_simple(conn, reply.status, reply.content_type, reply.body, [*reply.headers, *ex.conn_headers()])


def _batch_reply(state: ServerState, request: Request, body: object, number: int) -> Reply:
    host = request.headers.get("host", "127.0.0.1")
    parts = request.path[len(_BATCHES):].strip("/").split("/")
    batches = state.batches
    if request.method == "POST" and parts == [""]:
        return batches.create(request.body, body, number, host)
    if request.method == "GET" and len(parts) == 1 and parts[0]:
        return batches.retrieve(parts[0], number, host)
    if request.method == "GET" and len(parts) == 2 and parts[1] == "results":
        return batches.results(parts[0], number)
    if request.method == "POST" and len(parts) == 2 and parts[1] == "cancel":
        return batches.cancel(parts[0], number, host)
    message = f"Not found: {request.method} {request.path}"
    return Reply(404, wire.anthropic_error("not_found_error", message, f"req_fake_{number}"))


def _authorised(headers: dict[str, str]) -> bool:
    if headers.get("x-api-key", "").strip():
        return True
    scheme, _, token = headers.get("authorization", "").partition(" ")
    return scheme.lower() == "bearer" and bool(token.strip())


async def _play(ex: Exchange, fault: Fault) -> bool:
    if fault.kind in _HOSTILE_KINDS:
        keep = await _play_hostile(ex, fault)
        if ex.conn.gone.is_set():
            ex.record_disconnect()
            return False
        return keep
    streaming = ex.streaming
    if not streaming and fault.kind == "stream_error":
        fault = Fault.status(
            fault.status_code, error_type=fault.error_type, message=fault.message, delay=fault.delay
        )
    elif not streaming and fault.kind in _NON_STREAM_KIND:
        fault = replace(fault, kind=_NON_STREAM_KIND[fault.kind])
    if await ex.conn.pause(fault.delay):
        if streaming:
            ex.record_disconnect()
        return False
    if fault.kind == "status":
        return await _status(ex, fault)
    if fault.kind == "html":
        page = wire.html_page(fault.status_code)
        return await send_simple(ex.conn, fault.status_code, "text/html", page, [])
    if fault.kind == "reset":
        ex.conn.abort_with_rst()
        return False
    if fault.kind == "hang":
        if await ex.conn.pause(fault.seconds) and streaming:
            ex.record_disconnect()
        return False
    if not streaming:
        return await _ok_json(ex, fault)
    keep = await _stream(ex, fault)
    if ex.conn.gone.is_set():
        ex.record_disconnect()
        return False
    return keep


async def _play_hostile(ex: Exchange, fault: Fault) -> bool:
    """raw, trickle, drip, echo_headers or sse; False if the connection must not be reused."""
    if await ex.conn.pause(fault.delay):
        return False
    if fault.kind == "trickle":
        assert fault.inner is not None
        pace = Pace(fault.rate, fault.chunk, head=fault.phase in ("all", "head"), body=fault.phase in ("all", "body"))
        outer, ex.conn.pacer = ex.conn.pacer, Pacer(pace)
        try:
            return await _play(ex, fault.inner)
        finally:
            ex.conn.pacer = outer
    if fault.kind == "echo_headers":
        echoed = "; ".join(f"{name}: {value}" for name, value in ex.request.headers.items())
        return await _status(ex, replace(fault, message=f"Bad request headers: {echoed}"))
    if fault.kind == "raw":
        return await play_raw(ex, fault)
    if fault.kind == "drip":
        return await play_drip(ex, fault)
    return await play_sse(ex, fault)


async def _status(ex: Exchange, fault: Fault) -> bool:
    code = fault.status_code
    error_type = fault.error_type or "api_error"
    message = fault.message or _DEFAULT_MESSAGES.get(error_type, error_type)
    explicit = dict(fault.headers)
    request_id = explicit.get("request-id", ex.request_id)  # a fault that names its request id gets that one
    headers = [h for h in ex.id_headers() if h[0] not in explicit]
    if fault.retry_after is not None:
        headers.append(("retry-after", _number(fault.retry_after)))
    if fault.retry_after_ms is not None:
        headers.append(("retry-after-ms", _number(fault.retry_after_ms)))
    if fault.should_retry is not None:
        headers.append(("x-should-retry", "true" if fault.should_retry else "false"))
    headers.extend(fault.headers)
    headers.extend(ex.conn_headers())
    if ex.api == "openai":
        body = wire.openai_error(error_type, message, fault.error_code)
    else:
        body = wire.anthropic_error(error_type, message, request_id, fault.error_code)
    return await send_simple(ex.conn, code, "application/json", body, headers)


def _number(value: float) -> str:
    """``2`` -> "2", ``0.5`` -> "0.5"."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def _tokens(ex: Exchange, fault: Fault, deltas: int) -> tuple[int, int]:
    input_tokens = fault.input_tokens
    if input_tokens is None:
        input_tokens = wire.estimate_input_tokens(ex.body)
    output_tokens = fault.output_tokens if fault.output_tokens is not None else max(1, deltas)
    return input_tokens, output_tokens


async def _ok_json(ex: Exchange, fault: Fault) -> bool:
    text = fault.text_for(ex.model)
    input_tokens, output_tokens = _tokens(ex, fault, len(fault.deltas_for(ex.model)))
    tool = (f"toolu_fake_{ex.number}", *fault.tool_use) if fault.tool_use else None
    if ex.api == "openai":
        body = wire.openai_completion(
            f"chatcmpl-fake-{ex.number}", ex.model, text, fault.stop_reason, input_tokens, output_tokens, tool
        )
    else:
        body = wire.anthropic_message(
            f"msg_fake_{ex.number}", ex.model, text, fault.stop_reason, input_tokens, output_tokens, tool
        )
    headers = ex.id_headers() + ex.conn_headers()
    return await send_simple(ex.conn, 200, "application/json", body, headers)


async def _stream(ex: Exchange, fault: Fault) -> bool:
    """A 200 SSE stream, faulted or not; False if the connection must not be reused."""
    conn = ex.conn
    deltas = fault.deltas_for(ex.model)
    input_tokens, output_tokens = _tokens(ex, fault, len(deltas))
    oid = f"chatcmpl-fake-{ex.number}"
    head_headers = [
        ("content-type", "text/event-stream; charset=utf-8"),
        ("cache-control", "no-cache"),
        ("transfer-encoding", "chunked"),
        *ex.id_headers(),
        *ex.conn_headers(),
    ]
    if not await conn.send(response_head(200, "OK", head_headers)):
        return False

    async def send_all(events: list[bytes]) -> bool:
        for event in events:
            if not await conn.send(chunk(event)):
                return False
        return True

    if fault.kind == "stream_error" and fault.after == 0:
        return await send_all([_error_event(ex, fault)]) and await conn.send(LAST_CHUNK)

    last_index = 0
    if ex.api == "openai":
        opening = wire.openai_stream_open(oid, ex.model)
        items = [wire.openai_stream_delta(oid, ex.model, text) for text in deltas]
    elif fault.tool_use is not None:
        tool = (f"toolu_fake_{ex.number}", *fault.tool_use)
        text_deltas = deltas if fault.text or fault.deltas else ()
        first, items, last_index = wire.anthropic_tool_stream(text_deltas, tool)
        opening = wire.anthropic_stream_open(f"msg_fake_{ex.number}", ex.model, input_tokens, first)
    else:
        opening = wire.anthropic_stream_open(f"msg_fake_{ex.number}", ex.model, input_tokens)
        items = [wire.anthropic_stream_delta(text) for text in deltas]
    if not await send_all(opening):
        return False
    limit = len(items) if fault.kind == "ok" else min(fault.after, len(items))
    for i, event in enumerate(items[:limit]):
        if i and await conn.pause(fault.delta_delay):
            return False
        if not await conn.send(chunk(event)):
            return False

    if fault.kind == "ok":
        closing = _closing(ex, fault, oid, (input_tokens, output_tokens), last_index)
        return await send_all(closing) and await conn.send(LAST_CHUNK)
    if fault.kind == "stream_error":
        return await send_all([_error_event(ex, fault)]) and await conn.send(LAST_CHUNK)
    if fault.kind == "stream_no_stop":
        return await conn.send(LAST_CHUNK)
    if fault.kind == "stream_stall":
        await conn.pause(fault.seconds)
    # stream_cut (and a stall that ran out): close with the chunked body unterminated.
    conn.close()
    return False


def _error_event(ex: Exchange, fault: Fault) -> bytes:
    """The mid-stream error a ``stream_error`` fault sends."""
    error_type = fault.error_type or "api_error"
    message = fault.message or _DEFAULT_MESSAGES.get(fault.error_type or "", "Internal server error")
    if ex.api == "openai":
        return wire.openai_stream_error(error_type, message)
    return wire.anthropic_stream_error(error_type, message, ex.request_id)


def _closing(ex: Exchange, fault: Fault, oid: str, tokens: tuple[int, int], last_index: int) -> list[bytes]:
    """The events that end a complete stream."""
    input_tokens, output_tokens = tokens
    if ex.api == "openai":
        opts = ex.body.get("stream_options")
        usage = isinstance(opts, dict) and bool(opts.get("include_usage"))
        return wire.openai_stream_close(oid, ex.model, fault.stop_reason, input_tokens, output_tokens, usage)
    return wire.anthropic_stream_close(fault.stop_reason, output_tokens, last_index)
