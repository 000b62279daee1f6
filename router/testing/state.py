"""Thread-safe per-model state of the fake server: fault plans, request counters, received requests."""

from __future__ import annotations

import itertools
import threading
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any

from router.testing.batches import FakeBatches
from router.testing.faults import Fault

__all__ = ["ReceivedRequest", "ServerState"]


@dataclass(frozen=True, slots=True)
class ReceivedRequest:
    """A request as the fake server read it (path without query, lower-case header names)."""

    path: str
    headers: dict[str, str] = field(default_factory=dict)
    body: dict[str, Any] = field(default_factory=dict)


@dataclass(slots=True)
class _Plan:
    faults: deque[Fault]
    default: Fault


class ServerState:
    """Plans, counters and request log, shared between the server thread and test threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._ids = itertools.count(1)
        self._plans: dict[str, _Plan] = {}
        self._received: dict[str, list[ReceivedRequest]] = {}
        self._disconnects: dict[str, int] = {}
        self.batches = FakeBatches()  # Message Batches: thread-safe on its own

    def next_id(self) -> int:
        """A fresh number for ``req_fake_<n>`` / ``msg_fake_<n>``."""
        with self._lock:
            return next(self._ids)

    def plan(self, model: str, faults: Iterable[Fault] = (), default: Fault | None = None) -> None:
        """Replace the plan for ``model``."""
        queue = deque(faults)
        for fault in (*queue, default):
            if fault is not None and not isinstance(fault, Fault):
                raise TypeError(f"expected Fault, got {type(fault).__name__}")
        with self._lock:
            self._plans[model] = _Plan(queue, default if default is not None else Fault.ok())

    def next_fault(self, model: str) -> Fault:
        """Consume the next fault planned for ``model`` (``Fault.ok()`` when there is no plan)."""
        with self._lock:
            plan = self._plans.get(model)
            if plan is None:
                return Fault.ok()
            return plan.faults.popleft() if plan.faults else plan.default

    def record(self, model: str, request: ReceivedRequest) -> None:
        """Log a request that was read for ``model``."""
        with self._lock:
            self._received.setdefault(model, []).append(request)

    def record_disconnect(self, model: str) -> None:
        """Count a stream the client closed before the server finished it."""
        with self._lock:
            self._disconnects[model] = self._disconnects.get(model, 0) + 1

    def count(self, model: str) -> int:
        with self._lock:
            return len(self._received.get(model, ()))

    def received(self, model: str) -> list[ReceivedRequest]:
        with self._lock:
            return list(self._received.get(model, ()))

    def disconnects(self, model: str) -> int:
        with self._lock:
            return self._disconnects.get(model, 0)

    def reset(self) -> None:
        with self._lock:
            self._plans.clear()
            self._received.clear()
            self._disconnects.clear()
        self.batches.reset()
