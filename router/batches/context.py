"""What every step of a batch works with: the store, the API client, the model, the clock, the retry path."""

from __future__ import annotations

from dataclasses import dataclass

import anthropic

from ..clock import Clock
from ..policy import ModelConfig
from ..queue.store import QueueStore
from .options import BatchOptions, Serve


@dataclass(frozen=True, slots=True)
class BatchContext:
    """`model` is the policy's model whose API took the batch; `serve` retries through a route (may be None
    unless `options.retry` is "route")."""

    store: QueueStore
    client: anthropic.Anthropic
    model: ModelConfig
    clock: Clock
    serve: Serve | None
    options: BatchOptions
