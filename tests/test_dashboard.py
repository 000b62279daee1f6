"""The Grafana dashboard (dashboards/grafana.json) queries only metrics the Prometheus collector really exports:
a real collector is scraped after traffic that makes every metric have samples, and the names are compared."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry, generate_latest
from prometheus_client.parser import text_string_to_metric_families

from router import AllModelsFailed
from router.observe import instrument
from router.testing import FakeServer, Fault

from .conftest import USER, Clock

DASHBOARD = Path(__file__).resolve().parents[1] / "dashboards" / "grafana.json"
METRIC = re.compile(r"\b(failover_router_[a-zA-Z0-9_]+)\b")


def exported_names(fake_server: FakeServer, make_router, clock: Clock) -> set[str]:
    fake_server.plan("claude-primary", [Fault.status(500)] * 4 + [Fault.ok()])
    r = make_router(attempts=1, threshold=3, reset="10s")
    registry = CollectorRegistry()
    done = instrument(r, otel=False, prometheus_registry=registry, queue_counts=lambda: {"pending": 1})
    try:
        for _ in range(4):
            r.complete(messages=USER, max_tokens=16)
        r.force_open("fallback")
        clock.advance(10)
        with pytest.raises(AllModelsFailed):  # a failed probe, and every other model is held open
            r.complete(messages=USER, max_tokens=16)
        clock.advance(20)
        r.force_close("fallback")
        r.complete(messages=USER, max_tokens=16)
        text = generate_latest(registry).decode()
    finally:
        done.close()
    return {s.name for family in text_string_to_metric_families(text) for s in family.samples}


def queries(dashboard: dict[str, Any]) -> list[tuple[str, str]]:
    """(panel title, query) of every panel target and template variable."""
    out = [(panel["title"], target["expr"]) for panel in dashboard["panels"] for target in panel["targets"]]
    for variable in dashboard["templating"]["list"]:
        query = variable["query"]
        out.append((f"variable {variable['name']}", query["query"] if isinstance(query, dict) else query))
    return out


def test_every_panel_queries_metrics_the_collector_exports(fake_server: FakeServer, make_router, clock: Clock) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exported = exported_names(fake_server, make_router, clock)
    assert {"failover_router_breaker_state", "failover_router_fallbacks_total", "failover_router_attempts_total",
            "failover_router_probes_total", "failover_router_queue_depth",
            "failover_router_requests_total"} <= exported
    found = queries(dashboard)
    assert len(found) >= 12
    used: set[str] = set()
    for title, query in found:
        names = set(METRIC.findall(query))
        assert names, f"panel {title!r} queries no failover_router_ metric: {query}"
        assert names <= exported, f"panel {title!r} queries {sorted(names - exported)}, not exported"
        used |= names
    # the pictures the issue asks for are there
    titles = " | ".join(p["title"] for p in dashboard["panels"]).lower()
    for picture in ("breaker state over time", "fallbacks per minute", "attempts by outcome", "probes", "queue"):
        assert picture in titles
    assert {"failover_router_breaker_state", "failover_router_fallbacks_total",
            "failover_router_attempts_total"} <= used


def test_the_dashboard_is_importable_grafana_json() -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    ids = [p["id"] for p in dashboard["panels"]]
    assert len(ids) == len(set(ids))
    for panel in dashboard["panels"]:
        assert panel["datasource"]["uid"] == "${DS_PROMETHEUS}" and panel["targets"]
        grid = panel["gridPos"]
        assert grid["x"] >= 0 and grid["x"] + grid["w"] <= 24
    assert dashboard["__inputs"][0]["name"] == "DS_PROMETHEUS"
