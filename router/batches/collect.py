"""Collecting an ended batch: each result stored by custom_id; server-class errors and expired ones retried."""

from __future__ import annotations

import logging
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import anthropic

from ..errors import AllModelsFailed, RouterError
from ..outcome import Kind
from ..queue.store import BatchRecord
from ..queue.ticket import Ticket
from ..routing import Attempt, Routing
from .context import BatchContext
from .stored import EXPIRED, error_json, result_json
from .verdict import Verdict, judge

log = logging.getLogger(__name__)

#: Sends tickets again in new batches of the same job; the ids of those that went in.
Resubmit = Callable[[list[Ticket]], set[str]]

_MISSING = Verdict("retry", "missing", error_type="missing", error_message="absent from the batch's results",
                   outcome=Kind.SERVER_FAILURE)


def collect(ctx: BatchContext, record: BatchRecord, resubmit: Resubmit) -> None:
    """Store the results of the ended batch `record`, retry what its policy retries, then end the batch.
    `resubmit(tickets)` sends tickets in a new batch (retry: batch) and says which went in.

    Safe to run again (after a crash or a broken download): tickets already final, or moved on to another
    batch, are left as they are."""
    retries: list[tuple[Ticket, Verdict]] = []
    seen: set[str] = set()
    for line in ctx.client.messages.batches.results(record.id):
        seen.add(line.custom_id)
        ticket = _open_ticket(ctx, record, line.custom_id)
        if ticket is None:
            continue
        verdict = judge(line.result, ctx.model.outcomes)
        if verdict.action == "retry":
            retries.append((ticket, verdict))
        else:
            _settle(ctx, record, ticket, verdict)
    for ticket_id in record.ticket_ids:
        ticket = None if ticket_id in seen else _open_ticket(ctx, record, ticket_id)
        if ticket is not None:
            retries.append((ticket, _MISSING))
    _retry_all(ctx, record, retries, resubmit)
    ctx.store.end_batch(record.id)  # after any new batch is recorded: a crash in between loses nothing


def _open_ticket(ctx: BatchContext, record: BatchRecord, ticket_id: str) -> Ticket | None:
    """The ticket if this batch still holds it (not final, not moved on), else None."""
    ticket = ctx.store.get(ticket_id)
    if ticket is None:
        log.warning("batch %s returned a result for unknown ticket %s", record.id, ticket_id)
        return None
    if ticket.state != "batched" or ticket.batch_id not in (None, record.id):
        return None
    return ticket


def _note(record: BatchRecord, verdict: Verdict, retried: bool) -> dict[str, Any]:
    return {"id": record.id, "result": verdict.kind, "error_type": verdict.error_type, "retried": retried}


def _batch_attempt(ctx: BatchContext, record: BatchRecord, verdict: Verdict) -> Attempt:
    """The batch's own try of the request, first in its attempts."""
    outcome = Kind.SUCCESS if verdict.action == "done" else (verdict.outcome or Kind.SERVER_FAILURE)
    return Attempt(ctx.model.alias, outcome, verdict.status, verdict.error_type, verdict.request_id,
                   detail=f"message batch {record.id}: {verdict.kind}")


def _settle(ctx: BatchContext, record: BatchRecord, ticket: Ticket, verdict: Verdict) -> None:
    """A result that is final as it stands: succeeded, a caller-class error, or canceled."""
    store, now = ctx.store, ctx.clock.wall()
    attempt = _batch_attempt(ctx, record, verdict)
    if verdict.action == "done":
        assert verdict.message is not None
        routing = Routing(ctx.model.alias, ticket.route, (attempt,))
        note = _note(record, verdict, ticket.attempts > 0)  # attempts: the batches it was sent in before
        store.finish(ticket.id, None, result_json(verdict.message, routing, note), now)
    elif verdict.action == "cancel":
        store.cancel(ticket.id, now)
    else:
        error = error_json(verdict.error_type or "errored", verdict.error_message or "", verdict.status, (attempt,),
                           _note(record, verdict, False))
        store.fail(ticket.id, None, error, now, final=True)


