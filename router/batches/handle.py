"""`BatchHandle`: one submitted job of Message Batches; poll it, wait for it, read its results, cancel it."""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

from anthropic.types.messages import MessageBatch

from ..errors import RouterError
from ..outcome import Kind, classify
from ..queue.store import BatchRecord
from ..queue.ticket import Ticket
from ..routing import RoutedMessage
from .collect import collect
from .context import BatchContext
from .errors import BatchError, BatchNotReady
from .parts import create_parts
from .stored import CANCELED, EXPIRED, batch_note, outcome

log = logging.getLogger(__name__)

# Failures of a poll that a later poll may not see: the batch is polled again next round.
_TRANSIENT = frozenset({Kind.SERVER_FAILURE, Kind.RATE_LIMITED})


@dataclass(frozen=True, slots=True)
class BatchStatus:
    """`state`: "ended" once every part ended and its results are stored, else "canceling" if a part is
    being canceled, else "in_progress". `counts`: the API's request_counts, summed over the parts."""

    state: str
    counts: Mapping[str, int]
    parts: Mapping[str, str]  # batch id -> its processing_status as last seen


@dataclass(frozen=True, slots=True)
class BatchTally:
    """Where every request of the job stands. `succeeded`: answered by the batch. `retried`: errored with a
    server-class error or expired, then sent through the route (or the queue); `recovered` of those got a
    message. `failed`: ended without a message (RequestFailed, AllModelsFailed). Always
    succeeded + recovered + failed + expired + canceled + pending == total."""

    total: int
    succeeded: int = 0
    retried: int = 0
    recovered: int = 0
    failed: int = 0
    expired: int = 0
    canceled: int = 0
    pending: int = 0


