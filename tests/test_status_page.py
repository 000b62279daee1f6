"""Status page awareness, over real HTTP: a FakeStatusPage on 127.0.0.1 polled by the watcher, acting on the
breakers of a real Router whose models are served by the FakeServer through the real anthropic SDK.

- An incident naming one model family opens that model's breaker (and only its); the next request goes
  to the other model without calling it; after reset_timeout one probe decides, as for any open breaker.
- A green page never closes a breaker; an incident is acted on once per model, not on every poll.
- A page that answers 500, HTML, broken JSON, or hangs past `timeout` changes nothing: breakers and
  requests are as before, and the failure is logged once per streak.
- on_incident: lower_threshold lowers the threshold while the incident lasts and restores it after.
- The matching rule (families and versions from model ids and titles; the API component's outage).
- trip(): the pure rule, MemoryStore and RedisStore (fleet-wide).
"""

from __future__ import annotations

import json
import logging
import textwrap
import threading
from collections.abc import Callable
from typing import Any

import pytest

from router import AllModelsFailed, MemoryStore, Router, parse_policy
from router.breaker_rules import BreakerState
from router.breaker_rules import trip as trip_rule
from router.clock import SYSTEM, Clock
from router.policy import BreakerConfig, ModelConfig, StatusPageConfig
from router.status_page import (
    Family,
    Notice,
    StatusPageWatcher,
    findings,
    mentions,
    model_family,
    parse_summary,
    start_watcher,
)
from router.testing import FakeServer, Fault
from router.testing.status_page import API_COMPONENT, FakeStatusPage, component, incident, summary

from .conftest import KEYS, USER

OPUS, SONNET = "claude-opus-4-1", "claude-sonnet-4-5"


class ManualTime:
    """A monotonic clock the test moves (no sleeps: the watcher is driven by poll_once())."""

    def __init__(self) -> None:
        self.t = 1000.0

    def now(self) -> float:
        return self.t

    def clock(self) -> Clock:
        return Clock(now=self.now, sleep=lambda s: None, wall=lambda: 1_800_000_000.0 + self.t)


@pytest.fixture
def page() -> Any:
    with FakeStatusPage() as fake:
        yield fake


def _policy_text(server: FakeServer, page_url: str, on_incident: str = "open", threshold: int = 1) -> str:
    return textwrap.dedent(f"""\
        version: 1
        defaults:
          breaker: {{failure_threshold: 3, reset_timeout: 10s}}
          retry: {{attempts: 1}}
          timeout: {{connect: 2s, read: 5s, total: 30s}}
        models:
          opus: {{provider: anthropic, model: {OPUS}, base_url: '{server.url}', api_key: '${{KEY_PRIMARY}}'}}
          sonnet: {{provider: anthropic, model: {SONNET}, base_url: '{server.url}', api_key: '${{KEY_FALLBACK}}'}}
        routes:
          default: [opus, sonnet]
        status_page: {{url: '{page_url}', interval: 60s, on_incident: {on_incident}, threshold: {threshold},
                       timeout: 200ms}}
        """)


@pytest.fixture
def setup(fake_server: FakeServer, page: FakeStatusPage) -> Any:
    """(router, watcher, time, notices) factory: a Router and a watcher on the same store and clock."""
    made: list[tuple[Router, StatusPageWatcher]] = []

    def make(on_incident: str = "open", threshold: int = 1) -> tuple[Router, StatusPageWatcher, ManualTime,
                                                                       list[Notice]]:
        time = ManualTime()
        policy = parse_policy(_policy_text(fake_server, page.url, on_incident, threshold), env=KEYS)
        assert policy.status_page is not None
        store = MemoryStore()
        router = Router(policy, store=store, clock=time.clock(), watch=False)
        notices: list[Notice] = []
        watcher = start_watcher(policy.status_page, lambda: router.policy.models, store, time.clock(),
                                notices.append, background=False)
        made.append((router, watcher))
        return router, watcher, time, notices

    yield make
    for router, watcher in made:
        watcher.stop()
        router.close()


