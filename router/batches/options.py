"""How a batch is run: what happens to errored and expired requests, polling backoff, limits, lifetimes."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from ..routing import RoutedMessage
from .split import DEFAULT_LIMITS, BatchLimits

#: Serves one request through a route's normal path (wired to `Router.complete(route=..., **params)`).
Serve = Callable[[str, Mapping[str, Any]], RoutedMessage]

RETRY_POLICIES = ("route", "batch", "queue", "none")


@dataclass(frozen=True, slots=True)
class BatchOptions:
    """`retry`: what happens to a request the batch errored with a server-class error or expired:
    "route" serves it at once through the route's normal path (`serve`); "batch" sends it again in a new
    batch, up to `resubmits` times, then through the route (or, without `serve`, ends it); "queue" puts it
    back in the durable queue for a worker; "none" ends it (RequestFailed / Expired).

    Polling waits `poll_initial` seconds, then `poll_factor` times longer each round, up to `poll_max`.
    `ttl`: how long a request is kept before it ends as expired (a batch may take 24 h; its retries come after).
    `concurrency`: retries through the route at once. `create_attempts`: tries of a create the API refused
    with a server-class status (a create that may have gone through is never repeated)."""

    retry: str = "route"
    limits: BatchLimits = DEFAULT_LIMITS
    poll_initial: float = 10.0
    poll_factor: float = 1.5
    poll_max: float = 300.0
    concurrency: int = 8
    ttl: float = 2 * 86400.0
    create_attempts: int = 3
    resubmits: int = 1

    def __post_init__(self) -> None:
        if self.retry not in RETRY_POLICIES:
            raise ValueError(f"retry must be one of {', '.join(RETRY_POLICIES)}, not {self.retry!r}")
        if not self.poll_initial > 0 or self.poll_max < self.poll_initial or self.poll_factor < 1:
            raise ValueError("polling needs 0 < poll_initial <= poll_max and poll_factor >= 1, got "
                             f"{self.poll_initial!r}, {self.poll_max!r}, {self.poll_factor!r}")
        for name in ("concurrency", "create_attempts"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)!r}")
        if self.resubmits < 0:
            raise ValueError(f"resubmits must be >= 0, got {self.resubmits!r}")
        if not self.ttl > 0:
            raise ValueError(f"ttl must be > 0, got {self.ttl!r}")

    def next_delay(self, delay: float) -> float:
        """The wait after one of `delay` seconds."""
        return min(self.poll_max, delay * self.poll_factor)
