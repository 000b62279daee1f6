"""OpenTelemetry traces and metrics of a Router: a span per request, a CLIENT span per attempt sent.

The request span (kind INTERNAL, name `router {route}`) is a child of the caller's current span: it is the
router's own work, not a call to a remote service, so it is not a GenAI CLIENT span (that would count one
inference twice). Each attempt that was sent is a child CLIENT span named `chat {model id}` with the GenAI
attributes; a model passed over without a request (breaker open, cooling down...) is an event
`router.model_skipped` on the request span, a failover is an event `router.failover`, a resumed stream an
event `router.stream.resumed`.

The anthropic SDK traces its own calls (a CLIENT span `anthropic.messages.create` per call, which is one attempt
here since the router turns the SDK's retries off) when its `open_telemetry` option is on, which is its default
unless `ANTHROPIC_OPEN_TELEMETRY=false`, and a real tracer provider is registered globally. Then the attempts on
`provider: anthropic` models get no span of ours (it would duplicate the SDK's): the request span is made current
during the attempt so the SDK's span is its child, and the router's facts about the attempt go on the request span
as an event `router.attempt`. Imported only when OpenTelemetry is enabled (`failover-router[otel]`).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

from opentelemetry import context as otel_context
from opentelemetry import metrics as otel_metrics
from opentelemetry import trace
from opentelemetry.metrics import MeterProvider
from opentelemetry.trace import Span, SpanKind, Status, StatusCode, TracerProvider

from . import semconv
from .otel_metrics import Instruments
from .semconv import Names

SCOPE = "failover-router"
#: Requests whose spans are still open; past this the oldest are ended (a request that never said it ended).
MAX_OPEN = 10_000

Models = Callable[[], Mapping[str, Any]]  # alias -> ModelConfig (provider, model), read when a request starts


@dataclass(slots=True)
class _Open:
    """One request in flight: its span, its current attempt's span, and the models of the policy it started on."""

    span: Span
    route: str
    stream: bool
    models: Mapping[str, Any]
    attempt: Span | None = None
    attempt_attrs: dict[str, Any] = field(default_factory=dict)
    token: object | None = None  # the context token while the request span is current (SDK spans on)
    resumed_at: int | None = None


def sdk_traces_on(tracer_provider: TracerProvider | None) -> bool:
    """Would the anthropic SDK's own span duplicate our attempt spans? Yes when its tracing is on (the SDK's default,
    off with ANTHROPIC_OPEN_TELEMETRY=false) and its spans go where ours go: the global provider, a real one."""
    if os.environ.get("ANTHROPIC_OPEN_TELEMETRY", "").lower() == "false":
        return False
    registered = trace.get_tracer_provider()
    if isinstance(registered, (trace.ProxyTracerProvider, trace.NoOpTracerProvider)):
        return False
    return tracer_provider is None or tracer_provider is registered


