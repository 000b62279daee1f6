"""The router's log records: one per failover, resumed stream, queued request and breaker transition.

Logger names (children of `router`, so `logging.getLogger("router")` configures them all):

- `router.failover`: INFO when a request leaves one model for the next (extra: router_route, router_from_model,
  router_to_model, router_outcome, router_status, router_error_type, router_request_id, router_request);
- `router.stream`: INFO when an interrupted stream continues on another model (router_route, router_model,
  router_at_char, router_method, router_request);
- `router.queue`: INFO when a request is kept in the durable queue, and when a queued request ends
  (router_route, router_ticket, router_reason or router_state, router_model, router_request);
- `router.breaker`: WARNING when a breaker opens, INFO on every other transition (router_model,
  router_old_state, router_new_state).

Every value is a model alias, a route name, an outcome, an HTTP status, an error type, a request id or a ticket:
never a key, a URL or request content. This module imports nothing of the router at run time (the event funnel
imports it), so it tells events apart by their class name.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from ..events import Event

__all__ = ["BREAKER", "FAILOVER", "QUEUE", "STREAM", "log_event"]

FAILOVER = logging.getLogger("router.failover")
STREAM = logging.getLogger("router.stream")
QUEUE = logging.getLogger("router.queue")
BREAKER = logging.getLogger("router.breaker")

#: Requests whose last sent attempt is remembered, for the failover record; the oldest go first past this.
_REMEMBERED = 4096

# The last attempt each request sent (its number -> Attempt): a Failover event names models, the attempt says why.
_last_sent: dict[int, Any] = {}


def _value(x: Any) -> Any:
    return getattr(x, "value", x)  # a Kind enum -> its string


def _attempt_ended(event: Any) -> None:
    attempt = event.attempt
    if attempt.sent:
        if len(_last_sent) >= _REMEMBERED:
            with contextlib.suppress(RuntimeError, StopIteration):  # another thread changed it: evict next time
                _last_sent.pop(next(iter(_last_sent)), None)
        _last_sent[event.request] = attempt


def _request_ended(event: Any) -> None:
    _last_sent.pop(event.request, None)


def _failover(event: Any) -> None:
    if not FAILOVER.isEnabledFor(logging.INFO):
        return
    last = _last_sent.get(event.request)
    if last is not None and last.model != event.from_model:
        last = None
    status = last.status if last is not None else None
    error_type = last.error_type if last is not None else None
    request_id = last.request_id if last is not None else None
    outcome = _value(event.reason)
    why = outcome + (f" {status}" if status is not None else "") + (f" {error_type}" if error_type else "")
    FAILOVER.info(
        "route %s: %s -> %s (%s%s)", event.route, event.from_model, event.to_model, why,
        f", request id {request_id}" if request_id else "",
        extra={"router_route": event.route, "router_from_model": event.from_model, "router_to_model": event.to_model,
               "router_outcome": outcome, "router_status": status, "router_error_type": error_type,
               "router_request_id": request_id, "router_request": event.request},
    )


def _resumed(event: Any) -> None:
    STREAM.info(
        "route %s: stream resumed on %s after %d characters (%s)", event.route, event.model, event.at_char,
        event.method,
        extra={"router_route": event.route, "router_model": event.model, "router_at_char": event.at_char,
               "router_method": event.method, "router_request": event.request},
    )


def _queued(event: Any) -> None:
    QUEUE.info(
        "route %s: request queued as %s (%s)", event.route, event.ticket, event.reason,
        extra={"router_route": event.route, "router_ticket": event.ticket, "router_reason": event.reason,
               "router_request": event.request},
    )


def _dequeued(event: Any) -> None:
    QUEUE.info(
        "route %s: queued request %s %s%s", event.route, event.ticket, event.state,
        f" by {event.model}" if event.model else "",
        extra={"router_route": event.route, "router_ticket": event.ticket, "router_state": event.state,
               "router_model": event.model},
    )


def _transition(event: Any) -> None:
    level = logging.WARNING if event.new == "open" else logging.INFO
    BREAKER.log(level, "breaker %s: %s -> %s", event.model, event.old, event.new,
                extra={"router_model": event.model, "router_old_state": event.old, "router_new_state": event.new})


_HANDLERS: dict[str, Callable[[Any], None]] = {
    "AttemptEnded": _attempt_ended,
    "RequestEnded": _request_ended,
    "Failover": _failover,
    "StreamResumed": _resumed,
    "RequestQueued": _queued,
    "Dequeued": _dequeued,
    "BreakerTransition": _transition,
}


def log_event(event: Event) -> None:
    """The router's logging listener (every Router has it): logs what the module docstring lists."""
    handler = _HANDLERS.get(type(event).__name__)
    if handler is not None:
        handler(event)
