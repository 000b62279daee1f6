"""See a Router working: `instrument(router, ...)` turns on OpenTelemetry and Prometheus; logging is always on.

The router logs through `router.observe.logs` by default. OpenTelemetry (`failover-router[otel]`) and
prometheus_client (`failover-router[prometheus]`) are imported only when `instrument()` turns them on.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from .otel import OpenTelemetryListener
    from .prometheus import PrometheusCollector, QueueCounts

__all__ = ["Instrumentation", "instrument"]


@dataclass(slots=True)
class Instrumentation:
    """What `instrument()` turned on; `close()` (or `uninstrument()`) turns it all off again."""

    router: Any
    otel: OpenTelemetryListener | None = None
    prometheus: PrometheusCollector | None = None
    registry: Any = None
    server: Any = None  # the HTTP server of `prometheus_port`
    port: int | None = None  # the port it listens on (useful with prometheus_port=0)

    def close(self) -> None:
        if self.otel is not None:
            self.router.remove_listener(self.otel)
            self.otel.close()
            self.otel = None
        if self.prometheus is not None:
            self.prometheus.close()
            if self.registry is not None:
                self.registry.unregister(self.prometheus)
            self.prometheus = None
        if self.server is not None:
            self.server.shutdown()
            self.server.server_close()
            self.server = None

    uninstrument = close

    def __enter__(self) -> Instrumentation:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def instrument(
    router: Any, *, otel: bool = True, tracer_provider: Any = None, meter_provider: Any = None,
    sdk_spans: bool | None = None, prometheus_registry: Any = None, prometheus_port: int | None = None,
    prometheus_addr: str = "0.0.0.0", queue_counts: QueueCounts | None = None, otel_traces: bool = True,
    otel_metrics: bool = True,
) -> Instrumentation:
    """Turn on OpenTelemetry (`otel=True`: spans and metrics to the given or global providers; `otel_traces` or
    `otel_metrics` False leaves one out) and, when `prometheus_registry` or `prometheus_port` is given, a Prometheus
    collector registered on that registry (default: prometheus_client's global REGISTRY) and served on
    `prometheus_port` (0: a free port) if given. `close()` on what it returns undoes it all."""
    done = Instrumentation(router)
    try:
        if otel:
            from .otel import OpenTelemetryListener

            done.otel = OpenTelemetryListener(router, tracer_provider=tracer_provider, meter_provider=meter_provider,
                                              sdk_spans=sdk_spans, traces=otel_traces, metrics=otel_metrics)
            router.add_listener(done.otel)
        if prometheus_registry is not None or prometheus_port is not None:
            _prometheus(done, router, prometheus_registry, prometheus_port, prometheus_addr, queue_counts)
    except BaseException:
        done.close()
        raise
    return done


def _prometheus(done: Instrumentation, router: Any, registry: Any, port: int | None, addr: str,
                queue_counts: QueueCounts | None) -> None:
    try:
        import prometheus_client
    except ImportError:
        raise ImportError("Prometheus metrics need prometheus-client: pip install 'failover-router[prometheus]'"
                          ) from None

    from .prometheus import PrometheusCollector

    done.registry = registry if registry is not None else prometheus_client.REGISTRY
    queue = getattr(router, "queue", None)
    if queue_counts is None and queue is not None:  # the router's own durable queue, when it has one
        queue_counts = queue.counts
    done.prometheus = PrometheusCollector(router, queue_counts=queue_counts)
    done.registry.register(done.prometheus)
    if port is not None:
        server, _thread = prometheus_client.start_http_server(port, addr=addr, registry=done.registry)
        done.server = server
        done.port = server.server_port
