"""Submitting requests as Message Batches (split by the API's limits), and resuming open batches after a restart."""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import anthropic

from ..clock import Clock, as_clock
from ..policy import ModelConfig, Policy
from ..queue.store import BatchRecord, QueueStore
from ..queue.ticket import Ticket
from .client import batch_client, batch_model
from .context import BatchContext
from .errors import BatchError, BatchSubmitFailed, BatchTooLarge
from .handle import BatchHandle
from .options import BatchOptions, Serve
from .parts import create_parts

_RESERVED = {"model": "the route's model is chosen for the batch: pass route= (and model= an alias) instead",
             "stream": "a batch request cannot stream",
             "extra_headers": "a batch request carries no headers of its own",
             "extra_query": "a batch request carries no query of its own",
             "extra_body": "put the body's fields in the request itself",
             "timeout": "a batch request has no timeout of its own (wait(timeout=) bounds the wait)"}


def submit(
    store: QueueStore,
    policy: Policy,
    requests: Sequence[Mapping[str, Any]],
    *,
    route: str = "default",
    model: str | None = None,
    serve: Serve | None = None,
    clock: Clock | Callable[[], float] | None = None,
    options: BatchOptions | None = None,
    client: anthropic.Anthropic | None = None,
) -> BatchHandle:
    """Submit `requests` (Messages API arguments, without model=) as Message Batches to `model` (default: the
    first anthropic model of `route`), split by `options.limits`. Each request becomes a ticket of `store`
    (batched; its id is the request's custom_id) before this returns, so a restart loses none of them."""
    opts = options or BatchOptions()
    if opts.retry == "route" and serve is None:
        raise TypeError("retry='route' needs serve=: the callable that serves one request through a route")
    checked = [_checked(i, params) for i, params in enumerate(requests)]
    if not checked:
        raise ValueError("a batch needs at least one request")
    config = batch_model(policy, route, model)
    ctx = BatchContext(store, client or batch_client(config), config, as_clock(clock), serve, opts)
    now = ctx.clock.wall()
    tickets = [_ticket(route, params, now, opts.ttl) for params in checked]
    parts: list[BatchRecord] = []
    try:
        create_parts(ctx, route, tickets, parts, new=True)
    except BatchTooLarge:
        raise
    except BatchError as exc:
        unsent = len(tickets) - sum(len(p.ticket_ids) for p in parts)
        held = BatchHandle(ctx, route, parts) if parts else None
        raise BatchSubmitFailed(str(exc), held, unsent) from exc.__cause__
    return BatchHandle(ctx, route, parts)


def resume(
    store: QueueStore,
    policy: Policy,
    *,
    serve: Serve | None = None,
    clock: Clock | Callable[[], float] | None = None,
    options: BatchOptions | None = None,
    clients: Mapping[str, anthropic.Anthropic] | None = None,
) -> list[BatchHandle]:
    """A handle for every batch of `store` not yet ended (submitted by this process or one that died), with
    the policy's model it was sent to; `wait()` on each picks polling up again. `clients`: per alias."""
    opts = options or BatchOptions()
    made: dict[str, anthropic.Anthropic] = dict(clients or {})
    handles = []
    for record in store.open_batches():
        config = _model_of(policy, record)
        client = made.get(config.alias) or made.setdefault(config.alias, batch_client(config))
        ctx = BatchContext(store, client, config, as_clock(clock), serve, opts)
        handles.append(BatchHandle(ctx, record.route, [record]))
    return handles


def _model_of(policy: Policy, record: BatchRecord) -> ModelConfig:
    config = policy.models.get(record.model)
    if config is None:
        raise BatchError(f"batch {record.id} was sent to model {record.model!r}, which the policy no longer "
                         f"names; models: {', '.join(sorted(policy.models))}")
    return config


def _checked(index: int, params: Mapping[str, Any]) -> dict[str, Any]:
    if not isinstance(params, Mapping):
        raise TypeError(f"request {index} must be a mapping of Messages API arguments, not {type(params).__name__}")
    for name, why in _RESERVED.items():
        if name in params:
            raise TypeError(f"request {index}: {name}= is not accepted here: {why}")
    for name in ("max_tokens", "messages"):
        if name not in params:
            raise ValueError(f"request {index} lacks {name}=, which every Messages API request needs")
    try:
        json.dumps(params)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"request {index} is not JSON-serialisable ({exc}): a batch request must be") from None
    return dict(params)


def _ticket(route: str, params: dict[str, Any], now: float, ttl: float) -> Ticket:
    return Ticket(f"tkt_{uuid.uuid4().hex}", route, params, now, now + ttl, state="batched")
