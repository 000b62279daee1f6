"""A virtual-time event loop: coroutines that await its sleeps run interleaved, in time order, instantly.

Each request of a timeline is one coroutine (the Router's async path: `acomplete`, `astream`). A coroutine
that awaits `asleep(s)` is put aside until virtual time `now + s`; the loop always resumes whatever is due
first, jumping the clock straight to it. So requests overlap as they would in a real service (a model that
hangs for a minute holds a minute's worth of requests at once), and an hour passes in a moment.

Only the loop's own sleeps can be awaited (no asyncio primitives). Each coroutine runs in a context of its
own, as an asyncio task does, so context variables (the attempt's Budget) are per request.
"""

from __future__ import annotations

import contextvars
import heapq
from collections.abc import Coroutine, Generator, Iterable
from typing import Any

from ..clock import Clock

Job = Coroutine[Any, Any, None]


class _Sleep:
    """What `asleep` returns: awaiting it hands the loop the instant to be resumed at."""

    __slots__ = ("until",)

    def __init__(self, until: float) -> None:
        self.until = until

    def __await__(self) -> Generator[float, None, None]:
        yield self.until


class VirtualLoop:
    """Runs coroutines on virtual time. `clock()` is the Clock to give the Router and the fake models."""

    def __init__(self, start: float = 0.0, epoch: float = 1_800_000_000.0) -> None:
        self.t = start
        self._epoch = epoch - start
        self._queue: list[tuple[float, int, Job, contextvars.Context]] = []
        self._seq = 0
        self.peak = 0  # the most coroutines that were ever waiting at once (requests in flight)

    def now(self) -> float:
        return self.t

    def wall(self) -> float:
        return self._epoch + self.t

    def asleep(self, seconds: float) -> _Sleep:
        return _Sleep(self.t + seconds if seconds > 0 else self.t)

    def sleep(self, seconds: float) -> None:
        """A blocking sleep cannot let others run: time just jumps (for sync callers, one at a time)."""
        if seconds > 0:
            self.t += seconds

    def clock(self) -> Clock:
        return Clock(now=self.now, sleep=self.sleep, asleep=self.asleep, wall=self.wall)

    def run(self, arrivals: Iterable[tuple[float, Job]]) -> None:
        """Start each coroutine at its instant (the arrivals in time order), and run until all are done."""
        queue = self._queue
        pending = iter(arrivals)
        upcoming = next(pending, None)
        while upcoming is not None or queue:
            if upcoming is not None and (not queue or upcoming[0] <= queue[0][0]):
                at, job = upcoming
                if at > self.t:
                    self.t = at
                self._step(job, contextvars.copy_context())
                upcoming = next(pending, None)
                continue
            until, _, job, context = heapq.heappop(queue)
            if until > self.t:
                self.t = until
            self._step(job, context)

    def _step(self, job: Job, context: contextvars.Context) -> None:
        try:
            until = context.run(job.send, None)
        except StopIteration:
            return
        if type(until) is not float:
            job.close()
            raise TypeError(f"a coroutine on the virtual loop awaited {until!r}: only its asleep() can be awaited")
        self._seq += 1
        heapq.heappush(self._queue, (until, self._seq, job, context))
        if len(self._queue) > self.peak:
            self.peak = len(self._queue)
