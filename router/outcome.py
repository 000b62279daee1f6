"""Outcome classification: what one HTTP attempt's error means for the breaker and for the request."""

from __future__ import annotations

import enum
import json
import re
import ssl
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import anthropic

from .retry_after import parse_retry_after


class Kind(str, enum.Enum):
    """The outcome of one attempt (or why a model was passed over without one)."""

    SUCCESS = "success"
    SERVER_FAILURE = "server_failure"  # counts toward the breaker
    RATE_LIMITED = "rate_limited"  # model cools down until retry-after; not counted
    ACCOUNT = "account"  # key / billing / permission problem; not counted
    CALLER = "caller"  # the request itself is bad: raised at once, no failover
    TOO_LARGE = "too_large"  # the prompt exceeds this model's context window: not counted, next model
    UNEXPECTED = "unexpected"  # not an API failure at all (a bug, a bad argument): raised at once
    # No request was sent to the model:
    BREAKER_OPEN = "breaker_open"
    COOLING_DOWN = "cooling_down"
    SAME_CREDENTIALS = "same_credentials"  # an earlier model with these credentials got an account error
    DEADLINE = "deadline"  # the request's own deadline ran out before this model could be tried
    CANNOT_RESUME = "cannot_resume"  # a broken stream cannot continue on this model (resume: restart)
    WAITED = "waited"  # on_exhausted: wait: the request waited for this model to be callable again

    def __str__(self) -> str:
        return self.value


_BY_STATUS: dict[int, Kind] = {
    400: Kind.CALLER,
    401: Kind.ACCOUNT,
    402: Kind.ACCOUNT,
    403: Kind.ACCOUNT,
    404: Kind.CALLER,
    408: Kind.SERVER_FAILURE,  # the server timed out waiting: transient, the SDK retries it too
    409: Kind.SERVER_FAILURE,  # lock contention on Anthropic's side: transient, the SDK retries it too
    413: Kind.CALLER,
    422: Kind.CALLER,
    429: Kind.RATE_LIMITED,
}

# An `error` event inside a 200 stream carries no status: classify it by its type.
_BY_ERROR_TYPE: dict[str, Kind] = {
    "api_error": Kind.SERVER_FAILURE,
    "overloaded_error": Kind.SERVER_FAILURE,
    "timeout_error": Kind.SERVER_FAILURE,
    "rate_limit_error": Kind.RATE_LIMITED,
    "authentication_error": Kind.ACCOUNT,
    "permission_error": Kind.ACCOUNT,
    "billing_error": Kind.ACCOUNT,
    "invalid_request_error": Kind.CALLER,
    "not_found_error": Kind.CALLER,
    "request_too_large": Kind.CALLER,
}

# Account errors that are about the key itself (invalid, unpaid, over its spend limit).
_KEY_WIDE_STATUSES = frozenset({401, 402, 429})

# A 429 whose error code names a spend or billing limit will not lift in seconds: it is account-level.
_ACCOUNT_CODE_WORDS = ("spend", "billing", "credit", "quota", "budget")

# A 400 that says the prompt does not fit this model's context window: a model with a larger one may
# still answer it. Anthropic: "prompt is too long: 210000 tokens > 200000 maximum"; OpenAI and litellm:
# code context_length_exceeded, "maximum context length is ...", "ContextWindowExceededError".
_TOO_LARGE = re.compile(
    r"prompt is too long|context[ _-]?length[ _-]?exceeded|maximum context length|context[ _-]?window"
    r"|input is too long|too many (input )?tokens",
    re.IGNORECASE,
)

# Names of the transport libraries whose exceptions mean "the connection failed" (matched by module,
# since the SDKs re-export or wrap them differently from one version to the next).
_TRANSPORT_MODULES = ("httpx2", "httpx", "httpcore", "h11", "h2", "aiohttp", "anyio")


class WireError(Exception):
    """A reply the router refuses although no exception said so: a 2xx that is not a valid Message, or a
    stream whose events make no sense. Always a counted server failure unless an error envelope in it
    names another `error_type`."""

    def __init__(
        self, detail: str, *, status: int | None = None, error_type: str = "invalid_response",
        request_id: str | None = None,
    ) -> None:
        super().__init__(detail)
        self.detail = detail
        self.status = status
        self.error_type = error_type
        self.request_id = request_id