def _states(router: Router) -> dict[str, tuple[str, int]]:
    return {alias: (info.state, info.failures) for alias, info in router.breakers().items()}


# ---- the story of the issue ----


def test_an_incident_naming_opus_opens_its_breaker_green_does_not_close_it_and_its_probe_does(
    setup: Callable[..., Any], page: FakeStatusPage, fake_server: FakeServer
) -> None:
    router, watcher, time, notices = setup()
    page.show(summary(incident("Elevated errors on Claude Opus 4.1", id="opus-inc")))
    result = watcher.poll_once()
    assert result.ok and [f.models for f in result.findings] == [("opus",)]
    assert _states(router) == {"opus": ("open", 3), "sonnet": ("closed", 0)}
    assert [(n.kind, n.model, n.action, n.incident) for n in notices] == [("acted", "opus", "open", "opus-inc")]

    reply = router.complete(messages=USER, max_tokens=8)
    assert reply.routing.model == "sonnet" and fake_server.count(OPUS) == 0  # opus is not even called

    page.show(summary())  # all green
    assert watcher.poll_once().findings == ()
    assert router.breakers()["opus"].state == "open"  # a green page never closes a breaker
    assert router.complete(messages=USER, max_tokens=8).routing.model == "sonnet" and fake_server.count(OPUS) == 0

    time.t += 10.0  # reset_timeout: half-open; the next request is the one probe
    reply = router.complete(messages=USER, max_tokens=8)
    assert reply.routing.model == "opus" and fake_server.count(OPUS) == 1
    assert _states(router)["opus"] == ("closed", 0)


def test_a_failed_probe_after_an_incident_reopens_like_any_open_breaker(
    setup: Callable[..., Any], page: FakeStatusPage, fake_server: FakeServer
) -> None:
    router, watcher, time, _ = setup()
    page.show(summary(incident("Elevated errors on Opus")))
    watcher.poll_once()
    retry_at = router.breakers()["opus"].retry_at
    assert retry_at == time.t + 10.0
    time.t = retry_at
    fake_server.plan(OPUS, [Fault.status(500)])
    assert router.complete(messages=USER, max_tokens=8).routing.model == "sonnet"
    info = router.breakers()["opus"]
    assert info.state == "open" and info.retry_at == time.t + 20.0  # the wait doubled, as after any failed probe


def test_an_incident_is_acted_on_once_per_model_not_on_every_poll(
    setup: Callable[..., Any], page: FakeStatusPage
) -> None:
    router, watcher, _, notices = setup()
    page.show(summary(incident("Elevated errors on Claude Opus 4.1", id="first")))
    watcher.poll_once()
    router.force_close("opus")  # e.g. its probe succeeded, or an operator closed it
    for _ in range(3):
        watcher.poll_once()  # the same incident, still investigating
    assert _states(router)["opus"] == ("closed", 0)
    assert [n.incident for n in notices if n.kind == "acted"] == ["first"]

    page.show(summary(incident("Elevated errors on Claude Opus 4.1", id="first"),
                      incident("Opus 4.1 errors again", id="second")))
    watcher.poll_once()  # a new incident naming it acts again
    assert router.breakers()["opus"].state == "open"
    assert [n.incident for n in notices if n.kind == "acted"] == ["first", "second"]
    assert watcher.last is not None and watcher.last.acted == (("first", "opus", "open"), ("second", "opus", "open"))


def test_an_incident_first_seen_while_monitoring_or_resolved_changes_nothing(
    setup: Callable[..., Any], page: FakeStatusPage
) -> None:
    router, watcher, _, notices = setup()
    page.show(summary(incident("Elevated errors on Opus 4.1", "monitoring", id="a"),
                      incident("Elevated errors on Sonnet 4.5", "resolved", id="b")))
    result = watcher.poll_once()
    assert {f.key: f.acting for f in result.findings} == {"a": False, "b": False}
    assert _states(router) == {"opus": ("closed", 0), "sonnet": ("closed", 0)}
    assert notices == []


