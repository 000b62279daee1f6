"""`Worker`: drains a Router's durable queue through the normal failover path, a bounded number at a time."""

from __future__ import annotations

import logging
import os
import queue as threadqueue
import socket
import threading
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from ..clock import Clock
from ..errors import AllModelsFailed, UnknownRoute
from ..events import Dequeued
from ..policy.model import DEFAULT_KEEP
from .results import encode_error, encode_message
from .store import QueueStore
from .ticket import Ticket

if TYPE_CHECKING:
    from ..router import Router
    from ..routing import RoutedMessage

log = logging.getLogger("router.queue")

#: The longest the worker sleeps before looking again (at its routes' breakers, at an empty queue, at stop()).
MAX_PAUSE = 5.0
#: How often the worker looks at its slots and leases while requests run (also how fast stop() is seen).
TICK = 0.02
#: How often tickets past their ttl are ended as expired, even while no model can serve.
SWEEP = 1.0
#: How often finished tickets older than `keep` are purged (the first look is at start).
PURGE_EVERY = 60.0
#: A round in which no model was even tried (another process holds the probe) waits this long to retry.
UNSENT_PAUSE = 0.1


@dataclass(frozen=True, slots=True)
class WorkerStats:
    """What one Worker did so far. `requeued`: rounds that ended with every model failing, queued again;
    `released`: tickets handed back unserved (no model tried, or stop()); `lost`: results not stored
    because the ticket's lease had been taken over by another worker (that worker stores its own);
    `purged`: finished tickets deleted after `queue.keep`."""

    done: int = 0
    failed: int = 0
    expired: int = 0
    requeued: int = 0
    released: int = 0
    lost: int = 0
    purged: int = 0
    running: int = 0


def _headers(params: Mapping[str, Any], key: str) -> dict[str, Any]:
    """The caller's `extra_headers` with the ticket's Idempotency-Key (it replaces any the caller gave)."""
    given = params.get("extra_headers") or {}
    merged = {k: v for k, v in dict(given).items() if str(k).lower() != "idempotency-key"}
    merged["Idempotency-Key"] = key
    return merged


