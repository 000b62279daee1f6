"""Breaker state shared by every process on one Redis: `RedisStore` (needs `pip install 'failover-router[redis]'`)."""

from .store import RedisStore

__all__ = ["RedisStore"]
