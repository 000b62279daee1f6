"""What happened to one request: its attempts, its routing record, and the message that carries them."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from anthropic.types import Message
from pydantic import BaseModel

from .outcome import Kind


@dataclass(frozen=True, slots=True)
class Attempt:
    """One try of one model, or one model passed over without a request (then `status` is None)."""

    model: str  # alias (policy key)
    outcome: Kind
    status: int | None = None
    error_type: str | None = None
    request_id: str | None = None
    duration_s: float = 0.0
    probe: bool = False  # this attempt was the half-open probe
    detail: str | None = None  # a short, secret-free note (e.g. "retry-after 2.0s")

    @property
    def sent(self) -> bool:
        """True if a request reached (or was sent towards) the model."""
        return self.outcome not in _NOT_SENT


_SUCCESS = Kind.SUCCESS  # (bound once: an enum member read off its class is slow on Python 3.11)
_NOT_SENT = frozenset(
    {Kind.BREAKER_OPEN, Kind.COOLING_DOWN, Kind.SAME_CREDENTIALS, Kind.DEADLINE, Kind.CANNOT_RESUME, Kind.WAITED}
)


@dataclass(frozen=True, slots=True)
class Routing:
    """How a request was served: by which model, on which route, after which attempts."""

    model: str
    route: str
    attempts: tuple[Attempt, ...]


class DeferredRouting:
    """A routing record not built yet: what the plan learnt, turned into the `Routing` (and the served
    attempt's `Attempt`) on the first read of `.routing`. A healthy request whose caller never reads its
    routing then never builds those frozen objects (about 1.3 µs a request, on the hot path). It compares
    equal to the Routing it stands for; the message's `.routing` is always a real `Routing`."""

    __slots__ = ("attempts", "built", "last", "model", "route")

    def __init__(self, model: str, route: str, attempts: tuple[Attempt, ...], last: tuple[Any, ...]) -> None:
        self.model = model
        self.route = route
        self.attempts = attempts  # the attempts before the one that served
        self.last = last  # the arguments of the served attempt's Attempt
        self.built: Routing | None = None

    def get(self) -> Routing:
        built = self.built
        if built is None:
            built = self.built = Routing(self.model, self.route, (*self.attempts, Attempt(*self.last)))
        return built

    def __eq__(self, other: object) -> bool:
        if isinstance(other, DeferredRouting):
            other = other.get()
        return self.get() == other

    __hash__ = None  # type: ignore[assignment]  # as mutable as the dict it lives in

    def __repr__(self) -> str:
        return repr(self.get())


class RoutedMessage(Message):
    """An `anthropic.types.Message` that also says how it was routed (`.routing`)."""

    @property
    def routing(self) -> Routing:
        private = self.__pydantic_private__
        found = private["routing"]  # type: ignore[index]
        return found if type(found) is Routing else found.get()


# pydantic's slot for a model's private values, set directly (object.__setattr__ would look it up by name first)
_set_private = BaseModel.__dict__["__pydantic_private__"].__set__


def attach_routing(message: Message, routing: Routing | DeferredRouting) -> RoutedMessage:
    """Turn the SDK's message into a RoutedMessage in place: O(1), no copy, no re-validation."""
    object.__setattr__(message, "__class__", RoutedMessage)  # skips pydantic's __setattr__
    private = message.__pydantic_private__
    _set_private(message, {"routing": routing} if private is None else {**private, "routing": routing})
    return message  # type: ignore[return-value]


def request_id_of(message: Message) -> str | None:
    """The request id the SDK noted on `message`, if any."""
    values = message.__dict__  # the SDK sets _request_id there; getattr() would raise inside pydantic when absent
    return values["_request_id"] if "_request_id" in values else getattr(message, "_request_id", None)


def served_deferred(
    message: Message, route: str, model: str, attempts: tuple[Attempt, ...], duration: float,
    probe: bool = False, detail: str | None = None,
) -> RoutedMessage:
    """`message`, served by `model` after `attempts`, with a routing record built when first read."""
    values = message.__dict__  # (request_id_of(), inline: this is every healthy request)
    request_id = values["_request_id"] if "_request_id" in values else getattr(message, "_request_id", None)
    last = (model, _SUCCESS, 200, None, request_id, duration, probe, detail)
    routing = DeferredRouting(model, route, attempts, last)
    object.__setattr__(message, "__class__", RoutedMessage)  # attach_routing(), inline
    private = message.__pydantic_private__
    _set_private(message, {"routing": routing} if private is None else {**private, "routing": routing})
    return message  # type: ignore[return-value]


def format_attempts(attempts: tuple[Attempt, ...] | list[Attempt]) -> str:
    """One line per attempt, for exception messages and logs."""
    lines = []
    for i, a in enumerate(attempts, 1):
        parts = [f"{i}. {a.model}: {a.outcome.value}"]
        if a.status is not None:
            parts.append(f"status={a.status}")
        if a.error_type:
            parts.append(f"type={a.error_type}")
        if a.request_id:
            parts.append(f"request_id={a.request_id}")
        if a.probe:
            parts.append("probe")
        if a.sent:
            parts.append(f"{a.duration_s * 1000:.0f}ms")
        if a.detail:
            parts.append(f"({a.detail})")
        lines.append(" ".join(parts))
    return "\n".join(lines)


_RESERVED = {"model": "the policy chooses the model: pass route= (a route of the policy) instead of model=",
             "stream": "use Router.stream() / Router.astream() for streaming"}


def refuse_reserved(params: Mapping[str, Any]) -> None:
    """TypeError for request arguments the router sets itself (model=, stream=), saying what to do instead."""
    for name, why in _RESERVED.items():
        if name in params:
            raise TypeError(f"{name}= is not accepted here: {why}")
