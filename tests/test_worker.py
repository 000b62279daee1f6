"""The Worker over a real SQLite file and real Redis Streams, and the fake server: outages drained exactly once,
refused requests, rounds, expiry, stop, the in-process worker."""

from __future__ import annotations

import asyncio
import threading
import uuid
from pathlib import Path

import pytest

from router import AllModelsFailed, Router
from router.clock import SYSTEM, VirtualClock
from router.errors import Expired, RequestFailed
from router.events import Dequeued, Event
from router.queue.redis_streams import RedisStreamQueue
from router.queue.sqlite import SQLiteQueue
from router.queue.worker import Worker
from router.testing import FakeServer, Fault

from ._queue_setup import (
    drained_exactly_once,
    healthy,
    keys_served,
    outage,
    queue_during_outage,
    queue_policy,
    redis_store,
    router_for,
    sqlite_store,
)

USER = [{"role": "user", "content": "Hi"}]


@pytest.fixture(params=["sqlite", "redis"])
def router(request: pytest.FixtureRequest, fake_server: FakeServer, tmp_path: Path) -> Router:
    """A Router whose queue is a SQLite file, or Redis Streams on a real redis-server."""
    if request.param == "sqlite":
        store = sqlite_store(tmp_path / "queue.db")
    else:
        server = request.getfixturevalue("redis_server")
        store = redis_store(server.url, f"fr:worker:{uuid.uuid4().hex[:8]}")
    r = router_for(queue_policy(fake_server.url, store, attempts=3))
    yield r  # type: ignore[misc]
    r.close()


def test_a_thousand_requests_queued_in_an_outage_complete_exactly_once(router: Router,
                                                                      fake_server: FakeServer) -> None:
    events: list[Event] = []
    router.add_listener(events.append)
    tickets = queue_during_outage(router, fake_server, 1000)
    assert router.queue is not None and router.queue.counts()["queued"] == 1000
    fake_server.reset()
    healthy(fake_server)
    stats = Worker(router, poll=0.05).drain(timeout=120)
    assert (stats.done, stats.failed, stats.lost, stats.running) == (1000, 0, 0, 0)
    drained_exactly_once(router, fake_server, tickets)
    ended = [e for e in events if isinstance(e, Dequeued)]
    assert sorted(e.ticket for e in ended) == sorted(tickets) and {e.state for e in ended} == {"done"}


def test_submit_then_aresult(router: Router, fake_server: FakeServer) -> None:
    healthy(fake_server)
    ticket = router.submit(max_tokens=8, messages=USER, extra_headers={"X-Trace": "t-1", "Authorization": "Bearer x"})
    assert fake_server.count("claude-primary") == 0  # fire and forget: nothing sent yet
    worker = Worker(router, poll=0.02).start()
    try:
        message = asyncio.run(router.aresult(ticket, timeout=30))
    finally:
        worker.stop()
    assert message.content[0].text == "served" and message.routing.model == "primary"  # type: ignore[union-attr]
    (sent,) = fake_server.received("claude-primary")
    assert sent.headers["idempotency-key"] == ticket and sent.headers["x-trace"] == "t-1"
    stored = router.queue.get(ticket)  # type: ignore[union-attr]
    assert stored is not None and "Authorization" not in stored.params["extra_headers"]


def test_a_refused_request_fails_at_once_with_its_status(router: Router, fake_server: FakeServer) -> None:
    fake_server.plan("claude-primary", default=Fault.status(400, error_type="invalid_request_error",
                                                            message="max_tokens: too large"))
    ticket = router.submit(max_tokens=8, messages=USER)
    stats = Worker(router, poll=0.02).drain(timeout=30)
    assert stats.failed == 1 and fake_server.count("claude-primary") == 1
    assert fake_server.count("claude-fallback") == 0  # a caller error is not failed over
    with pytest.raises(RequestFailed) as e:
        router.result(ticket, timeout=0)
    assert e.value.status == 400 and "max_tokens: too large" in str(e.value)
    stored = router.queue.get(ticket)  # type: ignore[union-attr]
    assert stored is not None and (stored.state, stored.attempts) == ("failed", 1)


def test_exhausted_rounds_are_retried_up_to_attempts_then_failed(router: Router, fake_server: FakeServer) -> None:
    outage(fake_server, Fault.status(500, error_type="api_error"))
    ticket = router.submit(max_tokens=8, messages=USER)
    stats = Worker(router, poll=0.02).drain(timeout=60)
    assert (stats.failed, stats.requeued) == (1, 2)
    stored = router.queue.get(ticket)  # type: ignore[union-attr]
    assert stored is not None and (stored.state, stored.attempts) == ("failed", 3)
    with pytest.raises(AllModelsFailed) as e:
        router.result(ticket, timeout=0)
    assert "after 3 rounds" in str(e.value) and e.value.attempts
    # each round went to the models (a real request at least), never two rounds at once
    sent = fake_server.count("claude-primary") + fake_server.count("claude-fallback")
    assert 3 <= sent <= 6


