"""A fleet on one Redis: what `RedisStore` costs per call, and what sharing breakers buys in an outage.

Run: python -m benchmarks.fleet [--quick]   (or python -m benchmarks --only fleet)
Starts its own redis-server (a subprocess on a free port of 127.0.0.1, no persistence, stopped at the end;
the figure is skipped with a note when redis-server or the redis package is missing) and four worker
processes ("spawn"), each building its own Router or RedisStore, as a fleet of uvicorn workers would.
Measured, against the fake server process:

1. the added cost of a healthy `Router.complete()` with RedisStore over MemoryStore (interleaved blocks),
   and the Redis round trips (scripts run, from INFO commandstats) per 1,000 healthy calls;
2. the cost of a counted failure, `store.record_failure()`, RedisStore vs MemoryStore;
3. a 3 s outage of the primary at 20 req/s in total, from 1 process and from 4 (5 req/s each), with each
   process's own breakers (MemoryStore) vs one shared breaker (RedisStore, one prefix): requests that
   reached the dead primary (counted by the server), requests failed for the caller, recovery;
4. the time from a trip in process A (its `record_failure` returned True) until B, C and D, polling
   `store.admit()` every ~1 ms, first get Admission.OPEN. CLOCK_MONOTONIC is one clock for all processes
   on Linux, so the times compare across them.

Figures, never assertions: the machine may be shared and noisy, so compare numbers from one run only.
"""

from __future__ import annotations

import asyncio
import contextlib
import multiprocessing
import os
import queue
import random
import shutil
import socket
import subprocess
import sys
import tempfile
import time
import traceback
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from multiprocessing.process import BaseProcess
from multiprocessing.queues import Queue
from pathlib import Path
from typing import Any

if not __package__:  # run as a script: make the `benchmarks` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import (
    MAX_TOKENS,
    USER,
    ServerProcess,
    Settings,
    Table,
    interleave,
    ms,
    p50,
    pct,
    router_policy,
    schedule,
    standalone,
    us,
    warm_up,
)
from benchmarks.outage import Sample, strip
from router import Admission, Kind, MemoryStore, Router
from router.policy import BreakerConfig

WORKERS = 4
RATE = 20.0  # requests per second in total, whatever the number of processes
THRESHOLD = 3
RESET = 1.0  # reset_timeout = max_reset_timeout: one probe per window, as in benchmarks/outage.py
BLOCK = 20  # healthy calls per contender per interleaved block
TRIP_WAIT = 2.0  # seconds B..D watch for OPEN before a trip counts as missed
HIGH = 10**9  # a failure threshold never reached: every record_failure() is a counted failure

Message = tuple[Any, ...]


