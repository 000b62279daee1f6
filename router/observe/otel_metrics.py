"""The OpenTelemetry instruments: GenAI client metrics per attempt sent, and the router's own (`router.*`).

GenAI (names per `semconv.names()`): the duration histogram and the token usage of every attempt that was sent.
Router: `router.request.duration`, `router.attempt.duration` (histograms, s), `router.attempts` (counter, every
attempt of `routing.attempts`, models passed over included), `router.fallbacks`, `router.breaker.transitions`
(counters) and `router.breaker.state` (observable gauge: 0 closed, 1 half-open, 2 open, from `Router.breakers()`).
Imported only when OpenTelemetry is enabled.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import Any

from opentelemetry.metrics import CallbackOptions, Meter, Observation

from . import semconv
from .semconv import Names, Usage

STATE_VALUES: Mapping[str, int] = {"closed": 0, "half_open": 1, "open": 2}
Attributes = dict[str, Any]


class Instruments:
    """Every instrument of one listener, and the one place each is recorded."""

    def __init__(self, meter: Meter, names: Names, breakers: Callable[[], Mapping[str, Any]] | None) -> None:
        self.names = names
        self.duration = meter.create_histogram(
            names.duration, unit="s", description="GenAI operation duration",
            explicit_bucket_boundaries_advisory=semconv.DURATION_BUCKETS)
        if names.latest:
            self.usage_in = meter.create_counter(semconv.USAGE_INPUT, unit="{token}",
                                                 description="Input tokens used, cached ones included")
            self.usage_out = meter.create_counter(semconv.USAGE_OUTPUT, unit="{token}", description="Output tokens")
            self.usage_read = meter.create_counter(semconv.USAGE_CACHE_READ, unit="{token}",
                                                   description="Input tokens served from the provider's cache")
            self.usage_write = meter.create_counter(semconv.USAGE_CACHE_WRITE, unit="{token}",
                                                    description="Input tokens written to the provider's cache")
        else:
            self.tokens = meter.create_histogram(
                semconv.TOKEN_USAGE, unit="{token}", description="Measures number of input and output tokens used",
                explicit_bucket_boundaries_advisory=semconv.TOKEN_BUCKETS)
        self.request_duration = meter.create_histogram(
            "router.request.duration", unit="s", description="Duration of a routed request, every attempt included",
            explicit_bucket_boundaries_advisory=semconv.DURATION_BUCKETS)
        self.attempt_duration = meter.create_histogram(
            "router.attempt.duration", unit="s", description="Duration of one attempt sent to one model",
            explicit_bucket_boundaries_advisory=semconv.DURATION_BUCKETS)
        self.attempts = meter.create_counter(
            "router.attempts", unit="{attempt}", description="Attempts by model and outcome (models passed over too)")
        self.fallbacks = meter.create_counter(
            "router.fallbacks", unit="{fallback}", description="Requests that left one model for the next")
        self.transitions = meter.create_counter(
            "router.breaker.transitions", unit="{transition}", description="Circuit breaker state changes")
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
        self.attempt_duration.record(duration, router)
        self.duration.record(duration, genai)
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
