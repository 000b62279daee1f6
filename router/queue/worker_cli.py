"""`failover-router worker POLICY`: drain the policy's durable queue, with a progress view, until told to stop."""

from __future__ import annotations

import signal
import sys
import threading
from collections.abc import Callable
from types import FrameType
from typing import IO, Any

from ..clock import SYSTEM, Clock
from .worker import Worker

#: How often the view (or a plain line, when something changed) is refreshed.
REFRESH = 0.25
PLAIN_EVERY = 2.0

DESCRIPTION = """\
Serve the requests queued in POLICY's queue: (every route's on_exhausted: queue, and Router.submit())
through the policy's routes, at most --concurrency at a time, each only when a model of its route can
serve again. --once returns when nothing is left queued or running; otherwise the worker waits for new
requests until SIGTERM or Ctrl-C. On a signal it stops claiming, lets running requests finish for up to
--grace seconds (a second signal: no more) and hands the rest back to the queue: nothing is lost. Exit 0
then; 2 if the policy or its queue cannot be opened.
"""


def _line(counts: dict[str, int], mine: Any) -> str:
    return (f"queued {counts['queued']}  running {counts['running']}  done {counts['done']}  "
            f"failed {counts['failed']}  expired {counts['expired']}  (this worker: {mine.done} done, "
            f"{mine.failed} failed, {mine.requeued} queued again)")


def _bar(out: IO[str]) -> Any:
    """A rich progress bar (this worker's requests ended, of those it may still serve) over a line of counts."""
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
    from rich.text import Text

    class Bar(Progress):
        counts = ""

        def get_renderables(self) -> Any:
            yield self.make_tasks_table(self.tasks)
            yield Text(self.counts)

    return Bar(TextColumn("[bold]draining"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn(),
               console=Console(file=out, highlight=False), transient=False)


class _View:
    """The progress: a rich bar and counts on a terminal, else a plain line whenever they change."""

    def __init__(self, out: IO[str], plain: bool) -> None:
        self.out, self.plain = out, plain
        self._last = ""
        self._since = -PLAIN_EVERY
        self._progress: Any = None
        self._task: Any = None
        if not plain:
            self._progress = _bar(out)
            self._task = self._progress.add_task("", total=None)
            self._progress.start()

    def show(self, counts: dict[str, int], mine: Any, now: float) -> None:
        line = _line(counts, mine)
        if self._progress is not None:
            ended = mine.done + mine.failed + mine.expired
            self._progress.counts = line
            self._progress.update(self._task, completed=ended, total=ended + counts["queued"] + counts["running"])
        elif line != self._last and now - self._since >= PLAIN_EVERY:
            print(line, file=self.out, flush=True)
            self._last, self._since = line, now

    def close(self, counts: dict[str, int], mine: Any) -> None:
        if self._progress is not None:
            self.show(counts, mine, 0.0)
            self._progress.stop()
        print(f"worker stopped: {_line(counts, mine)}", file=self.out, flush=True)


def _open(path: str, out: IO[str]) -> Any:
    from ..errors import QueueError
    from ..policy import PolicyError
    from ..router import Router

    try:
        router = Router.from_yaml(path, watch=True)
    except (PolicyError, QueueError, OSError) as exc:
        print(f"worker: {exc}", file=sys.stderr)
        return None
    if router.queue is None:
        router.close()
        print(f"worker: {path} has no queue: section, so there is nothing to drain (add e.g. queue: "
              "{sqlite: {path: ./router-queue.db}})", file=sys.stderr)
        return None
    return router


def run_worker(path: str, *, concurrency: int | None = None, once: bool = False, grace: float = 30.0,
               plain: bool | None = None, out: IO[str] | None = None, clock: Clock = SYSTEM,
               batch: bool = False) -> int:
    """The `worker` command: 0 once drained (--once) or stopped by a signal, 2 if it cannot start."""
    out = out or sys.stdout
    router = _open(path, out)
    if router is None:
        return 2
    if batch or router.policy.queue.drain == "batch":
        asked = threading.Event()
        previous = _on_signals(asked.set)
        try:
            return drain_as_batches(router, out, clock, asked, once)
        finally:
            _restore(previous)
            router.close()
    try:
        worker = Worker(router, concurrency=concurrency)
    except ValueError as exc:
        router.close()
        print(f"worker: {exc}", file=sys.stderr)
        return 2
    asked = threading.Event()

    def on_signal() -> None:
        if asked.is_set():  # a second signal: hand back what still runs, now
            worker.hurry()
        asked.set()

    previous = _on_signals(on_signal)
    loop = threading.Thread(target=worker.drain if once else worker.run, name="queue-worker", daemon=True)
    view = _View(out, (not out.isatty()) if plain is None else plain)
    try:
        loop.start()
        while loop.is_alive() and not asked.is_set():
            view.show(worker.store.counts(), worker.stats, clock.now())
            clock.sleep(REFRESH)
        if asked.is_set():
            worker.stop(grace)  # running requests finish (for up to grace), the rest goes back to the queue
        loop.join()
        view.close(worker.store.counts(), worker.stats)
    finally:
        _restore(previous)
        router.close()
    return 0


def _on_signals(handler: Callable[[], None]) -> dict[int, Any]:
    def on_signal(signum: int, frame: FrameType | None) -> None:
        handler()

    return {sig: signal.signal(sig, on_signal) for sig in (signal.SIGTERM, signal.SIGINT)}


def _restore(previous: dict[int, Any]) -> None:
    for sig, handler in previous.items():
        signal.signal(sig, handler)


def drain_as_batches(router: Any, out: IO[str], clock: Clock, asked: threading.Event, once: bool) -> int:
    """`--batch` (or `queue: {drain: batch}`): send what is queued as Message Batches, poll them with backoff
    until every one ended and its results are stored, and (without --once) do it again for what is queued
    next. A signal stops the wait at once: the batches go on at Anthropic and the next run collects them."""
    handles = list(router.resume_batches())
    delay = BATCH_POLL
    while not asked.is_set():
        handles.extend(router.drain_as_batches())
        open_ = [h for h in handles if not h.done]
        for handle in open_:
            handle.poll()
        handles = [h for h in handles if not h.done]
        counts = router.queue.counts()
        print(f"batches in progress {len(handles)}  {_counts(counts)}", file=out, flush=True)
        if not handles and (once or asked.is_set()) and counts["queued"] == 0:
            break
        delay = BATCH_POLL if not handles else min(BATCH_POLL_MAX, delay * 1.5)
        _nap(clock, delay, asked)
    if handles:
        print(f"worker stopped: {len(handles)} batches still in progress; run the worker again to collect them",
              file=out, flush=True)
    return 0


BATCH_POLL = 10.0  # seconds between polls of open batches (growing 1.5x each round while they run)
BATCH_POLL_MAX = 300.0


def _counts(counts: dict[str, int]) -> str:
    return "  ".join(f"{state} {counts[state]}" for state in ("queued", "batched", "done", "failed", "expired"))


def _nap(clock: Clock, seconds: float, asked: threading.Event) -> None:
    """Sleep `seconds` on `clock` in short steps, returning early once a signal came."""
    left = seconds
    while left > 0 and not asked.is_set():
        step = min(REFRESH, left)
        clock.sleep(step)
        left -= step