class Worker:
    """Drains `router`'s queue (or `store`): claims up to `concurrency` tickets of routes a model can serve
    now (`router.ready_in(route)` is 0), serves each with `router.complete(on_exhausted="raise")` and the
    ticket id as its Idempotency-Key, renews its lease while a request runs, and stores the outcome once.

    `lease`, `concurrency`, `attempts` and `keep` (how long finished tickets are kept before it purges
    them) default to the policy's `queue:` section; `poll` is how long it
    waits before looking at a queue that had nothing to claim again. All time comes from
    `clock` (default: the router's). Run it with `start()` (a thread) or `run()` / `drain()` (this thread);
    `stop()` hands back what is still running, so nothing is lost."""

    def __init__(self, router: Router, store: QueueStore | None = None, *, concurrency: int | None = None,
                 lease: float | None = None, name: str | None = None, clock: Clock | None = None,
                 attempts: int | None = None, poll: float = 0.5, keep: float | None = None) -> None:
        queue = store if store is not None else router.queue
        if queue is None:
            raise ValueError("this router has no queue to drain: give the policy a queue: section (or pass store=)")
        config = router.policy.queue
        self.router = router
        self.store: QueueStore = queue
        self.concurrency = concurrency or (config.concurrency if config else 8)
        self.lease = lease or (config.lease if config else 60.0)
        self.attempts = attempts or (config.attempts if config else 5)
        self.keep = keep or (config.keep if config else DEFAULT_KEEP)
        if self.concurrency < 1 or self.lease <= 0 or self.attempts < 1 or self.keep <= 0:
            raise ValueError("a Worker needs concurrency >= 1, lease > 0, attempts >= 1 and keep > 0")
        self.name = name or f"{socket.gethostname()}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
        self._clock = clock or router._clock
        self._poll = poll
        self._tasks: threadqueue.SimpleQueue[Ticket | None] = threadqueue.SimpleQueue()
        self._running: dict[str, Ticket] = {}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._hurry = threading.Event()  # hurry(): the grace of a stop ends now
        self._freed = threading.Event()  # set each time a request ends: its slot is free
        self._stopped = threading.Event()
        self._stopped.set()  # no loop runs
        self._looping: int | None = None  # the thread id of the loop while one runs
        self._grace: float | None = None
        self._threads: list[threading.Thread] = []
        self._loop: threading.Thread | None = None
        self._counts = dict.fromkeys(("done", "failed", "expired", "requeued", "released", "lost", "purged"), 0)
        self._renewed = self._swept = self._purged = 0.0  # clock.now() of the last renewal, expiry sweep, purge
        self._hold: dict[str, float] = {}  # route -> clock.now() before which it is not claimed

    def __repr__(self) -> str:
        return f"Worker({self.name!r}, store={self.store!r}, concurrency={self.concurrency})"

    # -- lifetime ---------------------------------------------------------------------------------

    @property
    def stats(self) -> WorkerStats:
        with self._lock:
            return WorkerStats(**self._counts, running=len(self._running))

    def start(self) -> Worker:
        """Drain in a background thread until stop()."""
        self._loop = threading.Thread(target=self.run, name=f"queue-worker-{self.name}", daemon=True)
        self._loop.start()
        return self

    def run(self) -> None:
        """Drain in this thread until stop() (from another thread or a signal handler)."""
        self._serve_until(idle=False, deadline=None)

    def drain(self, timeout: float | None = None) -> WorkerStats:
        """Drain in this thread until the queue holds nothing queued or running (or `timeout` seconds of the
        clock passed, or stop()); what is still running then is handed back. The stats."""
        deadline = None if timeout is None else self._clock.now() + timeout
        self._serve_until(idle=True, deadline=deadline)
        return self.stats

    run_until_idle = drain

    def stop(self, grace: float | None = None) -> WorkerStats:
        """Stop claiming; let running requests finish for up to `grace` seconds (None: as long as they
        take), then hand the rest back to the queue (`release`): another worker serves them. The stats.

        Safe from a signal handler of the thread that runs `run()`: then it only asks the loop to stop,
        and `run()` returns once the loop has handed its work back."""
        self._grace = grace
        self._stopping.set()
        if self._looping == threading.get_ident():
            return self.stats
        while not self._stopped.is_set():  # the loop runs in another thread: it hands back, then returns
            self._clock.sleep(TICK)
        self._finish_or_release(grace)
        return self.stats

    def hurry(self) -> None:
        """End the grace of a stop() under way now: what still runs goes back to the queue (a second
        Ctrl-C). Safe from a signal handler."""
        self._hurry.set()

    # -- the loop ---------------------------------------------------------------------------------

    def _serve_until(self, idle: bool, deadline: float | None) -> None:
        self._stopped.clear()
        self._looping = threading.get_ident()
        self._spawn()
        self._renewed = self._swept = self._clock.now()
        self._purged = self._swept - PURGE_EVERY
        failing = 0  # store calls failed in a row: the pause doubles (to MAX_PAUSE) while the store is down
        try:
            while not self._stopping.is_set():
                if deadline is not None and self._clock.now() >= deadline:
                    break
                try:
                    pause = self._step(idle)
                except Exception as exc:  # the store is down: keep what runs, try again later
                    if failing == 0:
                        log.warning("queue worker %s cannot use its queue: %s (trying again)", self.name, exc)
                    failing += 1
                    pause = min(MAX_PAUSE, TICK * 2 ** failing)
                else:
                    failing = 0
                if pause is None:
                    continue
                if pause < 0:  # idle: drained
                    break
                self._nap(pause, deadline)
        finally:
            self._looping = None
            self._finish_or_release(self._grace if self._stopping.is_set() else 0.0)
            self._stopped.set()

    def _step(self, idle: bool) -> float | None:
        """One look at the queue: renew leases, sweep expired tickets, purge old finished ones, claim; how
        long to pause (None: look
        again at once, negative: `idle` and nothing is left)."""
        now = self._clock.now()
        if now - self._renewed >= self.lease / 3:
            self._renew()
            self._renewed = now
        if now - self._swept >= SWEEP:
            self._count("expired", self.store.expire(self._clock.wall()))
            self._swept = now
        if now - self._purged >= PURGE_EVERY:
            self._count("purged", self.store.purge(self._clock.wall() - self.keep))
            self._purged = now
        pause = self._claim()
        if pause is not None and idle and self._idle():
            return -1.0
        return pause

    def _spawn(self) -> None:
        while len(self._threads) < self.concurrency:
            thread = threading.Thread(target=self._work, name=f"queue-{self.name}-{len(self._threads)}",
                                      daemon=True)  # a request still running at exit must not hold the process
            thread.start()
            self._threads.append(thread)

    def _claim(self) -> float | None:
        """Claim what the free slots and ready routes allow; None: claimed some (look again at once), else
        how long to pause."""
        with self._lock:
            free = self.concurrency - len(self._running)
        if free <= 0:
            return TICK
        ready, pause = self._ready_routes()
        if not ready:
            return pause
        tickets = self.store.claim(self.name, free, self.lease, self._clock.wall(), routes=ready)
        with self._lock:
            for t in tickets:
                self._running[t.id] = t
        for t in tickets:
            self._tasks.put(t)
        return None if tickets else self._poll  # nothing to claim: look again after `poll` (or a freed slot)

    def _ready_routes(self) -> tuple[list[str], float]:
        """The routes a model can serve now, and (none ready) the soonest one may."""
        ready: list[str] = []
        soonest = MAX_PAUSE
        now = self._clock.now()
        for route in self.router.policy.routes:
            try:
                wait = self.router.ready_in(route)
            except (KeyError, UnknownRoute):  # the policy was reloaded under us
                continue
            wait = MAX_PAUSE if wait is None else max(wait, self._hold.get(route, now) - now)
            if wait <= 0:
                ready.append(route)
            soonest = min(soonest, wait)
        return ready, max(soonest, TICK)

    def _idle(self) -> bool:
        with self._lock:
            if self._running:
                return False
        counts = self.store.counts()
        return counts["queued"] == 0 and counts["running"] == 0

    def _nap(self, seconds: float, deadline: float | None) -> None:
        """Pause `seconds`, waking early for stop(), the deadline or a freed slot. While requests run, the
        pause is a wait for one of them to end (so a freed slot is filled at once); with none running it
        sleeps on the clock, in ticks."""
        end = self._clock.now() + seconds
        while not self._stopping.is_set():
            left = min(end, deadline if deadline is not None else end) - self._clock.now()
            if left <= 0:
                return
            with self._lock:
                busy = bool(self._running)
            if busy:
                if self._freed.wait(min(TICK, left)):
                    self._freed.clear()
                    return
            else:
                self._clock.sleep(min(TICK, left))

    def _renew(self) -> None:
        with self._lock:
            ids = list(self._running)
        for ticket_id in ids:
            try:
                if not self.store.renew(ticket_id, self.name, self.lease, self._clock.wall()):
                    log.warning("queue worker %s lost its lease on ticket %s (another worker took it over)",
                                self.name, ticket_id)
            except Exception as exc:
                log.warning("queue worker %s could not renew its lease on %s: %s", self.name, ticket_id, exc)

    def _finish_or_release(self, grace: float | None) -> None:
        """Wait up to `grace` for running requests (renewing their leases), then release the rest."""
        end = None if grace is None else self._clock.now() + grace
        renewed = self._clock.now()
        while True:
            with self._lock:
                busy = bool(self._running)
            if not busy or self._hurry.is_set() or (end is not None and self._clock.now() >= end):
                break
            if self._clock.now() - renewed >= self.lease / 3:
                self._renew()
                renewed = self._clock.now()
            self._clock.sleep(TICK)
        with self._lock:
            left, self._running = list(self._running), {}
        for ticket_id in left:
            try:
                released = self.store.release(ticket_id, self.name)
            except Exception as exc:
                log.warning("queue worker %s could not hand back ticket %s: %s (it is claimed again after "
                            "its lease)", self.name, ticket_id, exc)
                continue
            self._count("released" if released else "lost")
        for _ in self._threads:
            self._tasks.put(None)
        self._threads = []

    # -- one request ------------------------------------------------------------------------------

    def _work(self) -> None:
        while True:
            ticket = self._tasks.get()
            if ticket is None:
                return
            try:
                self._serve(ticket)
            except Exception:  # the store failed: the ticket is claimed again after its lease
                log.exception("queue worker %s could not store the outcome of ticket %s", self.name, ticket.id)
            finally:
                with self._lock:
                    self._running.pop(ticket.id, None)
                self._freed.set()

    def _serve(self, t: Ticket) -> None:
        with self._lock:
            if t.id not in self._running:  # handed back before a thread was free to start it
                return
        params = {**t.params, "extra_headers": _headers(t.params, t.id)}
        try:
            message = self.router.complete(route=t.route, on_exhausted="raise", **params)
        except AllModelsFailed as exc:
            self._exhausted(t, exc)
        except Exception as exc:  # the request itself was refused (a 400...), or its route is gone
            self._end(t, "failed", self.store.fail(t.id, self.name, encode_error(exc), self._clock.wall(),
                                                   final=True), None)
        else:
            self._stored(t, message)

    def _stored(self, t: Ticket, message: RoutedMessage) -> None:
        kept = self.store.finish(t.id, self.name, encode_message(message), self._clock.wall())
        self._end(t, "done", kept, message.routing.model)

    def _exhausted(self, t: Ticket, exc: AllModelsFailed) -> None:
        """A round where every model failed: queued again, or failed once `attempts` rounds are used up. A
        round in which no request was even sent (another process holds the probe) does not count."""
        if not any(a.sent for a in exc.attempts):
            self._hold[t.route] = self._clock.now() + UNSENT_PAUSE
            self._count("released" if self.store.release(t.id, self.name) else "lost")
            return
        final = t.attempts + 1 >= self.attempts
        kept = self.store.fail(t.id, self.name, encode_error(exc), self._clock.wall(), final=final)
        if final:
            self._end(t, "failed", kept, None)
            return
        after = self.store.get(t.id)
        if after is not None and after.state == "expired":
            self._end(t, "expired", kept, None)
        else:
            self._count("requeued" if kept else "lost")

    def _end(self, t: Ticket, state: str, kept: bool, model: str | None) -> None:
        if not kept:
            self._count("lost")
            return
        self._count(state)
        self.router._events(Dequeued(t.route, t.id, state, model, self._clock.now()))

    def _count(self, what: str, n: int = 1) -> None:
        with self._lock:
            self._counts[what] += n
