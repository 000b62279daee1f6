"""The Router's durable-queue side: its queue and keeper, submit / result, Message Batches, the in-process worker."""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Any

from ..errors import UnknownRoute
from ..policy import Exhausted, Policy
from ..policy.model import DEFAULT_KEEP
from ..routing import RoutedMessage, refuse_reserved
from . import waiting as tickets
from .keeper import TicketKeeper
from .store import QueueStore

if TYPE_CHECKING:
    from ..batches import BatchHandle, BatchOptions
    from ..clock import Clock
    from ..events import Funnel
    from ..reloading import LivePolicy

#: `Router(worker=True)`: at close(), running requests get this long, then go back to the queue.
WORKER_GRACE = 5.0


def override(route: Exhausted, mode: str, has_queue: bool) -> Exhausted:
    """A call's `on_exhausted=` over its route's."""
    if mode not in ("raise", "wait", "queue"):
        raise ValueError(f"on_exhausted must be 'raise', 'wait' or 'queue', not {mode!r}")
    if mode == "queue" and not has_queue:
        raise ValueError("on_exhausted='queue' needs a queue: give the policy a queue: section (or Router(queue=))")
    return Exhausted(mode, route.wait_max)


#: Seconds an in-process worker's running requests may take to finish at close() before they are handed
#: back to the queue (another worker, or this one next time, serves them).
class QueueMethods:
    """Mixed into Router: everything that reads or writes its durable queue (`policy.queue`, or `queue=`)."""

    _keeper: TicketKeeper | None
    _owns_queue: bool
    _worker: Any
    _live: LivePolicy
    _clock: Clock
    _events: Funnel

    _serve_batched: Callable[[str, Mapping[str, Any]], RoutedMessage]  # Router.complete(on_exhausted="raise")

    def _keeper_for(self, policy: Policy, queue: QueueStore | None) -> TicketKeeper | None:
        """The durable queue (`queue=`, else the policy's `queue:` section, opened once when the Router is
        built; a reload does not move it). None: no queue."""
        self._owns_queue = queue is None
        if queue is None and policy.queue is None:
            return None
        if queue is None:
            from .opening import open_queue

            assert policy.queue is not None
            queue = open_queue(policy.queue)
        ttl = policy.queue.ttl if policy.queue is not None else 86400.0
        return TicketKeeper(queue, self._clock, ttl, self._events)

    def _stop_worker(self) -> None:
        if self._worker is not None:  # running requests get WORKER_GRACE seconds, then go back to the queue
            self._worker.stop(grace=WORKER_GRACE)
            self._worker = None

    def _queue_keeper(self) -> TicketKeeper:
        if self._keeper is None:
            raise ValueError("this router has no queue: give the policy a queue: section (or Router(queue=))")
        return self._keeper

    @property
    def queue(self) -> QueueStore | None:
        """The durable queue's store (None: the policy has no `queue:`)."""
        return self._keeper.store if self._keeper is not None else None

    def submit(self, *, route: str = "default", **params: Any) -> str:
        """Queue a request without trying it now (fire and forget); its ticket id. A worker serves it."""
        refuse_reserved(params)
        if route not in self._live.snapshot.routes:
            raise UnknownRoute(route, list(self._live.snapshot.routes))
        return self._queue_keeper().submit(route, params)

    def result(self, ticket: str, timeout: float | None = None) -> RoutedMessage:
        """The message a queued request was served with (waiting up to `timeout` seconds for it; None: wait
        as long as it takes), or raise what finally happened: AllModelsFailed, Expired or RequestFailed;
        NotReady if it is still queued when `timeout` ends, UnknownTicket if this queue never had it."""
        return tickets.wait(self._queue_keeper().store, ticket, timeout, self._clock)

    async def aresult(self, ticket: str, timeout: float | None = None) -> RoutedMessage:
        """`result()` for asyncio: the store is read off the event loop."""
        return await tickets.await_(self._queue_keeper().store, ticket, timeout, self._clock)

    def purge_queue(self, older_than: float | None = None) -> int:
        """Delete the finished requests (done, failed, expired, canceled) that finished more than
        `older_than` seconds ago (None: the policy's `queue.keep`, 7 days by default); how many. Queued,
        running and batched requests are never touched. A worker does this on its own every minute."""
        policy = self._live.snapshot.policy
        keep = older_than if older_than is not None else (policy.queue.keep if policy.queue else DEFAULT_KEEP)
        if not math.isfinite(keep) or keep < 0:
            raise ValueError(f"older_than must be a number of seconds, 0 or more, not {older_than!r}")
        return self._queue_keeper().store.purge(self._clock.wall() - keep)

    def batch(self, requests: Sequence[Mapping[str, Any]], *, route: str = "default", model: str | None = None,
              options: BatchOptions | None = None) -> BatchHandle:
        """Send non-urgent `requests` (Messages API arguments, without model=) through Anthropic's Message
        Batches API, to `model` (default: the first anthropic model of `route`). Each request is a ticket of
        the router's queue before this returns; `handle.results()` maps ticket id to message or exception.
        Server-class errors and expired requests are retried through the route (`options.retry`)."""
        from ..batches import submit

        if route not in self._live.snapshot.routes:
            raise UnknownRoute(route, list(self._live.snapshot.routes))
        return submit(self._queue_keeper().store, self._live.snapshot.policy, requests, route=route, model=model,
                      serve=self._serve_batched, clock=self._clock, options=options)

    def resume_batches(self, options: BatchOptions | None = None) -> list[BatchHandle]:
        """A handle for every batch in the queue that has not ended (after a restart): `wait()` picks up."""
        from ..batches import resume

        return resume(self._queue_keeper().store, self._live.snapshot.policy, serve=self._serve_batched,
                      clock=self._clock, options=options)


    def drain_as_batches(self, options: BatchOptions | None = None) -> list[BatchHandle]:
        """Send every queued request as Message Batches (a job per route, to its first anthropic model) instead
        of one call each: for a backlog nobody waits on, at batch prices. A route with no anthropic model keeps
        its requests queued for the request workers. `wait()` / `results()` on the handles collect."""
        from ..batches.drain import drain_queue

        return drain_queue(self._queue_keeper().store, self._live.snapshot.policy, serve=self._serve_batched,
                           clock=self._clock, options=options)
