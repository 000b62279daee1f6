"""A queued request: the `Ticket`, the states it moves through, and how results and errors are kept."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

#: queued: waiting for a model of its route · running: claimed by a worker (lease until `lease_until`) ·
#: batched: inside a Message Batch (`batch_id`) · done: `result` holds the message · failed: `error` says why ·
#: expired: its `expires_at` passed before it was served · canceled: its batch was canceled.
State = Literal["queued", "running", "batched", "done", "failed", "expired", "canceled"]
FINAL: frozenset[str] = frozenset({"done", "failed", "expired", "canceled"})


@dataclass(frozen=True, slots=True)
class Ticket:
    """One queued request. Times are epoch seconds (`Clock.wall`): they mean the same in every process.

    `id` is also the request's idempotency key. `params` are the Messages API arguments exactly as the
    caller gave them (JSON-safe; never an API key: keys live in the policy). `attempts` counts the drain
    rounds that ended without an answer. `result` is `{"message": <Message JSON>, "routing": {...}}`;
    `error` is `{"type": ..., "message": ..., "status": ..., "attempts": [...]}`."""

    id: str
    route: str
    params: Mapping[str, Any] = field(hash=False)
    created_at: float
    expires_at: float
    state: State = "queued"
    attempts: int = 0
    worker: str | None = None
    lease_until: float | None = None
    batch_id: str | None = None
    result: Mapping[str, Any] | None = field(default=None, hash=False)
    error: Mapping[str, Any] | None = field(default=None, hash=False)
    finished_at: float | None = None

    @property
    def final(self) -> bool:
        return self.state in FINAL