def test_an_api_component_outage_opens_every_anthropic_model(setup: Callable[..., Any], page: FakeStatusPage) -> None:
    router, watcher, _, _ = setup()
    api = component("Claude API (api.anthropic.com)", "major_outage", API_COMPONENT)
    page.show(summary(incident("Elevated errors for some requests", components=[api]), api="major_outage"))
    result = watcher.poll_once()
    assert [(f.key, f.models) for f in result.findings] == [("inc1", ("opus", "sonnet"))]  # once, not twice
    assert _states(router) == {"opus": ("open", 3), "sonnet": ("open", 3)}


# ---- a page that fails changes nothing ----


@pytest.mark.parametrize("break_it", [
    lambda p: p.fail(500),
    lambda p: p.fail(503, '{"error": "unavailable"}', "application/json"),
    lambda p: p.fail(200),  # an HTML page with a 200
    lambda p: p.fail(200, '{"status": {"indicator": "major"', "application/json"),  # cut JSON
    lambda p: p.fail(200, '{"status": "major", "incidents": 3}', "application/json"),  # the wrong shape
    lambda p: p.hang(),  # no answer within the policy's 200ms timeout
], ids=["500-html", "503-json", "html-200", "truncated", "wrong-shape", "hang"])
def test_a_page_that_errors_or_hangs_changes_nothing_and_requests_are_unaffected(
    setup: Callable[..., Any], page: FakeStatusPage, fake_server: FakeServer, break_it: Callable[[Any], None],
    caplog: pytest.LogCaptureFixture,
) -> None:
    router, watcher, _, notices = setup()
    fake_server.plan(OPUS, [Fault.status(500)])  # one failure counted before the page breaks
    assert router.complete(messages=USER, max_tokens=8).routing.model == "sonnet"
    before = _states(router)
    assert before["opus"] == ("closed", 1)
    break_it(page)
    with caplog.at_level(logging.WARNING, logger="router.status_page"):
        results = [watcher.poll_once() for _ in range(3)]
    assert [r.ok for r in results] == [False, False, False] and results[-1].failures == 3
    assert results[-1].error
    assert _states(router) == before
    assert len([r for r in caplog.records if r.name == "router.status_page"]) == 1  # once per failure streak
    assert [n.kind for n in notices] == ["poll_failed"]
    reply = router.complete(messages=USER, max_tokens=8)
    assert reply.routing.model == "opus" and _states(router)["opus"] == ("closed", 0)

    page.show(summary())  # it answers again: said once; a new streak is logged again
    assert watcher.poll_once().ok
    break_it(page)
    with caplog.at_level(logging.WARNING, logger="router.status_page"):
        watcher.poll_once()
    assert [n.kind for n in notices] == ["poll_failed", "poll_recovered", "poll_failed"]


def test_a_hanging_page_on_the_background_thread_blocks_no_request_and_stop_returns(
    fake_server: FakeServer, page: FakeStatusPage
) -> None:
    policy = parse_policy(_policy_text(fake_server, page.url), env=KEYS)
    assert policy.status_page is not None
    store = MemoryStore()
    polled = threading.Event()
    with Router(policy, store=store, clock=SYSTEM, watch=False) as router:
        page.hang()
        watcher = start_watcher(policy.status_page, policy.models, store, SYSTEM,
                                lambda n: polled.set() if n.kind == "poll_failed" else None)
        try:
            for _ in range(5):  # while the poller waits on the page
                assert router.complete(messages=USER, max_tokens=8).routing.model == "opus"
            assert polled.wait(10), "the poller never gave up on the hanging page"
        finally:
            watcher.stop()
        assert _states(router) == {"opus": ("closed", 0), "sonnet": ("closed", 0)}
    assert page.requests >= 1


