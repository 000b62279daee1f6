"""What one line of a batch's results means: keep the message, retry the request, fail it, or cancel it."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Literal

from anthropic.types import Message
from anthropic.types.messages import MessageBatchResult

from ..outcome import Kind, classify_status
from ..reply import usable

Action = Literal["done", "retry", "fail", "cancel"]

# A batch's errored result carries an error response but no HTTP status: the status the Messages API
# answers with that error type, so it is classified as the same error on a normal request would be.
_STATUS_OF: Mapping[str, int] = {
    "invalid_request_error": 400,
    "authentication_error": 401,
    "billing_error": 402,
    "permission_error": 403,
    "not_found_error": 404,
    "request_too_large": 413,
    "rate_limit_error": 429,
    "api_error": 500,
    "timeout_error": 504,
    "overloaded_error": 529,
}

# Errors another try (or another model of the route) may not repeat: server failures, rate limits, a
# prompt too long for this model, an account problem of this model's key.
_RETRIED = frozenset({Kind.SERVER_FAILURE, Kind.RATE_LIMITED, Kind.TOO_LARGE, Kind.ACCOUNT})


@dataclass(frozen=True, slots=True)
class Verdict:
    """The decision for one request of a batch. `kind` is the result's type (succeeded, errored, ...)."""

    action: Action
    kind: str
    message: Message | None = None
    error_type: str | None = None
    error_message: str | None = None
    status: int | None = None
    request_id: str | None = None
    outcome: Kind | None = None


def status_of(error_type: str | None) -> int | None:
    return _STATUS_OF.get(error_type or "")


def judge(result: MessageBatchResult, overrides: Mapping[str, str] | None = None) -> Verdict:
    """Succeeded: done (a message that is not a valid Message is a server failure: retried). Errored:
    retried when server-class (by its error.type, the model's `outcomes:` overrides applied), failed when
    the request itself is wrong. Expired: retried. Canceled: canceled."""
    if result.type == "succeeded":
        if usable(result.message):
            return Verdict("done", "succeeded", message=result.message)
        return Verdict("retry", "succeeded", error_type="invalid_response", outcome=Kind.SERVER_FAILURE,
                       error_message="the batch's message is not a valid Message")
    if result.type == "canceled":
        return Verdict("cancel", "canceled")
    if result.type == "expired":
        return Verdict("retry", "expired", error_type="expired", error_message="the batch expired it",
                       outcome=Kind.SERVER_FAILURE)
    response = result.error
    error_type, text = response.error.type, response.error.message
    status = status_of(error_type)
    kind = classify_status(status, error_type, None, overrides, text)
    action: Action = "retry" if kind in _RETRIED else "fail"
    return Verdict(action, "errored", error_type=error_type, error_message=text, status=status,
                   request_id=response.request_id, outcome=kind)
