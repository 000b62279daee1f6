"""Reading a ticket's outcome back: the RoutedMessage it was served with, or the exception it ended with."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from anthropic.types import Message

from ..errors import AllModelsFailed, Expired, NotReady, RequestFailed, UnknownTicket
from ..outcome import Kind
from ..routing import Attempt, RoutedMessage, Routing, attach_routing
from .ticket import Ticket

#: How often `result()` looks at the store while a ticket is not final: quick first, then every second.
POLL_FIRST = 0.01
POLL_MAX = 1.0


def encode_attempts(attempts: tuple[Attempt, ...] | list[Attempt]) -> list[dict[str, Any]]:
    return [{"model": a.model, "outcome": a.outcome.value, "status": a.status, "error_type": a.error_type,
             "request_id": a.request_id, "duration_s": a.duration_s, "probe": a.probe, "detail": a.detail}
            for a in attempts]


def decode_attempts(raw: Any) -> tuple[Attempt, ...]:
    out = []
    for item in raw or ():
        out.append(Attempt(item["model"], Kind(item["outcome"]), item.get("status"), item.get("error_type"),
                           item.get("request_id"), float(item.get("duration_s") or 0.0), bool(item.get("probe")),
                           item.get("detail")))
    return tuple(out)


def encode_message(message: RoutedMessage) -> dict[str, Any]:
    """A served message as stored in `Ticket.result`."""
    routing = message.routing
    return {"message": message.model_dump(mode="json"),
            "routing": {"model": routing.model, "route": routing.route,
                        "attempts": encode_attempts(routing.attempts)},
            "request_id": getattr(message, "_request_id", None)}


def encode_error(exc: BaseException) -> dict[str, Any]:
    """An exception as stored in `Ticket.error`: its type, text, HTTP status and attempts (no secrets: the
    router's exception texts never hold one)."""
    status = getattr(exc, "status_code", None)
    return {"type": type(exc).__name__, "message": str(exc)[:2000],
            "status": status if isinstance(status, int) else None,
            "attempts": encode_attempts(getattr(exc, "attempts", ()) or ())}


def outcome(ticket: Ticket) -> RoutedMessage:
    """The ticket's message, or raise what it ended with (NotReady is the caller's to raise)."""
    if ticket.state == "done" and ticket.result is not None:
        return _message(ticket.result)
    error: Mapping[str, Any] = ticket.error or {}
    attempts = decode_attempts(error.get("attempts"))
    if ticket.state == "expired" or error.get("type") == "Expired":  # (a batch that expired it, not retried)
        raise Expired(ticket.id, attempts, error.get("message"))
    if ticket.state == "failed" and error.get("type") == "AllModelsFailed":
        raise AllModelsFailed(ticket.route, attempts, f"ticket {ticket.id}, after {ticket.attempts} rounds")
    kind = "canceled" if ticket.state == "canceled" else str(error.get("type", "unknown"))
    raise RequestFailed(ticket.id, kind, str(error.get("message", ticket.state)), error.get("status"), attempts)


def _message(result: Mapping[str, Any]) -> RoutedMessage:
    message = Message.model_validate(result["message"])
    routing = result["routing"]
    if result.get("request_id"):
        object.__setattr__(message, "_request_id", result["request_id"])
    return attach_routing(message, Routing(routing["model"], routing["route"],
                                           decode_attempts(routing.get("attempts"))))


def known(ticket: Ticket | None, ticket_id: str) -> Ticket:
    if ticket is None:
        raise UnknownTicket(ticket_id)
    return ticket


def not_ready(ticket: Ticket, timeout: float) -> NotReady:
    return NotReady(ticket.id, ticket.state, timeout)