def test_the_background_thread_polls_and_opens_the_named_breaker(fake_server: FakeServer, page: FakeStatusPage
                                                                 ) -> None:
    policy = parse_policy(_policy_text(fake_server, page.url), env=KEYS)
    assert policy.status_page is not None
    store = MemoryStore()
    acted = threading.Event()
    page.show(summary(incident("Elevated errors on Claude Sonnet 4.5")))
    with Router(policy, store=store, clock=SYSTEM, watch=False) as router:
        watcher = start_watcher(policy.status_page, policy.models, store, SYSTEM,
                                lambda n: acted.set() if n.kind == "acted" else None)
        try:
            assert acted.wait(10), "the poller never acted on the incident"
            assert watcher.running
        finally:
            watcher.stop()
        assert not watcher.running
        assert router.breakers()["sonnet"].state == "open" and router.breakers()["opus"].state == "closed"


# ---- other modes ----


def test_lower_threshold_lowers_while_the_incident_lasts_and_restores_it_after(
    setup: Callable[..., Any], page: FakeStatusPage, fake_server: FakeServer
) -> None:
    router, watcher, _, notices = setup("lower_threshold", 1)
    page.show(summary(incident("Elevated errors on Claude Opus 4.1", id="x")))
    watcher.poll_once()
    assert _states(router)["opus"] == ("closed", 0)  # lowered, not opened
    fake_server.plan(OPUS, [Fault.status(500), Fault.status(500)])
    assert router.complete(messages=USER, max_tokens=8).routing.model == "sonnet"
    assert _states(router)["opus"] == ("open", 1)  # one failure was enough

    page.show(summary(incident("Elevated errors on Claude Opus 4.1", "monitoring", id="x")))
    watcher.poll_once()  # still going on: still lowered
    page.show(summary(incident("Elevated errors on Claude Opus 4.1", "resolved", id="x")))
    watcher.poll_once()
    assert [n.kind for n in notices] == ["acted", "restored"]
    assert router.breakers()["opus"].state == "open"  # the resolution never closes a breaker

    router.reset("opus")
    fake_server.plan(OPUS, [Fault.status(500)])
    assert router.complete(messages=USER, max_tokens=8).routing.model == "sonnet"
    assert _states(router)["opus"] == ("closed", 1)  # the policy's threshold (3) again


def test_lower_threshold_is_restored_when_the_incident_leaves_the_page(
    setup: Callable[..., Any], page: FakeStatusPage, fake_server: FakeServer
) -> None:
    router, watcher, _, notices = setup("lower_threshold", 1)
    page.show(summary(incident("Sonnet 4.5 degraded", id="s")))
    watcher.poll_once()
    page.show(summary())
    watcher.poll_once()
    assert [(n.kind, n.model) for n in notices] == [("acted", "sonnet"), ("restored", "sonnet")]
    router.force_open("opus")  # so that the request goes to sonnet
    fake_server.plan(SONNET, [Fault.status(500)])
    with pytest.raises(AllModelsFailed):
        router.complete(messages=USER, max_tokens=8)
    assert _states(router)["sonnet"] == ("closed", 1)  # lowered, one failure would have opened it


def test_log_mode_only_tells(setup: Callable[..., Any], page: FakeStatusPage, caplog: pytest.LogCaptureFixture
                             ) -> None:
    router, watcher, _, notices = setup("log")
    page.show(summary(incident("Elevated errors on Claude Opus 4.1")))
    with caplog.at_level(logging.WARNING, logger="router.status_page"):
        watcher.poll_once()
    assert _states(router) == {"opus": ("closed", 0), "sonnet": ("closed", 0)}
    assert [(n.kind, n.model, n.action) for n in notices] == [("acted", "opus", "log")]
    assert any("Opus 4.1" in r.getMessage() and "opus" in r.getMessage() for r in caplog.records)


def test_a_raising_listener_is_logged_and_ignored(setup: Callable[..., Any], page: FakeStatusPage) -> None:
    router, watcher, _, _ = setup()

    def broken(notice: Notice) -> None:
        raise RuntimeError("listener bug")

    watcher.add_listener(broken)
    page.show(summary(incident("Opus 4.1 errors")))
    assert watcher.poll_once().ok
    assert router.breakers()["opus"].state == "open"


