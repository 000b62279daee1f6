"""`RedisStore`: breakers shared through Redis, a local view for the hot path, local breakers if Redis is down."""

from __future__ import annotations

import asyncio
import logging
import threading
import weakref
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from ..breaker import Admission, BreakerInfo, Lease, MemoryStore, TransitionHook
from ..clock import SYSTEM
from ..policy import BreakerConfig
from . import scripts
from .watch import Watcher

log = logging.getLogger("router.redis")

_NAMES = {"c": "closed", "o": "open", "h": "half_open"}
_ADMISSIONS = {"permit": Admission.PERMIT, "open": Admission.OPEN, "cooling": Admission.COOLING}


@dataclass(frozen=True, slots=True)
class _View:
    """What this process last learnt of one model's shared breaker (times on the caller's clock)."""

    state: str  # "c" | "o" | "h"
    failures: int
    cooling_until: float | None
    forced: bool
    fetched: float
    retry_at: float | None = None  # when an open breaker may be probed
    holding: bool = False  # a probe token is out (half-open)


def _float(text: Any) -> float | None:
    return float(text) if text not in (None, b"", "") else None


class RedisStore:
    """A BreakerStore on a Redis server, shared by every process that names the same Redis and prefix.

    Each decision is one Lua script (`scripts`), atomic on the server and timed by its clock; the probe
    lease is a key set NX with a TTL. A closed breaker with no failures counted costs no round trip:
    admissions read a local view that pub/sub keeps fresh, re-read at least every `poll` seconds. Every
    call to Redis is bounded by `timeout`; when Redis is down or slow the store falls back to
    per-process breakers, says so once, and goes back to Redis (shared state wins) when it answers.
    Sync methods serve `complete()` / `stream()`, the `a`-prefixed coroutines `acomplete()` / `astream()`.
    """

    def __init__(self, url: str, *, prefix: str = "fr", timeout: float = 0.05, poll: float = 1.0,
                 now: Callable[[], float] = SYSTEM.now) -> None:
        import redis  # the optional dependency: failover-router[redis]

        self._redis = redis
        self.url, self.prefix, self.timeout, self.poll = url, prefix, timeout, poll
        self._now = now
        self._client = redis.Redis.from_url(url, **self._client_options(redis))
        self._scripts = {name: self._client.register_script(src) for name, src in _SOURCES.items()}
        self._aclients: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Any] = weakref.WeakKeyDictionary()
        self._configs: dict[str, BreakerConfig] = {}
        self._views: dict[str, _View] = {}
        self._keys: dict[str, str] = {}  # hash key -> alias, for pub/sub messages
        # Bumped when pub/sub says a model changed: a reply read before the change must not become the view.
        self._generation: dict[str, int] = {}
        self._local = MemoryStore()
        self._hooks: tuple[TransitionHook, ...] = ()
        self._down = False
        self._epoch = 0  # counts outages: a reply to a call sent before the latest one says nothing of now
        self._retry_at = 0.0
        self._backoff = 0.0
        self._lock = threading.Lock()
        self.channel = f"{prefix}:breaker-changes"
        self._watcher = Watcher(self._client, self.channel, self._stale, log)

    def __repr__(self) -> str:
        return f"RedisStore(prefix={self.prefix!r}, down={self._down})"

    def _client_options(self, redis: Any, aio: bool = False) -> dict[str, Any]:
        """Every call bounded by `timeout`; one immediate retry, on a fresh connection, when a pooled one
        died with an old server (not on a timeout: a slow Redis is not asked twice)."""
        from redis import retry as sretry
        from redis.asyncio import retry as aretry
        from redis.backoff import NoBackoff

        Retry: Any = aretry.Retry if aio else sretry.Retry

        return {"socket_timeout": self.timeout, "socket_connect_timeout": self.timeout, "retry_on_timeout": False,
                "retry": Retry(NoBackoff(), 1), "retry_on_error": [redis.ConnectionError],
                "health_check_interval": 0}

    # -- set-up -----------------------------------------------------------------------------------

    def subscribe(self, hook: TransitionHook) -> None:
        self._hooks = (*self._hooks, hook)
        self._local.subscribe(hook)

    def configure(self, alias: str, config: BreakerConfig) -> None:
        self._configs[alias] = config
        self._keys[self._key(alias)] = alias
        self._views.pop(alias, None)
        self._local.configure(alias, config)
        self._watcher.start()

    def forget(self, alias: str) -> None:
        # The shared hash is not deleted: other processes may still use it; its TTL ends it otherwise.
        self._configs.pop(alias, None)
        self._views.pop(alias, None)
        self._keys.pop(self._key(alias), None)
        self._local.forget(alias)

    def close(self) -> None:
        self._watcher.stop()
        self._client.close()

    async def aclose(self) -> None:
        """close(), and the async client of the running event loop (other loops' are dropped with them)."""
        found = self._aclients.pop(asyncio.get_running_loop(), None)
        if found is not None:
            await found[0].aclose()
        self.close()

    def _key(self, alias: str) -> str:
        return f"{{{self.prefix}:{alias}}}:breaker"

    def _stale(self, key: str) -> None:
        alias = self._keys.get(key)
        if alias is not None:
            self._generation[alias] = self._generation.get(alias, 0) + 1
            self._views.pop(alias, None)

    # -- the hot path -----------------------------------------------------------------------------

    def _fresh(self, alias: str, now: float) -> _View | None:
        view = self._views.get(alias)
        if view is None or self._down or now - view.fetched >= self.poll:
            return None
        return view

    def _quick_admit(self, alias: str, now: float) -> Admission | None:
        view = self._fresh(alias, now)
        if view is None or view.state != "c":
            return None
        return Admission.COOLING if view.cooling_until is not None and now < view.cooling_until else Admission.PERMIT

    def _quiet_success(self, alias: str, now: float, probe: Lease | None) -> bool:
        """True when a success changes nothing shared: closed, no failures counted anywhere (as last seen)."""
        view = self._fresh(alias, now)
        return probe is None and view is not None and view.state == "c" and view.failures == 0

    # -- one round trip ---------------------------------------------------------------------------

    def _args(self, op: str, alias: str, extra: tuple[Any, ...]) -> tuple[list[str], list[Any]]:
        config = self._configs.get(alias) or BreakerConfig()
        keep = int(max(3600.0, 10 * config.max_reset_timeout))
        key = self._key(alias)
        return [key, key.replace(":breaker", ":lease")], [self.channel, keep, *extra]

    def _usable(self, now: float) -> bool:
        return not self._down or now >= self._retry_at

    def _learn(self, alias: str, reply: list[Any], now: float, generation: int, epoch: int) -> list[str] | None:
        """Decode a script's answer, refresh the local view (unless pub/sub said the model changed since
        the script ran: then the reply may be older than the change), tell the hooks of our transitions.
        None for the answer to a call sent before an outage began: the local breakers decide now."""
        values = [v.decode() if isinstance(v, bytes) else str(v) for v in reply]
        with self._lock:
            if epoch != self._epoch:
                return None
            if self._down:
                self._down, self._backoff = False, 0.0
                self._local = self._fresh_local()  # shared state wins; the next outage starts clean
                log.warning("redis at %s answers again: breaker state is shared again", self._where())
        cooling, retry = _float(values[6]), _float(values[7])
        view = _View(values[4], int(values[5] or 0), now + cooling if cooling is not None else None,
                     values[8] == "1", now, now + retry if retry is not None else None, values[10] == "1")
        if self._generation.get(alias, 0) == generation:
            self._views[alias] = view
        if values[2]:
            for hook in self._hooks:
                try:
                    hook(alias, values[2], values[3])
                except Exception:
                    log.exception("breaker transition hook failed for %s", alias)
        return values

    def _failed(self, exc: Exception, now: float, epoch: int) -> None:
        with self._lock:
            self._views.clear()
            if self._down and (epoch != self._epoch or now < self._retry_at):
                return  # calls that failed together back off once, not once each
            self._backoff = min(30.0, max(1.0, self._backoff * 2))
            self._retry_at = now + self._backoff
            if not self._down:
                self._down = True
                self._epoch += 1
                log.warning("redis at %s is unreachable (%s): using this process's own breakers until it "
                            "answers again", self._where(), type(exc).__name__)

    def _fresh_local(self) -> MemoryStore:
        local = MemoryStore()
        for hook in self._hooks:
            local.subscribe(hook)
        for alias, config in self._configs.items():
            local.configure(alias, config)
        return local

    def _where(self) -> str:
        return self.url.rsplit("@", 1)[-1]  # never the password part of redis://user:pass@host

    def _call(self, op: str, alias: str, now: float, extra: tuple[Any, ...]) -> list[str] | None:
        if alias not in self._configs or not self._usable(now):
            return None
        keys, args = self._args(op, alias, extra)
        generation, epoch = self._generation.get(alias, 0), self._epoch
        try:
            reply = self._scripts[op](keys=keys, args=args)
        except self._redis.RedisError as exc:
            self._failed(exc, now, epoch)
            return None
        return self._learn(alias, reply, now, generation, epoch)

    async def _acall(self, op: str, alias: str, now: float, extra: tuple[Any, ...]) -> list[str] | None:
        if alias not in self._configs or not self._usable(now):
            return None
        keys, args = self._args(op, alias, extra)
        generation, epoch = self._generation.get(alias, 0), self._epoch
        try:
            reply = await self._ascripts()[op](keys=keys, args=args)
        except self._redis.RedisError as exc:
            self._failed(exc, now, epoch)
            return None
        return self._learn(alias, reply, now, generation, epoch)

    def _ascripts(self) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        found = self._aclients.get(loop)
        if found is None:
            from redis import asyncio as aredis

            client = aredis.Redis.from_url(self.url, **self._client_options(self._redis, aio=True))
            found = (client, {name: client.register_script(src) for name, src in _SOURCES.items()})
            self._aclients[loop] = found
        scripts_: dict[str, Any] = found[1]
        return scripts_

    # -- the BreakerStore operations, sync and async ------------------------------------------------

    def _admit_args(self, alias: str, lease_ttl: float) -> tuple[Any, ...]:
        config = self._configs.get(alias) or BreakerConfig()
        return (max(1, int(lease_ttl * 1000)), config.reset_timeout, config.max_reset_timeout)

    def _admission(self, values: list[str]) -> Admission | Lease:
        if values[0] == "lease":
            return Lease(int(values[1]))
        return _ADMISSIONS[values[0]]

    def _local_admit(self, alias: str, now: float, lease_ttl: float) -> Admission | Lease:
        # A lease from the local breakers gets a negative token, so it can never be taken for (and hand
        # back) the fleet's lease of the same number once Redis is back.
        answer = self._local.admit(alias, now, lease_ttl)
        return Lease(-answer.token) if isinstance(answer, Lease) else answer

    def admit(self, alias: str, now: float, lease_ttl: float) -> Admission | Lease:
        quick = self._quick_admit(alias, now)
        if quick is not None:
            return quick
        values = self._call("admit", alias, now, self._admit_args(alias, lease_ttl))
        return self._local_admit(alias, now, lease_ttl) if values is None else self._admission(values)

    async def aadmit(self, alias: str, now: float, lease_ttl: float) -> Admission | Lease:
        quick = self._quick_admit(alias, now)
        if quick is not None:
            return quick
        values = await self._acall("admit", alias, now, self._admit_args(alias, lease_ttl))
        return self._local_admit(alias, now, lease_ttl) if values is None else self._admission(values)

    @staticmethod
    def _is_local(probe: Lease | None) -> bool:
        return probe is not None and probe.token < 0

    @staticmethod
    def _as_local(probe: Lease | None) -> Lease | None:
        return Lease(-probe.token) if probe is not None and probe.token < 0 else probe

    def _token(self, probe: Lease | None) -> str:
        return str(probe.token) if probe is not None else ""

    def record_success(self, alias: str, now: float, *, probe: Lease | None) -> None:
        if self._is_local(probe):
            return self._local.record_success(alias, now, probe=self._as_local(probe))
        if self._quiet_success(alias, now, probe):
            return None
        extra = (self._token(probe), (self._configs.get(alias) or BreakerConfig()).reset_timeout)
        if self._call("success", alias, now, extra) is None:
            self._local.record_success(alias, now, probe=probe)

    async def arecord_success(self, alias: str, now: float, *, probe: Lease | None) -> None:
        if self._is_local(probe):
            return self._local.record_success(alias, now, probe=self._as_local(probe))
        if self._quiet_success(alias, now, probe):
            return None
        extra = (self._token(probe), (self._configs.get(alias) or BreakerConfig()).reset_timeout)
        if await self._acall("success", alias, now, extra) is None:
            self._local.record_success(alias, now, probe=probe)

    def _failure_args(self, alias: str, probe: Lease | None) -> tuple[Any, ...]:
        config = self._configs.get(alias) or BreakerConfig()
        return (self._token(probe), config.failure_threshold, config.reset_timeout, config.max_reset_timeout)

    def record_failure(self, alias: str, now: float, *, probe: Lease | None) -> bool:
        if self._is_local(probe):
            return self._local.record_failure(alias, now, probe=self._as_local(probe))
        values = self._call("failure", alias, now, self._failure_args(alias, probe))
        return self._local.record_failure(alias, now, probe=probe) if values is None else values[0] == "open"

    async def arecord_failure(self, alias: str, now: float, *, probe: Lease | None) -> bool:
        if self._is_local(probe):
            return self._local.record_failure(alias, now, probe=self._as_local(probe))
        values = await self._acall("failure", alias, now, self._failure_args(alias, probe))
        return self._local.record_failure(alias, now, probe=probe) if values is None else values[0] == "open"

    def release(self, alias: str, *, probe: Lease | None) -> None:
        if self._is_local(probe):
            return self._local.release(alias, probe=self._as_local(probe))
        if probe is not None and self._call("release", alias, self._now(), (self._token(probe),)) is None:
            self._local.release(alias, probe=probe)

    async def arelease(self, alias: str, *, probe: Lease | None) -> None:
        if self._is_local(probe):
            return self._local.release(alias, probe=self._as_local(probe))
        if probe is not None and await self._acall("release", alias, self._now(), (self._token(probe),)) is None:
            self._local.release(alias, probe=probe)

    def cool_down(self, alias: str, until: float) -> None:
        now = self._now()
        if self._call("cool_down", alias, now, (max(0.0, until - now),)) is None:
            self._local.cool_down(alias, until)

    async def acool_down(self, alias: str, until: float) -> None:
        now = self._now()
        if await self._acall("cool_down", alias, now, (max(0.0, until - now),)) is None:
            self._local.cool_down(alias, until)

    # -- operators and status ---------------------------------------------------------------------

    def _operate(self, alias: str, action: str, fallback: Callable[[], None]) -> None:
        extra = (action, (self._configs.get(alias) or BreakerConfig()).reset_timeout)
        if self._call("operate", alias, self._now(), extra) is None:
            fallback()

    def reset(self, alias: str) -> None:
        self._operate(alias, "reset", lambda: self._local.reset(alias))

    def force_open(self, alias: str, now: float) -> None:
        self._operate(alias, "force_open", lambda: self._local.force_open(alias, now))

    def force_close(self, alias: str) -> None:
        self._operate(alias, "force_close", lambda: self._local.force_close(alias))

    def info(self, alias: str, now: float) -> BreakerInfo:
        """The breaker as the fleet sees it (or this process's own breaker while Redis is down)."""
        values = self._call("info", alias, now, ())
        return self._local.info(alias, now) if values is None else self._info(values, now)

    def _info(self, values: list[str], now: float) -> BreakerInfo:
        state, retry, cooling = _NAMES[values[4]], _float(values[7]), _float(values[6])
        if state == "open" and retry is not None and retry <= 0:
            state = "half_open"  # half-open by time; the move happens when someone asks
        since = _float(values[12])
        return BreakerInfo(state, int(values[5] or 0), now - since if since is not None else None,
                           now + retry if retry is not None else None, values[11] == "1",
                           now + cooling if cooling is not None else None, values[8] == "1")

    async def ainfo(self, alias: str, now: float) -> BreakerInfo:
        values = await self._acall("info", alias, now, ())
        return self._local.info(alias, now) if values is None else self._info(values, now)

    def peek(self, alias: str, now: float) -> BreakerInfo:
        """For the plan's "could another model serve?": the local view while it is fresh, else info()."""
        view = self._fresh(alias, now)
        if view is None:
            return self.info(alias, now)
        state = {"c": "closed", "o": "open", "h": "half_open"}[view.state]
        probing = view.state == "h" and view.holding
        if state == "open" and not view.forced and view.retry_at is not None and now >= view.retry_at:
            state = "half_open"  # half-open by time; the move happens when someone asks
        cooling = view.cooling_until if view.cooling_until is not None and now < view.cooling_until else None
        return BreakerInfo(state, view.failures, None, view.retry_at, probing, cooling, view.forced)

    async def apeek(self, alias: str, now: float) -> BreakerInfo:
        view = self._fresh(alias, now)
        return self.peek(alias, now) if view is not None else await self.ainfo(alias, now)

    @property
    def shared(self) -> bool:
        """False while Redis is unreachable and this process uses its own breakers."""
        return not self._down

    def trip(self, alias: str, now: float) -> bool:
        """Open a closed breaker for the fleet as if it had reached its threshold (the status page names the
        model); while Redis is down, this process's own breaker. True if it tripped."""
        config = self._configs.get(alias) or BreakerConfig()
        values = self._call("trip", alias, now, (config.failure_threshold, config.reset_timeout))
        return self._local.trip(alias, now) if values is None else values[0] == "tripped"


_SOURCES = {
    "admit": scripts.ADMIT, "success": scripts.SUCCESS, "failure": scripts.FAILURE, "release": scripts.RELEASE,
    "cool_down": scripts.COOL_DOWN, "operate": scripts.OPERATE, "info": scripts.INFO,
}
_SOURCES["trip"] = scripts.TRIP
