"""OpenTelemetry: spans and metrics of real requests (real SDK over HTTP to the fake server), read back with the
OpenTelemetry SDK's in-memory span exporter and metric reader."""

from __future__ import annotations

import asyncio
import json
import os
import random
import subprocess
import sys
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from opentelemetry.sdk.metrics import MeterProvider
from opentelemetry.sdk.metrics.export import InMemoryMetricReader
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind, StatusCode

import router
from router.observe import instrument
from router.testing import FakeServer, Fault

from .conftest import KEYS, USER, Clock

ROOT = Path(__file__).resolve().parents[1]


class Telemetry:
    """A tracer provider and a meter provider that keep everything in memory."""

    def __init__(self) -> None:
        self.spans = InMemorySpanExporter()
        self.tracer_provider = TracerProvider()
        self.tracer_provider.add_span_processor(SimpleSpanProcessor(self.spans))
        self.reader = InMemoryMetricReader()
        self.meter_provider = MeterProvider(metric_readers=[self.reader])

    def instrument(self, r: router.Router) -> Any:
        return instrument(r, tracer_provider=self.tracer_provider, meter_provider=self.meter_provider)

    def finished(self) -> list[ReadableSpan]:
        return list(self.spans.get_finished_spans())

    def points(self) -> dict[str, list[Any]]:
        """metric name -> its data points."""
        out: dict[str, list[Any]] = {}
        data = self.reader.get_metrics_data()
        for resource in data.resource_metrics if data else ():
            for scope in resource.scope_metrics:
                for metric in scope.metrics:
                    out.setdefault(metric.name, []).extend(metric.data.data_points)
        return out


def cached_reply(model: str, msg_id: str = "msg_cached_1") -> Fault:
    """A real Messages API reply whose usage has cache reads and writes (the fake server's own says 0)."""
    body = {"id": msg_id, "type": "message", "role": "assistant", "model": model,
            "content": [{"type": "text", "text": "Hello"}], "stop_reason": "end_turn", "stop_sequence": None,
            "usage": {"input_tokens": 10, "output_tokens": 3, "cache_read_input_tokens": 5,
                      "cache_creation_input_tokens": 7}}
    return Fault.raw(200, json.dumps(body), {"content-type": "application/json"})


def test_a_failover_is_one_request_span_with_one_client_span_per_attempt_sent(
    fake_server: FakeServer, make_router
) -> None:
    fake_server.plan("claude-primary", default=Fault.status(500))
    fake_server.plan("claude-fallback", [cached_reply("claude-fallback-20250101")])
    r = make_router(attempts=3, threshold=3)
    t = Telemetry()
    t.instrument(r)
    msg = r.complete(messages=USER, max_tokens=32)
    spans = t.finished()
    parents = [s for s in spans if s.kind is SpanKind.INTERNAL]
    children = [s for s in spans if s.kind is SpanKind.CLIENT]
    assert len(parents) == 1 and len(children) == 4 == len(msg.routing.attempts)
    parent = parents[0]
    assert parent.name == "router default"
    assert parent.attributes["router.outcome"] == "served"
    assert parent.attributes["router.model_alias"] == "fallback"
    assert parent.status.status_code is StatusCode.UNSET
    assert [e.name for e in parent.events] == ["router.failover"]
    assert dict(parent.events[0].attributes) == {"router.from_model": "primary", "router.to_model": "fallback",
                                                 "router.reason": "server_failure"}
    for child in children:
        assert child.parent is not None and child.parent.span_id == parent.context.span_id
        assert child.context.trace_id == parent.context.trace_id
    failed, served = children[:3], children[3]
    for span, attempt in zip(failed, msg.routing.attempts[:3], strict=True):
        assert span.name == "chat claude-primary"
        a = span.attributes
        assert a["gen_ai.operation.name"] == "chat" and a["gen_ai.provider.name"] == "anthropic"
        assert a["gen_ai.request.model"] == "claude-primary" and a["router.model_alias"] == "primary"
        assert a["error.type"] == "api_error" and a["http.response.status_code"] == 500
        assert a["router.outcome"] == "server_failure" and a["router.probe"] is False
        assert a["router.request_id"] == attempt.request_id and attempt.request_id
        assert span.status.status_code is StatusCode.ERROR
        assert "gen_ai.response.id" not in a
    a = served.attributes
    assert served.name == "chat claude-fallback"
    assert served.status.status_code is StatusCode.UNSET and "error.type" not in a
    assert a["gen_ai.response.id"] == msg.id == "msg_cached_1"
    assert a["gen_ai.response.model"] == msg.model == "claude-fallback-20250101"
    assert tuple(a["gen_ai.response.finish_reasons"]) == ("end_turn",)
    assert a["gen_ai.usage.input_tokens"] == 10 + 5 + 7  # input + cache reads + cache writes
    assert a["gen_ai.usage.output_tokens"] == 3
    assert a["gen_ai.usage.cache_read.input_tokens"] == 5
    assert a["gen_ai.usage.cache_creation.input_tokens"] == 7
    assert a["router.request_id"] == msg.routing.attempts[3].request_id