@dataclass(frozen=True, slots=True)
class Failure:
    """A classified failed attempt. `error` is the original exception (kept for re-raising and chaining)."""

    kind: Kind
    status: int | None
    error_type: str | None
    request_id: str | None
    error: BaseException
    retry_after: float | None = None  # seconds, from retry-after-ms / retry-after
    should_retry: bool | None = None  # the server's x-should-retry header
    note: str | None = None  # where it happened, for the attempt record (e.g. after how much streamed text)

    @property
    def counts(self) -> bool:
        """Does it count toward the model's breaker?"""
        return self.kind is Kind.SERVER_FAILURE

    @property
    def raises(self) -> bool:
        """Is it raised to the caller at once, with no failover (the fallback would fail the same way)?"""
        return self.kind is Kind.CALLER or self.kind is Kind.UNEXPECTED

    @property
    def spends_key(self) -> bool:
        """Does it say the key itself is bad, so every model using the same key would fail alike? (A 403
        can be about one model only, so it does not.)"""
        return self.kind is Kind.ACCOUNT and (self.status is None or self.status in _KEY_WIDE_STATUSES)

    @property
    def timed_out(self) -> bool:
        return self.error_type == "timeout"


def classify_status(
    status: int | None,
    error_type: str | None,
    error_code: str | None = None,
    overrides: Mapping[str, str] | None = None,
    message: str | None = None,
) -> Kind:
    """The outcome class of an error response, by (status, error.type); policy overrides win.

    A 400 whose message or code says the prompt exceeds the context window is `too_large`."""
    if overrides:
        for key in (error_type, str(status) if status is not None else None):
            if key is not None and key in overrides:
                return Kind(overrides[key])
    if status is None or status == 200:
        return _BY_ERROR_TYPE.get(error_type or "", Kind.SERVER_FAILURE)
    if status == 429 and error_code and any(w in error_code.lower() for w in _ACCOUNT_CODE_WORDS):
        return Kind.ACCOUNT
    if status == 400 and is_too_large(message, error_code):
        return Kind.TOO_LARGE
    kind = _BY_STATUS.get(status)
    if kind is not None:
        return kind
    return Kind.SERVER_FAILURE if status >= 500 else Kind.CALLER


def is_too_large(message: str | None, error_code: str | None = None) -> bool:
    """Does an error say the prompt does not fit the model's context window?"""
    if error_code and _TOO_LARGE.search(error_code):
        return True
    return message is not None and _TOO_LARGE.search(message[:2000]) is not None


def _should_retry(headers: Mapping[str, str] | Any) -> bool | None:
    value = headers.get("x-should-retry")
    if value == "true":
        return True
    if value == "false":
        return False
    return None


def is_transport_error(exc: BaseException) -> bool:
    """True for a raw connection-level exception from an HTTP stack, ssl or socket."""
    if isinstance(exc, (ssl.SSLError, ConnectionError, TimeoutError, EOFError)):
        return True
    module = type(exc).__module__.split(".", 1)[0]
    return module in _TRANSPORT_MODULES and "StatusError" not in type(exc).__name__


def is_timeout(exc: BaseException) -> bool:
    return isinstance(exc, (TimeoutError, anthropic.APITimeoutError)) or "Timeout" in type(exc).__name__