# ---- reading the page ----


def test_unknown_fields_are_tolerated_and_missing_optional_ones_too() -> None:
    page = summary(incident("Elevated errors on Claude Opus 4.6", components=[component("Claude API", "degraded")]),
                   future_section={"anything": [1, 2]}, affected_regions=["eu"])
    page["incidents"][0]["new_field"] = {"nested": True}
    page["components"][0]["uptime"] = 99.9
    parsed = parse_summary(json.dumps(page))
    assert parsed.indicator == "major" and parsed.incidents[0].name == "Elevated errors on Claude Opus 4.6"
    assert parsed.incidents[0].components[0].status == "degraded"
    minimal = parse_summary('{"status": {"indicator": "none"}}')
    assert minimal.incidents == () and minimal.components == ()


@pytest.mark.parametrize(("model", "family"), [
    ("claude-opus-4-1", Family("opus", (4, 1))),
    ("claude-sonnet-4-5", Family("sonnet", (4, 5))),
    ("claude-sonnet-4-5-20250929", Family("sonnet", (4, 5))),
    ("bedrock/us.anthropic.claude-sonnet-4-5-20250929-v1:0", Family("sonnet", (4, 5))),
    ("vertex_ai/claude-haiku-4-5@20251001", Family("haiku", (4, 5))),
    ("claude-opus-4-20250514", Family("opus", (4,))),
    ("claude-opus-4-0", Family("opus", (4,))),
    ("claude-3-5-haiku-20241022", Family("haiku", (3, 5))),
    ("claude-3-opus-20240229", Family("opus", (3,))),
    ("claude-sonnet-latest", Family("sonnet")),
    ("openai/gpt-4.1-mini", None),
])
def test_a_models_family_comes_from_its_id(model: str, family: Family | None) -> None:
    assert model_family(model) == family


@pytest.mark.parametrize(("title", "named"), [
    ("Elevated errors on Claude Opus 4.6", ["opus 4.6"]),
    ("Elevated errors on Claude Sonnet 4.5 and Haiku 4.5", ["sonnet 4.5", "haiku 4.5"]),
    ("Opus 4.1, 4.5 & 4.6 slow", ["opus 4.1", "opus 4.5", "opus 4.6"]),
    ("Claude 3.5 Sonnet degraded", ["sonnet 3.5"]),
    ("Errors with claude-opus-4-1", ["opus 4.1"]),
    ("Increased latency on Sonnet models", ["sonnet"]),
    ("Elevated errors on the API", []),
    ("Opusculum outage", []),
])
def test_the_families_a_title_names(title: str, named: list[str]) -> None:
    assert [str(f) for f in mentions(title)] == named


def _models(**ids: str) -> dict[str, ModelConfig]:
    return {alias: ModelConfig(alias, "litellm" if "/" in mid else "anthropic", mid) for alias, mid in ids.items()}


def test_a_version_in_the_title_names_only_that_version() -> None:
    models = _models(opus41="claude-opus-4-1", opus46="claude-opus-4-6", opus4="claude-opus-4-20250514",
                     bedrock="bedrock/us.anthropic.claude-opus-4-6-v1:0", gpt="openai/gpt-4.1")
    found = findings(parse_summary(json.dumps(summary(incident("Errors on Claude Opus 4.6")))),
                     models)
    assert found[0].models == ("opus46", "bedrock") and found[0].why == "names opus 4.6"
    found = findings(parse_summary(json.dumps(summary(incident("Errors on Opus")))), models)
    assert found[0].models == ("opus41", "opus46", "opus4", "bedrock")


