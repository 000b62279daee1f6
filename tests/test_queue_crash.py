"""Workers in their own processes: kill -9 mid-drain loses nothing and stores each result once (SQLite file
and Redis Streams); the `failover-router worker` command drains with --once and stops cleanly on SIGTERM."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import uuid
from collections.abc import Callable
from pathlib import Path

import pytest

from router import Router
from router.clock import SYSTEM
from router.queue.worker import Worker
from router.testing import FakeServer

from ._queue_setup import (
    ROOT,
    drained_exactly_once,
    healthy,
    keys_served,
    queue_policy,
    redis_store,
    router_for,
    sqlite_store,
)
from ._redis import RedisServer
from .conftest import KEYS

USER = [{"role": "user", "content": "Hi"}]
CONCURRENCY = 4


def _policy_file(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "policy.yaml"
    path.write_text(text)
    return path


def _worker(policy: Path, *args: str) -> subprocess.Popen[str]:
    env = {**os.environ, **KEYS, "PYTHONPATH": str(ROOT)}
    return subprocess.Popen([sys.executable, "-m", "router.cli", "worker", str(policy), "--plain", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env)


def _until(condition: Callable[[], bool], proc: subprocess.Popen[str], within: float = 90.0) -> None:
    end = SYSTEM.now() + within
    while not condition():
        if proc.poll() is not None:
            raise AssertionError(f"the worker exited early ({proc.returncode}): {proc.communicate()[1][-2000:]}")
        assert SYSTEM.now() < end, "the worker made no progress"
        SYSTEM.sleep(0.05)


def _served(srv: FakeServer) -> int:
    return srv.count("claude-primary") + srv.count("claude-fallback")


def _kill_mid_drain_then_recover(r: Router, srv: FakeServer, policy: Path, n: int = 60) -> None:
    healthy(srv, delay=0.3)  # slow replies: the worker is always in the middle of some requests
    tickets = [r.submit(max_tokens=8, messages=USER) for _ in range(n)]
    proc = _worker(policy, "--concurrency", str(CONCURRENCY))
    _until(lambda: _served(srv) >= 2 * CONCURRENCY + 1, proc)
    proc.send_signal(signal.SIGKILL)
    proc.wait(10)
    store = r.queue
    assert store is not None
    counts = store.counts()
    assert counts["running"] >= 1, counts  # killed in the middle of requests, their leases left behind
    assert counts["done"] < n
    healthy(srv)
    stats = Worker(r, poll=0.02).drain(timeout=120)
    assert stats.lost == 0
    assert store.counts()["done"] == n
    for ticket in tickets:
        stored = store.get(ticket)
        assert stored is not None and stored.state == "done" and stored.result is not None
    served = keys_served(srv)
    assert set(served) == set(tickets)  # nothing lost
    twice = [k for k, c in served.items() if c > 1]
    assert all(c <= 2 for c in served.values())
    assert len(twice) <= CONCURRENCY  # only what the dead worker had in flight was sent again
    for ticket in tickets:
        assert r.result(ticket, timeout=0).content[0].text == "served"  # type: ignore[union-attr]


def test_kill_9_mid_drain_sqlite(fake_server: FakeServer, tmp_path: Path) -> None:
    text = queue_policy(fake_server.url, sqlite_store(tmp_path / "queue.db"), lease="300ms", read="10s")
    r = router_for(text)
    try:
        _kill_mid_drain_then_recover(r, fake_server, _policy_file(tmp_path, text))
    finally:
        r.close()


def test_kill_9_mid_drain_redis(fake_server: FakeServer, tmp_path: Path, redis_server: RedisServer) -> None:
    stream = f"fr:crash:{uuid.uuid4().hex[:8]}"
    text = queue_policy(fake_server.url, redis_store(redis_server.url, stream), lease="300ms", read="10s")
    r = router_for(text)
    try:
        _kill_mid_drain_then_recover(r, fake_server, _policy_file(tmp_path, text))
    finally:
        r.close()


@pytest.fixture
def sqlite_policy(fake_server: FakeServer, tmp_path: Path) -> tuple[Router, Path]:
    text = queue_policy(fake_server.url, sqlite_store(tmp_path / "queue.db"), concurrency=CONCURRENCY)
    r = router_for(text)
    yield r, _policy_file(tmp_path, text)  # type: ignore[misc]
    r.close()


def test_worker_command_once_drains_and_exits_0(fake_server: FakeServer, sqlite_policy: tuple[Router, Path]) -> None:
    r, policy = sqlite_policy
    healthy(fake_server)
    tickets = [r.submit(max_tokens=8, messages=USER) for _ in range(30)]
    proc = _worker(policy, "--once")
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 0, err
    assert "worker stopped: queued 0  running 0  done 30" in out
    drained_exactly_once(r, fake_server, tickets)


def test_worker_command_sigterm_hands_back_and_exits_0(fake_server: FakeServer,
                                                       sqlite_policy: tuple[Router, Path]) -> None:
    r, policy = sqlite_policy
    healthy(fake_server, delay=0.3)
    tickets = [r.submit(max_tokens=8, messages=USER) for _ in range(40)]
    proc = _worker(policy, "--grace", "0.1")
    _until(lambda: _served(fake_server) >= CONCURRENCY + 2, proc)
    proc.send_signal(signal.SIGTERM)
    out, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    assert "worker stopped:" in out
    counts = r.queue.counts()  # type: ignore[union-attr]
    assert counts["running"] == 0 and counts["queued"] > 0 and counts["queued"] + counts["done"] == 40
    healthy(fake_server)
    Worker(r, poll=0.02).drain(timeout=120)
    assert r.queue.counts()["done"] == 40  # type: ignore[union-attr]
    assert set(keys_served(fake_server)) == set(tickets)


def test_worker_command_without_a_queue_exits_2(tmp_path: Path, fake_server: FakeServer) -> None:
    from .conftest import policy_yaml

    policy = _policy_file(tmp_path, policy_yaml(fake_server.url))
    proc = _worker(policy, "--once")
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 2 and "no queue: section" in err


def test_worker_command_second_sigterm_hands_back_at_once(fake_server: FakeServer,
                                                         sqlite_policy: tuple[Router, Path]) -> None:
    r, policy = sqlite_policy
    healthy(fake_server, delay=300.0)  # requests that would outlast the grace and the test
    for _ in range(10):
        r.submit(max_tokens=8, messages=USER)
    proc = _worker(policy, "--grace", "300")
    _until(lambda: _served(fake_server) >= CONCURRENCY, proc)
    proc.send_signal(signal.SIGTERM)
    SYSTEM.sleep(0.2)
    proc.send_signal(signal.SIGTERM)  # do not wait for them: hand them back now
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 0, err
    counts = r.queue.counts()  # type: ignore[union-attr]
    assert (counts["running"], counts["queued"]) == (0, 10)