def test_a_model_passed_over_is_an_event_not_a_span_and_a_failed_request_is_an_error(
    fake_server: FakeServer, make_router
) -> None:
    fake_server.plan("claude-primary", default=Fault.status(500))
    fake_server.plan("claude-fallback", default=Fault.status(529))
    r = make_router(attempts=3, threshold=3)
    t = Telemetry()
    t.instrument(r)
    with pytest.raises(router.AllModelsFailed):
        r.complete(messages=USER, max_tokens=32)
    t.spans.clear()
    with pytest.raises(router.AllModelsFailed) as caught:  # both breakers open now: nothing is sent
        r.complete(messages=USER, max_tokens=32)
    spans = t.finished()
    assert [s.kind for s in spans] == [SpanKind.INTERNAL]
    (parent,) = spans
    assert parent.status.status_code is StatusCode.ERROR and parent.attributes["error.type"] == "AllModelsFailed"
    skipped = [dict(e.attributes) for e in parent.events if e.name == "router.model_skipped"]
    assert skipped == [{"router.model_alias": a.model, "router.outcome": "breaker_open"}
                       for a in caught.value.attempts]
    assert fake_server.count("claude-fallback") == 3


def _attempt_counts(points: list[Any]) -> Counter[tuple[str, str]]:
    out: Counter[tuple[str, str]] = Counter()
    for p in points:  # one point per attribute set (route, alias, outcome, probe)
        out[p.attributes["router.model_alias"], p.attributes["router.outcome"]] += p.value
    return out


def _plan_chaos(srv: FakeServer, rng: random.Random, models: tuple[str, ...], n: int) -> None:
    choices = [Fault.status(500), Fault.status(529), Fault.status(429, retry_after=1), Fault.ok(), Fault.ok()]
    for model in models:
        srv.plan(f"claude-{model}", [rng.choice(choices) for _ in range(n)], default=Fault.ok())


def test_metrics_match_the_attempts_one_for_one_over_a_seeded_chaos_run(
    fake_server: FakeServer, make_router, clock: Clock
) -> None:
    rng = random.Random(1515)
    models = ("primary", "fallback", "third")
    _plan_chaos(fake_server, rng, models, 200)
    r = make_router(models=models, attempts=2, threshold=3, reset="2s", rng=random.Random(7))
    t = Telemetry()
    t.instrument(r)
    attempts: list[Any] = []

    def record(call: Any) -> None:
        try:
            attempts.extend(call().routing.attempts)
        except router.AllModelsFailed as exc:
            attempts.extend(exc.attempts)

    async def async_batch() -> None:
        for _ in range(20):
            try:
                attempts.extend((await r.acomplete(messages=USER, max_tokens=16)).routing.attempts)
            except router.AllModelsFailed as exc:
                attempts.extend(exc.attempts)
            clock.advance(rng.uniform(0, 1.5))

    for _ in range(4):
        for _ in range(25):
            record(lambda: r.complete(messages=USER, max_tokens=16))
            clock.advance(rng.uniform(0, 1.5))
        asyncio.run(async_batch())
    n = 4 * (25 + 20)
    points = t.points()
    expected = Counter((a.model, a.outcome.value) for a in attempts)
    assert _attempt_counts(points["router.attempts"]) == expected
    assert {o for _, o in expected} >= {"success", "server_failure", "rate_limited", "breaker_open"}
    sent = [a for a in attempts if a.sent]
    duration = points["gen_ai.client.operation.duration"]
    assert sum(p.count for p in duration) == len(sent)
    by_error = Counter(p.attributes.get("error.type") for p in duration for _ in range(p.count))
    assert by_error[None] == sum(a.outcome.value == "success" for a in sent)
    assert sum(fake_server.count(f"claude-{m}") for m in models) == len(sent)
    requests = points["router.request.duration"]
    assert sum(p.count for p in requests) == n
    tokens = points["gen_ai.client.token.usage"]
    assert sum(p.count for p in tokens) == 2 * by_error[None]  # input and output of every reply
    spans = t.finished()
    assert sum(s.kind is SpanKind.CLIENT for s in spans) == len(sent)
    assert sum(s.kind is SpanKind.INTERNAL for s in spans) == n


