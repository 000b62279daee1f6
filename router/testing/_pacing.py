"""Pacer: splits a response's writes into timed pieces for Fault.trickle (head, body or both)."""

from __future__ import annotations

import time
from dataclasses import dataclass

__all__ = ["Pace", "Pacer"]

_END_OF_HEAD = b"\r\n\r\n"


@dataclass(frozen=True, slots=True)
class Pace:
    """How to trickle: ``chunk`` bytes per piece, ``rate`` bytes per second, which part of the response."""

    rate: float
    chunk: int
    head: bool
    body: bool

    @property
    def gap(self) -> float:
        """Seconds between the starts of two paced pieces."""
        return self.chunk / self.rate


class Pacer:
    """The pacing state of one response: where the head ends, and when the last paced piece went out."""

    def __init__(self, pace: Pace) -> None:
        self.pace = pace
        self._in_head = True
        self._tail = b""  # the last bytes of the head so far, to find a CRLFCRLF split across writes
        self._last: float | None = None

    def pieces(self, data: bytes) -> list[tuple[bytes, bool]]:
        """``data`` as (piece, paced) writes, in order."""
        if not self._in_head:
            return self._split(data, self.pace.body)
        joined = self._tail + data
        end = joined.find(_END_OF_HEAD)
        if end < 0:
            self._tail = joined[-(len(_END_OF_HEAD) - 1):]
            return self._split(data, self.pace.head)
        self._in_head = False
        cut = end + len(_END_OF_HEAD) - len(self._tail)
        return self._split(data[:cut], self.pace.head) + self._split(data[cut:], self.pace.body)

    def _split(self, data: bytes, paced: bool) -> list[tuple[bytes, bool]]:
        if not data:
            return []
        if not paced:
            return [(data, False)]
        size = self.pace.chunk
        return [(data[i:i + size], True) for i in range(0, len(data), size)]

    def wait(self) -> float:
        """Seconds to wait before the next paced piece (0 for the first)."""
        if self._last is None:
            return 0.0
        return max(0.0, self._last + self.pace.gap - time.monotonic())

    def sent(self) -> None:
        """Note that a paced piece just went out."""
        self._last = time.monotonic()
