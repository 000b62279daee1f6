"""Time, injected: the one module that reads the system clock or sleeps; everything else is handed a Clock."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass


@dataclass(frozen=True, slots=True)
class Clock:
    """Where the router gets its time. `now` is monotonic seconds (breakers, deadlines, backoff), `wall` is
    the epoch time HTTP dates are measured against; `sleep` / `asleep` wait (backoff, the file watch)."""

    now: Callable[[], float] = time.monotonic
    sleep: Callable[[float], None] = time.sleep
    asleep: Callable[[float], Awaitable[None]] = asyncio.sleep
    wall: Callable[[], float] = time.time


#: The real clock.
SYSTEM = Clock()


def as_clock(clock: Clock | Callable[[], float] | None) -> Clock:
    """A Clock from what a caller passed: a Clock, a bare `now` function (then sleeps are real), or None."""
    if clock is None:
        return SYSTEM
    if isinstance(clock, Clock):
        return clock
    return Clock(now=clock)


class VirtualClock:
    """Time that passes only when someone sleeps: runs a whole timeline of requests instantly."""

    def __init__(self, start: float = 0.0, epoch: float = 1_800_000_000.0) -> None:
        self.t = start
        self._epoch = epoch - start

    def now(self) -> float:
        return self.t

    def wall(self) -> float:
        return self._epoch + self.t

    def sleep(self, seconds: float) -> None:
        if seconds > 0:
            self.t += seconds

    async def asleep(self, seconds: float) -> None:
        self.sleep(seconds)

    def advance_to(self, t: float) -> None:
        if t > self.t:
            self.t = t

    def clock(self) -> Clock:
        return Clock(now=self.now, sleep=self.sleep, asleep=self.asleep, wall=self.wall)
