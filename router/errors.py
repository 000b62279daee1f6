"""The router's own exceptions (PolicyError lives with the policy it describes)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from .routing import Attempt, format_attempts

if TYPE_CHECKING:
    from anthropic.types import Message


class RouterError(Exception):
    """Base class of the router's own errors."""


class AllModelsFailed(RouterError):
    """Every model of the route failed or was unavailable. `.attempts` lists each try with its request id."""

    def __init__(self, route: str, attempts: Sequence[Attempt], reason: str | None = None) -> None:
        self.route = route
        self.attempts = tuple(attempts)
        self.reason = reason
        head = f"all models of route {route!r} failed"
        if reason:
            head += f" ({reason})"
        super().__init__(f"{head}:\n{format_attempts(self.attempts)}" if self.attempts else head)

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.route, self.attempts, self.reason))


class UnknownRoute(RouterError, LookupError):
    """`route=` names no route of the policy."""

    def __init__(self, route: str, known: Sequence[str]) -> None:
        self.route = route
        super().__init__(f"no route named {route!r} in the policy; routes: {', '.join(sorted(known))}")


class StreamInterrupted(RouterError):
    """A stream broke after content reached the caller and could not be resumed.

    `.partial_text` is the text the caller received, `.partial_message` the message so far
    (stop_reason None), `.attempts` every try, `.reason` why it was not resumed.
    """

    def __init__(self, partial_text: str, partial_message: Message, attempts: Sequence[Attempt], reason: str) -> None:
        self.partial_text = partial_text
        self.partial_message = partial_message
        self.attempts = tuple(attempts)
        self.reason = reason
        super().__init__(
            f"stream interrupted after {len(partial_text)} chars and not resumed: {reason}:\n"
            f"{format_attempts(self.attempts)}"
        )

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.partial_text, self.partial_message, self.attempts, self.reason))


class Queued(RouterError):
    """Every model of the route failed, and the route queues (`on_exhausted: queue`): the request is kept
    durably as `.ticket`; `Router.result(ticket)` returns its message once a worker has served it.
    `.attempts` are the tries that led here."""

    def __init__(self, route: str, ticket: str, attempts: Sequence[Attempt] = ()) -> None:
        self.route = route
        self.ticket = ticket
        self.attempts = tuple(attempts)
        head = f"every model of route {route!r} failed; the request is queued as ticket {ticket}"
        super().__init__(f"{head}:\n{format_attempts(self.attempts)}" if self.attempts else head)

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.route, self.ticket, self.attempts))


class UnknownTicket(RouterError, LookupError):
    """No queued request has this ticket (never submitted, its queue store is another one, or it finished
    longer than `queue.keep` ago and was purged)."""

    def __init__(self, ticket: str) -> None:
        self.ticket = ticket
        super().__init__(f"no queued request with ticket {ticket!r} in this router's queue (never submitted "
                         "there, or it finished longer ago than queue.keep and may have been purged)")


class NotReady(RouterError, TimeoutError):
    """`result(ticket, timeout=...)` ran out of time before the request was served; it stays queued."""

    def __init__(self, ticket: str, state: str, timeout: float) -> None:
        self.ticket = ticket
        self.state = state
        super().__init__(f"ticket {ticket} is still {state} after {timeout:g}s; it stays in the queue")


class Expired(RouterError):
    """A queued request was not served before its `queue.ttl` ran out (or its batch expired it)."""

    def __init__(self, ticket: str, attempts: Sequence[Attempt] = (), detail: str | None = None) -> None:
        self.ticket = ticket
        self.attempts = tuple(attempts)
        head = f"ticket {ticket} expired before any model could serve it"
        if detail:
            head += f" ({detail})"
        super().__init__(f"{head}:\n{format_attempts(self.attempts)}" if self.attempts else head)

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.ticket, self.attempts))


class RequestFailed(RouterError):
    """A queued request ended without a message for a reason other than an exhausted route (the request
    itself was refused, e.g. a 400, or its batch was canceled). `.error_type`, `.status` and `.attempts`
    say what happened."""

    def __init__(self, ticket: str, error_type: str, message: str, status: int | None = None,
                 attempts: Sequence[Attempt] = ()) -> None:
        self.ticket = ticket
        self.error_type = error_type
        self.status = status
        self.attempts = tuple(attempts)
        head = f"ticket {ticket} failed: {error_type}" + (f" (status {status})" if status else "") + f": {message}"
        super().__init__(f"{head}:\n{format_attempts(self.attempts)}" if self.attempts else head)

    def __reduce__(self) -> tuple[object, ...]:
        return (type(self), (self.ticket, self.error_type, str(self), self.status, self.attempts))


class QueueError(RouterError):
    """The durable queue cannot be used: its file is missing, unreadable or not a queue, or its server is
    unreachable. The message names the store (never a password) and what to fix."""
