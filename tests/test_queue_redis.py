"""RedisStreamQueue on a real redis-server: the store contract, dead consumers' entries taken over, secrets
kept out, a Redis restart outlived. (tests/test_worker.py runs every Worker test on Redis Streams too.)"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator

import pytest

from router.clock import SYSTEM
from router.errors import QueueError
from router.queue.redis_streams import RedisStreamQueue
from router.queue.store import QueueStore
from router.queue.worker import Worker
from router.testing import FakeServer

from . import _queue_contract as contract
from ._queue_setup import healthy, queue_policy, redis_store, router_for
from ._redis import RedisServer

PASSWORD = "queue-pass-5f1c9e0b7d2a"


@pytest.fixture
def stream() -> str:
    return f"fr:test:{uuid.uuid4().hex[:8]}"


@pytest.fixture
def store(redis_server: RedisServer, stream: str) -> Iterator[RedisStreamQueue]:
    s = RedisStreamQueue(redis_server.url, stream=stream, timeout=2.0)
    yield s
    s.close()


@pytest.mark.parametrize("check", contract.CONTRACT, ids=lambda c: c.__name__)
def test_contract(store: RedisStreamQueue, check: Callable[[QueueStore, contract.Lapse], None]) -> None:
    check(store, SYSTEM.sleep)


def test_the_stream_holds_only_live_entries(store: RedisStreamQueue, redis_server: RedisServer, stream: str) -> None:
    store.put([contract.ticket(n) for n in range(4)])
    client = redis_server.client(decode_responses=True)
    assert client.xlen(stream) == 4
    for t in store.claim("w", 4, 10.0, contract.NOW):
        assert store.finish(t.id, "w", {"message": "m"}, contract.NOW)
    assert client.xlen(stream) == 0  # final states XACK and XDEL their entry
    assert client.xpending(stream, "fr-workers")["pending"] == 0
    assert client.zcard(f"{stream}:expiry") == 0


def test_a_dead_consumers_entries_are_taken_over_after_the_lease(store: RedisStreamQueue) -> None:
    store.put([contract.ticket(n) for n in range(3)])
    now = SYSTEM.wall()
    dead = store.claim("dead", 3, 0.2, now)
    assert len(dead) == 3
    assert store.claim("alive", 3, 0.2, now) == []  # pending for "dead", its lease running
    SYSTEM.sleep(0.3)
    taken = store.claim("alive", 3, 0.2, SYSTEM.wall())
    assert sorted(t.id for t in taken) == sorted(t.id for t in dead) and {t.worker for t in taken} == {"alive"}
    assert not store.finish(dead[0].id, "dead", {"message": "late"}, SYSTEM.wall())
    assert all(store.finish(t.id, "alive", {"message": "m"}, SYSTEM.wall()) for t in taken)


def test_a_renewed_lease_is_not_taken_over(store: RedisStreamQueue) -> None:
    store.put([contract.ticket(1)])
    (t,) = store.claim("w1", 1, 0.3, SYSTEM.wall())
    for _ in range(3):
        SYSTEM.sleep(0.15)
        assert store.renew(t.id, "w1", 0.3, SYSTEM.wall())
        assert store.claim("w2", 1, 0.3, SYSTEM.wall()) == []
    assert store.finish(t.id, "w1", {"message": "m"}, SYSTEM.wall())


def test_the_url_and_its_password_are_never_shown_or_stored(redis_factory: Callable[..., RedisServer],
                                                            stream: str) -> None:
    server = redis_factory(password=PASSWORD)
    s = RedisStreamQueue(server.url, stream=stream)
    try:
        s.put([contract.ticket(1)])
        assert PASSWORD not in repr(s) and "127.0.0.1" in repr(s)
        assert PASSWORD not in str(s) and PASSWORD not in f"{s.where} {s.stream} {s.group}"
        client = server.client(decode_responses=True)
        for key in client.scan_iter(f"{stream}*"):
            kind = client.type(key)
            dumped = {"hash": client.hgetall, "stream": client.xrange, "zset": lambda k: client.zrange(k, 0, -1),
                      "set": client.smembers, "string": client.get}[kind](key)
            assert PASSWORD not in str(dumped)
    finally:
        s.close()
    wrong = server.url.replace(PASSWORD, "not-the-" + PASSWORD[::-1])
    with pytest.raises(QueueError) as e:
        RedisStreamQueue(wrong, stream=stream)
    assert f"127.0.0.1:{server.port}" in str(e.value) and PASSWORD[::-1] not in str(e.value)


def test_an_unreachable_redis_is_a_clear_error(redis_server: RedisServer) -> None:
    port = redis_server.port
    redis_server.kill()
    with pytest.raises(QueueError) as e:
        RedisStreamQueue(f"redis://:{PASSWORD}@127.0.0.1:{port}/0", timeout=0.5)
    assert f"127.0.0.1:{port}" in str(e.value) and "start Redis" in str(e.value)
    assert PASSWORD not in str(e.value)


def test_a_key_that_is_not_a_stream_is_refused(redis_server: RedisServer) -> None:
    redis_server.client().set("fr:taken", "app data")
    with pytest.raises(QueueError, match="holds a string"):
        RedisStreamQueue(redis_server.url, stream="fr:taken")


def test_a_worker_outlives_a_redis_restart(redis_server: RedisServer, fake_server: FakeServer, stream: str) -> None:
    r = router_for(queue_policy(fake_server.url, redis_store(redis_server.url, stream)))
    healthy(fake_server)
    worker = Worker(r, poll=0.02).start()
    try:
        redis_server.kill()  # the worker's claims fail while it is down...
        SYSTEM.sleep(0.3)
        redis_server.start()  # ...and it comes back empty (no persistence): stream and group are made again
        ticket = r.submit(max_tokens=8, messages=[{"role": "user", "content": "after the restart"}])
        assert r.result(ticket, timeout=30).content[0].text == "served"  # type: ignore[union-attr]
        assert worker._loop is not None and worker._loop.is_alive()
    finally:
        worker.stop()
        r.close()


def test_keep_lets_redis_forget_ended_tickets(redis_server: RedisServer, stream: str) -> None:
    s = RedisStreamQueue(redis_server.url, stream=stream, keep=3600)
    try:
        s.put([contract.ticket(1), contract.ticket(2)])
        (a, b) = s.claim("w", 2, 10.0, contract.NOW)
        assert s.finish(a.id, "w", {"message": "m"}, contract.NOW)
        assert s.fail(b.id, "w", {"type": "X", "message": "x"}, contract.NOW, final=False)  # queued again: kept
        client = redis_server.client()
        assert 0 < client.ttl(f"{stream}:t:{a.id}") <= 3600
        assert client.ttl(f"{stream}:t:{b.id}") == -1
    finally:
        s.close()
