"""The `QueueStore` protocol every durable queue implements (SQLite file, Redis Streams)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Protocol

from .ticket import Ticket


@dataclass(frozen=True, slots=True)
class BatchRecord:
    """A Message Batch the router submitted: enough to pick it up again after a restart."""

    id: str  # the API's batch id (msgbatch_...)
    route: str
    model: str  # alias of the model whose API received the batch
    ticket_ids: tuple[str, ...]
    submitted_at: float
    state: str = "in_progress"  # in_progress | ended (its results stored in the tickets)


class QueueStore(Protocol):
    """Where queued requests live. Every method is one atomic step, safe across threads and processes.

    Delivery is at least once: a ticket claimed by a worker that dies is claimed again when its lease
    ends. Completion is exactly once: `finish` / `fail` by a worker whose lease was taken over return
    False and change nothing, so a request never has two results."""

    def put(self, tickets: Sequence[Ticket]) -> None:
        """Store new tickets (state queued or batched). A ticket id already stored is left as it is."""
        ...

    def claim(self, worker: str, limit: int, lease: float, now: float,
              routes: Sequence[str] | None = None) -> list[Ticket]:
        """Up to `limit` queued tickets (or running ones whose lease ended), now running for `worker`
        until `now + lease`. Tickets whose `expires_at` passed are ended as expired instead. `routes`:
        only tickets of these routes (the ones a model can serve now); None: any."""
        ...

    def renew(self, ticket_id: str, worker: str, lease: float, now: float) -> bool:
        """Extend `worker`'s lease; False if the ticket is no longer its own."""
        ...

    def finish(self, ticket_id: str, worker: str | None, result: Mapping[str, Any], now: float) -> bool:
        """The ticket is done with `result`; False (nothing changed) if already final or leased to
        another worker. `worker` None: not leased (a batch result)."""
        ...

    def fail(self, ticket_id: str, worker: str | None, error: Mapping[str, Any], now: float, *,
             final: bool) -> bool:
        """A drain round ended without an answer: `final` ends the ticket as failed, else it is queued
        again with `attempts + 1`. False if it was not `worker`'s to fail."""
        ...

    def release(self, ticket_id: str, worker: str) -> bool:
        """Give a claimed ticket back unchanged (a worker shutting down): queued again, attempts kept."""
        ...

    def cancel(self, ticket_id: str, now: float) -> bool:
        """End a non-final ticket as canceled (its batch was canceled); False if it was final already."""
        ...

    def get(self, ticket_id: str) -> Ticket | None: ...

    def counts(self) -> dict[str, int]:
        """Tickets per state (every state of `ticket.State`, zeros included)."""
        ...

    def expire(self, now: float) -> int:
        """End every non-final ticket whose `expires_at` passed as expired; how many."""
        ...

    def purge(self, before: float) -> int:
        """Delete every final ticket (done, failed, expired, canceled) whose `finished_at` is before `before`
        (epoch seconds), and the ended batch records of those tickets once none of their tickets is left;
        how many tickets. Never a queued, running or batched ticket: one being finished while this runs
        is final only after it, with a `finished_at` of its own. `result()` of a purged ticket raises
        UnknownTicket."""
        ...

    # -- Message Batches ---------------------------------------------------------------------------

    def save_batch(self, batch: BatchRecord) -> None:
        """Record a submitted batch and mark its tickets batched (batch_id set)."""
        ...

    def open_batches(self) -> list[BatchRecord]:
        """Batches submitted and not yet ended: the ones to poll again after a restart."""
        ...

    def end_batch(self, batch_id: str) -> None: ...

    def requeue(self, ticket_id: str, now: float) -> bool:
        """A batched ticket goes back to queued (its batch errored it with a server-class error or
        expired): the route's normal path serves it next. False if it is final already."""
        ...

    def close(self) -> None: ...
