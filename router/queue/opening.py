"""Opening the durable queue a policy's `queue:` section names (SQLite file or Redis Streams)."""

from __future__ import annotations

from ..policy import QueueConfig
from .store import QueueStore


def open_queue(config: QueueConfig) -> QueueStore:
    """The QueueStore of `config`; QueueError (router.errors) when it cannot be opened or is corrupt."""
    if config.backend == "sqlite":
        from .sqlite import SQLiteQueue

        assert config.path is not None
        return SQLiteQueue(config.path)
    from .redis_streams import RedisStreamQueue

    assert config.url is not None
    return RedisStreamQueue(config.url.reveal(), stream=config.stream)
