"""`SQLiteQueue`: the durable queue in one SQLite file (WAL, no server), shared safely by threads and processes."""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import threading
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from typing import Any

from ..errors import QueueError
from .store import BatchRecord
from .ticket import Ticket

SCHEMA_NAME = "failover-router-queue"
SCHEMA_VERSION = 1
_STATES = ("queued", "running", "batched", "done", "failed", "expired", "canceled")
_LIVE = "('queued', 'running', 'batched')"  # written the same way everywhere, so the partial index applies
_FINAL = "('done', 'failed', 'expired', 'canceled')"  # likewise, for the index of finished tickets
_FINISHED_INDEX = f"CREATE INDEX IF NOT EXISTS tickets_finished ON tickets (finished_at) WHERE state IN {_FINAL}"
_COLUMNS = ("id, route, params, created_at, expires_at, state, attempts, worker, lease_until, batch_id, "
            "result, error, finished_at")

_SCHEMA = f"""
CREATE TABLE meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE tickets (
    seq INTEGER PRIMARY KEY,
    id TEXT NOT NULL UNIQUE,
    route TEXT NOT NULL,
    params TEXT NOT NULL,
    created_at REAL NOT NULL,
    expires_at REAL NOT NULL,
    state TEXT NOT NULL,
    attempts INTEGER NOT NULL DEFAULT 0,
    worker TEXT,
    lease_until REAL,
    batch_id TEXT,
    result TEXT,
    error TEXT,
    finished_at REAL
);
CREATE INDEX tickets_queued ON tickets (seq) WHERE state = 'queued';
CREATE INDEX tickets_route ON tickets (route, seq) WHERE state = 'queued';
CREATE INDEX tickets_state ON tickets (state, lease_until);
CREATE INDEX tickets_expiry ON tickets (expires_at) WHERE state IN {_LIVE};
CREATE INDEX tickets_batch ON tickets (batch_id) WHERE batch_id IS NOT NULL;
{_FINISHED_INDEX};
CREATE TABLE batches (
    id TEXT PRIMARY KEY,
    route TEXT NOT NULL,
    model TEXT NOT NULL,
    ticket_ids TEXT NOT NULL,
    submitted_at REAL NOT NULL,
    state TEXT NOT NULL
);
"""

#: What an expired ticket's error says (its last round's attempts, if any, are kept).
_EXPIRED = ("json_set(COALESCE(error, '{}'), '$.type', 'Expired', '$.message', "
            "'its queue ttl ran out before a model could serve it', '$.status', NULL)")


def _row(row: Sequence[Any]) -> Ticket:
    return Ticket(row[0], row[1], json.loads(row[2]), row[3], row[4], row[5], row[6], row[7], row[8], row[9],
                  json.loads(row[10]) if row[10] is not None else None,
                  json.loads(row[11]) if row[11] is not None else None, row[12])


