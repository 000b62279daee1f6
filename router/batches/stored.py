"""A batched request's outcome as the store keeps it (the queue's JSON forms), and what it stands for."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from anthropic.types import Message

from ..errors import Expired, RouterError
from ..queue.results import decode_attempts, encode_attempts, encode_message
from ..queue.results import outcome as ticket_outcome
from ..queue.ticket import Ticket
from ..routing import Attempt, RoutedMessage, Routing, attach_routing

#: `error.type` of a ticket whose batch expired it and that was not retried (retry: none).
EXPIRED = "Expired"
#: `error.type` of a ticket whose batch was canceled (as the store's own cancel() writes it).
CANCELED = "canceled"


def result_json(message: Message, routing: Routing, batch: Mapping[str, Any]) -> dict[str, Any]:
    """A done ticket's `result`, as `Router.result()` reads it; `batch` says which batch it was in and
    whether it was retried."""
    encoded = encode_message(attach_routing(message, routing))
    encoded["batch"] = dict(batch)
    return encoded


def error_json(error_type: str, message: str, status: int | None, attempts: Sequence[Attempt],
               batch: Mapping[str, Any]) -> dict[str, Any]:
    """A failed ticket's `error`: `error_type` is the API's (invalid_request_error, ...) or an exception's name."""
    return {"type": error_type, "message": message[:2000], "status": status,
            "attempts": encode_attempts(tuple(attempts)), "batch": dict(batch)}


def outcome(ticket: Ticket) -> RoutedMessage | RouterError | None:
    """The message a final ticket holds, or the exception saying why it has none; None if not final."""
    if not ticket.final:
        return None
    error = ticket.error or {}
    if ticket.state == "failed" and error.get("type") == EXPIRED:
        return Expired(ticket.id, decode_attempts(error.get("attempts")), error.get("message"))
    try:
        return ticket_outcome(ticket)
    except RouterError as exc:
        return exc


def batch_note(ticket: Ticket) -> Mapping[str, Any]:
    """The `batch` part of a final ticket's result or error ({} if it has none)."""
    held = ticket.result if ticket.state == "done" else ticket.error
    note = held.get("batch") if held else None
    return note if isinstance(note, Mapping) else {}