def test_breaker_state_and_transitions_are_metrics(fake_server: FakeServer, make_router, clock: Clock) -> None:
    fake_server.plan("claude-primary", [Fault.status(500)] * 3)
    r = make_router(attempts=1, threshold=3, reset="10s")
    t = Telemetry()
    t.instrument(r)
    for _ in range(3):
        r.complete(messages=USER, max_tokens=16)
    states = {p.attributes["router.model_alias"]: p.value for p in t.points()["router.breaker.state"]}
    assert states == {"primary": 2, "fallback": 0}
    clock.advance(10)
    r.complete(messages=USER, max_tokens=16)  # the probe closes it
    points = t.points()
    states = {p.attributes["router.model_alias"]: p.value for p in points["router.breaker.state"]}
    assert states == {"primary": 0, "fallback": 0}
    moves = {(p.attributes["router.breaker.old_state"], p.attributes["router.breaker.state"]): p.value
             for p in points["router.breaker.transitions"]}
    assert moves == {("closed", "open"): 1, ("open", "half_open"): 1, ("half_open", "closed"): 1}
    fallbacks = {(p.attributes["router.from_model"], p.attributes["router.to_model"], p.attributes["router.reason"]):
                 p.value for p in points["router.fallbacks"]}
    assert fallbacks == {("primary", "fallback", "server_failure"): 3}
    probe = [s for s in t.finished() if s.kind is SpanKind.CLIENT and s.attributes["router.probe"]]
    assert len(probe) == 1 and probe[0].attributes["router.breaker.state"] == "half_open"


def test_opting_in_to_the_latest_conventions_switches_the_metric_names(
    fake_server: FakeServer, make_router, monkeypatch
) -> None:
    monkeypatch.setenv("OTEL_SEMCONV_STABILITY_OPT_IN", "http, gen_ai_latest_experimental")
    fake_server.plan("claude-primary", [Fault.status(500), cached_reply("claude-primary")])
    r = make_router(attempts=2)
    t = Telemetry()
    done = t.instrument(r)
    assert done.otel.names.latest
    r.complete(messages=USER, max_tokens=16)
    points = t.points()
    assert "gen_ai.client.operation.duration" not in points and "gen_ai.client.token.usage" not in points
    assert sum(p.count for p in points["gen_ai.client.inference.duration"]) == 2
    value = {name: sum(p.value for p in points[name]) for name in points if ".usage." in name}
    assert value == {"gen_ai.client.inference.usage.input_tokens": 22,
                     "gen_ai.client.inference.usage.output_tokens": 3,
                     "gen_ai.client.inference.usage.cache_read.input_tokens": 5,
                     "gen_ai.client.inference.usage.cache_write.input_tokens": 7}
    assert {p.attributes["gen_ai.token.modality"] for p in points["gen_ai.client.inference.usage.input_tokens"]} == {
        "unknown"}
    served = [s for s in t.finished() if s.kind is SpanKind.CLIENT][-1]
    assert served.attributes["gen_ai.usage.cache_write.input_tokens"] == 7
    assert "gen_ai.usage.cache_creation.input_tokens" not in served.attributes


def test_a_stream_that_resumes_says_where_on_the_attempt_and_the_request(fake_server: FakeServer, make_router) -> None:
    fake_server.plan("claude-primary", [Fault.stream_cut(after=2, deltas=["Hel", "lo ", "wor", "ld"])])
    fake_server.plan("claude-fallback", [Fault.ok(deltas=["Hel", "lo ", "wor", "ld"])])
    r = make_router(attempts=1)
    t = Telemetry()
    t.instrument(r)
    with r.stream(messages=USER, max_tokens=32) as s:
        text = "".join(s.text_stream)
    assert text == "Hello world"
    spans = t.finished()
    (parent,) = [s for s in spans if s.kind is SpanKind.INTERNAL]
    children = [s for s in spans if s.kind is SpanKind.CLIENT]
    assert parent.attributes["router.stream"] is True and len(children) == 2
    resumed = [e for e in parent.events if e.name == "router.stream.resumed"]
    assert len(resumed) == 1 and resumed[0].attributes["router.stream.resumed_at"] == 6
    assert children[1].attributes["router.stream.resumed_at"] == 6
    assert children[1].attributes["gen_ai.request.stream"] is True
    assert "router.stream.resumed_at" not in children[0].attributes


