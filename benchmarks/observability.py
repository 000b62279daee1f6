"""Per-call cost of observability, in memory: OpenTelemetry and Prometheus enabled vs disabled.

Run: python -m benchmarks.observability [--quick] [--calls N]   (or python -m benchmarks --only observability)
Every contender is a Router whose models' provider calls are stubbed (they return one real SDK Message at once),
so the figure is the router's own work per request and what each listener adds to it: nothing logged (the
default: logger `router` at WARNING), the logger `router` at INFO (the router's logging listener sees every
event), OpenTelemetry (the real SDK: SimpleSpanProcessor into an InMemorySpanExporter, an InMemoryMetricReader),
the Prometheus collector, and both. The figure is the calling thread's CPU time per call (time.thread_time),
median over blocks of calls in shuffled interleaved rounds; an A/A pair of identical bare routers shows the noise
floor. A failover request (the primary's stub raises a 500 at once) is measured the same way. Figures, not
assertions.
"""

from __future__ import annotations

import gc
import logging
import random
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import anthropic
import httpx2

if not __package__:  # run as a script: make the `benchmarks` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import (
    MAX_TOKENS,
    MEMORY_URL,
    USER,
    ServerProcess,
    Settings,
    Table,
    memory_clients,
    p50,
    router_policy,
    standalone,
)
from router import Router
from router.events import Funnel

BARE, BARE2 = "bare router (nothing listens: the default)", "bare router, a second one (A/A control)"
INFO = "logger router at INFO (the router's logging listener)"
OTEL = "OpenTelemetry on (in-memory SDK exporter and reader)"
TRACES = "OpenTelemetry traces only (otel_metrics=False)"
METRICS = "OpenTelemetry metrics only (otel_traces=False)"
PROM = "Prometheus collector on"
BOTH = "OpenTelemetry and Prometheus on"
CONTENDERS = (BARE, BARE2, INFO, OTEL, TRACES, METRICS, PROM, BOTH)
OTEL_ON = {OTEL: (True, True), TRACES: (True, False), METRICS: (False, True), BOTH: (True, True)}
BLOCK = 20
COLUMNS = ["contender", "healthy p50 µs", "added µs", "failover p50 µs", "added µs"]


class _Contender:
    """A Router (stubbed providers) and what is switched on around its blocks of calls."""

    def __init__(self, name: str, message: anthropic.types.Message, fail: bool) -> None:
        self.name = name
        policy = router_policy(MEMORY_URL, {"primary": "claude-primary", "fallback": "claude-fallback"},
                               {"default": ["primary", "fallback"]}, failure_threshold=10_000)
        self.router = Router(policy, watch=False)
        for alias, target in self.router._current.targets.items():
            _stub(target.provider, message, fail and alias == "primary")
        self.exporter: Any = None
        self.done: Any = None
        if name in OTEL_ON:
            self.done = self._otel(name == BOTH, *OTEL_ON[name])
        elif name == PROM:
            from prometheus_client import CollectorRegistry

            from router.observe import instrument

            self.done = instrument(self.router, otel=False, prometheus_registry=CollectorRegistry())

    def _otel(self, prometheus: bool, traces: bool, metrics: bool) -> Any:
        from opentelemetry.sdk.metrics import MeterProvider
        from opentelemetry.sdk.metrics.export import InMemoryMetricReader
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import SimpleSpanProcessor
        from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
        from prometheus_client import CollectorRegistry

        from router.observe import instrument

        self.exporter = InMemorySpanExporter()
        tracer_provider = TracerProvider()
        tracer_provider.add_span_processor(SimpleSpanProcessor(self.exporter))
        meters = MeterProvider(metric_readers=[InMemoryMetricReader()])
        return instrument(self.router, tracer_provider=tracer_provider, meter_provider=meters,
                          prometheus_registry=CollectorRegistry() if prometheus else None, otel_traces=traces,
                          otel_metrics=metrics)

    def enter(self) -> None:
        logging.getLogger("router").setLevel(logging.INFO if self.name == INFO else logging.WARNING)

    def leave(self) -> None:
        if self.exporter is not None:
            self.exporter.clear()  # spans kept in memory, dropped between blocks (outside the timing)

    def call(self) -> object:
        return self.router.complete(messages=USER, max_tokens=MAX_TOKENS)

    def close(self) -> None:
        if self.done is not None:
            self.done.close()
        self.router.close()


def _stub(provider: Any, message: anthropic.types.Message, fail: bool) -> None:
    """Benchmark-only: the provider answers at once, with `message` or a classified 500."""
    request = httpx2.Request("POST", f"{MEMORY_URL}/v1/messages")
    error = anthropic.InternalServerError(
        "boom", response=httpx2.Response(500, request=request, headers={"request-id": "req_bench_fail"}),
        body={"type": "error", "error": {"type": "api_error", "message": "boom"}})

    def call(params: object, timeout: float) -> anthropic.types.Message:
        if fail:
            raise error
        return message

    provider.call = call


def blocks(contenders: dict[str, _Contender], rounds: int, size: int) -> dict[str, list[float]]:
    """CPU seconds per call, one figure per block of `size` calls, the contenders in a shuffled order each round."""
    out: dict[str, list[float]] = {name: [] for name in contenders}
    rng = random.Random(15)
    cpu = time.thread_time
    order = list(contenders)
    for _ in range(rounds):
        rng.shuffle(order)
        for name in order:
            c = contenders[name]
            c.enter()
            gc.collect()
            t0 = cpu()
            for _ in range(size):
                c.call()
            out[name].append((cpu() - t0) / size)
            c.leave()
    return out


