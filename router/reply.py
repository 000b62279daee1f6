"""What a reply must be to count as a success: a 2xx is judged, and anything but a valid Message is refused."""

from __future__ import annotations

from typing import Any, TypeGuard

from anthropic.types import Message

from .outcome import WireError


def usable(reply: object) -> TypeGuard[Message]:
    """True if `reply` is a usable Message: type "message", role "assistant", a list of typed content
    blocks, an id and a usage. The check `judge` makes, alone, for the success path: it needs no status,
    content type or request id, which only a refusal reports."""
    if not isinstance(reply, Message):
        return False
    values = reply.__dict__
    content = values.get("content")
    if not (
        values.get("type") == "message"
        and values.get("role") == "assistant"
        and isinstance(content, list)
        and isinstance(values.get("id"), str)
        and values.get("usage") is not None
    ):
        return False
    return all(isinstance(getattr(block, "type", None), str) for block in content)


def judge(reply: object, status: int | None, content_type: str | None, request_id: str | None) -> Message:
    """`reply` if it is a usable Message; otherwise raise WireError saying what was wrong with it.

    The SDK returns whatever a 2xx carried: the body's text for an HTML page, None for `null`, a Message
    with no fields for `{}`, a Message of type "error" for an error envelope. Checked here, cheaply:
    type "message", role "assistant", a list of typed content blocks, an id and a usage.
    """
    if usable(reply):
        return reply
    if isinstance(reply, Message):
        envelope = _envelope(reply)
        if envelope is not None:
            error_type, message = envelope
            detail = f"{status or 200} carrying an error envelope ({error_type}: {message[:200]})"
            raise WireError(detail, status=status or 200, error_type=error_type, request_id=request_id)
    raise WireError(_describe(reply, status, content_type), status=status or 200, request_id=request_id)


def _envelope(reply: Message) -> tuple[str, str] | None:
    """(error.type, error.message) when the body was `{"type": "error", "error": {...}}`."""
    if reply.__dict__.get("type") != "error":
        return None
    extra: dict[str, Any] = reply.model_extra or {}
    error = extra.get("error")
    if not isinstance(error, dict):
        return "api_error", "no error details"
    error_type = error.get("type")
    message = error.get("message")
    return (error_type if isinstance(error_type, str) else "api_error", message if isinstance(message, str) else "")


def _describe(reply: object, status: int | None, content_type: str | None) -> str:
    code = status or 200
    kind = (content_type or "").split(";", 1)[0].strip().lower()
    if isinstance(reply, str):
        if not reply.strip():
            return f"{code} with an empty body" + (f" ({kind})" if kind else "")
        return f"{code} with a {kind} body, not JSON" if kind else f"{code} with no content-type and a non-JSON body"
    if reply is None:
        return f"{code} with a JSON null body" if kind.endswith("json") else f"{code} with an empty body"
    if isinstance(reply, list):
        return f"{code} with a JSON list, not a Message"
    if isinstance(reply, Message):
        missing = [name for name in ("id", "type", "role", "content", "usage") if reply.__dict__.get(name) is None]
        if missing:
            return f"{code} with a JSON object that is not a Message (missing {', '.join(missing)})"
        return f"{code} with a JSON object that is not a Message (type {reply.__dict__.get('type')!r})"
    return f"{code} with a body that is not a Message ({type(reply).__name__})"
