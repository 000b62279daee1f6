"""Prometheus: the collector's exposition, scraped over real HTTP after real requests and parsed with
prometheus_client's own parser."""

from __future__ import annotations

import urllib.request
from collections.abc import Iterator
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from prometheus_client.parser import text_string_to_metric_families

import router
from router import Kind
from router.observe import Instrumentation, instrument
from router.redis_store import RedisStore
from router.testing import FakeServer, Fault

from .conftest import KEYS, USER, Clock

Samples = dict[tuple[str, tuple[tuple[str, str], ...]], float]


def scrape(port: int) -> tuple[str, Samples]:
    """The exposition at 127.0.0.1:`port`/metrics, and {(sample name, sorted labels): value}."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=5) as reply:
        text = reply.read().decode()
    samples: Samples = {}
    for family in text_string_to_metric_families(text):
        for s in family.samples:
            samples[s.name, tuple(sorted(s.labels.items()))] = s.value
    return text, samples


def pick(samples: Samples, name: str, **labels: str) -> dict[tuple[tuple[str, str], ...], float]:
    return {k: v for (n, k), v in samples.items()
            if n == name and all(dict(k).get(key) == value for key, value in labels.items())}


def value(samples: Samples, name: str, **labels: str) -> float:
    return sum(pick(samples, name, **labels).values())


@pytest.fixture
def served() -> Iterator[list[Instrumentation]]:
    made: list[Instrumentation] = []
    yield made
    for done in made:
        done.close()


def serve(r: router.Router, made: list[Instrumentation], **kw: Any) -> Instrumentation:
    done = instrument(r, otel=False, prometheus_registry=CollectorRegistry(), prometheus_port=0,
                      prometheus_addr="127.0.0.1", **kw)
    made.append(done)
    assert done.port
    return done


def test_a_scripted_outage_scraped_over_http_matches_the_fake_server_and_the_routing_records(
    fake_server: FakeServer, make_router, clock: Clock, served: list[Instrumentation]
) -> None:
    fake_server.plan("claude-primary", [Fault.status(500)] * 4 + [Fault.ok()])
    r = make_router(attempts=1, threshold=3, reset="10s")
    done = serve(r, served)
    attempts = []
    for _ in range(5):
        attempts += r.complete(messages=USER, max_tokens=16).routing.attempts
    _, during = scrape(done.port)  # mid-outage: open
    assert value(during, "failover_router_breaker_state", model="primary") == 2
    assert value(during, "failover_router_breaker_state", model="fallback") == 0
    assert value(during, "failover_router_breaker_failures", model="primary") == 3
    clock.advance(10)
    attempts += r.complete(messages=USER, max_tokens=16).routing.attempts  # the probe: a 500 again, reopens
    clock.advance(20)
    attempts += r.complete(messages=USER, max_tokens=16).routing.attempts  # the next probe closes it
    _, after = scrape(done.port)
    assert value(after, "failover_router_breaker_state", model="primary") == 0
    primary_sent = [a for a in attempts if a.model == "primary" and a.sent]
    assert fake_server.count("claude-primary") == len(primary_sent) == 5
    assert fake_server.count("claude-fallback") == 6
    assert value(after, "failover_router_attempts_total", model="primary", outcome="server_failure") == 4
    assert value(after, "failover_router_attempts_total", model="primary", outcome="success") == 1
    assert value(after, "failover_router_attempts_total", model="primary", outcome="breaker_open") == sum(
        a.outcome is Kind.BREAKER_OPEN for a in attempts) == 2
    assert value(after, "failover_router_attempts_total", model="fallback", outcome="success") == 6
    assert value(after, "failover_router_fallbacks_total", from_model="primary", to_model="fallback",
                 reason="server_failure") == 4
    assert value(after, "failover_router_fallbacks_total") == 4  # a model passed over is not a fallback
    moves = {(dict(k)["from_state"], dict(k)["to_state"]): v
             for k, v in pick(after, "failover_router_breaker_transitions_total", model="primary").items()}
    assert moves == {("closed", "open"): 1, ("open", "half_open"): 2, ("half_open", "open"): 1,
                     ("half_open", "closed"): 1}
    assert value(after, "failover_router_probes_total", model="primary", outcome="server_failure") == 1
    assert value(after, "failover_router_probes_total", model="primary", outcome="success") == 1
    assert value(after, "failover_router_requests_total", route="default", outcome="served") == 7


def test_failed_requests_and_queue_depth(fake_server: FakeServer, make_router, served: list[Instrumentation]) -> None:
    fake_server.plan("claude-primary", default=Fault.status(529))
    fake_server.plan("claude-fallback", default=Fault.status(500))
    r = make_router(attempts=1, threshold=5)
    counts = {"pending": 3, "done": 7}
    done = serve(r, served, queue_counts=lambda: counts)
    with pytest.raises(router.AllModelsFailed) as caught:
        r.complete(messages=USER, max_tokens=16)
    _, samples = scrape(done.port)
    assert value(samples, "failover_router_requests_total", outcome="failed") == 1
    assert value(samples, "failover_router_attempts_total", model="primary", outcome="server_failure") == 1
    assert [a.outcome for a in caught.value.attempts] == [Kind.SERVER_FAILURE] * 2
    assert pick(samples, "failover_router_queue_depth") == {(("state", "pending"),): 3, (("state", "done"),): 7}
    counts["pending"] = 0
    _, samples = scrape(done.port)
    assert value(samples, "failover_router_queue_depth", state="pending") == 0


def test_without_a_queue_there_is_no_queue_depth_sample(make_router, served: list[Instrumentation]) -> None:
    r = make_router()
    done = serve(r, served)
    text, samples = scrape(done.port)
    assert "# TYPE failover_router_queue_depth gauge" in text
    assert not pick(samples, "failover_router_queue_depth")


def test_a_failing_queue_count_or_store_still_scrapes_the_rest(make_router, served: list[Instrumentation],
                                                               caplog: pytest.LogCaptureFixture) -> None:
    def broken() -> dict[str, int]:
        raise ConnectionError("queue store down")

    r = make_router()
    done = serve(r, served, queue_counts=broken)
    r.complete(messages=USER, max_tokens=16)
    _, samples = scrape(done.port)
    assert value(samples, "failover_router_requests_total", outcome="served") == 1
    assert value(samples, "failover_router_breaker_state", model="primary") == 0
    assert not pick(samples, "failover_router_queue_depth")
    assert any("queue_counts() failed" in rec.getMessage() for rec in caplog.records)


def test_breaker_state_is_the_fleets_with_a_redis_store(
    fake_server: FakeServer, make_router, redis_factory, clock: Clock, served: list[Instrumentation]
) -> None:
    url = redis_factory().url
    fake_server.plan("claude-primary", [Fault.status(500)] * 3)
    stores = [RedisStore(url, prefix="obs", now=clock), RedisStore(url, prefix="obs", now=clock)]
    a = make_router(attempts=1, threshold=3, store=stores[0])
    b = make_router(attempts=1, threshold=3, store=stores[1])
    seen_by_b = serve(b, served)
    for _ in range(3):
        a.complete(messages=USER, max_tokens=16)  # only router A sees the outage
    _, samples = scrape(seen_by_b.port)
    assert value(samples, "failover_router_breaker_state", model="primary") == 2
    assert value(samples, "failover_router_attempts_total") == 0  # B's own counters: B sent nothing
    assert fake_server.count("claude-primary") == 3
    for store in stores:
        store.close()


def test_no_secret_reaches_the_exposition(fake_server: FakeServer, make_router, served: list[Instrumentation]) -> None:
    fake_server.plan("claude-primary", [Fault.status(401), Fault.status(500), Fault.status(429, retry_after=1)])
    r = make_router(models=("primary", "fallback", "third"), attempts=1)
    done = serve(r, served)
    for _ in range(3):
        r.complete(messages=USER, max_tokens=16)
    text, samples = scrape(done.port)
    assert 'model="primary"' in text
    for secret in KEYS.values():
        assert secret not in text and secret[-12:] not in text
    assert fake_server.url not in text and "claude-primary" not in text  # labels are aliases, not model ids
    labels = {v for _, k in samples for _, v in k}
    assert labels <= {"default", "primary", "fallback", "third", "closed", "open", "half_open", "served", "failed",
                      *(kind.value for kind in Kind)}


def test_close_stops_the_server_and_the_listener(make_router) -> None:
    r = make_router()
    registry = CollectorRegistry()
    done = instrument(r, otel=False, prometheus_registry=registry, prometheus_port=0, prometheus_addr="127.0.0.1")
    port = done.port
    assert port is not None
    scrape(port)
    done.close()
    with pytest.raises(OSError):
        scrape(port)
    assert list(registry.collect()) == []
    instrument(r, otel=False, prometheus_registry=registry).close()  # registering again works: it was unregistered


def test_without_the_extra_the_error_says_what_to_install(make_router: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    import sys

    from router.observe import instrument

    monkeypatch.setitem(sys.modules, "prometheus_client", None)  # as if it were not installed
    r = make_router()
    with pytest.raises(ImportError, match=r"pip install 'failover-router\[prometheus\]'"):
        instrument(r, otel=False, prometheus_port=0)