def test_an_api_outage_concerns_only_models_served_by_anthropics_api() -> None:
    models = _models(opus="claude-opus-4-1", proxied="anthropic/claude-sonnet-4-5",
                     bedrock="bedrock/us.anthropic.claude-sonnet-4-5-v1:0", gpt="openai/gpt-4.1")
    api = component("Claude API (api.anthropic.com)", "partial_outage", API_COMPONENT)
    in_incident = findings(parse_summary(json.dumps(summary(incident("Errors", components=[api])))),
                           models)
    assert [f.models for f in in_incident] == [("opus", "proxied")]
    bare = findings(parse_summary(json.dumps(summary(api="major_outage"))), models)
    assert [(f.key, f.models) for f in bare] == [(f"component:{API_COMPONENT}", ("opus", "proxied"))]
    degraded = findings(parse_summary(json.dumps(summary(api="degraded_performance"))), models)
    assert degraded == ()


# ---- trip ----


def test_the_trip_rule_opens_only_a_closed_breaker() -> None:
    config = BreakerConfig(failure_threshold=4, reset_timeout=7.0)
    change = trip_rule(BreakerState(wait=7.0, failures=1), config, 100.0)
    assert change.answer is True and change.transition == ("closed", "open")
    assert (change.state.state, change.state.failures, change.state.retry_at) == ("open", 4, 107.0)
    for state in (BreakerState("open", 4, 14.0, 90.0, 104.0), BreakerState("half_open", 4, 7.0, 90.0, 97.0, 1, 105.0),
                  BreakerState("open", 0, 7.0, 90.0, None, forced=True)):
        kept = trip_rule(state, config, 100.0)
        assert kept.state == state and kept.answer is False and kept.transition is None


def test_memory_store_trip_tells_the_transition_once() -> None:
    moves: list[tuple[str, str, str]] = []
    store = MemoryStore(on_transition=lambda *m: moves.append(m))
    store.configure("m", BreakerConfig(failure_threshold=2, reset_timeout=5.0))
    assert store.trip("m", 10.0) is True and store.trip("m", 11.0) is False
    info = store.info("m", 11.0)
    assert (info.state, info.failures, info.retry_at) == ("open", 2, 15.0)
    assert moves == [("m", "closed", "open")]
    assert store.trip("unknown", 1.0) is False


def test_redis_store_trip_opens_the_breaker_for_the_fleet(redis_server: Any) -> None:
    from router.redis_store import RedisStore

    config = BreakerConfig(failure_threshold=3, reset_timeout=30.0)
    one, other = RedisStore(redis_server.url, prefix="trip"), RedisStore(redis_server.url, prefix="trip")
    try:
        for store in (one, other):
            store.configure("m", config)
        assert one.trip("m", 0.0) is True
        assert other.trip("m", 0.0) is False  # already open fleet-wide
        info = other.info("m", 0.0)
        assert (info.state, info.failures) == ("open", 3) and info.retry_at is not None and info.retry_at > 25.0
    finally:
        one.close()
        other.close()


def test_a_watcher_config_round_trips_from_the_policy(fake_server: FakeServer) -> None:
    policy = parse_policy(_policy_text(fake_server, "https://status.claude.com/api/v2/summary.json",
                                       "lower_threshold", 2), env=KEYS)
    assert policy.status_page == StatusPageConfig("https://status.claude.com/api/v2/summary.json", 60.0,
                                                  "lower_threshold", 2, 0.2)


def test_credentials_in_the_page_url_never_reach_logs_or_output(page: FakeStatusPage,
                                                                caplog: pytest.LogCaptureFixture) -> None:
    from router.status_page import observer
    from router.status_page.fetch import shown_url
    from router.status_page.report import page_json

    secret_url = page.url.replace("http://", "http://ops:hunter2-password@") + "?api_key=sk-page-token-123456"
    watcher = observer(StatusPageConfig(secret_url, timeout=0.5), {}, ManualTime().clock())
    page.fail(500)
    with caplog.at_level(logging.DEBUG):
        assert watcher.poll_once().error == "HTTP 500"
        page.show(summary())
        assert watcher.poll_once().ok
    shown = json.dumps(page_json(watcher.last, shown_url(secret_url), 0.0))
    seen = [r.getMessage() for r in caplog.records] + [shown, repr(watcher.last)]
    assert any("127.0.0.1" in text for text in seen)
    assert not [text for text in seen if "hunter2" in text or "sk-page-token" in text]
