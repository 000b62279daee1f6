"""The OpenTelemetry instruments: GenAI client metrics per attempt sent, and the router's own (`router.*`).

GenAI (names per `semconv.names()`): the duration histogram and the token usage of every attempt that was sent.
The duration histogram also carries `router.model_alias`. Router: `router.request.duration` (histogram, s),
`router.attempts` (every attempt of `routing.attempts`, models passed over included), `router.fallbacks`,
`router.breaker.transitions` (counters) and `router.breaker.state` (gauge: 0 closed, 1 half-open, 2 open, from
`Router.breakers()`). Counters are summed here and observed at collection (see `Tally`).
Imported only when OpenTelemetry is enabled.
"""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterable, Mapping
from typing import Any

from opentelemetry.metrics import CallbackOptions, Meter, Observation

from . import semconv
from .semconv import Names, Usage

STATE_VALUES: Mapping[str, int] = {"closed": 0, "half_open": 1, "open": 2}
Attributes = dict[str, Any]


class Tally:
    """A monotonic sum per attribute set, kept here and reported by an observable counter when metrics are
    collected: the SDK's own work per measurement (~12 µs) is then paid per collection, not per request."""

    def __init__(self, meter: Meter, name: str, unit: str, description: str) -> None:
        self._lock = threading.Lock()
        self._sums: dict[tuple[tuple[str, Any], ...], int] = {}
        meter.create_observable_counter(name, callbacks=[self._observe], unit=unit, description=description)

    def add(self, amount: int, attributes: Mapping[str, Any]) -> None:
        key = tuple(attributes.items())
        with self._lock:
            self._sums[key] = self._sums.get(key, 0) + amount

    def _observe(self, options: CallbackOptions) -> Iterable[Observation]:
        with self._lock:
            sums = list(self._sums.items())
        return [Observation(total, dict(key)) for key, total in sums]


class Instruments:
    """Every instrument of one listener, and the one place each is recorded."""

    def __init__(self, meter: Meter, names: Names, breakers: Callable[[], Mapping[str, Any]] | None) -> None:
        self.names = names
        self.duration = meter.create_histogram(
            names.duration, unit="s", description="GenAI operation duration",
            explicit_bucket_boundaries_advisory=semconv.DURATION_BUCKETS)
        if names.latest:
            self.usage_in = Tally(meter, semconv.USAGE_INPUT, "{token}", "Input tokens used, cached ones included")
            self.usage_out = Tally(meter, semconv.USAGE_OUTPUT, "{token}", "Output tokens used")
            self.usage_read = Tally(meter, semconv.USAGE_CACHE_READ, "{token}",
                                    "Input tokens served from the provider's cache")
            self.usage_write = Tally(meter, semconv.USAGE_CACHE_WRITE, "{token}",
                                     "Input tokens written to the provider's cache")
        else:
            self.tokens = meter.create_histogram(
                semconv.TOKEN_USAGE, unit="{token}", description="Measures number of input and output tokens used",
                explicit_bucket_boundaries_advisory=semconv.TOKEN_BUCKETS)
        self.request_duration = meter.create_histogram(
            "router.request.duration", unit="s", description="Duration of a routed request, every attempt included",
            explicit_bucket_boundaries_advisory=semconv.DURATION_BUCKETS)
        self.attempts = Tally(meter, "router.attempts", "{attempt}",
                              "Attempts by model and outcome (models passed over too)")
        self.fallbacks = Tally(meter, "router.fallbacks", "{fallback}", "Requests that left one model for the next")
        self.transitions = Tally(meter, "router.breaker.transitions", "{transition}", "Circuit breaker state changes")
        self._breakers = breakers
        if breakers is not None:
            meter.create_observable_gauge(
                "router.breaker.state", callbacks=[self._observe_breakers], unit="1",
                description="Circuit breaker state per model: 0 closed, 1 half-open, 2 open")

    def _observe_breakers(self, options: CallbackOptions) -> Iterable[Observation]:
        assert self._breakers is not None
        return [Observation(STATE_VALUES.get(info.state, 2), {"router.model_alias": alias})
                for alias, info in self._breakers().items()]

    def attempt(self, genai: Attributes | None, router: Attributes, duration: float, usage: Usage | None) -> None:
        """One attempt's record. `genai` is None for a model passed over (nothing was sent)."""
        self.attempts.add(1, router)
        if genai is None:
            return
        self.duration.record(duration, {**genai, "router.model_alias": router["router.model_alias"]})
        if usage is None and not self.names.latest:
            return  # the old histogram records only what a reply reported
        tokens = {k: v for k, v in genai.items() if k != "error.type"}
        if self.names.latest:
            tokens["gen_ai.token.modality"] = "unknown"  # Anthropic's usage is not broken down by modality
            u = usage or Usage(0, 0, 0, 0)  # a failed operation records 0, as the conventions ask
            self.usage_in.add(u.input_tokens, tokens)
            self.usage_out.add(u.output_tokens, tokens)
            if u.cache_read:
                self.usage_read.add(u.cache_read, tokens)
            if u.cache_write:
                self.usage_write.add(u.cache_write, tokens)
        elif usage is not None:
            self.tokens.record(usage.input_tokens, {**tokens, "gen_ai.token.type": "input"})
            self.tokens.record(usage.output_tokens, {**tokens, "gen_ai.token.type": "output"})
