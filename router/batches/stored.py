"""A batched request's outcome as the store keeps it (JSON), and the message or exception it stands for."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from anthropic.types import Message

from ..errors import AllModelsFailed, Expired, RequestFailed, RouterError
from ..outcome import Kind
from ..queue.ticket import Ticket
from ..routing import Attempt, RoutedMessage, Routing, attach_routing

#: error.type values of a failed ticket that are not API error types.
ALL_MODELS_FAILED = "all_models_failed"
EXPIRED = "expired"
CANCELED = "canceled"


def attempt_json(a: Attempt) -> dict[str, Any]:
    return {"model": a.model, "outcome": a.outcome.value, "status": a.status, "error_type": a.error_type,
            "request_id": a.request_id, "duration_s": a.duration_s, "probe": a.probe, "detail": a.detail}


def attempt_from(d: Mapping[str, Any]) -> Attempt:
    return Attempt(str(d["model"]), Kind(d["outcome"]), d.get("status"), d.get("error_type"), d.get("request_id"),
                   float(d.get("duration_s") or 0.0), bool(d.get("probe")), d.get("detail"))


def routing_json(routing: Routing) -> dict[str, Any]:
    return {"model": routing.model, "route": routing.route, "attempts": [attempt_json(a) for a in routing.attempts]}


def routing_from(d: Mapping[str, Any]) -> Routing:
    return Routing(str(d["model"]), str(d["route"]), tuple(attempt_from(a) for a in d.get("attempts", ())))


def result_json(message: Message, routing: Routing, batch: Mapping[str, Any]) -> dict[str, Any]:
    """A done ticket's `result`; `batch` says which batch it was in and whether it was retried."""
    return {"message": message.model_dump(mode="json"), "routing": routing_json(routing), "batch": dict(batch)}


def error_json(error_type: str, message: str, status: int | None, attempts: Sequence[Attempt],
               batch: Mapping[str, Any], reason: str | None = None) -> dict[str, Any]:
    """A failed ticket's `error` (`reason`: an AllModelsFailed's)."""
    return {"type": error_type, "message": message, "status": status, "reason": reason,
            "attempts": [attempt_json(a) for a in attempts], "batch": dict(batch)}


def outcome(ticket: Ticket) -> RoutedMessage | RouterError | None:
    """The message a final ticket holds, or the exception that says why it has none; None if not final."""
    if ticket.state == "done" and ticket.result is not None:
        message = Message.model_validate(ticket.result["message"])
        return attach_routing(message, routing_from(ticket.result["routing"]))
    if ticket.state == "expired":
        return Expired(ticket.id)
    if ticket.state == "canceled":
        return RequestFailed(ticket.id, CANCELED, "its Message Batch was canceled")
    if ticket.state != "failed":
        return None
    error = ticket.error or {}
    error_type = str(error.get("type") or "unknown")
    attempts = tuple(attempt_from(a) for a in error.get("attempts", ()))
    text = str(error.get("message") or error_type)
    if error_type == ALL_MODELS_FAILED:
        return AllModelsFailed(ticket.route, attempts, error.get("reason"))
    if error_type == EXPIRED:
        return Expired(ticket.id, attempts, text)
    return RequestFailed(ticket.id, error_type, text, error.get("status"), attempts)


def batch_note(ticket: Ticket) -> Mapping[str, Any]:
    """The `batch` part of a final ticket's result or error ({} if it has none)."""
    held = ticket.result if ticket.state == "done" else ticket.error
    note = held.get("batch") if held else None
    return note if isinstance(note, Mapping) else {}
