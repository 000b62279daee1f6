"""failover-router: Claude calls that survive Claude's bad days (the public face: re-exports only)."""

from .breaker import Admission, BreakerInfo, BreakerStore, Lease, MemoryStore
from .clock import Clock, VirtualClock
from .default import acomplete, complete, default_router
from .errors import (
    AllModelsFailed,
    Expired,
    NotReady,
    Queued,
    QueueError,
    RequestFailed,
    RouterError,
    StreamInterrupted,
    UnknownRoute,
    UnknownTicket,
)
from .events import (
    AttemptEnded,
    AttemptStarted,
    BreakerTransition,
    Dequeued,
    Event,
    Failover,
    Listener,
    RequestEnded,
    RequestQueued,
    RequestStarted,
    StreamResumed,
)
from .outcome import Kind
from .policy import Policy, PolicyError, PolicyWarning, load_policy, parse_policy
from .router import Router
from .routing import Attempt, RoutedMessage, Routing
from .streaming.routed import AsyncRoutedStream, RoutedStream

__all__ = [
    "Admission",
    "AllModelsFailed",
    "AsyncRoutedStream",
    "Attempt",
    "AttemptEnded",
    "AttemptStarted",
    "BreakerInfo",
    "BreakerStore",
    "BreakerTransition",
    "Clock",
    "Dequeued",
    "Event",
    "Expired",
    "Failover",
    "Kind",
    "Lease",
    "Listener",
    "MemoryStore",
    "NotReady",
    "Policy",
    "PolicyError",
    "PolicyWarning",
    "QueueError",
    "Queued",
    "RequestEnded",
    "RequestFailed",
    "RequestQueued",
    "RequestStarted",
    "RoutedMessage",
    "RoutedStream",
    "Router",
    "RouterError",
    "Routing",
    "StreamInterrupted",
    "StreamResumed",
    "UnknownRoute",
    "UnknownTicket",
    "VirtualClock",
    "acomplete",
    "complete",
    "default_router",
    "load_policy",
    "parse_policy",
]

import logging as _logging

# A library logs but never configures logging: without this, breaker warnings would reach stderr
# through logging's last-resort handler in applications that have not set logging up.
_logging.getLogger("router").addHandler(_logging.NullHandler())
