"""Value checks and defaults shared by the Fault constructors (error types, word splitting, number checks)."""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

__all__ = ["DEFAULT_ERROR_TYPES", "after", "deltas", "header_pairs", "positive", "seconds", "split_words"]

#: Anthropic ``error.type`` the real API uses for each HTTP status.
DEFAULT_ERROR_TYPES: Mapping[int, str] = {
    400: "invalid_request_error",
    401: "authentication_error",
    402: "billing_error",
    403: "permission_error",
    404: "not_found_error",
    408: "timeout_error",
    409: "conflict_error",
    413: "request_too_large",
    422: "invalid_request_error",
    429: "rate_limit_error",
    500: "api_error",
    502: "api_error",
    503: "api_error",
    504: "timeout_error",
    529: "overloaded_error",
}


def split_words(text: str) -> tuple[str, ...]:
    """Split ``text`` into word-ish chunks that keep their spaces, so ``"".join(chunks) == text``."""
    return tuple(re.findall(r"\s+\S*\s*|\S+\s*", text))


def deltas(value: Sequence[str] | None) -> tuple[str, ...] | None:
    """``value`` as a tuple of text deltas (a bare string is refused: it is almost always a mistake)."""
    if value is None:
        return None
    if isinstance(value, str):
        raise TypeError("deltas must be a sequence of strings, not a string")
    return tuple(value)


def seconds(name: str, value: float) -> float:
    """``value`` as a float, refusing negatives."""
    if value < 0:
        raise ValueError(f"{name} must be >= 0, got {value!r}")
    return float(value)


def positive(name: str, value: float) -> float:
    """``value`` as a float, refusing zero and negatives."""
    if not value > 0:
        raise ValueError(f"{name} must be > 0, got {value!r}")
    return float(value)


def after(value: int) -> int:
    """A stream fault's ``after`` count, refusing negatives."""
    if value < 0:
        raise ValueError(f"after must be >= 0, got {value!r}")
    return value


def header_pairs(headers: Mapping[str, str] | None) -> tuple[tuple[str, str], ...]:
    """``headers`` as (name, value) pairs, names as given; refuses what cannot go on the wire as one line."""
    pairs = tuple((str(k), str(v)) for k, v in (headers or {}).items())
    for name, value in pairs:
        if not name or any(c in name for c in " :\r\n") or "\r" in value or "\n" in value:
            raise ValueError(f"not a valid header line: {name!r}: {value!r}")
        try:
            f"{name}{value}".encode("latin-1")
        except UnicodeEncodeError:
            raise ValueError(f"header {name!r} is not latin-1") from None
    return pairs
