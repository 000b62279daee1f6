"""`RedisStreamQueue`: the durable queue on Redis Streams (a consumer group, a hash per ticket, Lua steps)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any
from urllib.parse import urlsplit

from ..errors import QueueError
from ..redact import scrub_text
from . import redis_lua
from .store import BatchRecord
from .ticket import Ticket

SCHEMA_NAME = "failover-router-queue"
SCHEMA_VERSION = "1"
#: Final tickets looked at per purge script call: each call is short, whatever the backlog.
PURGE_STEP = 500
_STATES = ("queued", "running", "batched", "done", "failed", "expired", "canceled")
_EXPIRED = json.dumps({"type": "Expired", "message": "its queue ttl ran out before a model could serve it",
                       "status": None, "attempts": []})
_CANCELED = json.dumps({"type": "canceled", "message": "its batch was canceled", "status": None, "attempts": []})


def _where(url: str) -> str:
    """host:port (or the socket path) of a Redis URL: never its user or password."""
    parts = urlsplit(url)
    if parts.scheme == "unix":
        return parts.path
    return f"{parts.hostname or 'localhost'}:{parts.port or 6379}"


def _opt(value: Any) -> str:
    return "" if value is None else str(value)


def _json(value: Any) -> str:
    return "" if value is None else json.dumps(value)


def _attempts_list(error: Any) -> Any:
    if isinstance(error, dict) and error.get("attempts") == {}:  # Lua's cjson writes an empty list as {}
        error["attempts"] = []
    return error


def _ticket(h: Mapping[str, str]) -> Ticket:
    def num(name: str) -> float | None:
        return float(h[name]) if h.get(name) not in (None, "") else None

    return Ticket(h["id"], h["route"], json.loads(h["params"]), float(h["created_at"]), float(h["expires_at"]),
                  h["state"], int(h.get("attempts") or 0), h.get("worker") or None,  # type: ignore[arg-type]
                  num("lease_until"), h.get("batch_id") or None,
                  json.loads(h["result"]) if h.get("result") else None,
                  _attempts_list(json.loads(h["error"])) if h.get("error") else None, num("finished_at"))


def _pairs(flat: Sequence[str]) -> dict[str, str]:
    return dict(zip(flat[::2], flat[1::2], strict=True))


class RedisStreamQueue:
    """The durable queue on the Redis server of `url`, under the key `stream` (its other keys share it as a
    prefix). New tickets are XADDed to the stream; workers claim them with XREADGROUP in the consumer group
    `group`; entries of a consumer that stopped renewing its lease are taken over with XAUTOCLAIM once idle
    for the lease. Each ticket's state lives in the hash `<stream>:t:<id>`, changed only by Lua scripts, so
    a finish or a fail is atomic and a worker whose lease was taken over cannot end the ticket. Final
    states XACK (and XDEL) the ticket's entry.

    The URL (it may hold a password) is used to connect and never kept, shown or written. One Redis
    server (not a cluster): the scripts touch each ticket's hash by name."""

    def __init__(self, url: str, stream: str = "fr:queue", *, group: str = "fr-workers", timeout: float = 5.0,
                 keep: float | None = None) -> None:
        try:
            import redis
        except ImportError:
            raise QueueError("queue.redis needs the redis package: pip install 'failover-router[redis]'") from None
        self._redis = redis
        self.stream, self.group, self.keep = stream, group, keep
        self.where = _where(url)
        self._secrets = tuple(s for s in (urlsplit(url).password, url) if s)
        self._client: Any = redis.Redis.from_url(url, socket_timeout=timeout, socket_connect_timeout=timeout,
                                            decode_responses=True)
        self._keys = [stream, f"{stream}:counts", f"{stream}:expiry", f"{stream}:autoclaim-cursor",
                      f"{stream}:batches", f"{stream}:open-batches"]
        self._scripts = {name: self._client.register_script(src) for name, src in redis_lua.SCRIPTS.items()}
        try:
            self._prepare()
        except QueueError:
            self._client.close()
            raise

    def __repr__(self) -> str:
        return f"RedisStreamQueue({self.where!r}, stream={self.stream!r})"

    def _error(self, exc: BaseException, what: str) -> QueueError:
        text = scrub_text(str(exc), self._secrets)
        return QueueError(f"queue store redis at {self.where} (stream {self.stream!r}) {what} "
                          f"({type(exc).__name__}: {text})")

    def _prepare(self) -> None:
        """The consumer group (made if missing) and the schema mark; refuse a key that is not our stream."""
        meta = f"{self.stream}:meta"
        try:
            kind = self._client.type(self.stream)
            if kind not in ("none", "stream"):
                raise QueueError(f"queue store redis at {self.where}: the key {self.stream!r} holds a {kind}, "
                                 "not a queue's stream: choose another queue.redis.stream")
            mark = self._client.hgetall(meta)
            if mark and mark.get("schema") != SCHEMA_NAME:
                raise QueueError(f"queue store redis at {self.where}: {meta!r} belongs to something else: choose "
                                 "another queue.redis.stream")
            if mark and int(mark.get("version") or 0) > int(SCHEMA_VERSION):
                raise QueueError(f"queue store redis at {self.where}: stream {self.stream!r} was written by a newer "
                                 f"failover-router (schema {mark.get('version')}): upgrade failover-router")
            if mark and mark.get("finished_index") != "1":
                self._index_finished()
            self._client.hset(meta, mapping={"schema": SCHEMA_NAME, "version": SCHEMA_VERSION, "finished_index": "1"})
            try:
                self._client.xgroup_create(self.stream, self.group, id="0", mkstream=True)
            except self._redis.ResponseError as exc:
                if "BUSYGROUP" not in str(exc):
                    raise
        except self._redis.RedisError as exc:
            raise self._error(exc, "cannot be used: start Redis, or fix queue.redis.url") from None

    def _index_finished(self) -> None:
        """A stream written before purge existed: index its final tickets by finish time, so purge finds
        them (a mark in the meta hash, not a new schema version: older failover-routers still share it)."""
        batch: list[str] = []
        for key in self._client.scan_iter(match=f"{self.stream}:t:*", count=1000):
            batch.append(key[len(self.stream) + 3:])
            if len(batch) == 1000:
                self._scripts["index_finished"](keys=self._keys[:4], args=batch)
                batch = []
        if batch:
            self._scripts["index_finished"](keys=self._keys[:4], args=batch)

    def _run(self, name: str, args: Sequence[Any], what: str, keys: int = 4) -> Any:
        try:
            try:
                return self._scripts[name](keys=self._keys[:keys], args=list(args))
            except self._redis.ResponseError as exc:
                if "NOGROUP" not in str(exc):
                    raise
                self._prepare()  # the server lost the stream (restarted without persistence): make it again
                return self._scripts[name](keys=self._keys[:keys], args=list(args))
        except self._redis.RedisError as exc:
            raise self._error(exc, f"failed to {what}") from None

    def _call(self, what: str, method: str, *args: Any) -> Any:
        try:
            return getattr(self._client, method)(*args)
        except self._redis.RedisError as exc:
            raise self._error(exc, f"failed to {what}") from None

    def _kept(self, ticket_id: str, changed: Any) -> bool:
        """A ticket just ended: with `keep`, Redis forgets it that many seconds later."""
        if changed and self.keep is not None:
            self._call("set a ticket's retention", "expire", f"{self.stream}:t:{ticket_id}", int(self.keep))
        return bool(changed)

    # -- tickets ----------------------------------------------------------------------------------

    def put(self, tickets: Sequence[Ticket]) -> None:
        args: list[Any] = [self.group]
        for t in tickets:
            args += [t.id, t.route, json.dumps(t.params), repr(t.created_at), repr(t.expires_at), t.state,
                     t.attempts, _opt(t.batch_id), _json(t.result), _json(t.error), _opt(t.finished_at)]
        if tickets:
            self._run("put", args, "store tickets")

    def claim(self, worker: str, limit: int, lease: float, now: float,
              routes: Sequence[str] | None = None) -> list[Ticket]:
        if lease <= 0:
            raise ValueError(f"a lease must be positive, not {lease!r}")
        if routes is not None and not routes:
            return []
        scope = "*" if routes is None else "\n".join(routes)
        got = self._run("claim", [self.group, worker, limit, repr(now + lease), repr(now), max(1, int(lease * 1000)),
                                  scope, limit * 4 + 100, _EXPIRED], "claim tickets")
        return [_ticket(_pairs(flat)) for flat in got]

    def renew(self, ticket_id: str, worker: str, lease: float, now: float) -> bool:
        return bool(self._run("renew", [ticket_id, worker, repr(now + lease), self.group], "renew a lease"))

    def finish(self, ticket_id: str, worker: str | None, result: Mapping[str, Any], now: float) -> bool:
        done = self._run("finish", [ticket_id, worker or "", json.dumps(result), repr(now), self.group],
                         "store a result")
        return self._kept(ticket_id, done)

    def fail(self, ticket_id: str, worker: str | None, error: Mapping[str, Any], now: float, *,
             final: bool) -> bool:
        expired = json.dumps({**error, "type": "Expired", "message": json.loads(_EXPIRED)["message"],
                              "status": None})
        changed = self._run("fail", [ticket_id, worker or "", json.dumps(error), repr(now), "1" if final else "0",
                                     self.group, expired], "store a failure")
        if final:
            return self._kept(ticket_id, changed)
        return bool(changed)

    def release(self, ticket_id: str, worker: str) -> bool:
        return bool(self._run("release", [ticket_id, worker, self.group], "release a ticket"))

    def cancel(self, ticket_id: str, now: float) -> bool:
        changed = self._run("cancel", [ticket_id, repr(now), self.group, _CANCELED], "cancel a ticket")
        return self._kept(ticket_id, changed)

    def get(self, ticket_id: str) -> Ticket | None:
        found = self._call("read a ticket", "hgetall", f"{self.stream}:t:{ticket_id}")
        return _ticket(found) if found else None

    def counts(self) -> dict[str, int]:
        out = dict.fromkeys(_STATES, 0)
        for state, n in self._call("read the counts", "hgetall", f"{self.stream}:counts").items():
            out[state] = max(0, int(n))
        return out

    def expire(self, now: float) -> int:
        """Ends every queued or batched ticket past its `expires_at`, and running ones whose lease ended too
        (a ticket a live worker is serving right now is left to finish)."""
        return int(self._run("expire", [repr(now), self.group, _EXPIRED], "expire tickets"))

    def purge(self, before: float) -> int:
        """Deletes in steps of PURGE_STEP tickets (one Lua script each), so Redis never stalls on a backlog."""
        total = 0
        while True:
            deleted, seen = self._run("purge", [repr(before), PURGE_STEP, self.group], "purge finished tickets",
                                      keys=6)
            total += int(deleted)
            if int(seen) < PURGE_STEP:
                return total

    # -- Message Batches --------------------------------------------------------------------------

    def save_batch(self, batch: BatchRecord) -> None:
        record = json.dumps({"id": batch.id, "route": batch.route, "model": batch.model,
                             "ticket_ids": list(batch.ticket_ids), "submitted_at": batch.submitted_at,
                             "state": batch.state})
        self._run("save_batch", [batch.id, record, self.group, *batch.ticket_ids], "record a batch", keys=6)
        if batch.state != "in_progress":
            self._call("record a batch", "srem", self._keys[5], batch.id)

    def open_batches(self) -> list[BatchRecord]:
        ids = sorted(self._call("read the batches", "smembers", self._keys[5]))
        records = self._call("read the batches", "hmget", self._keys[4], ids) if ids else []
        out = [json.loads(r) for r in records if r]
        return sorted((BatchRecord(r["id"], r["route"], r["model"], tuple(r["ticket_ids"]), r["submitted_at"],
                                   "in_progress") for r in out), key=lambda b: b.submitted_at)

    def end_batch(self, batch_id: str) -> None:
        raw = self._call("end a batch", "hget", self._keys[4], batch_id)
        if raw:
            ended = json.dumps({**json.loads(raw), "state": "ended"})
            self._call("end a batch", "hset", self._keys[4], batch_id, ended)
        self._call("end a batch", "srem", self._keys[5], batch_id)

    def requeue(self, ticket_id: str, now: float) -> bool:
        return bool(self._run("requeue", [ticket_id, self.group], "queue a ticket again"))

    def close(self) -> None:
        self._client.close()
