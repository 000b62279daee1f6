"""Putting a request into the durable queue: the ticket it gets, what of it is stored, and the Queued event."""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ..clock import Clock
from ..events import Queued
from .store import QueueStore
from .ticket import Ticket

log = logging.getLogger("router.queue")

#: Headers a caller might pass in `extra_headers` that carry credentials: never written to a store.
_SECRET_HEADERS = frozenset({"authorization", "x-api-key", "api-key", "proxy-authorization", "cookie"})


@dataclass(frozen=True, slots=True)
class NotKept:
    """The queue could not keep the request (its store failed): the caller gets AllModelsFailed saying so."""

    reason: str


def storable(params: Mapping[str, Any]) -> dict[str, Any]:
    """The request as it is stored: JSON-safe, credentials stripped from `extra_headers`. TypeError if a
    value cannot be stored (say which)."""
    kept = dict(params)
    headers = kept.get("extra_headers")
    if isinstance(headers, Mapping):
        kept["extra_headers"] = {k: v for k, v in headers.items() if str(k).lower() not in _SECRET_HEADERS}
    try:
        json.dumps(kept)
    except (TypeError, ValueError) as exc:
        raise TypeError(f"this request cannot be queued: its arguments must be JSON values ({exc})") from None
    return kept


class TicketKeeper:
    """Makes tickets for one Router's queue: ids, expiry (`ttl`), and the Queued event."""

    def __init__(self, store: QueueStore, clock: Clock, ttl: float, emit: Callable[[Any], None]) -> None:
        self.store = store
        self._clock = clock
        self._ttl = ttl
        self._emit = emit

    def ticket(self, route: str, params: Mapping[str, Any]) -> Ticket:
        now = self._clock.wall()
        return Ticket(f"tkt_{uuid.uuid4().hex}", route, storable(params), now, now + self._ttl)

    def submit(self, route: str, params: Mapping[str, Any]) -> str:
        """Enqueue explicitly (`Router.submit`): store errors reach the caller as they are."""
        ticket = self.ticket(route, params)
        self.store.put([ticket])
        self._emit(Queued(route, ticket.id, "submitted", self._clock.now()))
        return ticket.id

    def keep(self, route: str, params: Mapping[str, Any], reason: str) -> str | NotKept:
        """Keep an exhausted request; a store that fails is reported, never raised past the routing record."""
        try:
            ticket = self.ticket(route, params)
        except TypeError as exc:
            return NotKept(str(exc))
        try:
            self.store.put([ticket])
        except Exception as exc:  # the queue itself is down: the caller must hear it, with the attempts
            log.warning("queue %r could not keep a request of route %r: %s", type(self.store).__name__, route,
                        type(exc).__name__)
            return NotKept(f"the queue could not keep it ({type(exc).__name__})")
        self._emit(Queued(route, ticket.id, reason, self._clock.now()))
        return ticket.id