def test_no_secret_reaches_a_span_an_event_or_a_metric_label(fake_server: FakeServer, make_router) -> None:
    fake_server.plan("claude-primary", [Fault.status(500), Fault.status(401), Fault.status(529)] * 3)
    fake_server.plan("claude-fallback", [Fault.status(429, retry_after=1), Fault.status(500)] * 3)
    r = make_router(models=("primary", "fallback", "third"), attempts=2, threshold=2)
    t = Telemetry()
    t.instrument(r)
    for _ in range(6):
        r.complete(messages=USER, max_tokens=16)
    seen: list[str] = []
    for span in t.finished():
        seen.append(span.name)
        seen += [f"{k}={v}" for k, v in (span.attributes or {}).items()]
        for event in span.events:
            seen += [event.name] + [f"{k}={v}" for k, v in (event.attributes or {}).items()]
    for points in t.points().values():
        for p in points:
            seen += [f"{k}={v}" for k, v in p.attributes.items()]
    blob = "\n".join(seen)
    assert "router.model_alias=primary" in blob and "gen_ai.request.model=claude-third" in blob
    for secret in KEYS.values():
        assert secret not in blob and secret[-12:] not in blob
    assert fake_server.url not in blob and "127.0.0.1" not in blob


def test_uninstrument_removes_the_listener(fake_server: FakeServer, make_router) -> None:
    r = make_router()
    t = Telemetry()
    done = t.instrument(r)
    r.complete(messages=USER, max_tokens=16)
    done.close()
    r.complete(messages=USER, max_tokens=16)
    assert sum(s.kind is SpanKind.INTERNAL for s in t.finished()) == 1


SDK_SPANS_SCRIPT = """
import json, sys, textwrap
from opentelemetry import trace
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
import router
from router.observe import instrument
from router.testing import FakeServer, Fault

exporter = InMemorySpanExporter()
provider = TracerProvider()
provider.add_span_processor(SimpleSpanProcessor(exporter))
with FakeServer().start() as srv:
    srv.plan("claude-primary", [Fault.status(500)])
    policy = router.parse_policy(textwrap.dedent(sys.argv[1].replace("URL", srv.url)), env={"K": "sk-test"})
    with router.Router(policy, watch=False) as r:
        done = instrument(r)  # before the app registers its tracer provider: detected at the first attempt
        trace.set_tracer_provider(provider)
        msg = r.complete(messages=[{"role": "user", "content": "Hi"}], max_tokens=16)
        detected = done.otel.sdk_spans
        done.close()
spans = [{"name": s.name, "kind": s.kind.name, "id": s.context.span_id,
          "parent": s.parent.span_id if s.parent else None,
          "events": [[e.name, dict(e.attributes)] for e in s.events]} for s in exporter.get_finished_spans()]
print(json.dumps({"sdk_spans": detected, "spans": spans, "attempts": len(msg.routing.attempts)}))
"""


def test_with_the_sdks_own_tracing_on_attempt_spans_are_not_duplicated(tmp_path: Path) -> None:
    policy = """
        version: 1
        models:
          primary: {provider: anthropic, model: claude-primary, base_url: 'URL', api_key: '${K}'}
          fallback: {provider: anthropic, model: claude-fallback, base_url: 'URL', api_key: '${K}'}
        routes:
          default: [primary, fallback]
        defaults: {retry: {attempts: 1}}
    """
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    env.pop("ANTHROPIC_OPEN_TELEMETRY", None)
    out = subprocess.run([sys.executable, "-c", SDK_SPANS_SCRIPT, policy], capture_output=True, text=True, env=env,
                         cwd=tmp_path, timeout=120)
    assert out.returncode == 0, out.stderr
    result = json.loads(out.stdout.strip().splitlines()[-1])
    assert result["sdk_spans"] is True
    spans = result["spans"]
    (parent,) = [s for s in spans if s["name"] == "router default"]
    sdk = [s for s in spans if s["kind"] == "CLIENT"]
    assert len(sdk) == result["attempts"] == 2  # one span per attempt: the SDK's, none of ours
    assert {s["name"] for s in sdk} == {"anthropic.messages.create"}
    assert all(s["parent"] == parent["id"] for s in sdk)
    ours = [e for e in parent["events"] if e[0] == "router.attempt"]
    assert [(e[1]["router.model_alias"], e[1]["router.outcome"]) for e in ours] == [
        ("primary", "server_failure"), ("fallback", "success")]