class OpenTelemetryListener:
    """A Router listener that makes the spans and metrics this module's docstring describes.

    `router.add_listener(OpenTelemetryListener(router))`, or `router.observe.instrument(router)`. Spans go to
    `tracer_provider` (default: the global one), metrics to `meter_provider` (default: the global one).
    `sdk_spans` overrides the detection of the anthropic SDK's own spans (see `sdk_traces_on`); `traces=False` or
    `metrics=False` turns one of the two off."""

    def __init__(
        self, router: Any, *, tracer_provider: TracerProvider | None = None,
        meter_provider: MeterProvider | None = None, sdk_spans: bool | None = None,
        environ: Mapping[str, str] | None = None, traces: bool = True, metrics: bool = True,
    ) -> None:
        self.names: Names = semconv.names(environ)
        self._tracer = trace.get_tracer(SCOPE, tracer_provider=tracer_provider) if traces else trace.NoOpTracer()
        meter = otel_metrics.get_meter(SCOPE, meter_provider=meter_provider) if metrics else otel_metrics.NoOpMeter(
            SCOPE)
        self._models: Models = lambda: router.policy.models
        self.instruments = Instruments(meter, self.names, router.breakers)
        self._tracer_provider = tracer_provider
        self._sdk_spans = sdk_spans  # None: detected, until a real global provider is seen (see `sdk_spans`)
        self._open: dict[int, _Open] = {}
        self._handlers: dict[str, Callable[[Any], None]] = {
            "RequestStarted": self._started, "AttemptStarted": self._attempt_started,
            "AttemptEnded": self._attempt_ended, "Failover": self._failover, "StreamResumed": self._resumed,
            "RequestEnded": self._ended, "BreakerTransition": self._transition,
        }

    @property
    def sdk_spans(self) -> bool:
        """True while the anthropic SDK's own spans stand for attempts on anthropic models (asked per attempt
        until a real global tracer provider is registered, so instrumenting before setting one up is fine)."""
        if self._sdk_spans is not None:
            return self._sdk_spans
        on = sdk_traces_on(self._tracer_provider)
        if on or not isinstance(trace.get_tracer_provider(), trace.ProxyTracerProvider):
            self._sdk_spans = on  # the global provider is settled: the answer will not change
        return on

    def __call__(self, event: Any) -> None:
        handler = self._handlers.get(type(event).__name__)
        if handler is not None:
            handler(event)

    # -- requests ---------------------------------------------------------------------------------

    def _started(self, event: Any) -> None:
        attributes = {"router.route": event.route, "router.stream": event.stream}
        span = self._tracer.start_span(f"router {event.route}", kind=SpanKind.INTERNAL, attributes=attributes)
        if len(self._open) >= MAX_OPEN:
            self._evict()
        self._open[event.request] = _Open(span, event.route, event.stream, self._models())

    def _evict(self) -> None:
        try:
            oldest = next(iter(self._open))
        except (RuntimeError, StopIteration):
            return
        gone = self._open.pop(oldest, None)
        if gone is not None:
            gone.span.set_status(Status(StatusCode.ERROR, "never ended"))
            gone.span.end()

    def _ended(self, event: Any) -> None:
        req = self._open.pop(event.request, None)
        outcome = "served" if event.error is None else "failed"
        router_attrs: dict[str, Any] = {"router.route": event.route, "router.outcome": outcome}
        if event.error is not None:
            router_attrs["error.type"] = event.error
        self.instruments.request_duration.record(event.duration_s, router_attrs)
        if req is None:
            return
        self._detach(req)
        if req.attempt is not None:  # an attempt that never said it ended (the caller went away)
            req.attempt.set_status(Status(StatusCode.ERROR, event.error or "abandoned"))
            req.attempt.end()
        span = req.span
        attrs: dict[str, Any] = {"router.outcome": outcome, "router.attempts": len(event.attempts)}
        if event.model is not None:
            attrs["router.model_alias"] = event.model
        if event.error is not None:
            attrs["error.type"] = event.error
            span.set_status(Status(StatusCode.ERROR, event.error))
        span.set_attributes(attrs)
        span.end()

    # -- attempts ---------------------------------------------------------------------------------

    def _genai(self, req: _Open | None, alias: str) -> dict[str, Any]:
        config = (req.models if req is not None else self._models()).get(alias)
        provider, model = semconv.provider_and_model(config.provider, config.model) if config else ("_OTHER", alias)
        return {"gen_ai.operation.name": "chat", "gen_ai.provider.name": provider, "gen_ai.request.model": model}

    def _attempt_started(self, event: Any) -> None:
        req = self._open.get(event.request)
        if req is None:
            return
        genai = self._genai(req, event.model)
        attrs: dict[str, Any] = {**genai, "router.route": event.route, "router.model_alias": event.model,
                                 "router.probe": event.probe,
                                 "router.breaker.state": "half_open" if event.probe else "closed"}
        if req.stream:
            attrs["gen_ai.request.stream"] = True
        req.attempt_attrs = attrs
        self._detach(req)
        if self.sdk_spans and genai["gen_ai.provider.name"] == "anthropic":
            req.token = otel_context.attach(trace.set_span_in_context(req.span))
            return
        name = f"chat {genai['gen_ai.request.model']}"
        ctx = trace.set_span_in_context(req.span)
        req.attempt = self._tracer.start_span(name, context=ctx, kind=SpanKind.CLIENT, attributes=attrs)

    def _attempt_ended(self, event: Any) -> None:
        attempt = event.attempt
        req = self._open.get(event.request)
        outcome = attempt.outcome.value
        router_attrs = {"router.route": event.route, "router.model_alias": attempt.model, "router.outcome": outcome,
                        "router.probe": attempt.probe}
        if not attempt.sent:
            self.instruments.attempt(None, router_attrs, 0.0, None)
            if req is not None:
                req.span.add_event("router.model_skipped", {"router.model_alias": attempt.model,
                                                            "router.outcome": outcome})
            return
        usage = semconv.usage_of(event.message) if event.message is not None else None
        genai = self._genai(req, attempt.model)
        error = _error_type(attempt)
        if event.message is not None and getattr(event.message, "model", None):
            genai["gen_ai.response.model"] = event.message.model
        if error is not None:
            genai["error.type"] = error
        self.instruments.attempt(genai, router_attrs, attempt.duration_s, usage)
        if req is not None:
            self._end_attempt(req, event, genai, usage, error)

    def _end_attempt(self, req: _Open, event: Any, genai: dict[str, Any], usage: Any, error: str | None) -> None:
        attempt = event.attempt
        attrs: dict[str, Any] = {"router.outcome": attempt.outcome.value}
        if attempt.status is not None:
            attrs["http.response.status_code"] = attempt.status
        if attempt.request_id:
            attrs["router.request_id"] = attempt.request_id
        if error is not None:
            attrs["error.type"] = error
        if req.resumed_at is not None:
            attrs["router.stream.resumed_at"] = req.resumed_at
            req.resumed_at = None
        message = event.message
        if message is not None:
            attrs.update(_response_attributes(message, genai, usage, self.names))
        span = req.attempt
        req.attempt = None
        if span is None:  # the SDK's span stands for this attempt: our facts go on the request span
            self._detach(req)
            req.span.add_event("router.attempt", {**req.attempt_attrs, **attrs})
            return
        span.set_attributes(attrs)
        if error is not None:
            span.set_status(Status(StatusCode.ERROR, error))
        span.end()

    def _detach(self, req: _Open) -> None:
        if req.token is not None:
            token, req.token = req.token, None
            otel_context.detach(token)  # type: ignore[arg-type]

    # -- other events -----------------------------------------------------------------------------

    def _failover(self, event: Any) -> None:
        reason = event.reason.value
        self.instruments.fallbacks.add(1, {"router.route": event.route, "router.from_model": event.from_model,
                                           "router.to_model": event.to_model, "router.reason": reason})
        req = self._open.get(event.request)
        if req is not None:
            req.span.add_event("router.failover", {"router.from_model": event.from_model,
                                                   "router.to_model": event.to_model, "router.reason": reason})

    def _resumed(self, event: Any) -> None:
        req = self._open.get(event.request)
        if req is None:
            return
        req.resumed_at = event.at_char
        if req.attempt is not None:
            req.attempt.set_attribute("router.stream.resumed_at", event.at_char)
        req.span.add_event("router.stream.resumed", {"router.model_alias": event.model,
                                                     "router.stream.resumed_at": event.at_char,
                                                     "router.stream.resume_method": event.method})

    def _transition(self, event: Any) -> None:
        self.instruments.transitions.add(1, {"router.model_alias": event.model, "router.breaker.old_state": event.old,
                                             "router.breaker.state": event.new})

    def close(self) -> None:
        """End the spans of requests still open (as errors: they never said they ended)."""
        while self._open:
            self._evict()


def _error_type(attempt: Any) -> str | None:
    """`error.type` of a failed attempt: the provider's error type, else the HTTP status, else the outcome."""
    if attempt.outcome.value == "success":
        return None
    if attempt.error_type:
        return str(attempt.error_type)
    if attempt.status is not None and attempt.status >= 400:
        return str(attempt.status)
    return str(attempt.outcome.value)


def _response_attributes(message: Any, genai: Mapping[str, Any], usage: Any, names: Names) -> dict[str, Any]:
    attrs: dict[str, Any] = {}
    if "gen_ai.response.model" in genai:
        attrs["gen_ai.response.model"] = genai["gen_ai.response.model"]
    if getattr(message, "id", None):
        attrs["gen_ai.response.id"] = message.id
    stop = getattr(message, "stop_reason", None)
    if stop:
        attrs["gen_ai.response.finish_reasons"] = (stop,)
    if usage is not None:
        attrs["gen_ai.usage.input_tokens"] = usage.input_tokens
        attrs["gen_ai.usage.output_tokens"] = usage.output_tokens
        attrs["gen_ai.usage.cache_read.input_tokens"] = usage.cache_read
        attrs[names.cache_write_attribute] = usage.cache_write
    return attrs
