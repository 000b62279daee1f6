"""Draining the durable queue as Message Batches: the queued requests go out as batches instead of one call each."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

import anthropic

from ..clock import Clock, as_clock
from ..policy import Policy
from ..queue.store import BatchRecord, QueueStore
from ..queue.ticket import Ticket
from .client import batch_client, batch_model
from .context import BatchContext
from .errors import BatchError
from .handle import BatchHandle
from .options import BatchOptions, Serve
from .parts import create_parts

log = logging.getLogger("router.queue")

#: The name the drain claims tickets under; its lease only has to outlast the batch's creation.
DRAINER = "batch-drain"
CLAIM_LEASE = 600.0


def drain_queue(
    store: QueueStore, policy: Policy, *, serve: Serve | None, clock: Clock | Callable[[], float] | None = None,
    options: BatchOptions | None = None, limit: int = 10_000,
) -> list[BatchHandle]:
    """Send every queued ticket as Message Batches, a job per route, to the route's first anthropic model.
    A route with no anthropic model, or whose batch cannot be created, keeps its tickets queued (for the
    request workers). Returns a handle per job; `wait()` / `results()` on each collect as usual."""
    opts, now = options or BatchOptions(), as_clock(clock)
    clients: dict[str, anthropic.Anthropic] = {}
    routes = [name for name in policy.routes]
    handles: list[BatchHandle] = []
    while routes:
        claimed = store.claim(DRAINER, limit, CLAIM_LEASE, now.wall(), routes=routes)
        if not claimed:
            break
        for route, tickets in _by_route(claimed).items():
            handle = _send(store, policy, route, tickets, serve, now, opts, clients)
            if handle is None:
                routes.remove(route)  # its tickets went back: not claimed again by this drain
            else:
                handles.append(handle)
    return handles


def _send(store: QueueStore, policy: Policy, route: str, tickets: Sequence[Ticket], serve: Serve | None,
          clock: Clock, opts: BatchOptions, clients: dict[str, anthropic.Anthropic]) -> BatchHandle | None:
    parts: list[BatchRecord] = []
    try:
        config = batch_model(policy, route, None)
        client = clients.get(config.alias) or clients.setdefault(config.alias, batch_client(config))
        ctx = BatchContext(store, client, config, clock, serve, opts)
        create_parts(ctx, route, tickets, parts, new=False)
    except BatchError as exc:
        sent = {ticket_id for part in parts for ticket_id in part.ticket_ids}
        for ticket in tickets:
            if ticket.id not in sent:
                store.release(ticket.id, DRAINER)
        log.warning("queued requests of route %r stay queued, not batched: %s", route, exc)
        return BatchHandle(ctx, route, parts) if parts else None
    return BatchHandle(ctx, route, parts)


def _by_route(tickets: Sequence[Ticket]) -> dict[str, list[Ticket]]:
    groups: dict[str, list[Ticket]] = {}
    for ticket in tickets:
        groups.setdefault(ticket.route, []).append(ticket)
    return groups
