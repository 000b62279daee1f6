"""Pub/sub on breaker changes: a daemon thread that marks a model's local view stale when any process changes it."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any


class Watcher:
    """Listens on the store's channel and calls `stale(key)` for each change another process (or this one)
    published. Lost messages are harmless: the store re-reads every view at least every `poll` seconds."""

    def __init__(self, client: Any, channel: str, stale: Callable[[str], None], log: logging.Logger) -> None:
        self._client = client
        self._channel = channel
        self._stale = stale
        self._log = log
        self._thread: threading.Thread | None = None
        self._stop = threading.Event()

    def start(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(target=self._run, name="router-redis-watch", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        wait = 0.5
        while not self._stop.is_set():
            try:
                pubsub = self._client.pubsub(ignore_subscribe_messages=True)
                pubsub.subscribe(self._channel)
                wait = 0.5
                while not self._stop.is_set():
                    message = pubsub.get_message(timeout=0.5)
                    if message is not None and message.get("type") == "message":
                        data = message.get("data")
                        self._stale(data.decode() if isinstance(data, bytes) else str(data))
                pubsub.close()
            except Exception as exc:  # Redis down: the store itself reports that once; retry quietly
                self._log.debug("redis watch: %s; retrying in %.1fs", type(exc).__name__, wait)
                self._stop.wait(wait)
                wait = min(wait * 2, 10.0)
