"""Splitting requests into batches by the API's limits: request count and bytes of the JSON body."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from .errors import BatchTooLarge

# `{"requests": [` ... `]}` around the entries, and ", " between two of them.
_ENVELOPE = len(b'{"requests": []}')
_SEPARATOR = 2


@dataclass(frozen=True, slots=True)
class BatchLimits:
    """What one Message Batch may hold: 100,000 requests or 256 MB, whichever comes first."""

    max_requests: int = 100_000
    max_bytes: int = 256_000_000  # 256 MB counted as 10**6 bytes each: below the limit however it is meant

    def __post_init__(self) -> None:
        if self.max_requests < 1:
            raise ValueError(f"max_requests must be >= 1, got {self.max_requests!r}")
        if self.max_bytes <= _ENVELOPE:
            raise ValueError(f"max_bytes must be > {_ENVELOPE}, got {self.max_bytes!r}")


DEFAULT_LIMITS = BatchLimits()


def encoded_size(entry: Mapping[str, Any]) -> int:
    """Bytes of one entry as JSON: json.dumps's defaults (ASCII escapes, spaced separators) are the widest
    usual encoding, so the body the SDK sends is never larger."""
    return len(json.dumps(entry).encode())


def split(entries: Sequence[Mapping[str, Any]], limits: BatchLimits = DEFAULT_LIMITS) -> list[list[Mapping[str, Any]]]:
    """`entries` (`{"custom_id", "params"}`) in order, cut into the fewest consecutive batches within `limits`.

    Raises BatchTooLarge if one entry alone does not fit."""
    batches: list[list[Mapping[str, Any]]] = []
    current: list[Mapping[str, Any]] = []
    size = _ENVELOPE
    for index, entry in enumerate(entries):
        n = encoded_size(entry)
        if _ENVELOPE + n > limits.max_bytes:
            raise BatchTooLarge(index, n, limits.max_bytes)
        extra = n + (_SEPARATOR if current else 0)
        if current and (len(current) >= limits.max_requests or size + extra > limits.max_bytes):
            batches.append(current)
            current, size, extra = [], _ENVELOPE, n
        current.append(entry)
        size += extra
    if current:
        batches.append(current)
    return batches
