"""Draining the durable queue as Message Batches: requests queued during an outage go out as one batch per route,
retried through the route where the batch errored them, each completed once (`Router.drain_as_batches()` and
`failover-router worker POLICY --batch`)."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

from router import Queued, RequestFailed, Router, VirtualClock, parse_policy
from router.batches import BatchOptions
from router.queue.sqlite import SQLiteQueue
from router.testing import FakeServer, Fault
from router.testing.batches import BATCH_ENDPOINT, BatchResult, mixed

from .conftest import KEYS, USER

ROOT = Path(__file__).resolve().parents[1]


def _text(server: FakeServer, db: Path) -> str:
    return textwrap.dedent(f"""\
        version: 1
        defaults:
          breaker: {{failure_threshold: 3, reset_timeout: 30s}}
          retry: {{attempts: 1}}
        models:
          opus: {{provider: anthropic, model: claude-opus, base_url: '{server.url}', api_key: '${{KEY_PRIMARY}}'}}
          sonnet: {{provider: anthropic, model: claude-sonnet, base_url: '{server.url}', api_key: '${{KEY_FALLBACK}}'}}
        queue: {{sqlite: {{path: '{db}'}}}}
        routes:
          default: {{chain: [opus, sonnet], on_exhausted: queue}}
        """)


def _queue_during_outage(server: FakeServer, r: Router, n: int) -> list[str]:
    server.plan("claude-opus", [], default=Fault.status(529))
    server.plan("claude-sonnet", [], default=Fault.status(529))
    tickets = []
    for i in range(n):
        with pytest.raises(Queued) as info:
            r.complete(messages=USER, max_tokens=10 + i)
        tickets.append(info.value.ticket)
    server.plan("claude-opus", [])
    server.plan("claude-sonnet", [])
    return tickets


def test_a_backlog_goes_out_as_one_batch_and_every_ticket_completes_once(
    fake_server: FakeServer, tmp_path: Path
) -> None:
    clock = VirtualClock()
    r = Router(parse_policy(_text(fake_server, tmp_path / "q.db"), env=KEYS), watch=False, clock=clock.clock())
    try:
        tickets = _queue_during_outage(fake_server, r, 30)
        clock.sleep(31.0)  # past the breakers' reset timeout: the first retry through the route is their probe
        sent_before = fake_server.count("claude-opus") + fake_server.count("claude-sonnet")
        fake_server.plan_batch(mixed({BatchResult.succeeded(): 25, BatchResult.errored("api_error"): 3,
                                      BatchResult.errored("invalid_request_error"): 2}, seed=3), polls=1)
        # one retry at a time, so the first is the half-open breaker's probe and the rest find it closed (with
        # more at once, those that find the probe in flight go back to the queue for a worker: tested elsewhere)
        handles = r.drain_as_batches(BatchOptions(concurrency=1))
        assert len(handles) == 1 and set(handles[0].ticket_ids) == set(tickets)
        results = handles[0].results()
        assert fake_server.batches.created == 1
        served = [t for t in tickets if not isinstance(results[t], Exception)]
        refused = [t for t in tickets if isinstance(results[t], RequestFailed)]
        assert (len(served), len(refused)) == (28, 2)
        # only the three server-class errors went through the route again, once each
        assert fake_server.count("claude-opus") + fake_server.count("claude-sonnet") - sent_before == 3
        for t in served:  # read back by ticket, as any process would
            assert r.result(t).id == results[t].id  # type: ignore[union-attr]
        assert r.queue is not None and r.queue.counts()["queued"] == 0
        assert r.drain_as_batches() == []  # nothing left: no second batch
        assert fake_server.batches.created == 1
    finally:
        r.close()


def test_a_batch_the_api_refuses_leaves_the_tickets_queued(fake_server: FakeServer, tmp_path: Path) -> None:
    r = Router(parse_policy(_text(fake_server, tmp_path / "q.db"), env=KEYS), watch=False,
               clock=VirtualClock().clock())
    try:
        tickets = _queue_during_outage(fake_server, r, 5)
        fake_server.plan(BATCH_ENDPOINT, [Fault.status(400)])
        assert r.drain_as_batches() == []
        assert r.queue is not None and r.queue.counts()["queued"] == 5
        assert all(r.queue.get(t).state == "queued" for t in tickets)  # type: ignore[union-attr]
    finally:
        r.close()


def test_the_worker_command_drains_as_batches(fake_server: FakeServer, tmp_path: Path) -> None:
    policy = tmp_path / "policy.yaml"
    policy.write_text(_text(fake_server, tmp_path / "q.db"))
    r = Router(parse_policy(policy.read_text(), env=KEYS), watch=False, clock=VirtualClock().clock())
    try:
        tickets = _queue_during_outage(fake_server, r, 12)
    finally:
        r.close()
    fake_server.plan_batch(polls=0)
    env = {**os.environ, **KEYS, "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "router.cli", "worker", str(policy), "--batch", "--once"],
                          capture_output=True, text=True, env=env, timeout=120)
    assert done.returncode == 0, done.stderr
    assert fake_server.batches.created == 1
    store = SQLiteQueue(str(tmp_path / "q.db"))
    try:
        assert {store.get(t).state for t in tickets} == {"done"}  # type: ignore[union-attr]
        assert store.counts()["queued"] == 0
    finally:
        store.close()