def _retry_all(ctx: BatchContext, record: BatchRecord, retries: list[tuple[Ticket, Verdict]],
               resubmit: Resubmit) -> None:
    policy = ctx.options.retry
    if policy == "batch":
        retries = _resubmitted(ctx, record, retries, resubmit)
        policy = "route" if ctx.serve is not None else "none"
    if not retries:
        return
    if policy == "queue":
        for ticket, _ in retries:
            ctx.store.requeue(ticket.id, ctx.clock.wall())
        return
    if policy == "none":
        for ticket, verdict in retries:
            _give_up(ctx, record, ticket, verdict)
        return
    workers = min(ctx.options.concurrency, len(retries))
    with ThreadPoolExecutor(workers, thread_name_prefix="router-batch-retry") as pool:
        for _ in pool.map(lambda item: _serve(ctx, record, *item), retries):
            pass


def _resubmitted(ctx: BatchContext, record: BatchRecord, retries: list[tuple[Ticket, Verdict]],
                 resubmit: Resubmit) -> list[tuple[Ticket, Verdict]]:
    """retry: batch. Sends again those sent fewer than `resubmits` times before; returns the others, and
    any the new batch could not take."""
    again = [(t, v) for t, v in retries if t.attempts < ctx.options.resubmits]
    if not again:
        return retries
    now = ctx.clock.wall()
    for ticket, verdict in again:  # one more round on the ticket (queued until the new batch takes it)
        attempt = _batch_attempt(ctx, record, verdict)
        error = error_json(verdict.error_type or "errored", verdict.error_message or "", verdict.status, (attempt,),
                           _note(record, verdict, True))
        ctx.store.fail(ticket.id, None, error, now, final=False)
    sent = resubmit([t for t, _ in again])
    return [(t, v) for t, v in retries if t.id not in sent]


def _give_up(ctx: BatchContext, record: BatchRecord, ticket: Ticket, verdict: Verdict) -> None:
    """retry: none. Expired ones end as Expired, errored ones as RequestFailed."""
    attempt = _batch_attempt(ctx, record, verdict)
    error_type = EXPIRED if verdict.kind == "expired" else (verdict.error_type or "errored")
    error = error_json(error_type, verdict.error_message or "", verdict.status, (attempt,),
                       _note(record, verdict, ticket.attempts > 0))
    ctx.store.fail(ticket.id, None, error, ctx.clock.wall(), final=True)


def _serve(ctx: BatchContext, record: BatchRecord, ticket: Ticket, verdict: Verdict) -> None:
    """retry: route. The request goes down the route's normal path. If every model of the route fails, it goes
    back to the queue (a worker serves it once a model can, up to queue.attempts rounds): a request the
    router accepted is never lost to an outage. Anything else is its final outcome."""
    assert ctx.serve is not None
    first = _batch_attempt(ctx, record, verdict)
    note = _note(record, verdict, True)
    try:
        message = ctx.serve(ticket.route, ticket.params)
    except AllModelsFailed as exc:
        error = error_json(type(exc).__name__, str(exc), None, (first, *exc.attempts), note)
        ctx.store.fail(ticket.id, None, error, ctx.clock.wall(), final=False)
        return
    except anthropic.APIStatusError as exc:  # a caller-class error the route raised at once
        error = error_json(exc.type or "api_error", exc.message, exc.status_code, (first,), note)
    except RouterError as exc:
        error = error_json(type(exc).__name__, str(exc), None, (first, *getattr(exc, "attempts", ())), note)
    except Exception as exc:  # a bug or a bad argument: kept as this request's failure, the others go on
        log.warning("retrying batched ticket %s raised %s", ticket.id, type(exc).__name__, exc_info=True)
        error = error_json(type(exc).__name__, str(exc)[:500], None, (first,), note)
    else:
        routing = message.routing
        served = Routing(routing.model, routing.route, (first, *routing.attempts))
        ctx.store.finish(ticket.id, None, result_json(message, served, note), ctx.clock.wall())
        return
    ctx.store.fail(ticket.id, None, error, ctx.clock.wall(), final=True)
