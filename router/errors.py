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
