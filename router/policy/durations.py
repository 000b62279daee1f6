"""Durations in a policy: '500ms' / '30s' / '5m' / '1h' or plain seconds, read and written back."""

from __future__ import annotations

import math
import re

MAX_SECONDS = 86_400.0
DURATION_FORMS = "a number of seconds or a string like '500ms', '30s', '5m', '1h'"

#: A long duration (`queue.keep`) may also be written in days.
LONG_DURATION_FORMS = "a number of seconds or a string like '30s', '5m', '12h', '7d'"

_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ms|s|m|h|d)?")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, "d": 86_400.0, None: 1.0}


def parse_duration(value: object, *, days: bool = False) -> float | None:
    """Seconds for a duration value, or None when it is not one of the accepted forms (range unchecked).
    `days`: '7d' is accepted too (long durations only: a timeout in days is a typo)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value) if math.isfinite(value) else None
    if not isinstance(value, str) or len(value) > 64:
        return None
    match = _DURATION.fullmatch(value.strip())
    if match is None or (match.group(2) == "d" and not days):
        return None
    seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    return seconds if math.isfinite(seconds) else None


def format_seconds(seconds: float) -> str:
    """A duration for messages: '500ms' under a second, '2d' for whole days past a day, else '30s'."""
    if 0 < abs(seconds) < 1:
        return f"{seconds * 1000:g}ms"
    if abs(seconds) > 86_400 and seconds % 86_400 == 0:
        return f"{seconds / 86_400:g}d"
    return f"{seconds:.10g}s"
