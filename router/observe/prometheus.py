"""A prometheus_client collector of a Router: breaker state, transitions, attempts, fallbacks, probes, queue depth.

Every metric is named `failover_router_...`; labels are route names, model aliases, outcomes and states, never
a key, a URL or request content. Breaker state and failure counts are read from `Router.breakers()` when scraped,
so with a Redis store they are the fleet's; the counters count what this process's requests did.
Imported only when Prometheus is enabled (`failover-router[prometheus]`).
"""

from __future__ import annotations

import logging
import threading
from collections import Counter
from collections.abc import Callable, Iterator, Mapping
from typing import Any

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

log = logging.getLogger("router.observe")
STATE_VALUES: Mapping[str, int] = {"closed": 0, "half_open": 1, "open": 2}
QueueCounts = Callable[[], Mapping[str, int]]

#: (name, help, labels) of every counter; the exposition adds `_total` to each name.
COUNTERS: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("failover_router_requests", "Requests finished, by route and outcome (served | failed)", ("route", "outcome")),
    ("failover_router_attempts", "Attempts by route, model and outcome (models passed over included)",
     ("route", "model", "outcome")),
    ("failover_router_fallbacks", "Requests that left one model for the next, and why",
     ("route", "from_model", "to_model", "reason")),
    ("failover_router_probes", "Half-open probes sent, by model and outcome", ("model", "outcome")),
    ("failover_router_breaker_transitions", "Circuit breaker state changes seen by this process",
     ("model", "from_state", "to_state")),
)
#: (name, help, labels) of every gauge.
GAUGES: tuple[tuple[str, str, tuple[str, ...]], ...] = (
    ("failover_router_breaker_state", "Circuit breaker state per model: 0 closed, 1 half-open, 2 open", ("model",)),
    ("failover_router_breaker_failures", "Consecutive counted failures per model", ("model",)),
    ("failover_router_breaker_forced_open", "1 while an operator holds the model's breaker open", ("model",)),
    ("failover_router_queue_depth", "Queued requests by state", ("state",)),
    ("failover_router_status_page_up", "1 if the last poll of the status page read it, 0 if it failed", ()),
    ("failover_router_status_page_incident", "1 while the status page's last word names the model (an active "
     "incident or an API outage)", ("model",)),
)


class PrometheusCollector:
    """A Router listener and a prometheus_client collector in one.

    `collector = PrometheusCollector(router, queue_counts=...)` adds itself as the router's listener;
    `registry.register(collector)` (or `router.observe.instrument(router, prometheus_registry=registry)`)
    exposes it. `queue_counts`, if given, returns {state: number of queued requests} when scraped.
    `close()` removes the listener."""

    def __init__(self, router: Any, *, queue_counts: QueueCounts | None = None) -> None:
        self._router = router
        self._queue_counts = queue_counts
        self._lock = threading.Lock()
        self._counts: dict[str, Counter[tuple[str, ...]]] = {name: Counter() for name, _, _ in COUNTERS}
        self._handlers: dict[str, Callable[[Any], None]] = {
            "AttemptEnded": self._attempt, "Failover": self._failover, "RequestEnded": self._ended,
            "BreakerTransition": self._transition,
        }
        router.add_listener(self)

    def close(self) -> None:
        self._router.remove_listener(self)

    # -- the listener -----------------------------------------------------------------------------

    def __call__(self, event: Any) -> None:
        handler = self._handlers.get(type(event).__name__)
        if handler is not None:
            handler(event)

    def _add(self, name: str, labels: tuple[str, ...]) -> None:
        with self._lock:
            self._counts[name][labels] += 1

    def _attempt(self, event: Any) -> None:
        a = event.attempt
        outcome = a.outcome.value
        self._add("failover_router_attempts", (event.route, a.model, outcome))
        if a.probe:
            self._add("failover_router_probes", (a.model, outcome))

    def _failover(self, event: Any) -> None:
        self._add("failover_router_fallbacks", (event.route, event.from_model, event.to_model, event.reason.value))

    def _ended(self, event: Any) -> None:
        self._add("failover_router_requests", (event.route, "served" if event.error is None else "failed"))

    def _transition(self, event: Any) -> None:
        self._add("failover_router_breaker_transitions", (event.model, event.old, event.new))

    # -- the collector ----------------------------------------------------------------------------

    def describe(self) -> list[Metric]:
        """The families this collector exports, without samples (the registry checks names with it)."""
        return [CounterMetricFamily(n, h, labels=list(ls)) for n, h, ls in COUNTERS] + [
            GaugeMetricFamily(n, h, labels=list(ls)) for n, h, ls in GAUGES]

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            snapshot = {name: dict(counts) for name, counts in self._counts.items()}
        for name, doc, labels in COUNTERS:
            family = CounterMetricFamily(name, doc, labels=list(labels))
            for values, count in sorted(snapshot[name].items()):
                family.add_metric(list(values), count)
            yield family
        yield from self._breaker_gauges()
        depth = GaugeMetricFamily(GAUGES[3][0], GAUGES[3][1], labels=["state"])
        if self._queue_counts is not None:
            try:
                counts = sorted(self._queue_counts().items())
            except Exception:  # the queue's store is down: say so in the log, scrape the rest
                log.warning("failover_router_queue_depth: queue_counts() failed", exc_info=True)
                counts = []
            for state, count in counts:
                depth.add_metric([state], count)
        yield depth
        yield from self._status_page_gauges()

    def _status_page_gauges(self) -> Iterator[Metric]:
        """What the status page watcher last saw (no samples without `status_page:`, or before its first poll)."""
        (u_name, u_doc, _), (i_name, i_doc, _) = GAUGES[4:6]
        up = GaugeMetricFamily(u_name, u_doc)
        named = GaugeMetricFamily(i_name, i_doc, labels=["model"])
        watcher = getattr(self._router, "status_page", None)
        last = watcher.last if watcher is not None else None
        if last is not None:
            up.add_metric([], 1 if last.ok else 0)
            models = {m for finding in last.findings if finding.ongoing for m in finding.models}
            for alias in sorted(self._router.policy.models):
                named.add_metric([alias], 1 if alias in models else 0)
        yield from (up, named)

    def _breaker_gauges(self) -> Iterator[Metric]:
        (s_name, s_doc, _), (f_name, f_doc, _), (o_name, o_doc, _) = GAUGES[:3]
        state = GaugeMetricFamily(s_name, s_doc, labels=["model"])
        failures = GaugeMetricFamily(f_name, f_doc, labels=["model"])
        forced = GaugeMetricFamily(o_name, o_doc, labels=["model"])
        try:
            breakers = self._router.breakers()
        except Exception:  # a scrape must not fail because the store did: the other metrics still go out
            log.warning("failover_router_breaker_*: could not read the breakers", exc_info=True)
            breakers = {}
        for alias, info in sorted(breakers.items()):
            state.add_metric([alias], STATE_VALUES.get(info.state, 2))
            failures.add_metric([alias], info.failures)
            forced.add_metric([alias], 1 if info.forced else 0)
        yield from (state, failures, forced)