def test_a_stream_the_caller_leaves_early_still_ends_its_spans(fake_server: FakeServer, make_router) -> None:
    fake_server.plan("claude-primary", [Fault.ok(deltas=["a", "b", "c", "d"])])
    r = make_router(attempts=1)
    t = Telemetry()
    t.instrument(r)
    with r.stream(messages=USER, max_tokens=32) as s:
        next(iter(s))  # the caller reads one event and goes away
    spans = t.finished()
    (parent,) = [s for s in spans if s.kind is SpanKind.INTERNAL]
    (child,) = [s for s in spans if s.kind is SpanKind.CLIENT]
    assert parent.attributes["error.type"] == "GeneratorExit" and parent.status.status_code is StatusCode.ERROR
    assert child.status.status_code is StatusCode.ERROR and child.end_time is not None


async def test_async_streams_and_requests_make_the_same_spans(fake_server: FakeServer, make_router) -> None:
    fake_server.plan("claude-primary", [Fault.status(529), Fault.stream_error(after=0)])
    r = make_router(attempts=1, threshold=5)
    t = Telemetry()
    t.instrument(r)
    await r.acomplete(messages=USER, max_tokens=16)
    async with r.astream(messages=USER, max_tokens=16) as s:
        async for _ in s:
            pass
    spans = t.finished()
    parents = [s for s in spans if s.kind is SpanKind.INTERNAL]
    assert [p.attributes["router.stream"] for p in parents] == [False, True]
    for p in parents:
        kids = [s for s in spans if s.parent is not None and s.parent.span_id == p.context.span_id]
        assert [(k.attributes["router.model_alias"], k.status.status_code) for k in kids] == [
            ("primary", StatusCode.ERROR), ("fallback", StatusCode.UNSET)]


@pytest.mark.parametrize(("provider", "model", "expected"), [
    ("anthropic", "claude-sonnet-4-5", ("anthropic", "claude-sonnet-4-5")),
    ("litellm", "bedrock/us.anthropic.claude-sonnet-4-5-20250929-v1:0",
     ("aws.bedrock", "us.anthropic.claude-sonnet-4-5-20250929-v1:0")),
    ("litellm", "openai/gpt-4.1-mini", ("openai", "gpt-4.1-mini")),
    ("litellm", "vertex_ai/gemini-2.5-pro", ("gcp.vertex_ai", "gemini-2.5-pro")),
    ("litellm", "someprovider/model-x", ("someprovider", "model-x")),
    ("litellm", "gpt-4o", ("openai", "gpt-4o")),
])
def test_provider_names_follow_the_conventions(provider: str, model: str, expected: tuple[str, str]) -> None:
    from router.observe.semconv import provider_and_model

    assert provider_and_model(provider, model) == expected


@pytest.mark.parametrize(("value", "latest"), [
    ("", False), ("http", False), ("gen_ai_latest_experimental", True), ("http,gen_ai_latest_experimental", True),
    ("gen_ai_latest_experimental_v2", False),
])
def test_only_the_gen_ai_opt_in_value_switches_versions(value: str, latest: bool) -> None:
    from router.observe.semconv import names

    chosen = names({"OTEL_SEMCONV_STABILITY_OPT_IN": value})
    assert chosen.latest is latest
    assert chosen.duration == ("gen_ai.client.inference.duration" if latest else "gen_ai.client.operation.duration")


def test_a_litellm_fallback_is_named_by_its_provider_prefix(fake_server: FakeServer, make_router) -> None:
    url = fake_server.url
    policy = f"""
        version: 1
        defaults: {{retry: {{attempts: 1}}}}
        models:
          claude: {{provider: anthropic, model: claude-primary, base_url: "{url}", api_key: "${{KEY_PRIMARY}}"}}
          gpt: {{provider: litellm, model: openai/gpt-fallback, base_url: "{url}/v1", api_key: "${{KEY_FALLBACK}}"}}
        routes:
          default: [claude, gpt]
    """
    fake_server.plan("claude-primary", [Fault.status(529)])
    fake_server.plan("gpt-fallback", [Fault.ok(input_tokens=11, output_tokens=4)])
    r = make_router(policy)
    t = Telemetry()
    t.instrument(r)
    msg = r.complete(messages=USER, max_tokens=16)
    assert msg.routing.model == "gpt"
    failed, served = [s for s in t.finished() if s.kind is SpanKind.CLIENT]
    assert (failed.attributes["gen_ai.provider.name"], failed.attributes["error.type"]) == (
        "anthropic", "overloaded_error")
    assert served.name == "chat gpt-fallback"
    a = served.attributes
    assert (a["gen_ai.provider.name"], a["gen_ai.request.model"], a["router.model_alias"]) == (
        "openai", "gpt-fallback", "gpt")
    assert (a["gen_ai.usage.input_tokens"], a["gen_ai.usage.output_tokens"]) == (11, 4)
    assert a["gen_ai.response.id"] == msg.id