def classify(exc: BaseException, overrides: Mapping[str, str] | None = None) -> Failure:
    """Map an exception raised by the anthropic SDK (or the transport under it) to a Failure."""
    if isinstance(exc, WireError):
        return wire_failure(exc, overrides)
    if isinstance(exc, anthropic.APIStatusError):
        headers = exc.response.headers
        status = exc.status_code
        error_type: str | None = exc.type
        kind = classify_status(status, error_type, exc.error_code, overrides, exc.message)
        if status == 200 and kind in (Kind.CALLER, Kind.TOO_LARGE):
            kind = Kind.SERVER_FAILURE  # an `error` event inside a 200 stream: as for an envelope in a 2xx
        return Failure(
            kind=kind,
            status=status,
            error_type=error_type,
            request_id=exc.request_id,
            error=exc,
            retry_after=parse_retry_after(headers),
            should_retry=_should_retry(headers),
        )
    if isinstance(exc, anthropic.CredentialsError):
        return Failure(Kind.ACCOUNT, None, "missing_credentials", None, exc)
    if isinstance(exc, anthropic.APIResponseValidationError):
        return Failure(Kind.SERVER_FAILURE, exc.status_code, "invalid_response", None, exc,
                       note=f"{exc.status_code} whose body is not a valid Message")
    if isinstance(exc, anthropic.APIConnectionError) or is_transport_error(exc):
        transport_type = "timeout" if is_timeout(exc) else "connection_error"
        kind = classify_status(None, transport_type, None, overrides) if overrides else Kind.SERVER_FAILURE
        return Failure(kind, None, transport_type, None, exc)
    if isinstance(exc, (json.JSONDecodeError, UnicodeDecodeError)):
        # Only a reply can fail to decode: the SDK serialises our request itself, and a request it cannot
        # serialise raises a TypeError. A 2xx with truncated or garbled JSON is the server's failure.
        return Failure(Kind.SERVER_FAILURE, None, "invalid_response", None, exc,
                       note=f"the reply is not valid JSON ({type(exc).__name__})")
    return Failure(Kind.UNEXPECTED, None, type(exc).__name__, None, exc)


def wire_failure(exc: WireError, overrides: Mapping[str, str] | None = None) -> Failure:
    """A refused reply. An error envelope inside a 2xx is classified by its error.type, except that a
    "your request is wrong" type in a 2xx contradicts its own status: that server is broken, so it counts."""
    kind = classify_status(None, exc.error_type, None, overrides)
    if kind in (Kind.CALLER, Kind.TOO_LARGE, Kind.UNEXPECTED):
        kind = Kind.SERVER_FAILURE
    return Failure(kind, exc.status, exc.error_type, exc.request_id, exc, note=exc.detail)


def _error_of(response: Any) -> tuple[str | None, str | None, str | None]:
    """(error.type, error.code, error.message) of an error body, each None when absent."""
    try:
        body = response.json()
    except Exception:  # HTML, empty or truncated bodies carry no error type
        return None, None, None
    error = body.get("error") if isinstance(body, dict) else None
    if not isinstance(error, dict):
        return None, None, None
    fields = (error.get("type"), error.get("code"), error.get("message"))
    return tuple(v if isinstance(v, str) else None for v in fields)  # type: ignore[return-value]


def classify_chain(
    exc: BaseException, overrides: Mapping[str, str] | None = None, headers: Mapping[str, str] | None = None
) -> Failure:
    """Classify an exception that wraps the real one (litellm's): the innermost HTTP status or transport
    error on the cause chain is the truth. litellm reports an Anthropic 529 as a 500 and a refused
    connection as a 500; the httpx error underneath says what really happened."""
    truth: BaseException | None = None
    link: BaseException | None = exc
    for _ in range(16):
        if link is None:
            break
        response = getattr(link, "response", None)
        if is_transport_error(link) or (
            type(link).__name__ == "HTTPStatusError" and isinstance(getattr(response, "status_code", None), int)
        ):
            truth = link
        link = link.__cause__ or link.__context__
    if truth is not None and truth is not exc and is_transport_error(truth):
        transport_type = "timeout" if is_timeout(truth) else "connection_error"
        return Failure(classify_status(None, transport_type, None, overrides), None, transport_type, None, exc)
    response = getattr(truth, "response", None) if truth is not None else None
    status = getattr(response, "status_code", None)
    if not isinstance(status, int):
        status = getattr(exc, "status_code", None)
        if not isinstance(status, int):
            return Failure(Kind.UNEXPECTED, None, type(exc).__name__, None, exc)
    if is_timeout(exc) and response is None:
        return Failure(classify_status(None, "timeout", None, overrides), None, "timeout", None, exc)
    hdrs: Mapping[str, str] | Any = headers if headers is not None else getattr(response, "headers", None) or {}
    error_type, code, message = _error_of(response) if response is not None else (None, None, None)
    if message is None:
        message = str(exc)
    return Failure(
        kind=classify_status(status, error_type, code, overrides, message),
        status=status,
        error_type=error_type,
        request_id=hdrs.get("request-id") or hdrs.get("x-request-id"),
        error=exc,
        retry_after=parse_retry_after(hdrs),
        should_retry=_should_retry(hdrs),
    )
