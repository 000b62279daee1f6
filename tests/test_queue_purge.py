"""Purging finished queue tickets after `queue.keep`: both stores (a real SQLite file, a real redis-server),
the worker's own purge on a virtual clock, Router.purge_queue, the `purge` command, and the policy key."""

from __future__ import annotations

import sqlite3
import threading
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from router import Router, parse_policy
from router.cli import main
from router.clock import SYSTEM, VirtualClock
from router.errors import UnknownTicket
from router.policy import PolicyError
from router.queue.redis_streams import RedisStreamQueue
from router.queue.sqlite import SQLiteQueue
from router.queue.store import BatchRecord, QueueStore
from router.queue.ticket import Ticket
from router.queue.waiting import wait
from router.queue.worker import Worker
from router.testing import FakeServer

from ._queue_contract import NOW, ticket
from ._queue_setup import healthy, queue_policy, redis_store, router_for, sqlite_store
from ._redis import RedisServer
from .conftest import KEYS

USER = [{"role": "user", "content": "Hi"}]


@pytest.fixture(params=["sqlite", "redis"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[QueueStore]:
    """A real SQLite file, or Redis Streams on a real redis-server."""
    s: QueueStore
    if request.param == "sqlite":
        s = SQLiteQueue(tmp_path / "queue.db")
    else:
        server = request.getfixturevalue("redis_server")
        s = RedisStreamQueue(server.url, stream=f"fr:purge:{uuid.uuid4().hex[:8]}", timeout=2.0)
    yield s
    s.close()


def _final_and_live(store: QueueStore) -> dict[str, str]:
    """Four tickets that ended at NOW (done, failed, canceled, expired), one done at NOW + 1000, and a
    running, a queued and a batched one created long ago: name -> ticket id."""
    ids = {name: ticket(n).id for n, name in enumerate(("done", "failed", "canceled", "new", "running"))}
    store.put([ticket(n) for n in range(5)])
    assert len(store.claim("w", 5, 60.0, NOW)) == 5
    assert store.finish(ids["done"], "w", {"message": "m"}, NOW)
    assert store.fail(ids["failed"], "w", {"type": "X", "message": "x"}, NOW, final=True)
    assert store.cancel(ids["canceled"], NOW)
    assert store.finish(ids["new"], "w", {"message": "m"}, NOW + 1000)
    ancient = NOW - 10**6
    store.put([ticket(5, created=NOW - 100, ttl=10), ticket(6, created=ancient, ttl=10**7),
               ticket(7, created=ancient, ttl=10**7)])
    assert store.expire(NOW) == 1
    store.save_batch(BatchRecord("msgbatch_live", "default", "primary", (ticket(7).id,), ancient))
    return {**ids, "expired": ticket(5).id, "queued": ticket(6).id, "batched": ticket(7).id}


def test_old_final_tickets_are_purged_and_nothing_else(store: QueueStore) -> None:
    ids = _final_and_live(store)
    assert store.purge(NOW + 500) == 4
    for name in ("done", "failed", "canceled", "expired"):
        assert store.get(ids[name]) is None, name
        with pytest.raises(UnknownTicket, match=r"purged.*queue\.keep|queue\.keep.*purged"):
            wait(store, ids[name], 0, SYSTEM)  # what r.result() reads
    states = {name: store.get(ids[name]).state for name in ("new", "running", "queued", "batched")}  # type: ignore[union-attr]
    assert states == {"new": "done", "running": "running", "queued": "queued", "batched": "batched"}
    assert store.counts() == {"queued": 1, "running": 1, "batched": 1, "done": 1, "failed": 0, "expired": 0,
                              "canceled": 0}
    assert store.purge(NOW + 500) == 0  # idempotent
    assert store.purge(NOW + 1000) == 0  # `before` is strict: finished at NOW + 1000 is not older
    assert store.purge(NOW + 1001) == 1 and store.get(ids["new"]) is None
    assert store.purge(NOW + 10**9) == 0  # live tickets of any age stay
    assert {store.get(ids[n]).state for n in ("running", "queued", "batched")} == {  # type: ignore[union-attr]
        "running", "queued", "batched"}


def test_a_purge_never_deletes_the_ticket_being_finished(store: QueueStore) -> None:
    store.put([ticket(1)])
    (t,) = store.claim("w", 1, 60.0, NOW)
    assert store.purge(NOW + 10**6) == 0  # running: not final yet, whatever `before`
    assert store.finish(t.id, "w", {"message": "m"}, NOW + 5)
    assert store.purge(NOW + 5) == 0
    got = store.get(t.id)
    assert got is not None and got.state == "done" and got.result == {"message": "m"}
    # many finishes while purges run: each finished ticket is newer than what the purges delete
    store.put([ticket(n) for n in range(10, 60)])
    claimed = store.claim("w", 50, 60.0, NOW + 10)
    assert len(claimed) == 50
    stop = threading.Event()
    purged: list[int] = []

    def purging() -> None:
        while not stop.is_set():
            purged.append(store.purge(NOW + 10))

    thread = threading.Thread(target=purging)
    thread.start()
    try:
        for c in claimed:
            assert store.finish(c.id, "w", {"message": "m"}, NOW + 10)
    finally:
        stop.set()
        thread.join()
    assert sum(purged) == 1 and len(purged) >= 1  # only the ticket finished at NOW + 5
    assert all(store.get(c.id) is not None for c in claimed)
    assert store.counts()["done"] == 50


def _batch_kept(store: QueueStore, batch_id: str) -> bool:
    if isinstance(store, SQLiteQueue):
        return bool(store._read("SELECT 1 FROM batches WHERE id = ?", (batch_id,)))
    assert isinstance(store, RedisStreamQueue)
    return bool(store._client.hexists(f"{store.stream}:batches", batch_id))


def test_an_ended_batch_goes_with_its_last_ticket(store: QueueStore) -> None:
    store.put([ticket(1), ticket(2), ticket(3)])
    store.save_batch(BatchRecord("msgbatch_a", "default", "primary", (ticket(1).id, ticket(2).id), NOW))
    store.save_batch(BatchRecord("msgbatch_b", "default", "primary", (ticket(3).id,), NOW))
    assert store.finish(ticket(1).id, None, {"message": "m"}, NOW)
    assert store.finish(ticket(2).id, None, {"message": "m"}, NOW + 100)
    assert store.finish(ticket(3).id, None, {"message": "m"}, NOW)  # its batch not ended yet
    store.end_batch("msgbatch_a")
    assert store.purge(NOW + 50) == 2
    assert _batch_kept(store, "msgbatch_a")  # ticket 2 is still readable
    assert _batch_kept(store, "msgbatch_b") and [b.id for b in store.open_batches()] == ["msgbatch_b"]
    assert store.purge(NOW + 150) == 1
    assert not _batch_kept(store, "msgbatch_a")


def test_an_sqlite_file_from_before_purge_gets_its_index(tmp_path: Path) -> None:
    path = tmp_path / "old.db"
    s = SQLiteQueue(path)
    s.put([ticket(1), ticket(2), Ticket("tkt_legacy", "default", {}, NOW, NOW + 10, "done", finished_at=NOW)])
    (a, _) = s.claim("w", 2, 60.0, NOW)
    assert s.finish(a.id, "w", {"message": "m"}, NOW)
    s.close()
    db = sqlite3.connect(path)  # what a file of the version before purge looks like
    db.execute("DROP INDEX tickets_finished")
    db.execute("UPDATE tickets SET finished_at = NULL WHERE id = 'tkt_legacy'")
    db.commit()
    db.close()
    again = SQLiteQueue(path)
    try:
        assert again.purge(NOW + 1) == 2  # its final tickets, the one without a finish time too
        assert again.counts()["running"] == 1
        plan = again._read("EXPLAIN QUERY PLAN DELETE FROM tickets INDEXED BY tickets_finished WHERE state IN "
                           "('done', 'failed', 'expired', 'canceled') AND finished_at < 1")
        assert "tickets_finished" in str(plan)
    finally:
        again.close()
    meta = dict(sqlite3.connect(path).execute("SELECT key, value FROM meta").fetchall())
    assert meta["version"] == "1"  # an index only: older failover-routers still open the file


def test_a_redis_stream_from_before_purge_is_indexed(redis_server: RedisServer) -> None:
    stream = f"fr:purge:{uuid.uuid4().hex[:8]}"
    s = RedisStreamQueue(redis_server.url, stream=stream)
    s.put([ticket(1), ticket(2)])
    (a, _) = s.claim("w", 2, 60.0, NOW)
    assert s.finish(a.id, "w", {"message": "m"}, NOW)
    s.close()
    client = redis_server.client(decode_responses=True)
    client.delete(f"{stream}:finished")  # what a stream of the version before purge looks like
    client.hdel(f"{stream}:meta", "finished_index")
    again = RedisStreamQueue(redis_server.url, stream=stream)
    try:
        assert again.purge(NOW + 1) == 1 and again.get(a.id) is None
        assert again.counts()["running"] == 1
    finally:
        again.close()


def test_redis_purges_a_backlog_in_bounded_steps(redis_server: RedisServer, monkeypatch: pytest.MonkeyPatch) -> None:
    from router.queue import redis_streams

    monkeypatch.setattr(redis_streams, "PURGE_STEP", 7)
    s = RedisStreamQueue(redis_server.url, stream=f"fr:purge:{uuid.uuid4().hex[:8]}")
    try:
        s.put([ticket(n) for n in range(30)])
        for t in s.claim("w", 30, 60.0, NOW):
            assert s.finish(t.id, "w", {"message": "m"}, NOW)
        assert s.purge(NOW + 1) == 30
        assert s.counts()["done"] == 0 and s._client.zcard(f"{s.stream}:finished") == 0
    finally:
        s.close()


# -- the worker, the Router, the command ----------------------------------------------------------


@pytest.fixture(params=["sqlite", "redis"])
def router(request: pytest.FixtureRequest, fake_server: FakeServer, tmp_path: Path) -> Iterator[Router]:
    """A Router whose queue (keep: 30s) is a SQLite file, or Redis Streams on a real redis-server."""
    if request.param == "sqlite":
        where = sqlite_store(tmp_path / "queue.db")
    else:
        where = redis_store(request.getfixturevalue("redis_server").url, f"fr:purge:{uuid.uuid4().hex[:8]}")
    r = router_for(queue_policy(fake_server.url, f"{where}, keep: 30s"))
    yield r
    r.close()


def test_the_worker_purges_on_its_own_clock(router: Router, fake_server: FakeServer) -> None:
    healthy(fake_server)
    served = [router.submit(max_tokens=8, messages=USER) for _ in range(3)]
    assert Worker(router, poll=0.02).drain(timeout=30).done == 3
    router.force_open("primary")
    router.force_open("fallback")
    waiting = router.submit(max_tokens=8, messages=USER)  # stays queued: no model may serve it
    clock = VirtualClock(epoch=SYSTEM.wall() + 1)
    worker = Worker(router, poll=0.02, clock=clock.clock())
    assert worker.keep == 30.0
    assert worker.drain(timeout=25).purged == 0  # virtual seconds: the tickets are younger than keep
    assert worker.drain(timeout=100).purged == 3
    for ticket_id in served:
        with pytest.raises(UnknownTicket, match=r"queue\.keep"):
            router.result(ticket_id, timeout=0)
    assert router.queue.get(waiting).state == "queued"  # type: ignore[union-attr]


def test_router_purge_queue(router: Router, fake_server: FakeServer) -> None:
    healthy(fake_server)
    ticket_id = router.submit(max_tokens=8, messages=USER)
    Worker(router, poll=0.02).drain(timeout=30)
    assert router.purge_queue() == 0  # finished just now: younger than keep (30s)
    assert router.result(ticket_id, timeout=0).content[0].text == "served"  # type: ignore[union-attr]
    assert router.purge_queue(older_than=0) == 1
    with pytest.raises(UnknownTicket):
        router.result(ticket_id, timeout=0)
    with pytest.raises(ValueError, match="older_than"):
        router.purge_queue(older_than=-1)


def _policy_file(tmp_path: Path, queue: str) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(f"""version: 1
{queue}
models:
  primary: {{provider: anthropic, model: claude-primary, base_url: 'http://127.0.0.1:9', api_key: '${{KEY_PRIMARY}}'}}
routes:
  default: [primary]
""")
    return path


def test_the_purge_command_prints_the_count(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                            capsys: pytest.CaptureFixture[str]) -> None:
    for name, value in KEYS.items():
        monkeypatch.setenv(name, value)
    db = tmp_path / "queue.db"
    wall = SYSTEM.wall()
    s = SQLiteQueue(db)
    s.put([Ticket(f"tkt_{n}", "default", {}, wall - 10 * 86_400, wall, "done", finished_at=wall - 8 * 86_400)
           for n in range(3)] + [Ticket("tkt_recent", "default", {}, wall - 3600, wall, "done", finished_at=wall - 60),
                                 Ticket("tkt_live", "default", {}, wall - 30 * 86_400, wall + 3600)])
    s.close()
    policy = _policy_file(tmp_path, f"queue: {{sqlite: {{path: '{db}'}}}}")
    assert main(["purge", str(policy)]) == 0  # the default keep: 7 days
    assert "purged 3 finished requests older than 7d" in capsys.readouterr().out
    assert main(["purge", str(policy), "--older-than", "30s"]) == 0
    assert "purged 1 finished request older than 30s" in capsys.readouterr().out
    s = SQLiteQueue(db)
    assert s.counts()["queued"] == 1 and s.counts()["done"] == 0
    s.close()


def test_the_purge_command_needs_a_queue(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                         capsys: pytest.CaptureFixture[str]) -> None:
    for name, value in KEYS.items():
        monkeypatch.setenv(name, value)
    assert main(["purge", str(_policy_file(tmp_path, ""))]) == 2
    assert "has no queue: section" in capsys.readouterr().err


# -- the policy key -------------------------------------------------------------------------------


def _keep(extra: str) -> float:
    text = f"""version: 1
queue: {{sqlite: {{path: ./q.db}}{extra}}}
models:
  primary: {{provider: anthropic, model: claude-primary, api_key: '${{KEY_PRIMARY}}'}}
routes:
  default: [primary]
"""
    config = parse_policy(text, env=KEYS).queue
    assert config is not None
    return config.keep


def test_queue_keep_parses_and_defaults_to_a_week() -> None:
    assert _keep("") == 7 * 86_400
    assert _keep(", keep: 7d") == 7 * 86_400
    assert _keep(", keep: 12h") == 12 * 3600
    assert _keep(", keep: 90") == 90


@pytest.mark.parametrize(("written", "words"), [
    ("0", "more than 0"), ("soon", "invalid duration 'soon'"), ("400d", "at most 366 days (366d), got 400d"),
    ("-1d", "invalid duration"),
])
def test_a_bad_queue_keep_is_a_policy_error_naming_the_key(written: str, words: str) -> None:
    with pytest.raises(PolicyError) as caught:
        _keep(f", keep: {written}")
    assert caught.value.key == "queue.keep" and caught.value.line == 2  # type: ignore[attr-defined]
    assert words in str(caught.value)