class BatchHandle:
    """The Message Batches of one job (several when the requests were split). Each request's result is
    kept in the queue store under its ticket id, which is also its custom_id; a handle rebuilt from the
    store after a restart (`router.batches.resume`) picks polling up where it was."""

    def __init__(self, ctx: BatchContext, route: str, parts: Sequence[BatchRecord]) -> None:
        if not parts:
            raise ValueError("a BatchHandle needs at least one batch")
        self._ctx = ctx
        self.route = route
        self._parts = list(parts)
        self._lock = threading.Lock()
        self._seen: dict[str, str] = {p.id: ("ended" if p.state == "ended" else "in_progress") for p in parts}
        self._counts: dict[str, Mapping[str, int]] = {}
        self._collected = {p.id for p in parts if p.state == "ended"}

    def __repr__(self) -> str:
        return f"BatchHandle({self.id!r}, parts={len(self._parts)}, requests={len(self.ticket_ids)})"

    @property
    def id(self) -> str:
        """The id of the first Message Batch (`ids` lists every part)."""
        return self._parts[0].id

    @property
    def ids(self) -> tuple[str, ...]:
        return tuple(p.id for p in self._parts)

    @property
    def ticket_ids(self) -> tuple[str, ...]:
        """Every request's ticket (= custom_id), in the order submitted."""
        return tuple(dict.fromkeys(t for p in self._parts for t in p.ticket_ids))

    @property
    def done(self) -> bool:
        """Every part ended and its results are stored."""
        with self._lock:
            return len(self._collected) == len(self._parts)

    # -- polling --------------------------------------------------------------------------------------

    def status(self) -> BatchStatus:
        """Ask the API how every part not yet collected stands (no results are read)."""
        with self._lock:
            self._retrieve_all()
            return self._status()

    def poll(self) -> BatchStatus:
        """One round: ask how each open part stands, and store the results of those that ended."""
        with self._lock:
            self._retrieve_all()
            for part in list(self._parts):  # a part collected may add another (retry: batch)
                if part.id not in self._collected and self._seen[part.id] == "ended":
                    self._collect(part)
            return self._status()

    def wait(self, timeout: float | None = None) -> BatchTally:
        """Poll with backoff (on the injected clock) until every part ended and its results are stored;
        BatchNotReady if `timeout` seconds pass first (the batch goes on: wait again, or resume later)."""
        clock, options = self._ctx.clock, self._ctx.options
        deadline = clock.now() + timeout if timeout is not None else None
        delay = options.poll_initial
        while True:
            status = self.poll()
            if status.state == "ended":
                return self.tally()
            now = clock.now()
            if deadline is not None and now >= deadline:
                raise BatchNotReady(self.id, status.state, timeout or 0.0)
            clock.sleep(delay if deadline is None else min(delay, deadline - now))
            delay = options.next_delay(delay)

    def results(self, timeout: float | None = None) -> dict[str, RoutedMessage | RouterError]:
        """Wait for the job, then each ticket's message, or the exception saying why it has none
        (RequestFailed, Expired, AllModelsFailed); a ticket the queue still holds (retry: queue) is left out."""
        self.wait(timeout)
        out: dict[str, RoutedMessage | RouterError] = {}
        for ticket_id in self.ticket_ids:
            ticket = self._ctx.store.get(ticket_id)
            result = outcome(ticket) if ticket is not None else None
            if result is not None:
                out[ticket_id] = result
        return out

    def cancel(self) -> None:
        """Ask the API to cancel every part still in progress; its requests not yet processed end canceled
        (collected by the next poll)."""
        with self._lock:
            for part in self._parts:
                if part.id not in self._collected and self._seen[part.id] == "in_progress":
                    batch = self._call(part.id, self._ctx.client.messages.batches.cancel)
                    if batch is not None:
                        self._seen[part.id] = batch.processing_status

    def tally(self) -> BatchTally:
        """Counted from the store: the same in any process that opens it."""
        counts: Counter[str] = Counter()
        for ticket_id in self.ticket_ids:
            ticket = self._ctx.store.get(ticket_id)
            if ticket is None or not ticket.final:
                counts["pending"] += 1
                counts["retried"] += ticket is not None and (ticket.state != "batched" or ticket.attempts > 0)
                continue
            note = batch_note(ticket)
            retried = bool(note.get("retried")) or not note  # no note: a queue worker served it after a requeue
            error_type = (ticket.error or {}).get("type")
            if ticket.state == "done":
                counts["recovered" if retried else "succeeded"] += 1
            elif ticket.state == "expired" or error_type == EXPIRED:
                counts["expired"] += 1
            elif ticket.state == "canceled" or error_type == CANCELED:
                counts["canceled"] += 1
            else:
                counts["failed"] += 1
            counts["retried"] += retried and ticket.state != "canceled"
        return BatchTally(len(self.ticket_ids), **counts)

    # -- inside the lock --------------------------------------------------------------------------------

    def _retrieve_all(self) -> None:
        for part in self._parts:
            if part.id in self._collected:
                continue
            batch = self._call(part.id, self._ctx.client.messages.batches.retrieve)
            if batch is not None:
                self._seen[part.id] = batch.processing_status
                self._counts[part.id] = batch.request_counts.model_dump()

    def _collect(self, part: BatchRecord) -> None:
        try:
            collect(self._ctx, part, self._resubmit)
        except Exception as exc:
            if classify(exc).kind not in _TRANSIENT:
                raise
            return  # a broken download: the next poll reads the results again
        self._collected.add(part.id)

    def _resubmit(self, tickets: list[Ticket]) -> set[str]:
        made: list[BatchRecord] = []
        try:
            create_parts(self._ctx, self.route, tickets, made, new=False)
        except BatchError as exc:
            log.warning("a new batch for %d retried requests of %s could not be created: %s", len(tickets), self.id,
                        exc)
        for record in made:
            self._parts.append(record)
            self._seen[record.id] = "in_progress"
        return {t for record in made for t in record.ticket_ids}

    def _call(self, batch_id: str, method: Callable[[str], MessageBatch]) -> MessageBatch | None:
        """`method(batch_id)`; None when it failed in a way the next round may not (a 5xx, a 429)."""
        try:
            return method(batch_id)
        except Exception as exc:
            failure = classify(exc)
            if failure.kind in _TRANSIENT:
                return None
            raise BatchError(f"message batch {batch_id}: {failure.error_type or failure.kind.value}"
                             + (f" (status {failure.status})" if failure.status else "")) from exc

    def _status(self) -> BatchStatus:
        counts: Counter[str] = Counter()
        for part_counts in self._counts.values():
            counts.update(part_counts)
        if len(self._collected) == len(self._parts):
            state = "ended"
        elif "canceling" in self._seen.values():
            state = "canceling"
        else:
            state = "in_progress"
        return BatchStatus(state, dict(counts), dict(self._seen))
