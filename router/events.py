"""What the engine tells the world: typed, frozen events, the Listener protocol, and the one funnel they leave by."""

from __future__ import annotations

import logging
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from anthropic.types import Message

from .observe.logs import log_event
from .outcome import Kind
from .routing import Attempt

log = logging.getLogger("router")


@dataclass(frozen=True, slots=True)
class RequestStarted:
    """A request begins on `route` (`stream` True for stream()/astream()).

    `request` numbers the requests of this process: every event of one request carries the same number,
    so a listener can tell concurrent requests apart. Times (`at`) are on the router's monotonic clock."""

    route: str
    stream: bool
    at: float
    request: int = 0


@dataclass(frozen=True, slots=True)
class AttemptStarted:
    """A request is about to be sent to `model` (the half-open probe if `probe`)."""

    route: str
    model: str
    probe: bool
    at: float
    request: int = 0


@dataclass(frozen=True, slots=True)
class AttemptEnded:
    """One attempt's record, as it also appears in `routing.attempts` (models passed over included)."""

    route: str
    attempt: Attempt
    at: float
    request: int = 0
    message: Message | None = None  # the reply, when the attempt succeeded (usage, response id, stop reason)


@dataclass(frozen=True, slots=True)
class BreakerTransition:
    """`model`'s breaker moved from `old` to `new` ("closed" | "open" | "half_open")."""

    model: str
    old: str
    new: str
    at: float


@dataclass(frozen=True, slots=True)
class Failover:
    """The request left `from_model` (whose last outcome was `reason`) and now tries `to_model`."""

    route: str
    from_model: str
    to_model: str
    reason: Kind
    at: float
    request: int = 0


@dataclass(frozen=True, slots=True)
class StreamResumed:
    """A stream that had sent `at_char` characters continues on `model`, by `method`."""

    route: str
    model: str
    at_char: int
    method: str
    at: float
    request: int = 0


@dataclass(frozen=True, slots=True)
class RequestEnded:
    """A request is over: served by `model`, or failed (`model` None, `error` the exception's type name)."""

    route: str
    model: str | None
    attempts: tuple[Attempt, ...]
    error: str | None
    duration_s: float
    at: float
    request: int = 0


@dataclass(frozen=True, slots=True)
class RequestQueued:
    """A request was kept in the durable queue as `ticket` (its route exhausted, or `submit()`)."""

    route: str
    ticket: str
    reason: str  # "exhausted" | "submitted"
    at: float
    request: int = 0


@dataclass(frozen=True, slots=True)
class Dequeued:
    """A queued request ended: `state` "done" (served by `model`), "failed", "expired" or "canceled"."""

    route: str
    ticket: str
    state: str
    model: str | None
    at: float


Event = (
    RequestStarted | AttemptStarted | AttemptEnded | BreakerTransition | Failover | StreamResumed | RequestEnded
    | RequestQueued | Dequeued
)


class Listener(Protocol):
    """Anything called with each event. It runs on the request's thread or task: keep it quick."""

    def __call__(self, event: Event) -> None: ...


#: The router's own logging, as a listener: breaker transitions (WARNING when a breaker opens) and, when the
#: logger `router` is enabled for INFO, failovers, resumed streams and queued requests (see `router.observe.logs`).
log_transitions: Listener = log_event


class Funnel:
    """The one way events leave the engine. A listener that raises is logged and ignored: a buggy hook
    never breaks a request. `listening` is False while nobody but the router's own logging listens and the
    logger `router` is not enabled for INFO, so the engine can skip building events no one reads (breaker
    transitions are always sent)."""

    __slots__ = ("_listeners", "_real", "clock")

    def __init__(self, clock: Callable[[], float]) -> None:
        self.clock = clock
        self._listeners: tuple[Listener, ...] = (log_transitions,)
        self._real = False

    @property
    def listening(self) -> bool:
        """True if a listener other than the router's logging is added, or the router's INFO records are wanted."""
        return self._real or log.isEnabledFor(logging.INFO)

    def add(self, listener: Listener) -> None:
        self._listeners = (*self._listeners, listener)
        self._real = True

    def remove(self, listener: Listener) -> None:
        self._listeners = tuple(x for x in self._listeners if x is not listener)
        self._real = len(self._listeners) > 1

    def __call__(self, event: Event) -> None:
        for listener in self._listeners:
            try:
                listener(event)
            except Exception:
                log.exception("router event listener %r failed on %s", listener, type(event).__name__)

    def transition(self, alias: str, old: str, new: str) -> None:
        """The breaker store's transition hook."""
        self(BreakerTransition(alias, old, new, self.clock()))

