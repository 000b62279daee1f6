"""The `status_page:` policy key wired into Router: its poller runs on its own thread with the real clock (by hand
under a virtual one), trips the named model's breaker, and stops with the Router."""

from __future__ import annotations

import textwrap
import threading

from router import Router, VirtualClock, parse_policy
from router.testing import FakeServer
from router.testing.status_page import FakeStatusPage, incident, summary

from .conftest import KEYS, USER


def _policy(server: str, page: str, interval: str = "100ms") -> str:
    return textwrap.dedent(f"""\
        version: 1
        models:
          opus: {{provider: anthropic, model: claude-opus-4-1, base_url: '{server}', api_key: '${{KEY_PRIMARY}}'}}
          sonnet: {{provider: anthropic, model: claude-sonnet-4-5, base_url: '{server}', api_key: '${{KEY_FALLBACK}}'}}
        status_page: {{url: '{page}', interval: {interval}, timeout: 500ms}}
        routes:
          default: [opus, sonnet]
        """)


def test_the_policys_status_page_opens_the_named_model_in_the_background(fake_server: FakeServer) -> None:
    with FakeStatusPage() as page:
        page.show(summary())
        r = Router(parse_policy(_policy(fake_server.url, page.url), env=KEYS), watch=False)
        try:
            assert r.status_page is not None
            seen = threading.Event()

            def wait_for_open() -> bool:
                for _ in range(100):  # the poller runs every 100 ms; give it up to 5 s of real polls
                    if r.breakers()["opus"].state == "open":
                        return True
                    seen.wait(0.05)
                return False

            assert r.breakers()["opus"].state == "closed"
            page.show(summary(incident("Elevated errors on Claude Opus 4.1")))
            assert wait_for_open()
            msg = r.complete(messages=USER, max_tokens=8)
            assert msg.routing.model == "sonnet"
            assert fake_server.count("claude-opus-4-1") == 0
        finally:
            r.close()
        assert r.status_page.last is not None and r.status_page.last.ok


def test_under_a_virtual_clock_the_page_is_polled_by_hand(fake_server: FakeServer) -> None:
    with FakeStatusPage() as page:
        page.show(summary(incident("Elevated errors on Claude Sonnet 4.5")))
        clock = VirtualClock()
        r = Router(parse_policy(_policy(fake_server.url, page.url), env=KEYS), watch=False, clock=clock.clock())
        try:
            assert r.status_page is not None
            assert r.breakers()["sonnet"].state == "closed"  # no thread: nothing moves virtual time by itself
            r.status_page.poll_once()
            assert r.breakers()["sonnet"].state == "open"
            assert r.breakers()["opus"].state == "closed"
        finally:
            r.close()


def test_prometheus_shows_what_the_status_page_said(fake_server: FakeServer) -> None:
    import prometheus_client

    from router.observe import instrument

    from .test_prometheus import scrape

    with FakeStatusPage() as page:
        page.show(summary(incident("Elevated errors on Claude Sonnet 4.5")))
        clock = VirtualClock()
        r = Router(parse_policy(_policy(fake_server.url, page.url), env=KEYS), watch=False, clock=clock.clock())
        registry = prometheus_client.CollectorRegistry()
        done = instrument(r, otel=False, prometheus_registry=registry, prometheus_port=0)
        try:
            _, before = scrape(done.port)
            assert not [k for k in before if k[0].startswith("failover_router_status_page")]  # no poll yet
            assert r.status_page is not None
            r.status_page.poll_once()
            _, seen = scrape(done.port)
            assert seen[("failover_router_status_page_up", ())] == 1
            assert seen[("failover_router_status_page_incident", (("model", "sonnet"),))] == 1
            assert seen[("failover_router_status_page_incident", (("model", "opus"),))] == 0
            assert seen[("failover_router_breaker_state", (("model", "sonnet"),))] == 2
            page.fail(500)
            r.status_page.poll_once()
            _, failed = scrape(done.port)
            assert failed[("failover_router_status_page_up", ())] == 0
        finally:
            done.close()
            r.close()
