"""SQLiteQueue on a real file: the store contract, processes sharing one file, and clear errors for bad files."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import pytest

from router import Router, parse_policy
from router.errors import QueueError
from router.queue.sqlite import SQLiteQueue
from router.queue.store import QueueStore

from . import _queue_contract as contract
from .conftest import KEYS

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("check", contract.CONTRACT, ids=lambda c: c.__name__)
def test_contract(tmp_path: Path, check: Callable[[QueueStore, contract.Lapse], None]) -> None:
    store = SQLiteQueue(tmp_path / "queue.db")
    try:
        check(store, lambda seconds: None)
    finally:
        store.close()


def test_tickets_survive_reopening_and_the_file_is_wal(tmp_path: Path) -> None:
    path = tmp_path / "queue.db"
    store = SQLiteQueue(path)
    store.put([contract.ticket(n) for n in range(3)])
    (t,) = store.claim("w", 1, 10.0, contract.NOW)
    store.finish(t.id, "w", {"message": {"id": "msg_1"}}, contract.NOW + 1)
    store.close()
    again = SQLiteQueue(path)
    try:
        assert again.counts()["queued"] == 2 and again.counts()["done"] == 1
        done = again.get(t.id)
        assert done is not None and done.result == {"message": {"id": "msg_1"}}
    finally:
        again.close()
    db = sqlite3.connect(path)
    try:
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert dict(db.execute("SELECT key, value FROM meta")) == {"schema": "failover-router-queue", "version": "1"}
        stored = db.execute("SELECT params FROM tickets WHERE state = 'queued' ORDER BY seq").fetchone()[0]
        assert json.loads(stored)["max_tokens"] == 8  # params are JSON text
    finally:
        db.close()


_CLAIMER = """
import json, sys
from router.queue.sqlite import SQLiteQueue
store = SQLiteQueue(sys.argv[1])
mine = []
while True:
    got = store.claim(sys.argv[2], 5, 60.0, 1_800_000_000.0)
    if not got:
        break
    for t in got:
        assert store.finish(t.id, sys.argv[2], {"by": sys.argv[2]}, 1_800_000_000.0)
        mine.append(t.id)
print(json.dumps(mine))
"""


def test_processes_sharing_the_file_never_claim_the_same_ticket(tmp_path: Path) -> None:
    path = tmp_path / "queue.db"
    store = SQLiteQueue(path)
    store.put([contract.ticket(n) for n in range(800)])
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    procs = [subprocess.Popen([sys.executable, "-c", _CLAIMER, str(path), f"p{k}"], stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, env=env, text=True) for k in range(3)]
    claimed: list[str] = []
    for p in procs:
        out, err = p.communicate(timeout=120)
        assert p.returncode == 0, err
        claimed += json.loads(out)
    try:
        assert len(claimed) == 800 and len(set(claimed)) == 800
        assert store.counts()["done"] == 800
    finally:
        store.close()


def test_garbage_file_is_a_clear_error_and_is_left_alone(tmp_path: Path) -> None:
    path = tmp_path / "queue.db"
    garbage = b"\x00\xffnot a database at all\x13" * 200
    path.write_bytes(garbage)
    with pytest.raises(QueueError) as e:
        SQLiteQueue(path)
    assert str(path) in str(e.value) and "not a database" in str(e.value)
    assert "new file" in str(e.value)
    assert path.read_bytes() == garbage


def test_missing_folder_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "nowhere" / "queue.db"
    with pytest.raises(QueueError) as e:
        SQLiteQueue(path)
    assert str(tmp_path / "nowhere") in str(e.value) and "does not exist" in str(e.value)
    assert not (tmp_path / "nowhere").exists()


def test_a_folder_as_the_path_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(QueueError, match="is a folder"):
        SQLiteQueue(tmp_path)


def _sql(path: Path, statement: str) -> None:
    db = sqlite3.connect(path)
    try:
        db.execute(statement)
        db.commit()
    finally:
        db.close()


def test_foreign_and_newer_schemas_are_refused(tmp_path: Path) -> None:
    foreign = tmp_path / "app.db"
    _sql(foreign, "CREATE TABLE users (id INTEGER)")
    with pytest.raises(QueueError, match=r"something else.*users"):
        SQLiteQueue(foreign)
    newer = tmp_path / "newer.db"
    SQLiteQueue(newer).close()
    _sql(newer, "UPDATE meta SET value = '99' WHERE key = 'version'")
    with pytest.raises(QueueError, match=r"newer failover-router.*upgrade"):
        SQLiteQueue(newer)
    damaged = tmp_path / "damaged.db"
    SQLiteQueue(damaged).close()
    _sql(damaged, "DROP TABLE tickets")
    with pytest.raises(QueueError, match="damaged schema"):
        SQLiteQueue(damaged)


def _queue_policy(path: Path) -> str:
    return textwrap.dedent(f"""\
        version: 1
        queue: {{sqlite: {{path: '{path}'}}, ttl: 1h}}
        models:
          primary: {{provider: anthropic, model: claude-primary, base_url: 'http://127.0.0.1:9',
                     api_key: '${{KEY_PRIMARY}}'}}
        routes:
          default: {{chain: [primary], on_exhausted: queue}}
        """)


def test_router_build_fails_clearly_on_a_corrupt_or_unplaceable_store(tmp_path: Path) -> None:
    corrupt = tmp_path / "queue.db"
    corrupt.write_bytes(os.urandom(4096))
    with pytest.raises(QueueError, match=r"queue\.db"):
        Router(parse_policy(_queue_policy(corrupt), env=KEYS), watch=False)
    with pytest.raises(QueueError, match="does not exist"):
        Router(parse_policy(_queue_policy(tmp_path / "gone" / "q.db"), env=KEYS), watch=False)
    fine = Router(parse_policy(_queue_policy(tmp_path / "ok.db"), env=KEYS), watch=False)
    try:
        assert isinstance(fine.queue, SQLiteQueue)
        assert fine.queue.counts()["queued"] == 0
    finally:
        fine.close()


def test_a_closed_store_says_so(tmp_path: Path) -> None:
    store = SQLiteQueue(tmp_path / "q.db")
    store.close()
    with pytest.raises(QueueError, match="closed"):
        store.counts()


def test_connections_of_ended_threads_are_closed(tmp_path: Path) -> None:
    import threading

    store = SQLiteQueue(tmp_path / "q.db")
    before = len(os.listdir("/proc/self/fd")) if os.path.isdir("/proc/self/fd") else None
    for _ in range(20):  # threads that use the store and end, as a Worker's do at each drain
        workers = [threading.Thread(target=store.counts) for _ in range(5)]
        for w in workers:
            w.start()
        for w in workers:
            w.join()
    try:
        assert len(store._all) <= 6  # this thread's and the last round's, not one per thread ever seen
        if before is not None:
            assert len(os.listdir("/proc/self/fd")) <= before + 6 * 3  # a connection holds the db, -wal, -shm
    finally:
        store.close()
