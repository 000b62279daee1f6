"""Status page awareness: a background poller of a Statuspage v2 summary.json that pre-opens named models' breakers."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import replace
from typing import Protocol

from ..clock import Clock
from ..policy import BreakerConfig, ModelConfig, StatusPageConfig
from .fetch import FetchError, fetch
from .matching import Family, Finding, findings, mentions, model_family
from .page import Component, Incident, PageError, Summary, parse_summary
from .watcher import Actions, Listener, Models, Notice, PollResult, StatusPageWatcher

__all__ = [
    "Actions",
    "Component",
    "Family",
    "FetchError",
    "Finding",
    "Incident",
    "Listener",
    "Notice",
    "PageError",
    "PollResult",
    "StatusPageWatcher",
    "Summary",
    "fetch",
    "findings",
    "mentions",
    "model_family",
    "observer",
    "parse_summary",
    "start_watcher",
    "store_actions",
]


class TrippableStore(Protocol):
    """The breaker store operations the watcher uses (MemoryStore and RedisStore have both)."""

    def configure(self, alias: str, config: BreakerConfig) -> None: ...

    def trip(self, alias: str, now: float) -> bool: ...


def _current(models: Models) -> Mapping[str, ModelConfig]:
    return models() if callable(models) else models


def store_actions(store: TrippableStore, models: Models, clock: Clock) -> Actions:
    """Actions on `store`: trip opens a closed breaker now; the threshold is lowered (never raised) and
    restored by reconfiguring the model's breaker from the policy `models` gives (read at each call, so a
    reload is followed); models no longer in the policy are left alone."""

    def trip(alias: str) -> None:
        if alias in _current(models):
            store.trip(alias, clock.now())

    def lower_threshold(alias: str, n: int) -> None:
        config = _current(models).get(alias)
        if config is not None and n < config.breaker.failure_threshold:
            store.configure(alias, replace(config.breaker, failure_threshold=n))

    def restore_threshold(alias: str) -> None:
        config = _current(models).get(alias)
        if config is not None:
            store.configure(alias, config.breaker)

    return Actions(trip, lower_threshold, restore_threshold)


def start_watcher(config: StatusPageConfig, models: Models, store: TrippableStore, clock: Clock,
                  listener: Listener | None = None, *, background: bool = True) -> StatusPageWatcher:
    """A watcher of `config`'s page acting on `store`'s breakers, started on its daemon thread (unless
    `background=False`: then call `poll_once()` yourself, e.g. with a virtual clock). `models` is the
    policy's models, or a function returning the current ones (a Router passes its live policy's)."""
    watcher = StatusPageWatcher(config, models, store_actions(store, models, clock), clock, listener)
    return watcher.start() if background else watcher


def observer(config: StatusPageConfig, models: Models, clock: Clock,
             fetcher: Callable[[str, float, Callable[[], float]], bytes] = fetch) -> StatusPageWatcher:
    """A watcher that only reads the page and says what it concerns (the `status` command's): it acts on nothing."""
    return StatusPageWatcher(config, models, None, clock, None, fetcher)
