"""Exchange: one request being answered (connection, parsed body, model, ids), and the one-write response."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from router.testing import wire
from router.testing._http import Connection, Request, response_head
from router.testing.state import ServerState

__all__ = ["Api", "Exchange", "send_simple"]

Api = Literal["anthropic", "openai"]


@dataclass(slots=True)
class Exchange:
    """One request being answered (mutable only in ``disconnected``: a disconnect is counted once)."""

    conn: Connection
    state: ServerState
    api: Api
    request: Request
    body: dict[str, Any]
    model: str
    number: int
    disconnected: bool = False

    @property
    def request_id(self) -> str:
        return f"req_fake_{self.number}"

    @property
    def streaming(self) -> bool:
        """Whether the request asked for a stream (``"stream": true``)."""
        return self.body.get("stream") is True

    def id_headers(self, skip: frozenset[str] = frozenset()) -> list[tuple[str, str]]:
        """``request-id`` (and ``x-request-id`` on the OpenAI endpoint), leaving out the names in ``skip``."""
        headers = [("request-id", self.request_id)]
        if self.api == "openai":
            headers.append(("x-request-id", self.request_id))
        return [h for h in headers if h[0] not in skip]

    def conn_headers(self) -> list[tuple[str, str]]:
        return [] if self.request.keep_alive else [("connection", "close")]

    def record_disconnect(self) -> None:
        """Count this response in the model's ``disconnects`` (once, however often it is called)."""
        if not self.disconnected:
            self.disconnected = True
            self.state.record_disconnect(self.model)


async def send_simple(
    conn: Connection, status: int, content_type: str, body: bytes, headers: list[tuple[str, str]]
) -> bool:
    """One write: head and body together."""
    all_headers = [("content-type", content_type), ("content-length", str(len(body))), *headers]
    return await conn.send(response_head(status, wire.reason_phrase(status), all_headers) + body)
