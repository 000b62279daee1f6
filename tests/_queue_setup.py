"""Policies with a durable queue pointed at the fake server, and the ground truth the queue tests count."""

from __future__ import annotations

import collections
import textwrap
from pathlib import Path

from router import Router, parse_policy
from router.clock import SYSTEM
from router.testing import FakeServer, Fault

from .conftest import KEYS

MODELS = ("claude-primary", "claude-fallback")
ROOT = Path(__file__).resolve().parents[1]


def queue_policy(url: str, store: str, *, lease: str = "2s", concurrency: int = 8, attempts: int = 5,
                 ttl: str = "1h", reset: str = "200ms", read: str = "5s") -> str:
    """`store`: `sqlite: {path: ...}` or `redis: {url: ...}` (as YAML flow text)."""
    return textwrap.dedent(f"""\
        version: 1
        defaults:
          breaker: {{failure_threshold: 3, reset_timeout: {reset}, max_reset_timeout: {reset}}}
          retry: {{attempts: 1, backoff: {{initial: 1ms, max: 2ms, jitter: 0.1}}}}
          timeout: {{connect: 2s, read: {read}, total: 30s}}
        queue: {{{store}, ttl: {ttl}, lease: {lease}, concurrency: {concurrency}, attempts: {attempts}}}
        models:
          primary: {{provider: anthropic, model: claude-primary, base_url: '{url}', api_key: '${{KEY_PRIMARY}}'}}
          fallback: {{provider: anthropic, model: claude-fallback, base_url: '{url}', api_key: '${{KEY_FALLBACK}}'}}
        routes:
          default: {{chain: [primary, fallback], on_exhausted: queue}}
          strict: [primary]
        """)


def sqlite_store(path: Path) -> str:
    return f"sqlite: {{path: '{path}'}}"


def redis_store(url: str, stream: str = "fr:test") -> str:
    return f"redis: {{url: '{url}', stream: '{stream}'}}"


def router_for(text: str) -> Router:
    return Router(parse_policy(text, env=KEYS), clock=SYSTEM, watch=False)


def outage(srv: FakeServer, fault: Fault | None = None) -> None:
    for model in MODELS:
        srv.plan(model, default=fault or Fault.status(529, error_type="overloaded_error"))


def healthy(srv: FakeServer, delay: float = 0.0) -> None:
    for model in MODELS:
        srv.plan(model, default=Fault.ok(text="served", delay=delay))


def keys_served(srv: FakeServer) -> collections.Counter[str]:
    """Idempotency-Key -> how many requests carrying it the server answered with a message (healthy)."""
    seen: collections.Counter[str] = collections.Counter()
    for model in MODELS:
        for req in srv.received(model):
            key = req.headers.get("idempotency-key")
            if key is not None:
                seen[key] += 1
    return seen


def queue_during_outage(r: Router, srv: FakeServer, n: int) -> list[str]:
    """`n` requests made while every model fails: each raises Queued; their tickets, in order."""
    from router.errors import Queued

    outage(srv)
    tickets = []
    for i in range(n):
        try:
            r.complete(max_tokens=8, messages=[{"role": "user", "content": f"question {i}"}])
        except Queued as exc:
            tickets.append(exc.ticket)
    assert len(tickets) == n, "every request of the outage must be queued"
    return tickets


def drained_exactly_once(r: Router, srv: FakeServer, tickets: list[str]) -> None:
    """Every ticket done with one stored result; the server answered each ticket's key exactly once."""
    from router.routing import RoutedMessage

    store = r.queue
    assert store is not None
    assert store.counts()["done"] == len(tickets) and store.counts()["queued"] == store.counts()["running"] == 0
    for ticket in tickets:
        message = r.result(ticket, timeout=0)
        assert isinstance(message, RoutedMessage) and message.content[0].text == "served"  # type: ignore[union-attr]
        assert message.routing.route == "default" and message.routing.model in ("primary", "fallback")
    served = keys_served(srv)
    assert set(served) == set(tickets)
    assert all(count == 1 for count in served.values()), [k for k, c in served.items() if c > 1][:5]
