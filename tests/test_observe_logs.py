"""The router's log records: one INFO per failover / resumed stream / queued request, WARNING when a breaker
opens, with documented logger names and `router_*` extra fields; never a key."""

from __future__ import annotations

import logging

import pytest

from router.events import Dequeued, RequestQueued
from router.observe.logs import log_event
from router.testing import FakeServer, Fault

from .conftest import KEYS, USER

FAILOVER_FIELDS = ("router_route", "router_from_model", "router_to_model", "router_outcome", "router_status",
                   "router_error_type", "router_request_id", "router_request")


def records(caplog: pytest.LogCaptureFixture, name: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == name]


def test_a_failover_logs_one_info_record_with_the_facts_as_extra_fields(
    fake_server: FakeServer, make_router, caplog: pytest.LogCaptureFixture
) -> None:
    fake_server.plan("claude-primary", [Fault.status(529)])
    r = make_router(attempts=1)
    with caplog.at_level(logging.INFO, logger="router"):
        msg = r.complete(messages=USER, max_tokens=16)
    (record,) = records(caplog, "router.failover")
    assert record.levelno == logging.INFO
    failed = msg.routing.attempts[0]
    facts = {name: getattr(record, name) for name in FAILOVER_FIELDS}
    assert facts["router_request"] > 0
    del facts["router_request"]
    assert facts == {"router_route": "default", "router_from_model": "primary", "router_to_model": "fallback",
                     "router_outcome": "server_failure", "router_status": 529,
                     "router_error_type": "overloaded_error", "router_request_id": failed.request_id}
    assert failed.request_id and failed.request_id in record.getMessage()
    assert record.getMessage().startswith("route default: primary -> fallback (server_failure 529 overloaded_error")


def test_a_breaker_opening_is_a_warning_and_closing_again_is_info(
    fake_server: FakeServer, make_router, clock, caplog: pytest.LogCaptureFixture
) -> None:
    fake_server.plan("claude-primary", [Fault.status(500)] * 3)
    r = make_router(attempts=1, threshold=3, reset="10s")
    with caplog.at_level(logging.INFO, logger="router"):
        for _ in range(3):
            r.complete(messages=USER, max_tokens=16)
        clock.advance(10)
        r.complete(messages=USER, max_tokens=16)
    moves = [(rec.levelno, rec.router_model, rec.router_old_state, rec.router_new_state)  # type: ignore[attr-defined]
             for rec in records(caplog, "router.breaker")]
    assert moves == [(logging.WARNING, "primary", "closed", "open"), (logging.INFO, "primary", "open", "half_open"),
                     (logging.INFO, "primary", "half_open", "closed")]
    assert len(records(caplog, "router.failover")) == 3


def test_at_the_default_level_only_breaker_warnings_are_logged_and_no_request_event_is_built(
    fake_server: FakeServer, make_router, caplog: pytest.LogCaptureFixture
) -> None:
    fake_server.plan("claude-primary", [Fault.status(500)] * 3)
    r = make_router(attempts=1, threshold=3)
    logging.getLogger("router").setLevel(logging.WARNING)
    try:
        with caplog.at_level(logging.WARNING):
            assert not r._events.listening  # the engine skips building per-request events
            for _ in range(3):
                r.complete(messages=USER, max_tokens=16)
        assert [rec.name for rec in caplog.records] == ["router.breaker"]
        assert caplog.records[0].levelno == logging.WARNING
    finally:
        logging.getLogger("router").setLevel(logging.NOTSET)
    with caplog.at_level(logging.INFO, logger="router"):
        assert r._events.listening


def test_a_resumed_stream_logs_where_it_resumed(
    fake_server: FakeServer, make_router, caplog: pytest.LogCaptureFixture
) -> None:
    fake_server.plan("claude-primary", [Fault.stream_cut(after=2, deltas=["Hel", "lo ", "wor", "ld"])])
    fake_server.plan("claude-fallback", [Fault.ok(deltas=["Hel", "lo ", "wor", "ld"])])
    r = make_router(attempts=1)
    with caplog.at_level(logging.INFO, logger="router"), r.stream(messages=USER, max_tokens=32) as s:
        assert "".join(s.text_stream) == "Hello world"
    (record,) = records(caplog, "router.stream")
    assert (record.router_route, record.router_model, record.router_at_char) == (  # type: ignore[attr-defined]
        "default", "fallback", 6)
    assert record.router_method  # type: ignore[attr-defined]
    assert len(records(caplog, "router.failover")) == 1


def test_queued_and_dequeued_requests_are_logged(caplog: pytest.LogCaptureFixture) -> None:
    # The engine raises router.Queued when a route's on_exhausted is queue; the listener logs the events it sends.
    with caplog.at_level(logging.INFO, logger="router"):
        log_event(RequestQueued("default", "tkt_1", "exhausted", 1.0, 42))
        log_event(Dequeued("default", "tkt_1", "done", "fallback", 2.0))
    queued, dequeued = records(caplog, "router.queue")
    assert (queued.router_ticket, queued.router_reason, queued.router_request) == (  # type: ignore[attr-defined]
        "tkt_1", "exhausted", 42)
    assert queued.getMessage() == "route default: request queued as tkt_1 (exhausted)"
    assert (dequeued.router_state, dequeued.router_model) == ("done", "fallback")  # type: ignore[attr-defined]


def test_no_secret_reaches_a_log_record_or_its_extra_fields(
    fake_server: FakeServer, make_router, clock, caplog: pytest.LogCaptureFixture
) -> None:
    fake_server.plan("claude-primary", [Fault.status(401), Fault.status(500), Fault.status(500), Fault.status(500)])
    fake_server.plan("claude-fallback", [Fault.status(429, retry_after=1), Fault.status(403)])
    r = make_router(models=("primary", "fallback", "third"), attempts=1, threshold=3)
    with caplog.at_level(logging.DEBUG):
        for _ in range(5):
            r.complete(messages=USER, max_tokens=16)
            clock.advance(2)
    ours = [rec for rec in caplog.records if rec.name.startswith("router.")]
    assert {rec.name for rec in ours} >= {"router.failover", "router.breaker"}
    seen = "\n".join(rec.getMessage() + repr(rec.__dict__) for rec in ours)
    for secret in KEYS.values():
        assert secret not in seen and secret[-12:] not in seen
    assert fake_server.url not in seen
