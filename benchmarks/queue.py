"""The durable queue: enqueue cost per request, drain throughput, and the healthy path with on_exhausted set.

Run: python -m benchmarks --only queue (or python benchmarks/queue.py [--quick])
Enqueue: `Router.submit()` (a ticket written to the store, one transaction each) on a SQLite file and on
Redis Streams (a redis-server started for the figure; skipped without one). Drain: a Worker serving every
queued ticket through the fake server. Healthy path: `complete()` on a route whose on_exhausted is
`queue` against the same chain with `raise`, interleaved: while every model answers, the queue is never
touched, so the two should cost the same. Medians; nothing is asserted.
"""

from __future__ import annotations

import contextlib
import shutil
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path

if not __package__:  # run as a script: make the `benchmarks` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import (
    KEY,
    MAX_TOKENS,
    USER,
    ServerProcess,
    Settings,
    Table,
    interleave,
    p50,
    pct,
    standalone,
    us,
)
from router import Router, parse_policy
from router.queue.worker import Worker

MODEL = "claude-queue-bench"


def policy_text(url: str, store: str, concurrency: int) -> str:
    return "\n".join([
        "version: 1",
        "defaults: {retry: {attempts: 1}}",
        f"queue: {{{store}, concurrency: {concurrency}, lease: 30s}}",
        "models:",
        f'  primary: {{provider: anthropic, model: {MODEL}, base_url: "{url}", api_key: "${{BENCH_KEY}}"}}',
        "routes:",
        "  default: {chain: [primary], on_exhausted: queue}",
        "  plain: {chain: [primary], on_exhausted: raise}",
    ]) + "\n"


def make_router(url: str, store: str, concurrency: int = 16) -> Router:
    return Router(parse_policy(policy_text(url, store, concurrency), env={"BENCH_KEY": KEY}), watch=False)


@contextlib.contextmanager
def redis_url() -> Iterator[str | None]:
    """A throwaway redis-server on a free port (None: no redis-server or redis package here)."""
    binary = shutil.which("redis-server")
    try:
        import redis
    except ImportError:
        binary = None
    if binary is None:
        yield None
        return
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    proc = subprocess.Popen([binary, "--port", str(port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        client = redis.Redis(port=port, socket_connect_timeout=0.2)
        for _ in range(250):
            with contextlib.suppress(redis.RedisError):
                if client.ping():
                    break
            time.sleep(0.02)
        client.close()
        yield f"redis://127.0.0.1:{port}/0"
    finally:
        proc.kill()
        proc.wait()


def stores(folder: Path, redis: str | None) -> dict[str, str]:
    found = {"SQLite file": f"sqlite: {{path: '{folder / 'queue.db'}'}}"}
    if redis is not None:
        found["Redis Streams"] = f"redis: {{url: '{redis}', stream: 'fr:bench'}}"
    return found


def bench_store(url: str, store: str, enqueues: int, drains: tuple[int, ...]) -> list[list[str]]:
    """[enqueue row, drain rows...] for one store."""
    r = make_router(url, store)
    try:
        samples = []
        clock = time.perf_counter
        tickets = []
        for _ in range(enqueues):
            t0 = clock()
            tickets.append(r.submit(messages=USER, max_tokens=MAX_TOKENS))
            samples.append(clock() - t0)
        rows = [["enqueue: Router.submit()", us(p50(samples)), us(pct(samples, 0.99)), "-"]]
        Worker(r, poll=0.01).drain(timeout=600)  # the enqueued ones, untimed
        for concurrency in drains:
            for _ in range(len(tickets)):
                r.submit(messages=USER, max_tokens=MAX_TOKENS)
            worker = Worker(r, concurrency=concurrency, poll=0.01)
            t0 = clock()
            stats = worker.drain(timeout=600)
            seconds = clock() - t0
            rows.append([f"drain, concurrency {concurrency}", "-", "-",
                         f"{stats.done / seconds:,.0f} ({stats.done}/{len(tickets)} done)"])
        return rows
    finally:
        r.close()


def bench_healthy(url: str, store: str, calls: int) -> list[list[str]]:
    r = make_router(url, store)
    try:
        loops: dict[str, Callable[[], object]] = {
            "complete(), route on_exhausted: raise": lambda: r.complete(route="plain", messages=USER,
                                                                         max_tokens=MAX_TOKENS),
            "complete(), route on_exhausted: queue": lambda: r.complete(messages=USER, max_tokens=MAX_TOKENS),
        }
        for fn in loops.values():
            for _ in range(20):
                fn()
        samples = interleave(loops, calls)
        base = p50(samples["complete(), route on_exhausted: raise"])
        return [[name, us(p50(s)), us(pct(s, 0.99)), us(p50(s) - base, signed=True)] for name, s in samples.items()]
    finally:
        r.close()


def run(settings: Settings, server: ServerProcess) -> list[Table]:
    server.ok(MODEL)
    enqueues = settings.n(2000, 500)
    drains = (1, 8, 32) if not settings.smoke else (4,)
    calls = settings.calls_or(600, 200)
    throughput = Table(f"Durable queue: enqueue cost ({enqueues} submits) and drain throughput "
                       f"({enqueues} tickets, fake server)", ["store / what", "p50 µs", "p99 µs", "requests/s"])
    healthy = Table(f"Healthy path with on_exhausted set ({calls} interleaved calls each, fake server)",
                    ["contender", "p50 µs", "p99 µs", "added over raise µs"])
    with tempfile.TemporaryDirectory() as folder, redis_url() as redis:
        for name, store in stores(Path(folder), redis).items():
            throughput.rows += [[f"{name}: {row[0]}", *row[1:]] for row in bench_store(server.url, store, enqueues,
                                                                                          drains)]
        if redis is None:
            throughput.notes.append("Redis Streams skipped: no redis-server (or redis package) here.")
        healthy.rows = bench_healthy(server.url, stores(Path(folder), None)["SQLite file"], calls)
    throughput.notes.append("SQLite: WAL, synchronous=NORMAL (survives a killed process; FULL also survives "
                            "power loss, at an fsync per write). Drain: one Worker in this process, threads.")
    healthy.notes.append("While every model answers, a queue route never touches its store: the two rows should "
                         "differ by noise only.")
    return [throughput, healthy]


if __name__ == "__main__":
    standalone(run)
