"""The router's own exceptions (PolicyError lives with the policy it describes)."""

from __future__ import annotations

from collections.abc import Sequence

from .record import Attempt, format_attempts


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
