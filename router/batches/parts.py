"""Creating one Message Batch for some tickets and recording it in the store (a part of a job)."""

from __future__ import annotations

from collections.abc import Sequence

import anthropic
from anthropic.types.messages import MessageBatch

from ..outcome import Kind, classify
from ..queue.store import BatchRecord
from ..queue.ticket import Ticket
from .context import BatchContext
from .errors import BatchError
from .split import split

# A create refused with one of these did not create anything: it may be tried again.
_CREATE_AGAIN = frozenset({Kind.SERVER_FAILURE, Kind.RATE_LIMITED})


def create_parts(ctx: BatchContext, route: str, tickets: Sequence[Ticket], made: list[BatchRecord], *,
                 new: bool) -> None:
    """Send `tickets` as batches within the limits, each recorded in the store and appended to `made` as it
    is created (so after a BatchError, `made` holds the parts that did go in). `new`: the tickets are not in
    the store yet (put there, batched, before their batch is recorded)."""
    by_id = {t.id: t for t in tickets}
    entries = [{"custom_id": t.id, "params": {**t.params, "model": ctx.model.model}} for t in tickets]
    for chunk in split(entries, ctx.options.limits):
        ids = tuple(str(entry["custom_id"]) for entry in chunk)
        batch = _create(ctx, chunk)
        record = BatchRecord(batch.id, route, ctx.model.alias, ids, ctx.clock.wall())
        if new:  # tickets first: a crash before save_batch leaves them batched until their ttl expires them
            ctx.store.put([_batched(by_id[i], batch.id) for i in ids])
        ctx.store.save_batch(record)
        made.append(record)


def _batched(ticket: Ticket, batch_id: str) -> Ticket:
    return Ticket(ticket.id, ticket.route, ticket.params, ticket.created_at, ticket.expires_at, state="batched",
                  batch_id=batch_id)


def _create(ctx: BatchContext, chunk: Sequence[object]) -> MessageBatch:
    """Create one batch; a create the API refused with a 5xx or 429 is tried again after a backoff, any
    other failure (a timeout may have created it: never repeated) raises BatchError."""
    delay = ctx.options.poll_initial
    for attempt in range(1, ctx.options.create_attempts + 1):
        try:
            return ctx.client.messages.batches.create(requests=chunk)  # type: ignore[arg-type]
        except Exception as exc:
            failure = classify(exc)
            again = failure.kind in _CREATE_AGAIN and isinstance(exc, anthropic.APIStatusError)
            if not again or attempt == ctx.options.create_attempts:
                detail = failure.error_type or failure.kind.value
                status = f", status {failure.status}" if failure.status else ""
                raise BatchError(f"{detail}{status} after {attempt} tries") from exc
            ctx.clock.sleep(failure.retry_after if failure.retry_after is not None else delay)
            delay = ctx.options.next_delay(delay)
    raise AssertionError("unreachable")