def measure(calls: int, fail: bool, message: anthropic.types.Message) -> dict[str, float]:
    """Median CPU seconds per call of each contender."""
    contenders = {name: _Contender(name, message, fail) for name in CONTENDERS}
    level = logging.getLogger("router").level
    try:
        for c in contenders.values():
            c.enter()
            for _ in range(BLOCK * 2):
                c.call()
            c.leave()
        samples = blocks(contenders, max(1, calls // BLOCK), BLOCK)
    finally:
        logging.getLogger("router").setLevel(level)
        for c in contenders.values():
            c.close()
    return {name: p50(values) for name, values in samples.items()}


def listening_reads(message: anthropic.types.Message) -> tuple[float, float]:
    """(Funnel.listening reads per healthy request, ns per read with nothing listening): what the disabled path
    pays for noticing that nobody listens (benchmark-only: the property is wrapped to count, then restored)."""
    c = _Contender(BARE, message, False)
    original: property = Funnel.__dict__["listening"]
    reads = 0

    def counting(self: Funnel) -> bool:
        nonlocal reads
        reads += 1
        assert original.fget is not None
        return bool(original.fget(self))

    Funnel.listening = property(counting)  # type: ignore[method-assign,assignment]
    try:
        c.enter()
        for _ in range(100):
            c.call()
    finally:
        Funnel.listening = original  # type: ignore[method-assign,assignment]
        c.close()
    funnel = Funnel(time.monotonic)
    n = 200_000
    t0 = time.perf_counter()
    for _ in range(n):
        funnel.listening  # noqa: B018
    return reads / 100, (time.perf_counter() - t0) / n * 1e9


def sdk_floor(n: int) -> float:
    """Seconds the OpenTelemetry SDK alone takes for what one healthy request makes: two spans (the request's,
    the attempt's, with as many attributes) and four histogram records, no router involved."""
    from opentelemetry.sdk.metrics import MeterProvider
    from opentelemetry.sdk.metrics.export import InMemoryMetricReader
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import SimpleSpanProcessor
    from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
    from opentelemetry.trace import SpanKind

    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracer = provider.get_tracer("floor")
    meter = MeterProvider(metric_readers=[InMemoryMetricReader()]).get_meter("floor")
    histograms = [meter.create_histogram(f"h{i}") for i in range(4)]
    genai: dict[str, Any] = {"gen_ai.operation.name": "chat", "gen_ai.provider.name": "anthropic",
                             "gen_ai.request.model": "m", "router.route": "default", "router.model_alias": "primary",
                             "router.probe": False}
    cpu = time.thread_time
    t0 = cpu()
    for _ in range(n):
        parent = tracer.start_span("router default", attributes={"router.route": "default", "router.stream": False})
        child = tracer.start_span("chat m", kind=SpanKind.CLIENT, attributes=genai)
        child.set_attributes({"router.outcome": "success", "gen_ai.response.id": "msg_1",
                              "gen_ai.usage.input_tokens": 5, "gen_ai.usage.output_tokens": 3,
                              "http.response.status_code": 200})
        child.end()
        parent.set_attributes({"router.outcome": "served", "router.attempts": 1})
        parent.end()
        for h in histograms:
            h.record(0.1, {"gen_ai.operation.name": "chat", "gen_ai.provider.name": "anthropic"})
    took = (cpu() - t0) / n
    exporter.clear()
    return took


def _message() -> anthropic.types.Message:
    client, _ = memory_clients()
    try:  # a real SDK response, `_request_id` and all
        return client.messages.create(model="claude-primary", messages=USER, max_tokens=MAX_TOKENS)
    finally:
        client.close()


def run(settings: Settings, server: ServerProcess | None = None) -> list[Table]:
    calls = settings.calls_or(3000, 1000)
    message = _message()
    healthy = measure(calls, False, message)
    failover = measure(calls, True, message)
    table = Table(f"Observability: per-call cost in memory, enabled vs disabled ({calls} calls each, blocks of "
                  f"{BLOCK}, interleaved)", COLUMNS)
    base_h, base_f = healthy[BARE], failover[BARE]
    us: Callable[[float], str] = lambda s: f"{s * 1e6:,.1f}"  # noqa: E731
    for name in CONTENDERS:
        table.rows.append([name, us(healthy[name]), "-" if name == BARE else f"{(healthy[name] - base_h) * 1e6:+.1f}",
                           us(failover[name]), "-" if name == BARE else f"{(failover[name] - base_f) * 1e6:+.1f}"])
    reads, ns = listening_reads(message)
    floor = sdk_floor(max(200, calls))
    table.notes += [
        "Providers stubbed (benchmark-only): a healthy request is one attempt; a failover request is a 500 from "
        "the primary (classified as the SDK's InternalServerError) then the fallback. The primary's breaker never "
        "opens (failure_threshold 10,000: a run never reaches it), so every failover request sends both attempts.",
        f"Disabled path: the engine reads Funnel.listening {reads:.0f} times per healthy request, {ns:.0f} ns each "
        f"(a bool and one logging.Logger.isEnabledFor(INFO)): {reads * ns / 1000:.2f} µs per request.",
        "The A/A row is the noise floor: an 'added' figure within it is nothing measurable.",
        f"The OpenTelemetry SDK alone, for what one healthy request makes (2 spans through SimpleSpanProcessor into "
        f"an InMemorySpanExporter, 4 histogram records): {floor * 1e6:.1f} µs. Counters are summed by the listener "
        "and observed at collection, so they cost no SDK work per request.",
    ]
    table.summary.append(["Observability: added per healthy request, OpenTelemetry + Prometheus on / nothing "
                          "listening (µs)", f"{(healthy[BOTH] - base_h) * 1e6:+.1f} / "
                          f"{(healthy[BARE2] - base_h) * 1e6:+.1f} (A/A)", "-", "< 30 / 0"])
    return [table]


if __name__ == "__main__":
    standalone(run)
