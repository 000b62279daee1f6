"""One request's working state in the plan: what it has learnt so far, and the one place its attempts are told."""

from __future__ import annotations

import random
from collections.abc import Callable, Generator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

from anthropic.types import Message

from .breaker import BreakerInfo
from .commands import Command, Peek, Reply, Target
from .events import AttemptEnded, Funnel, RequestEnded
from .outcome import Failure
from .routing import Attempt
from .streaming.stitcher import Stitcher


@dataclass(slots=True)
class RequestState:
    """What one request has learnt so far (mutable: the plan's working state)."""

    route: str
    chain: Sequence[Target]
    params: Mapping[str, Any]
    clock: Callable[[], float]
    rng: random.Random
    deadline: float | None
    stream: Stitcher | None
    emit: Funnel
    started: float = 0.0
    serial: int = 0
    attempts: list[Attempt] = field(default_factory=list)
    spent_credentials: frozenset[str] = frozenset()  # (a set would be built for every request)
    last: Failure | None = None
    last_model: str | None = None  # the model last sent a request, for Failover events
    held: int | None = None  # attempts from here on are not told yet: a waiting round that has sent nothing
    looks: int = 0  # rounds folded into the latest wait
    listening: bool = False  # someone listens: read once, when the request starts, so it is told all or nothing

    def add(self, attempt: Attempt) -> None:
        """The one place an attempt is recorded: the routing record and the event stream alike."""
        self.attempts.append(attempt)
        if self.held is not None:
            if attempt.sent:
                self.flush()
        elif self.listening:
            self.emit(AttemptEnded(self.route, attempt, self.clock(), self.serial))

    def flush(self) -> None:
        """Tell listeners about the attempts held back while waiting: the round turned out to send something
        (or the request ends), so they stay in the record."""
        if self.held is None:
            return
        start, self.held = self.held, None
        if self.listening:
            now = self.clock()
            for attempt in self.attempts[start:]:
                self.emit(AttemptEnded(self.route, attempt, now, self.serial))

    def others_can_serve(self, index: int, now: float) -> Generator[Command, Reply, bool]:
        """Could a model after chain[index] still be called now? (Reads breaker state; takes nothing.)"""
        for target in self.chain[index + 1:]:
            if target.credentials in self.spent_credentials:
                continue
            if self.stream is not None and not self.stream.can_take_over(target.config):
                continue
            info = yield Peek(target.alias, now)
            if callable_now(info):
                return True
        return False

    def served(self, attempt: Attempt, message: Message) -> None:
        self.flush()
        self.attempts.append(attempt)
        if self.listening:
            self.emit(AttemptEnded(self.route, attempt, self.clock(), self.serial, message))

    def ended(
        self, model: str | None, error: BaseException | None, attempts: tuple[Attempt, ...] | None = None
    ) -> None:
        """`attempts`: the served message's (its routing record may hold the last one); else this list's."""
        self.flush()
        if self.listening:
            now = self.clock()
            self.emit(RequestEnded(self.route, model, tuple(self.attempts) if attempts is None else attempts,
                                   type(error).__name__ if error else None, now - self.started, now, self.serial))


def callable_now(info: Reply) -> bool:
    """Could the model whose breaker a Peek answered with `info` be called now?"""
    if not isinstance(info, BreakerInfo) or info.cooling_until is not None:
        return False
    return info.state == "closed" or (info.state == "half_open" and not info.probe_in_flight)