def test_a_round_that_recovers_serves_the_ticket(router: Router, fake_server: FakeServer) -> None:
    for model in ("claude-primary", "claude-fallback"):
        fake_server.plan(model, [Fault.status(529, error_type="overloaded_error")] * 2, default=Fault.ok(text="served"))
    ticket = router.submit(max_tokens=8, messages=USER)
    Worker(router, poll=0.02).drain(timeout=60)
    stored = router.queue.get(ticket)  # type: ignore[union-attr]
    assert stored is not None and stored.state == "done" and stored.attempts == 2
    assert router.result(ticket).content[0].text == "served"  # type: ignore[union-attr]


def test_tickets_past_their_ttl_end_expired_without_a_request(router: Router, fake_server: FakeServer) -> None:
    healthy(fake_server)
    tickets = [router.submit(max_tokens=8, messages=USER) for _ in range(3)]
    later = VirtualClock(epoch=SYSTEM.wall() + 7200)  # two hours on: past the policy's ttl of 1h
    Worker(router, poll=0.02, clock=later.clock()).drain(timeout=10)
    assert fake_server.count("claude-primary") == 0
    for ticket in tickets:
        with pytest.raises(Expired, match="expired"):
            router.result(ticket, timeout=0)
    assert router.queue.counts()["expired"] == 3  # type: ignore[union-attr]


def test_tickets_expire_while_no_model_can_serve(router: Router, fake_server: FakeServer) -> None:
    router.force_open("primary")
    router.force_open("fallback")
    ticket = router.submit(max_tokens=8, messages=USER)
    later = VirtualClock(epoch=SYSTEM.wall() + 7200)
    stats = Worker(router, poll=0.02, clock=later.clock()).drain(timeout=30)
    assert stats.expired == 1 and fake_server.count("claude-primary") == 0
    with pytest.raises(Expired):
        router.result(ticket, timeout=0)


def test_stop_lets_running_requests_finish_and_loses_nothing(router: Router, fake_server: FakeServer) -> None:
    healthy(fake_server, delay=0.2)
    tickets = [router.submit(max_tokens=8, messages=USER) for _ in range(40)]
    worker = Worker(router, concurrency=4, poll=0.02).start()
    while worker.stats.done < 4:
        SYSTEM.sleep(0.02)
    stats = worker.stop()
    counts = router.queue.counts()  # type: ignore[union-attr]
    assert counts["running"] == 0 and counts["done"] + counts["queued"] == 40
    assert stats.done == counts["done"] and stats.lost == 0
    Worker(router, poll=0.02).drain(timeout=60)
    drained_exactly_once(router, fake_server, tickets)


def test_stop_with_no_grace_hands_running_work_back(router: Router, fake_server: FakeServer) -> None:
    healthy(fake_server, delay=0.5)
    tickets = [router.submit(max_tokens=8, messages=USER) for _ in range(6)]
    worker = Worker(router, concurrency=3, poll=0.02).start()
    while fake_server.count("claude-primary") < 3:
        SYSTEM.sleep(0.02)
    stats = worker.stop(grace=0)
    assert stats.released == 3
    counts = router.queue.counts()  # type: ignore[union-attr]
    assert (counts["running"], counts["queued"]) == (0, 6)
    Worker(router, poll=0.02).drain(timeout=60)
    assert router.queue.counts()["done"] == 6  # type: ignore[union-attr]
    assert all(router.result(t, timeout=0).content[0].text == "served" for t in tickets)  # type: ignore[union-attr]
    assert all(n <= 2 for n in keys_served(fake_server).values())  # the 3 handed back were sent again


def test_a_worker_needs_a_queue(fake_server: FakeServer) -> None:
    from router import parse_policy

    from .conftest import KEYS, policy_yaml

    r = Router(parse_policy(policy_yaml(fake_server.url), env=KEYS), watch=False)
    try:
        with pytest.raises(ValueError, match="no queue"):
            Worker(r)
    finally:
        r.close()


def test_concurrency_is_bounded(router: Router, fake_server: FakeServer) -> None:
    healthy(fake_server, delay=0.05)
    for _ in range(30):
        router.submit(max_tokens=8, messages=USER)
    most = 0
    lock = threading.Lock()
    worker = Worker(router, concurrency=3, poll=0.02)

    def watch(event: Event) -> None:
        nonlocal most
        with lock:
            most = max(most, worker.stats.running)

    router.add_listener(watch)
    stats = worker.drain(timeout=60)
    assert stats.done == 30 and 1 <= most <= 3


