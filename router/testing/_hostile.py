"""Playing the hostile-wire faults: Fault.raw (exact bytes), Fault.drip (never finishes) and Fault.sse."""

from __future__ import annotations

import asyncio

from router.testing import wire
from router.testing._exchange import Exchange
from router.testing._http import LAST_CHUNK, chunk, response_head
from router.testing.faults import Fault

__all__ = ["play_drip", "play_raw", "play_sse"]

_DRIP_LENGTH = 1_000_000
_ANTHROPIC_PING = b'event: ping\ndata: {"type": "ping"}\n\n'
_OPENAI_PING = b": ping\n\n"
_DRIP_TEXT = "a "


def _head(status: int, headers: list[tuple[str, str]], end: bool = True) -> bytes:
    """A status line and exactly ``headers`` (no date, no server), with the blank line if ``end``."""
    lines = [f"HTTP/1.1 {status} {wire.reason_phrase(status)}", *(f"{n}: {v}" for n, v in headers)]
    return ("\r\n".join(lines) + ("\r\n\r\n" if end else "\r\n")).encode("latin-1")


async def play_raw(ex: Exchange, fault: Fault) -> bool:
    """Exactly the fault's status, headers and body; True only when the framing was exact."""
    named = frozenset(name.lower() for name, _ in fault.headers)
    headers = [*fault.headers, *ex.id_headers(named)]
    body = fault.body
    exact = not named & {"content-length", "transfer-encoding"}
    if fault.length == "auto":
        if "content-length" not in named:
            headers.append(("content-length", str(len(body))))
    elif fault.length is not None:
        headers.append(("content-length", str(fault.length)))
        exact = exact and fault.length == len(body)
    else:
        exact = False
    if body and fault.status_code in (204, 304):
        exact = False  # a client reads no body here: the bytes would poison the next response
    return await ex.conn.send(_head(fault.status_code, headers) + body) and exact


def _event_stream_head(ex: Exchange, status: int = 200, extra: tuple[tuple[str, str], ...] = ()) -> bytes:
    named = frozenset(name.lower() for name, _ in extra)
    own = [
        ("content-type", "text/event-stream; charset=utf-8"),
        ("cache-control", "no-cache"),
        ("transfer-encoding", "chunked"),
        *ex.id_headers(),
        *ex.conn_headers(),
    ]
    headers = [h for h in own if h[0] not in named] + list(extra)
    return response_head(status, wire.reason_phrase(status), headers)


async def play_sse(ex: Exchange, fault: Fault) -> bool:
    """The fault's events as a chunked event stream, then the end it names."""
    conn = ex.conn
    if not await conn.send(_event_stream_head(ex, fault.status_code, fault.headers)):
        return False
    for i, (name, data) in enumerate(fault.events):
        if i and await conn.pause(fault.interval):
            return False
        if not await conn.send(chunk(wire.sse_event(name, data))):
            return False
    if fault.end == "done":
        return await conn.send(LAST_CHUNK)
    if fault.end == "stall" and await conn.pause(fault.seconds):
        return False
    conn.close()
    return False


def _drip_parts(ex: Exchange, fault: Fault) -> tuple[bytes, bytes]:
    """(what goes at once, the unit sent every interval) for the fault's phase."""
    phase = fault.phase
    if phase == "sse" and not ex.streaming:
        phase = "body"
    if phase == "head":
        return _head(200, ex.id_headers(), end=False) + b"x-pad: ", b"x"
    if phase == "body":
        headers = [("content-type", "application/json"), ("content-length", str(_DRIP_LENGTH))]
        return response_head(200, "OK", headers + ex.id_headers() + ex.conn_headers()), b" "
    head = _event_stream_head(ex)
    if phase == "ping":
        return head, chunk(_ANTHROPIC_PING if ex.api == "anthropic" else _OPENAI_PING)
    if ex.api == "openai":
        oid = f"chatcmpl-fake-{ex.number}"
        opening = wire.openai_stream_open(oid, ex.model)
        return head + b"".join(map(chunk, opening)), chunk(wire.openai_stream_delta(oid, ex.model, _DRIP_TEXT))
    msg_id = f"msg_fake_{ex.number}"
    opening = wire.anthropic_stream_open(msg_id, ex.model, wire.estimate_input_tokens(ex.body))[:2]
    return head + b"".join(map(chunk, opening)), chunk(wire.anthropic_stream_delta(_DRIP_TEXT))


async def play_drip(ex: Exchange, fault: Fault) -> bool:
    """The fault's opening, then one unit per interval until ``seconds`` run out (then close) or the client leaves."""
    conn = ex.conn
    opening, unit = _drip_parts(ex, fault)
    if not await conn.send(opening):
        return False
    loop = asyncio.get_running_loop()
    deadline = loop.time() + fault.seconds
    while (left := deadline - loop.time()) > 0:
        if await conn.pause(min(fault.interval, left)):
            return False
        if loop.time() >= deadline or not await conn.send(unit):
            break
    conn.close()
    return False
