"""The time one attempt may take, carried in a context variable from the driver down to the sockets."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from contextvars import ContextVar, Token

from .clock import SYSTEM

#: What each limit is called in attempt records (the policy key that set it).
LIMIT_NAMES = {
    "total": "its time budget",
    "first_byte": "timeout.first_byte",
    "first_token": "timeout.first_token",
}


class Budget:
    """The time one attempt may take, as monotonic instants. Mutable on purpose: a stream's limits move
    as it progresses (head received, first content received).

    `end` is the hard end. A stream also has `until_head` (its response head must arrive by then) and
    `until_content` (its first content delta must arrive by then); each lapses once met."""

    __slots__ = ("clock", "end", "headers", "seconds", "status", "until_content", "until_head", "why")

    def __init__(
        self, seconds: float, head: float | None = None, content: float | None = None,
        now: Callable[[], float] = SYSTEM.now,
    ) -> None:
        self.clock = now
        now_ = now()
        self.seconds = seconds
        self.end = now_ + seconds
        self.until_head = now_ + head if head is not None else None
        self.until_content = now_ + content if content is not None else None
        self.status: int | None = None
        self.headers: Mapping[str, str] | None = None
        self.why: str | None = None  # which of our limits bound the last wait (None: the socket's own)

    def shift(self, seconds: float) -> None:
        """Move every limit later by `seconds`: time the router spent on itself (importing a provider's SDK
        on its first call) is not the model's."""
        self.end += seconds
        if self.until_head is not None:
            self.until_head += seconds
        if self.until_content is not None:
            self.until_content += seconds

    def head_arrived(self) -> None:
        self.until_head = None

    def content_started(self) -> None:
        self.until_content = None

    def bound(self, timeout: float | None, error: type[Exception]) -> float | None:
        """The timeout for one socket operation: its own `timeout`, or what is left of the budget if less.
        Raises `error` when nothing is left."""
        limit, why = self.end, "total"
        until_head, until_content = self.until_head, self.until_content
        if until_head is not None and self.headers is None and until_head < limit:
            limit, why = until_head, "first_byte"
        if until_content is not None and until_content < limit:
            limit, why = until_content, "first_token"
        left = limit - self.clock()
        if timeout is not None and timeout < left:
            self.why = None
            return timeout
        self.why = why
        if left <= 0:
            raise error(f"the attempt ran out of time ({LIMIT_NAMES[why]})")
        return left

    def check(self) -> None:
        """Raise TimeoutError if a limit has passed (for I/O whose sockets the router does not own)."""
        self.bound(None, TimeoutError)

    @property
    def request_id(self) -> str | None:
        """The request id from the response head, once one arrived."""
        headers = self.headers
        if headers is None:
            return None
        return headers.get("request-id") or headers.get("x-request-id")


#: The budget of the attempt under way in this thread or task (None outside an attempt).
CURRENT: ContextVar[Budget | None] = ContextVar("router_attempt_budget", default=None)


def restore(token: Token[Budget | None]) -> None:
    """Undo `CURRENT.set()`. A stream's generator may be closed from another context (an async generator
    finalised by its event loop): there the old value cannot be restored, and None is right anyway."""
    try:
        CURRENT.reset(token)
    except ValueError:
        CURRENT.set(None)