class SQLiteQueue:
    """The durable queue in the SQLite file `path`: a connection per thread, `BEGIN IMMEDIATE` for every
    write so two workers (threads or processes) never claim the same ticket. Times are the callers' epoch
    seconds: the store never reads a clock.

    `synchronous` is SQLite's: NORMAL (the default) survives any crash of the process (kill -9); FULL also
    survives a power cut, at an fsync per write."""

    def __init__(self, path: str | os.PathLike[str], *, synchronous: str = "NORMAL",
                 busy_timeout: float = 30.0) -> None:
        self.path = os.fspath(path)
        if synchronous.upper() not in ("OFF", "NORMAL", "FULL", "EXTRA"):
            raise ValueError(f"synchronous must be NORMAL, FULL, EXTRA or OFF, not {synchronous!r}")
        self._synchronous = synchronous.upper()
        self._busy_timeout = busy_timeout
        self._local = threading.local()
        # every connection this process opened, by the thread it belongs to (closed once that thread ends)
        self._all: dict[threading.Thread, tuple[int, sqlite3.Connection]] = {}
        self._lock = threading.Lock()
        self._closed = False
        self._check_folder()
        try:
            self._prepare(self._conn())
        except sqlite3.DatabaseError as exc:
            self.close()
            raise self._error(exc, "is not a usable SQLite database: point queue.sqlite.path at a new file "
                              "(or restore this one)") from None
        except QueueError:
            self.close()
            raise

    def __repr__(self) -> str:
        return f"SQLiteQueue({self.path!r})"

    # -- opening ----------------------------------------------------------------------------------

    def _check_folder(self) -> None:
        folder = os.path.dirname(os.path.abspath(self.path))
        if not os.path.isdir(folder):
            raise QueueError(f"queue store {self.path}: its folder {folder} does not exist: create it, or fix "
                             f"queue.sqlite.path")
        if os.path.isdir(self.path):
            raise QueueError(f"queue store {self.path} is a folder: name a file in it for queue.sqlite.path")
        if not os.access(folder, os.W_OK | os.X_OK):
            raise QueueError(f"queue store {self.path}: its folder {folder} is not writable (SQLite writes its "
                             f"-wal and -shm files next to it): make it writable, or choose another folder")

    def _error(self, exc: BaseException, what: str) -> QueueError:
        return QueueError(f"queue store {self.path} {what} ({type(exc).__name__}: {exc})")

    def _prepare(self, db: sqlite3.Connection) -> None:
        """Create the schema in an empty file, bring an older one up to date; refuse a foreign or newer one."""
        with self._write(db):
            tables = {r[0] for r in db.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
            if not tables:
                for statement in _SCHEMA.split(";"):  # one by one: executescript() would COMMIT first
                    if statement.strip():
                        db.execute(statement)
                db.execute("INSERT INTO meta VALUES ('schema', ?), ('version', ?)", (SCHEMA_NAME, str(SCHEMA_VERSION)))
                return
            meta = dict(db.execute("SELECT key, value FROM meta").fetchall()) if "meta" in tables else {}
            self._check(meta, tables)
            self._add_finished_index(db)

    @staticmethod
    def _add_finished_index(db: sqlite3.Connection) -> None:
        """A file made before purge existed gets the index purge reads final tickets through, in the opening
        transaction (and a finish time for any final ticket without one, so it can be purged too). Only an
        index: the schema version stays, so older failover-routers sharing the file still open it."""
        if db.execute("SELECT 1 FROM sqlite_master WHERE type = 'index' AND name = 'tickets_finished'").fetchone():
            return
        db.execute(f"UPDATE tickets SET finished_at = created_at WHERE state IN {_FINAL} AND finished_at IS NULL")
        db.execute(_FINISHED_INDEX)

    def _check(self, meta: dict[str, str], tables: set[str]) -> None:
        """Refuse a file that is not a queue of a schema this version reads."""
        if meta.get("schema") != SCHEMA_NAME:
            raise QueueError(f"queue store {self.path} is a SQLite database of something else (tables: "
                             f"{', '.join(sorted(tables))}): point queue.sqlite.path at a new file")
        version = int(meta.get("version", "0"))
        if version > SCHEMA_VERSION:
            raise QueueError(f"queue store {self.path} was written by a newer failover-router (schema {version}, "
                             f"this one reads {SCHEMA_VERSION}): upgrade failover-router")
        if version < 1 or not {"tickets", "batches"} <= tables:
            raise QueueError(f"queue store {self.path} has a damaged schema (version {version}, tables "
                             f"{', '.join(sorted(tables))}): point queue.sqlite.path at a new file")

    def _conn(self) -> sqlite3.Connection:
        """This thread's connection (a fresh one in a forked child)."""
        if self._closed:
            raise QueueError(f"queue store {self.path} is closed")
        held = getattr(self._local, "conn", None)
        if held is not None and held[0] == os.getpid():
            conn: sqlite3.Connection = held[1]
            return conn
        try:
            conn = sqlite3.connect(self.path, timeout=self._busy_timeout, isolation_level=None,
                                   check_same_thread=False)
            conn.execute("PRAGMA journal_mode = WAL").fetchone()
            conn.execute(f"PRAGMA synchronous = {self._synchronous}")
        except sqlite3.DatabaseError as exc:
            raise self._error(exc, "cannot be opened as a SQLite database: point queue.sqlite.path at a new "
                              "file (or restore this one)") from None
        self._local.conn = (os.getpid(), conn)
        with self._lock:
            ended = [t for t, (pid, _) in self._all.items() if not t.is_alive() and pid == os.getpid()]
            for thread in ended:  # threads come and go (a Worker's, per drain): their connections go with them
                with contextlib.suppress(sqlite3.Error):
                    self._all.pop(thread)[1].close()
            self._all[threading.current_thread()] = (os.getpid(), conn)
        return conn

    @contextmanager
    def _write(self, db: sqlite3.Connection | None = None) -> Iterator[sqlite3.Connection]:
        """One write transaction (BEGIN IMMEDIATE: the write lock first, so no two claims interleave)."""
        db = db or self._conn()
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
        except BaseException:
            db.execute("ROLLBACK")
            raise
        db.execute("COMMIT")

    @contextmanager
    def _step(self, what: str) -> Iterator[sqlite3.Connection]:
        """A write transaction whose SQLite errors become QueueError."""
        try:
            with self._write() as db:
                yield db
        except sqlite3.Error as exc:
            raise self._error(exc, f"failed to {what}") from None

    def _read(self, sql: str, args: Sequence[Any] = ()) -> list[Any]:
        try:
            return self._conn().execute(sql, args).fetchall()
        except sqlite3.Error as exc:
            raise self._error(exc, "could not be read") from None

    # -- tickets ----------------------------------------------------------------------------------

    def put(self, tickets: Sequence[Ticket]) -> None:
        rows = [(t.id, t.route, json.dumps(t.params), t.created_at, t.expires_at, t.state, t.attempts, t.worker,
                 t.lease_until, t.batch_id, None if t.result is None else json.dumps(t.result),
                 None if t.error is None else json.dumps(t.error), t.finished_at) for t in tickets]
        with self._step("store tickets") as db:
            db.executemany(f"INSERT OR IGNORE INTO tickets ({_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?,?)", rows)

    def claim(self, worker: str, limit: int, lease: float, now: float,
              routes: Sequence[str] | None = None) -> list[Ticket]:
        if lease <= 0:
            raise ValueError(f"a lease must be positive, not {lease!r}")
        claimed: list[int] = []
        scope = [(" AND route = ?", (r,)) for r in routes] if routes is not None else [("", ())]
        with self._step("claim tickets") as db:
            # first the tickets of workers whose lease ended (their oldest first), then the queue in order
            for where, arg in scope:
                for sql, when in ((f"SELECT seq, expires_at FROM tickets WHERE state = 'running' AND lease_until <= ?"
                                   f"{where} ORDER BY lease_until LIMIT ?", (now,)),
                                  (f"SELECT seq, expires_at FROM tickets WHERE state = 'queued'{where} "
                                   "ORDER BY seq LIMIT ?", ())):
                    claimed += self._take(db, sql, (*when, *arg), worker, limit - len(claimed), lease, now)
            marks = ",".join("?" * len(claimed))
            found = db.execute(f"SELECT {_COLUMNS} FROM tickets WHERE seq IN ({marks}) ORDER BY seq",
                               claimed).fetchall() if claimed else []
        return [_row(r) for r in found]

    @staticmethod
    def _take(db: sqlite3.Connection, sql: str, args: tuple[Any, ...], worker: str, limit: int, lease: float,
              now: float) -> list[int]:
        """Claim up to `limit` of the tickets `sql` finds, ending the expired ones it meets on the way."""
        taken: list[int] = []
        while len(taken) < limit:
            want = limit - len(taken)
            rows = db.execute(sql, (*args, want)).fetchall()
            alive = [seq for seq, expires in rows if expires > now]
            db.executemany(f"UPDATE tickets SET state = 'expired', error = {_EXPIRED}, worker = NULL, "
                           "lease_until = NULL, finished_at = ? WHERE seq = ?",
                           [(now, seq) for seq, expires in rows if expires <= now])
            db.executemany("UPDATE tickets SET state = 'running', worker = ?, lease_until = ? WHERE seq = ?",
                           [(worker, now + lease, seq) for seq in alive])
            taken += alive
            if len(rows) < want:
                break
        return taken

    def renew(self, ticket_id: str, worker: str, lease: float, now: float) -> bool:
        with self._step("renew a lease") as db:
            cur = db.execute("UPDATE tickets SET lease_until = ? WHERE id = ? AND state = 'running' AND worker = ?",
                             (now + lease, ticket_id, worker))
            return cur.rowcount == 1

    @staticmethod
    def _owned(worker: str | None) -> tuple[str, tuple[Any, ...]]:
        """The condition of a ticket `worker` may end (None: one nobody holds, e.g. a batch's)."""
        if worker is None:
            return "state IN ('queued', 'batched')", ()
        return "state = 'running' AND worker = ?", (worker,)

    def finish(self, ticket_id: str, worker: str | None, result: Mapping[str, Any], now: float) -> bool:
        owned, args = self._owned(worker)
        with self._step("store a result") as db:
            cur = db.execute(f"UPDATE tickets SET state = 'done', result = ?, lease_until = NULL, finished_at = ? "
                             f"WHERE id = ? AND {owned}", (json.dumps(result), now, ticket_id, *args))
            return cur.rowcount == 1

    def fail(self, ticket_id: str, worker: str | None, error: Mapping[str, Any], now: float, *,
             final: bool) -> bool:
        owned, args = self._owned(worker)
        text = json.dumps(error)
        with self._step("store a failure") as db:
            if final:
                sql = ("UPDATE tickets SET state = 'failed', error = ?, attempts = attempts + 1, lease_until = NULL, "
                       f"finished_at = ? WHERE id = ? AND {owned}")
                return db.execute(sql, (text, now, ticket_id, *args)).rowcount == 1
            # queued again for a later round, unless its ttl ran out meanwhile
            sql = ("UPDATE tickets SET attempts = attempts + 1, lease_until = NULL, worker = NULL, error = ?, "
                   "state = CASE WHEN expires_at <= ? THEN 'expired' ELSE 'queued' END, "
                   "finished_at = CASE WHEN expires_at <= ? THEN ? END "
                   f"WHERE id = ? AND {owned}")
            if db.execute(sql, (text, now, now, now, ticket_id, *args)).rowcount != 1:
                return False
            db.execute(f"UPDATE tickets SET error = {_EXPIRED} WHERE id = ? AND state = 'expired'", (ticket_id,))
            return True

    def release(self, ticket_id: str, worker: str) -> bool:
        with self._step("release a ticket") as db:
            cur = db.execute("UPDATE tickets SET state = 'queued', worker = NULL, lease_until = NULL "
                             "WHERE id = ? AND state = 'running' AND worker = ?", (ticket_id, worker))
            return cur.rowcount == 1

    def cancel(self, ticket_id: str, now: float) -> bool:
        error = json.dumps({"type": "canceled", "message": "its batch was canceled", "status": None, "attempts": []})
        with self._step("cancel a ticket") as db:
            cur = db.execute("UPDATE tickets SET state = 'canceled', error = COALESCE(error, ?), lease_until = NULL, "
                             f"finished_at = ? WHERE id = ? AND state IN {_LIVE}", (error, now, ticket_id))
            return cur.rowcount == 1

    def get(self, ticket_id: str) -> Ticket | None:
        rows = self._read(f"SELECT {_COLUMNS} FROM tickets WHERE id = ?", (ticket_id,))
        return _row(rows[0]) if rows else None

    def counts(self) -> dict[str, int]:
        out = dict.fromkeys(_STATES, 0)
        for state, n in self._read("SELECT state, COUNT(*) FROM tickets GROUP BY state"):
            out[state] = n
        return out

    def expire(self, now: float) -> int:
        """Ends every queued or batched ticket past its `expires_at`, and running ones whose lease ended too
        (a ticket a live worker is serving right now is left to finish)."""
        with self._step("expire tickets") as db:
            cur = db.execute(f"UPDATE tickets SET state = 'expired', error = {_EXPIRED}, worker = NULL, "
                             f"lease_until = NULL, finished_at = ? WHERE state IN {_LIVE} AND expires_at <= ? "
                             "AND NOT (state = 'running' AND lease_until > ?)", (now, now, now))
            return cur.rowcount

    def purge(self, before: float) -> int:
        with self._step("purge finished tickets") as db:
            # INDEXED BY: without statistics SQLite would rather walk tickets_state, i.e. every final ticket
            old = f"tickets INDEXED BY tickets_finished WHERE state IN {_FINAL} AND finished_at < ?"
            batches = [r[0] for r in db.execute(f"SELECT DISTINCT batch_id FROM {old} AND batch_id IS NOT NULL",
                                                (before,))]
            purged = db.execute(f"DELETE FROM {old}", (before,)).rowcount
            # an ended batch whose tickets are all gone: nothing can read or resume it any more
            db.executemany("DELETE FROM batches WHERE id = ? AND state = 'ended' AND NOT EXISTS (SELECT 1 FROM "
                           "json_each(batches.ticket_ids) AS j JOIN tickets AS t ON t.id = j.value)",
                           [(b,) for b in batches])
            return purged

    # -- Message Batches --------------------------------------------------------------------------

    def save_batch(self, batch: BatchRecord) -> None:
        with self._step("record a batch") as db:
            db.execute("INSERT OR REPLACE INTO batches VALUES (?, ?, ?, ?, ?, ?)",
                       (batch.id, batch.route, batch.model, json.dumps(list(batch.ticket_ids)), batch.submitted_at,
                        batch.state))
            db.executemany("UPDATE tickets SET state = 'batched', batch_id = ?, worker = NULL, lease_until = NULL "
                           f"WHERE id = ? AND state IN {_LIVE}", [(batch.id, t) for t in batch.ticket_ids])

    def open_batches(self) -> list[BatchRecord]:
        rows = self._read("SELECT id, route, model, ticket_ids, submitted_at, state FROM batches "
                          "WHERE state = 'in_progress' ORDER BY submitted_at")
        return [BatchRecord(r[0], r[1], r[2], tuple(json.loads(r[3])), r[4], r[5]) for r in rows]

    def end_batch(self, batch_id: str) -> None:
        with self._step("end a batch") as db:
            db.execute("UPDATE batches SET state = 'ended' WHERE id = ?", (batch_id,))

    def requeue(self, ticket_id: str, now: float) -> bool:
        with self._step("queue a ticket again") as db:
            cur = db.execute("UPDATE tickets SET state = 'queued', batch_id = NULL, worker = NULL, lease_until = NULL "
                             f"WHERE id = ? AND state IN {_LIVE}", (ticket_id,))
            return cur.rowcount == 1

    def close(self) -> None:
        with self._lock:
            self._closed = True
            conns, self._all = self._all, {}
        for pid, conn in conns.values():
            if pid == os.getpid():  # a connection a parent process opened before a fork is the parent's to close
                with contextlib.suppress(sqlite3.Error):
                    conn.close()