def test_an_in_process_worker_serves_what_an_outage_queued(fake_server: FakeServer, tmp_path: Path) -> None:
    from router import parse_policy
    from router.errors import Queued

    from .conftest import KEYS, policy_yaml

    text = queue_policy(fake_server.url, sqlite_store(tmp_path / "queue.db"))
    outage(fake_server)
    r = Router(parse_policy(text, env=KEYS), clock=SYSTEM, watch=False, worker=True)
    try:
        with pytest.raises(Queued) as e:
            r.complete(max_tokens=8, messages=USER)
        healthy(fake_server)
        message = r.result(e.value.ticket, timeout=60)
        assert message.content[0].text == "served"  # type: ignore[union-attr]
        assert keys_served(fake_server)[e.value.ticket] == 1
    finally:
        r.close()
    assert not [t for t in threading.enumerate() if t.name.startswith("queue-worker")]  # close() stopped it
    with pytest.raises(ValueError, match="worker=True needs a queue"):
        Router(parse_policy(policy_yaml(fake_server.url), env=KEYS), watch=False, worker=True)


def test_a_request_longer_than_the_lease_keeps_its_lease(router: Router, fake_server: FakeServer) -> None:
    healthy(fake_server, delay=0.8)  # each request takes more than twice the lease
    tickets = [router.submit(max_tokens=8, messages=USER) for _ in range(4)]
    first = Worker(router, concurrency=4, lease=0.3, poll=0.02).start()
    while fake_server.count("claude-primary") < 4:
        SYSTEM.sleep(0.02)
    second = Worker(router, concurrency=4, lease=0.3, poll=0.02)  # would take over any lease left to lapse
    stats = second.drain(timeout=60)
    first.stop()
    assert stats.done == 0 and first.stats.done == 4 and first.stats.lost == 0
    assert all(router.result(t, timeout=0).content[0].text == "served" for t in tickets)  # type: ignore[union-attr]
    assert keys_served(fake_server) == dict.fromkeys(tickets, 1)


def test_the_worker_command_draws_its_progress_bar(fake_server: FakeServer, tmp_path: Path,
                                                   monkeypatch: pytest.MonkeyPatch) -> None:
    import io

    from router.queue.worker_cli import run_worker

    from .conftest import KEYS

    text = queue_policy(fake_server.url, sqlite_store(tmp_path / "queue.db"))
    policy = tmp_path / "policy.yaml"
    policy.write_text(text)
    r = router_for(text)
    healthy(fake_server)
    for _ in range(5):
        r.submit(max_tokens=8, messages=USER)
    for name, value in KEYS.items():
        monkeypatch.setenv(name, value)
    out = io.StringIO()
    try:
        assert run_worker(str(policy), once=True, plain=False, out=out) == 0
    finally:
        r.close()
    assert "worker stopped: queued 0  running 0  done 5" in out.getvalue()
    assert "draining" in out.getvalue() and "5/5" in out.getvalue()  # the progress bar, drawn by rich


def test_no_secret_reaches_the_store(router: Router, fake_server: FakeServer, tmp_path: Path) -> None:
    from .conftest import KEYS

    bearer = "Bearer sk-ant-api03-CALLERsecret0123456789abcdefghijklmnopqrstu"
    outage(fake_server)
    ticket = router.submit(max_tokens=8, messages=USER, extra_headers={"Authorization": bearer, "X-Api-Key": bearer,
                                                                       "X-Trace": "kept"})
    Worker(router, poll=0.02, attempts=1).drain(timeout=30)  # one failed round: an error with attempts is stored
    stored = router.queue.get(ticket)  # type: ignore[union-attr]
    assert stored is not None and stored.state == "failed" and stored.params["extra_headers"] == {"X-Trace": "kept"}
    secrets = [*KEYS.values(), bearer.split()[1]]
    if isinstance(router.queue, SQLiteQueue):
        dumped = b"".join(p.read_bytes() for p in tmp_path.glob("queue.db*")).decode("latin-1")
    else:
        assert isinstance(router.queue, RedisStreamQueue)
        client = router.queue._client
        dumped = " ".join(str(client.hgetall(k)) for k in client.scan_iter(f"{router.queue.stream}*")
                          if client.type(k) == "hash")
    assert "X-Trace" in dumped and "kept" in dumped  # the dump does show what was stored
    assert not [s for s in secrets if s in dumped]


def test_the_queue_benchmark_runs(fake_server: FakeServer, tmp_path: Path) -> None:
    from benchmarks import queue as bench

    rows = bench.bench_store(fake_server.url, sqlite_store(tmp_path / "bench.db"), 5, (2,))
    assert [row[0] for row in rows] == ["enqueue: Router.submit()", "drain, concurrency 2"]
    assert rows[1][3].endswith("(5/5 done)")
    healthy_rows = bench.bench_healthy(fake_server.url, sqlite_store(tmp_path / "bench2.db"), 3)
    assert [row[0] for row in healthy_rows] == ["complete(), route on_exhausted: raise",
                                                "complete(), route on_exhausted: queue"]
    assert fake_server.count(bench.MODEL) >= 5 + 5 + 2 * (20 + 3)  # every call was really served