# -- redis-server, ours --------------------------------------------------------------------------------


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class RedisProcess:
    """A redis-server subprocess on a free port of 127.0.0.1: no persistence, its files in a temp dir."""

    def __init__(self, binary: str) -> None:
        import redis

        self._dir = tempfile.TemporaryDirectory(prefix="fleet-redis-")
        self.port = _free_port()
        self.url = f"redis://127.0.0.1:{self.port}/0"
        self._proc = subprocess.Popen(
            [binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
             "--dir", self._dir.name, "--daemonize", "no", "--loglevel", "warning"],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        self.client = redis.Redis.from_url(self.url, socket_timeout=2.0, socket_connect_timeout=2.0)
        deadline = time.monotonic() + 5.0
        while True:
            try:
                self.client.ping()
                break
            except redis.RedisError:
                if self._proc.poll() is not None or time.monotonic() > deadline:
                    self.close()
                    raise RuntimeError(f"redis-server did not start on port {self.port}") from None
                time.sleep(0.05)

    def scripts_run(self) -> int:
        """Scripts Redis has run so far (EVALSHA and EVAL calls, from INFO commandstats)."""
        stats: dict[str, Any] = self.client.info("commandstats")
        return sum(int(v["calls"]) for k, v in stats.items() if k.startswith(("cmdstat_evalsha", "cmdstat_eval")))

    def commands(self) -> dict[str, int]:
        stats: dict[str, Any] = self.client.info("commandstats")
        return {k.removeprefix("cmdstat_"): int(v["calls"]) for k, v in stats.items()}

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.client.close()
        if self._proc.poll() is None:
            self._proc.terminate()
            try:
                self._proc.wait(5)
            except subprocess.TimeoutExpired:
                self._proc.kill()
                self._proc.wait()
        self._dir.cleanup()


# -- worker processes ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class OutageJob:
    url: str  # the fake server
    primary: str
    fallback: str
    redis_url: str | None  # None: the process's own breakers (MemoryStore)
    prefix: str
    rate: float  # this process's requests per second
    offset: float  # seconds after the start of its first request
    total: float  # seconds of timeline


def _policy(url: str, primary: str, fallback: str) -> Any:
    return router_policy(url, {"primary": primary, "fallback": fallback}, {"default": ["primary", "fallback"]},
                         failure_threshold=THRESHOLD, reset_timeout=f"{RESET:g}s", attempts=1)


async def _outage(index: int, job: OutageJob, commands: Queue[Message], results: Queue[Message]) -> None:
    """One process of the outage timeline: build a Router, warm it, wait for the start, send at job.rate."""
    from router.redis_store import RedisStore

    store = RedisStore(job.redis_url, prefix=job.prefix) if job.redis_url is not None else None
    r = Router(_policy(job.url, job.primary, job.fallback), store=store, watch=False)
    samples: list[tuple[float, float, str, int]] = []

    async def one(start: float) -> None:
        t0 = time.monotonic()
        try:
            msg = await r.acomplete(messages=USER, max_tokens=MAX_TOKENS)
            served = "primary" if msg.routing.model == "primary" else "fallback"
            probes = sum(1 for a in msg.routing.attempts if a.probe and a.outcome is not Kind.SUCCESS)
        except Exception:
            served, probes = "error", 0
        samples.append((t0 - start, time.monotonic() - t0, served, probes))

    try:
        for _ in range(20):  # connections and code paths warm, the primary healthy
            await r.acomplete(messages=USER, max_tokens=MAX_TOKENS)
        results.put(("ready", index))
        command, start = await asyncio.to_thread(commands.get)
        if command != "start":
            raise RuntimeError(f"worker {index}: expected start, got {command!r}")
        tasks = []
        for i in range(int(job.total * job.rate)):
            delay = start + job.offset + i / job.rate - time.monotonic()
            if delay > 0:
                await asyncio.sleep(delay)
            tasks.append(asyncio.create_task(one(start)))
        await asyncio.gather(*tasks)
        results.put(("samples", index, samples))
    finally:
        await r.aclose()
        if store is not None:
            await store.aclose()


def _watch(index: int, store: Any, alias: str, results: Queue[Message]) -> None:
    """B, C, D: admit() every ~1 ms until it says OPEN; tell the parent once watching, then when OPEN came."""
    store.configure(alias, BreakerConfig(THRESHOLD, 60.0, 60.0))
    told = False
    deadline = time.monotonic() + TRIP_WAIT + 5.0
    seen: float | None = None
    while time.monotonic() < deadline:
        admission = store.admit(alias, time.monotonic(), 30.0)
        if admission is Admission.OPEN:
            seen = time.monotonic()
            break
        if not told:
            results.put(("watching", index))
            told = True
        time.sleep(0.001)
    results.put(("seen", index, seen))


def _trip(index: int, store: Any, alias: str, results: Queue[Message]) -> None:
    """A: count THRESHOLD failures; the time its record_failure() returned True is the trip."""
    store.configure(alias, BreakerConfig(THRESHOLD, 60.0, 60.0))
    tripped: float | None = None
    for _ in range(THRESHOLD):
        if store.record_failure(alias, time.monotonic(), probe=None):
            tripped = time.monotonic()
    results.put(("tripped", index, tripped))


def worker(index: int, commands: Queue[Message], results: Queue[Message]) -> None:
    """A worker process: runs the parent's commands one at a time until "quit"."""
    store: Any = None
    results.put(("hello", index))
    while True:
        command, *args = commands.get()
        try:
            if command == "quit":
                break
            if command == "outage":
                asyncio.run(_outage(index, args[0], commands, results))
            elif command == "trips":
                from router.redis_store import RedisStore

                store = RedisStore(args[0], prefix=args[1])
                results.put(("set", index))
            elif command == "watch":
                _watch(index, store, args[0], results)
            elif command == "trip":
                _trip(index, store, args[0], results)
            elif command == "end_trips":
                store.close()
                store = None
                results.put(("ended", index))
            else:
                raise RuntimeError(f"unknown command {command!r}")
        except Exception:
            results.put(("error", index, traceback.format_exc()))
    if store is not None:
        store.close()


class Fleet:
    """WORKERS worker processes ("spawn": fresh interpreters, as separate server workers would be)."""

    def __init__(self, n: int) -> None:
        ctx = multiprocessing.get_context("spawn")
        self.results: Queue[Message] = ctx.Queue()
        self.commands: list[Queue[Message]] = [ctx.Queue() for _ in range(n)]
        self.procs: list[BaseProcess] = [
            ctx.Process(target=worker, args=(i, self.commands[i], self.results), daemon=True, name=f"fleet-{i}")
            for i in range(n)
        ]
        for p in self.procs:
            p.start()
        self.expect("hello", n, 60.0)

    def send(self, index: int, *message: Any) -> None:
        self.commands[index].put(message)

    def expect(self, kinds: str | Sequence[str], count: int, timeout: float) -> list[Message]:
        """The next `count` messages, each of one of `kinds`; raises on a worker's error or a timeout."""
        wanted = (kinds,) if isinstance(kinds, str) else tuple(kinds)
        out: list[Message] = []
        deadline = time.monotonic() + timeout
        while len(out) < count:
            try:
                message = self.results.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                raise RuntimeError(f"fleet: waited {timeout:g} s for {count} x {wanted}, got {out}") from None
            if message[0] == "error":
                raise RuntimeError(f"fleet worker {message[1]} failed:\n{message[2]}")
            if message[0] not in wanted:
                raise RuntimeError(f"fleet: expected {wanted}, got {message[:2]}")
            out.append(message)
        return out

    def close(self) -> None:
        for i, p in enumerate(self.procs):
            if p.is_alive():
                with contextlib.suppress(Exception):
                    self.send(i, "quit")
        for p in self.procs:
            p.join(5)
            if p.is_alive():
                p.terminate()
                p.join(5)


# -- 1 and 2: per-call costs, in this process ---------------------------------------------------------------


@dataclass
class CallCosts:
    healthy: dict[str, list[float]]
    scripts: int  # scripts Redis ran during the timed healthy calls
    others: dict[str, int]  # other Redis commands then (INFO itself left out)
    seconds: float  # wall time of the timed healthy calls
    calls: int
    failure: dict[str, list[float]]
    ping: list[float]


MEM, RED = "MemoryStore", "RedisStore"


def _interleave_blocks(contenders: Mapping[str, Any], calls: int) -> dict[str, list[float]]:
    samples: dict[str, list[float]] = {name: [] for name in contenders}
    clock = time.perf_counter
    for name in schedule(list(contenders), calls, block=BLOCK):
        fn = contenders[name]
        t0 = clock()
        fn()
        samples[name].append(clock() - t0)
    return samples


def _delta(after: Mapping[str, int], before: Mapping[str, int]) -> dict[str, int]:
    return {k: v - before.get(k, 0) for k, v in after.items()
            if v != before.get(k, 0) and k != "info" and not k.startswith("eval")}


def measure_calls(settings: Settings, url: str, redis: RedisProcess) -> CallCosts:
    from router.redis_store import RedisStore
    from router.redis_store import scripts as lua

    calls = settings.calls_or(1500, 500)
    policy = router_policy(url, {"primary": "claude-fleet-primary", "fallback": "claude-fleet-fallback"},
                           {"default": ["primary", "fallback"]})
    store = RedisStore(redis.url, prefix=f"fleet-calls-{os.getpid()}")
    mem, red = Router(policy, watch=False), Router(policy, store=store, watch=False)
    mstore, fstore = MemoryStore(), RedisStore(redis.url, prefix=f"fleet-failures-{os.getpid()}")
    never = BreakerConfig(HIGH, 60.0, 60.0)
    mstore.configure("m", never)
    fstore.configure("m", never)
    try:
        healthy = {
            MEM: lambda: mem.complete(messages=USER, max_tokens=MAX_TOKENS),
            RED: lambda: red.complete(messages=USER, max_tokens=MAX_TOKENS),
        }
        # Load every script up front, so that no one-time NOSCRIPT miss and SCRIPT LOAD lands in the count.
        for source in (lua.ADMIT, lua.SUCCESS, lua.FAILURE, lua.RELEASE, lua.COOL_DOWN, lua.OPERATE, lua.INFO):
            redis.client.script_load(source)
        warm_up(healthy, settings.n(50, 20))
        time.sleep(0.1)
        scripts0, commands0, t0 = redis.scripts_run(), redis.commands(), time.perf_counter()
        samples = _interleave_blocks(healthy, calls)
        seconds = time.perf_counter() - t0
        scripts, others = redis.scripts_run() - scripts0, _delta(redis.commands(), commands0)

        failure = {
            f"{MEM}.record_failure": lambda: mstore.record_failure("m", time.monotonic(), probe=None),
            f"{RED}.record_failure": lambda: fstore.record_failure("m", time.monotonic(), probe=None),
        }
        warm_up(failure, settings.n(50, 20))
        failed = interleave(failure, settings.calls_or(2000, 500))
        ping = interleave({"ping": redis.client.ping}, settings.n(500, 200))["ping"]
    finally:
        mem.close()
        red.close()
        store.close()
        fstore.close()
    return CallCosts(samples, scripts, others, seconds, calls, failed, ping)


# -- 3: the outage, from 1 and from 4 processes -----------------------------------------------------------------


@dataclass
class OutageResult:
    name: str
    processes: int
    shared: bool
    samples: list[list[Sample]]  # per process
    dead_hits: int
    t_fail: float
    t_ok: float
    total: float


def _sleep_until(at: float) -> None:
    delay = at - time.monotonic()
    if delay > 0:
        time.sleep(delay)


def run_outage(fleet: Fleet, server: ServerProcess, redis: RedisProcess, processes: int, shared: bool,
               healthy: float, outage: float, total: float) -> OutageResult:
    tag = f"{processes}p-{'redis' if shared else 'mem'}"
    primary, fallback = f"claude-fleet-{tag}-primary", f"claude-fleet-{tag}-fallback"
    prefix = f"fleet-outage-{tag}-{os.getpid()}"
    for i in range(processes):
        job = OutageJob(server.url, primary, fallback, redis.url if shared else None, prefix,
                        RATE / processes, i / RATE, total)
        fleet.send(i, "outage", job)
    fleet.expect("ready", processes, 60.0)
    start = time.monotonic() + 0.3
    for i in range(processes):
        fleet.send(i, "start", start)
    _sleep_until(start + healthy)
    at_fail = server.fail(primary)
    t_fail = time.monotonic() - start
    _sleep_until(start + healthy + outage)
    dead = server.ok(primary) - at_fail
    t_ok = time.monotonic() - start
    got = fleet.expect("samples", processes, total + 30.0)
    per: list[list[Sample]] = [[] for _ in range(processes)]
    for _, index, rows in got:
        per[index] = [Sample(sent, latency, served, probes) for sent, latency, served, probes in rows]
    name = (f"{processes} process{'es' if processes > 1 else ''}"
            f"{f' x {RATE / processes:g} req/s' if processes > 1 else ''}, "
            f"{'RedisStore (one prefix)' if shared else 'MemoryStore (each its own)'}")
    return OutageResult(name, processes, shared, per, dead, t_fail, t_ok, total)


def _back(samples: Sequence[Sample], t_ok: float) -> float | None:
    return next((s.sent - t_ok for s in sorted(samples, key=lambda s: s.sent)
                 if s.sent >= t_ok and s.served == "primary"), None)


def outage_row(o: OutageResult) -> list[str]:
    every = [s for per in o.samples for s in per]
    during = [s for s in every if o.t_fail <= s.sent < o.t_ok]
    probes = sum(s.failed_probes for s in during)
    breakers = 1 if o.shared else o.processes
    first = _back(every, o.t_ok)
    backs = [_back(per, o.t_ok) for per in o.samples]
    last = None if any(b is None for b in backs) else max(b for b in backs if b is not None)
    return [
        o.name,
        str(len(during)),
        str(o.dead_hits),
        f"{breakers} x {THRESHOLD} + {probes} failed probes = {breakers * THRESHOLD + probes}",
        str(sum(1 for s in every if s.served == "error")),
        f"{first:.2f}" if first is not None else "never",
        f"{last:.2f}" if last is not None else "never",
    ]


# -- 4: from the trip in A to B, C, D stopping --------------------------------------------------------------


def run_trips(fleet: Fleet, redis: RedisProcess, trips: int) -> tuple[list[float], list[float], int]:
    """(each of B..D: first OPEN - A's trip, per trip: the last of B..D - A's trip, watches that missed)."""
    prefix = f"fleet-trips-{os.getpid()}"
    for i in range(WORKERS):
        fleet.send(i, "trips", redis.url, prefix)
    fleet.expect("set", WORKERS, 30.0)
    rng = random.Random(7)
    each: list[float] = []
    last: list[float] = []
    missed = 0
    watchers = range(1, WORKERS)
    for n in range(trips):
        alias = f"trip-{n}"
        for i in watchers:
            fleet.send(i, "watch", alias)
        fleet.expect("watching", len(watchers), 10.0)
        time.sleep(0.02 + rng.uniform(0.0, 0.05))  # watchers on their local view; the trip off any poll's phase
        fleet.send(0, "trip", alias)
        got = fleet.expect(("tripped", "seen"), 1 + len(watchers), TRIP_WAIT + 30.0)
        tripped = next(m[2] for m in got if m[0] == "tripped")
        seen = [m[2] for m in got if m[0] == "seen"]
        if tripped is None:
            raise RuntimeError(f"trip {n}: A's failures did not open the breaker")
        lags = [s - tripped for s in seen if s is not None]
        missed += sum(1 for s in seen if s is None or s - tripped > TRIP_WAIT)
        each += lags
        if len(lags) == len(watchers):
            last.append(max(lags))
    for i in range(WORKERS):
        fleet.send(i, "end_trips")
    fleet.expect("ended", WORKERS, 30.0)
    return each, last, missed


# -- the figure ------------------------------------------------------------------------------------------------


@contextlib.contextmanager
def _redis_or_none() -> Iterator[RedisProcess | None]:
    binary = shutil.which("redis-server")
    try:
        import redis  # noqa: F401
    except ImportError:
        binary = None
    if binary is None:
        yield None
        return
    r = RedisProcess(binary)
    try:
        yield r
    finally:
        r.close()


def _spread(values: Sequence[float]) -> str:
    return f"{ms(p50(values))} / {ms(max(values))}" if values else "-"


def run(settings: Settings, server: ServerProcess) -> list[Table]:
    healthy, outage, total = (1.0, 2.0, 4.0) if settings.quick or settings.smoke else (1.0, 3.0, 5.5)
    trips = settings.n(20, 10)
    with _redis_or_none() as redis:
        if redis is None:
            print("fleet: not measured: redis-server is not on PATH or the redis package is missing "
                  "(pip install 'failover-router[redis]')\n", flush=True)
            return []
        costs = measure_calls(settings, server.url, redis)
        fleet = Fleet(WORKERS)
        try:
            outages = [run_outage(fleet, server, redis, n, shared, healthy, outage, total)
                       for n in (1, WORKERS) for shared in (False, True)]
            each, last, missed = run_trips(fleet, redis, trips)
        finally:
            fleet.close()
    return [cost_table(costs), outage_table(outages, outage, total), trip_table(each, last, missed, trips)]


def cost_table(c: CallCosts) -> Table:
    mem, red = c.healthy[MEM], c.healthy[RED]
    fm, fr = c.failure[f"{MEM}.record_failure"], c.failure[f"{RED}.record_failure"]
    per_k = c.scripts * 1000 / c.calls
    table = Table(f"Fleet on Redis: per-call cost of RedisStore ({c.calls} interleaved healthy calls each, "
                  f"blocks of {BLOCK}; {len(fm)} counted failures each)",
                  ["what", MEM, RED, "RedisStore − MemoryStore", "target"])
    table.rows += [
        ["healthy Router.complete() on the fake server, p50 µs", us(p50(mem)), us(p50(red)),
         us(p50(red) - p50(mem), signed=True), "≈ 0 (no round trip)"],
        ["healthy Router.complete(), p99 µs", us(pct(mem, 0.99)), us(pct(red, 0.99)),
         us(pct(red, 0.99) - pct(mem, 0.99), signed=True), "-"],
        ["Redis scripts (EVALSHA/EVAL) per 1,000 healthy calls", "-",
         f"{per_k:.2f} ({c.scripts} in {c.seconds:.1f} s: {c.scripts / c.seconds:.2f}/s)", "-",
         f"0 besides the re-read (≤ 1/s per model: ≤ {int(c.seconds) + 1} here)"],
        ["counted failure: store.record_failure(), p50 µs", us(p50(fm)), us(p50(fr)),
         us(p50(fr) - p50(fm), signed=True), "one round trip vs none"],
        ["for scale: redis-py PING round trip on loopback, p50 µs", "-", us(p50(c.ping)), "-", "-"],
    ]
    others = ", ".join(f"{k} {v}" for k, v in sorted(c.others.items())) or "none"
    table.notes += [
        "Two Routers on one policy (route [primary, fallback], both healthy), one with the default MemoryStore, "
        "one with RedisStore on our own redis-server on 127.0.0.1; sync complete(), one call at a time, in blocks "
        f"of {BLOCK} calls per contender, in an order shuffled afresh each round.",
        "Round trips: INFO commandstats (cmdstat_evalsha + cmdstat_eval) before and after the timed calls. The "
        "one expected is the re-read of the local view at least once a second (store poll=1.0): the first "
        "call after the view went stale runs one script (SUCCESS, or ADMIT) and refreshes it. Other commands "
        f"counted in that window (INFO left out; Redis also counts each script's own redis.call()s): {others}.",
        f"record_failure: failure_threshold {HIGH:,} (never reached), so every call counts a failure on a closed "
        "breaker: one FAILURE script (and its PUBLISH) on Redis, a locked pybreaker update in memory.",
    ]
    table.summary += [
        ["Fleet (RedisStore): added per healthy call over MemoryStore, p50 (µs)",
         us(p50(red) - p50(mem), signed=True), "-", "≈ 0"],
        ["Fleet: Redis round trips per 1,000 healthy calls", f"{per_k:.2f}", "-", "0 besides the 1/s poll"],
        ["Fleet: a counted failure, RedisStore / MemoryStore, p50 (µs)", f"{us(p50(fr))} / {us(p50(fm))}", "-",
         "one round trip"],
    ]
    return table


def outage_table(outages: Sequence[OutageResult], outage: float, total: float) -> Table:
    table = Table(f"Fleet outage: primary answers 500 for {outage:g} s of {total:g} s, {RATE:g} req/s in total",
                  ["scenario", "requests during outage", "reached the dead primary",
                   "expected: breakers x threshold + failed probes", "failed for the caller",
                   "recovery -> first request on primary, s", "recovery -> every process on primary, s"])
    table.rows += [outage_row(o) for o in outages]
    table.notes += [
        f"Each process (a 'spawn' worker) builds its own Router: route [primary, fallback], failure_threshold "
        f"{THRESHOLD}, reset_timeout {RESET:g}s (max_reset_timeout {RESET:g}s), retry attempts 1; acomplete() "
        f"on its own event loop. {WORKERS} processes send {RATE / WORKERS:g} req/s each, staggered by "
        f"{1000 / RATE:g} ms, so the server sees the same {RATE:g} req/s as from 1 process.",
        "MemoryStore: every process has its own breaker per model (no `state:`); RedisStore: one shared breaker "
        "per model (one prefix for the fleet). Each scenario has its own model names and prefix.",
        "Reached the dead primary: the fake server's request count for the primary model between the switch "
        "to 500 and back (ServerProcess.count over its stdin protocol). Failed probes: half-open probes that "
        "met the 500 (from each response's routing.attempts).",
        "Timelines, one character per 0.25 s, all processes together (P all on primary, F all on fallback, "
        "m mixed, x a request failed, | outage start / recovery): " + "; ".join(
            f"{o.name} `{strip([s for per in o.samples for s in per], o.t_fail, o.t_ok, o.total)}`"
            for o in outages),
    ]
    by = {(o.processes, o.shared): table.rows[i] for i, o in enumerate(outages)}
    many = max(o.processes for o in outages)
    table.summary += [
        [f"Fleet outage {outage:g} s at {RATE:g} req/s: dead-primary requests, 1 / {many} processes, RedisStore",
         f"{by[(1, True)][2]} / {by[(many, True)][2]}", "-", f"{many} send what 1 sends"],
        [f"Fleet outage: dead-primary requests, 1 / {many} processes, MemoryStore (each its own breakers)",
         f"{by[(1, False)][2]} / {by[(many, False)][2]}", "-", "-"],
        ["Fleet outage: requests failed for the caller (all four scenarios)",
         " / ".join(by[k][4] for k in ((1, False), (1, True), (many, False), (many, True))), "-", "0"],
    ]
    return table


def trip_table(each: Sequence[float], last: Sequence[float], missed: int, trips: int) -> Table:
    table = Table(f"Fleet: from a trip in process A to processes B, C, D stopping ({trips} trips, RedisStore)",
                  ["what", "p50 ms", "max ms", "samples", "target"])
    table.rows += [
        ["each of B, C, D: first Admission.OPEN − A's trip", ms(p50(each)) if each else "-",
         ms(max(each)) if each else "-", str(len(each)), "< 100 ms"],
        ["per trip, the last of B, C, D (the whole fleet stopped)", ms(p50(last)) if last else "-",
         ms(max(last)) if last else "-", str(len(last)), "< 100 ms"],
        ["watches stopped only by the 1 s re-read (lag > 0.5 s)", "-", "-",
         f"{sum(1 for lag in each if lag > 0.5)} of {len(each)}", "0"],
        [f"watches with no OPEN within {TRIP_WAIT:g} s", "-", "-", str(missed), "0"],
    ]
    table.notes += [
        f"A counts {THRESHOLD} failures (record_failure() on its RedisStore; failure_threshold {THRESHOLD}); its trip "
        "time is CLOCK_MONOTONIC when the call that opened the breaker returned True. B, C, D call admit() on "
        "their own RedisStore every ~1 ms (time.sleep(0.001)) and note when it first says OPEN. One fresh model "
        "per trip; the trip comes 20 to 70 ms after all three watch, so they are on their local view (no round "
        "trip) when it happens: what stops them is the pub/sub message, then one admit script.",
        "Resolution: the ~1 ms poll sleep (plus the scheduler on this 2-core machine with 6 busy processes). A "
        "small negative value would be a watcher that saw OPEN before A's script reply reached A.",
    ]
    if any(lag > 0.5 for lag in each):
        table.notes.append(
            "A lag of ~1 s is a watcher that kept a stale 'closed' view until its 1 s re-read: its own admit "
            "script (run because A's previous failure had invalidated its view) ran on Redis before A's last "
            "failure, but its reply was stored as the view after the pub/sub message of the trip had already "
            "dropped the view (RedisStore._learn writes the view unconditionally). Serving real traffic, such "
            "a process would send one more request to the dead model, whose failure corrects the view.")
    table.summary.append(["Fleet: a trip in one process -> the others stop, p50 / max (ms)",
                          _spread(each), "-", "< 100 ms"])
    return table


if __name__ == "__main__":
    standalone(run)
