"""How long a server asks us to wait: `retry-after-ms` / `retry-after` read defensively, dates as UTC."""

from __future__ import annotations

import email.utils
import math
from collections.abc import Mapping
from datetime import timezone
from typing import Any

from .clock import SYSTEM

# Longer than any real server asks for; a cap from the policy (retry.max_retry_after) applies on top.
_SANE_MAX = 86_400.0


def parse_retry_after(headers: Mapping[str, str] | Any, now: float | None = None) -> float | None:
    """Seconds to wait, or None when the headers say nothing usable.

    `retry-after-ms` wins over `retry-after`. `retry-after` is a number of seconds or an HTTP-date in any
    of RFC 9110's three forms (IMF-fixdate, RFC 850, asctime); a date without a zone, or with `-0000`,
    is UTC, never local time. Negative, infinite, NaN, absurdly large or unparsable values are ignored.
    `now` is the wall-clock time (`time.time()`) the date is measured against.
    """
    try:
        ms = headers.get("retry-after-ms")
        if ms is not None:
            seconds = _number(ms)
            if seconds is not None:
                return seconds / 1000.0 if seconds / 1000.0 <= _SANE_MAX else None
        raw = headers.get("retry-after")
        if raw is None:
            return None
        seconds = _number(raw)
        if seconds is not None:
            return seconds if seconds <= _SANE_MAX else None
        return _date(str(raw), SYSTEM.wall() if now is None else now)
    except (TypeError, ValueError, OverflowError, AttributeError):
        return None


def _number(raw: object) -> float | None:
    try:
        value = float(str(raw).strip())
    except ValueError:
        return None
    if not math.isfinite(value) or value < 0:
        return None
    return value


def _date(raw: str, now: float) -> float | None:
    try:
        when = email.utils.parsedate_to_datetime(raw.strip())
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:  # "-0000" and asctime dates: RFC 9110 says these are UTC
        when = when.replace(tzinfo=timezone.utc)
    wait = when.timestamp() - now
    if not math.isfinite(wait) or wait > _SANE_MAX:
        return None
    return max(0.0, wait)
