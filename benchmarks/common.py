"""Shared pieces of the benchmarks: the fake server process, policies, litellm set-up, timing and tables."""

from __future__ import annotations

import argparse
import asyncio
import gc
import logging
import os
import random
import statistics
import subprocess
import sys
import time
import warnings
from collections.abc import Awaitable, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from types import ModuleType, TracebackType
from typing import Any

import anthropic
import httpx2
from anthropic.types import MessageParam

from router import Policy, parse_policy
from router.testing import wire

ROOT = Path(__file__).resolve().parents[1]
RESULTS_DIR = Path(__file__).resolve().parent / "results"
KEY = "bench-key"
USER: list[MessageParam] = [{"role": "user", "content": "Hi"}]
MAX_TOKENS = 16


# -- settings and output ---------------------------------------------------------------------------


@dataclass(frozen=True)
class Settings:
    """What every figure needs to know about this run."""

    quick: bool = False
    litellm: bool = True  # include litellm contenders (skipped anyway when litellm is not installed)
    calls: int | None = None  # override the number of timed calls per contender of the per-call figures
    smoke: bool = False  # a few calls of everything, for the tests that keep the benchmarks runnable

    def n(self, full: int, quick: int) -> int:
        if self.smoke:
            return max(1, quick // 100)
        return quick if self.quick else full

    def levels(self) -> tuple[tuple[int, int], ...]:
        """(concurrent requests, requests per coroutine) of the throughput figures."""
        return ((4, 2), (10, 1)) if self.smoke else ((100, 4), (500, 2))

    def calls_or(self, full: int, quick: int) -> int:
        return self.calls if self.calls is not None else self.n(full, quick)


@dataclass
class Table:
    """One figure: a markdown table with a title and notes under it."""

    title: str
    columns: list[str]
    rows: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    # Headline figures for the runner's summary: [what, failover-router, litellm.Router, goal]
    summary: list[list[str]] = field(default_factory=list)

    def cell(self, row: str, column: str) -> str:
        """The cell of the row whose first cell is `row`, in `column`; "-" when there is no such row."""
        index = self.columns.index(column)
        return next((r[index] for r in self.rows if r[0] == row), "-")

    def markdown(self) -> str:
        right = [c != self.columns[0] and not c.startswith(("contender", "what", "scenario")) for c in self.columns]
        lines = [f"### {self.title}", "", "| " + " | ".join(self.columns) + " |"]
        lines.append("|" + "|".join("---:" if r else "---" for r in right) + "|")
        lines += ["| " + " | ".join(row) + " |" for row in self.rows]
        if self.notes:
            lines.append("")
            lines += [f"- {note}" for note in self.notes]
        return "\n".join(lines) + "\n"


def settle() -> None:
    """Collect, then move every object alive now to the permanent generation (gc.freeze()), so that the
    full collections triggered during timing do not scan the heaps that the imports (litellm: ~150 MB) left
    behind. Applied alike to every contender of a run."""
    gc.collect()
    gc.freeze()


def print_tables(tables: Sequence[Table]) -> None:
    for table in tables:
        print(table.markdown(), flush=True)


Figure = Callable[[Settings, "ServerProcess"], list[Table]]


def standalone(*figures: Figure, argv: Sequence[str] | None = None) -> None:
    """Run figures as a script: `python benchmarks/<figure>.py [--quick] [--calls N] [--no-litellm]`."""
    parser = argparse.ArgumentParser(description=(sys.modules["__main__"].__doc__ or "").split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer calls, shorter runs")
    parser.add_argument("--calls", type=int, default=None, help="timed calls per contender (per-call figures)")
    parser.add_argument("--no-litellm", action="store_true", help="leave litellm out")
    args = parser.parse_args(argv)
    settings = Settings(quick=args.quick, litellm=not args.no_litellm, calls=args.calls)
    settle()
    with ServerProcess() as server:
        for figure in figures:
            print_tables(figure(settings, server))


# -- numbers -----------------------------------------------------------------------------------------


def pct(values: Sequence[float], q: float) -> float:
    """The q-quantile (nearest rank) of values."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def p50(values: Sequence[float]) -> float:
    return statistics.median(values)


def us(seconds: float, signed: bool = False) -> str:
    """Seconds as microseconds, for a table cell."""
    return f"{seconds * 1e6:+,.0f}" if signed else f"{seconds * 1e6:,.0f}"


def ms(seconds: float, signed: bool = False) -> str:
    return f"{seconds * 1e3:+,.1f}" if signed else f"{seconds * 1e3:,.1f}"


# -- interleaved timing ------------------------------------------------------------------------------

SyncCall = Callable[[], object]
AsyncCall = Callable[[], Awaitable[object]]


def schedule(names: Sequence[str], calls: int, block: int = 1, seed: int = 5) -> Iterator[str]:
    """The order in which to call contenders, `calls` calls each: rounds of `block` calls of every contender,
    in an order shuffled afresh each round, so machine drift hits all alike and no contender always follows
    the same one (whose leftovers, e.g. litellm's background logging, would land on it)."""
    rng = random.Random(seed)
    order = list(names)
    for _ in range((calls + block - 1) // block):
        rng.shuffle(order)
        for name in order:
            for _ in range(block):
                yield name


def interleave(contenders: Mapping[str, SyncCall], calls: int) -> dict[str, list[float]]:
    """Wall-clock seconds of `calls` calls of each contender, interleaved (see `schedule`)."""
    samples: dict[str, list[float]] = {name: [] for name in contenders}
    clock = time.perf_counter
    for name in schedule(list(contenders), calls):
        fn = contenders[name]
        t0 = clock()
        fn()
        samples[name].append(clock() - t0)
    return samples


async def ainterleave(contenders: Mapping[str, AsyncCall], calls: int) -> dict[str, list[float]]:
    """`interleave` for coroutines, awaited one at a time on the running loop."""
    samples: dict[str, list[float]] = {name: [] for name in contenders}
    clock = time.perf_counter
    for name in schedule(list(contenders), calls):
        fn = contenders[name]
        t0 = clock()
        await fn()
        samples[name].append(clock() - t0)
    return samples


def warm_up(contenders: Mapping[str, SyncCall], calls: int) -> None:
    for fn in contenders.values():
        for _ in range(calls):
            fn()


async def awarm_up(contenders: Mapping[str, AsyncCall], calls: int) -> None:
    for fn in contenders.values():
        for _ in range(calls):
            await fn()


# -- the fake server, in its own process ------------------------------------------------------------


class ServerProcess:
    """`router.testing.FakeServer` in a child process (see benchmarks/_server.py), on 127.0.0.1."""

    def __init__(self) -> None:
        script = Path(__file__).resolve().parent / "_server.py"
        self._proc = subprocess.Popen(
            [sys.executable, str(script)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            bufsize=1,
            cwd=ROOT,
        )
        assert self._proc.stdout is not None
        self.url = self._proc.stdout.readline().strip()
        if not self.url.startswith("http://127.0.0.1:"):
            self.close()
            raise RuntimeError(f"the fake server did not start (said {self.url!r})")

    def _ask(self, line: str) -> int:
        assert self._proc.stdin is not None and self._proc.stdout is not None
        self._proc.stdin.write(line + "\n")
        self._proc.stdin.flush()
        reply = self._proc.stdout.readline().strip()
        if not reply.isdigit():
            raise RuntimeError(f"fake server: {line!r} -> {reply!r}")
        return int(reply)

    def count(self, model: str) -> int:
        """Requests the server has read for `model`."""
        return self._ask(f"count {model}")

    def fail(self, model: str, status: int = 500) -> int:
        """From now on `model` answers `status`; returns its request count at the switch."""
        return self._ask(f"fail {model} {status}")

    def ok(self, model: str) -> int:
        """From now on `model` answers normally; returns its request count at the switch."""
        return self._ask(f"ok {model}")

    def close(self) -> None:
        if self._proc.poll() is None:
            try:
                assert self._proc.stdin is not None
                self._proc.stdin.write("quit\n")
                self._proc.stdin.close()
                self._proc.wait(10)
            except (OSError, subprocess.TimeoutExpired):
                self._proc.kill()
                self._proc.wait()
        if self._proc.stdout is not None:
            self._proc.stdout.close()

    def __enter__(self) -> ServerProcess:
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.close()


# -- our router ----------------------------------------------------------------------------------------


def router_policy(
    url: str,
    models: Mapping[str, str],
    routes: Mapping[str, Sequence[str]],
    *,
    failure_threshold: int = 3,
    reset_timeout: str = "1h",
    max_reset_timeout: str | None = None,
    attempts: int = 1,
) -> Policy:
    """A policy of anthropic-provider models (alias -> model name) on the fake server at `url`."""
    lines = [
        "version: 1",
        "defaults:",
        f"  retry: {{attempts: {attempts}}}",
        f"  breaker: {{failure_threshold: {failure_threshold}, reset_timeout: {reset_timeout}, "
        f"max_reset_timeout: {max_reset_timeout or reset_timeout}}}",
        "models:",
    ]
    for alias, model in models.items():
        lines.append(
            f'  {alias}: {{provider: anthropic, model: {model}, base_url: "{url}", api_key: "${{BENCH_KEY}}"}}'
        )
    lines.append("routes:")
    for name, chain in routes.items():
        lines.append(f"  {name}: [{', '.join(chain)}]")
    return parse_policy("\n".join(lines) + "\n", source="<benchmark policy>", env={"BENCH_KEY": KEY})


# -- the SDK on an in-memory transport --------------------------------------------------------------

MEMORY_URL = "http://memory"
_CANNED = wire.anthropic_message("msg_bench", "claude-primary", "Hello from the in-memory transport", "end_turn", 8, 6)


def _canned(request: httpx2.Request) -> httpx2.Response:
    return httpx2.Response(200, headers={"content-type": "application/json", "request-id": "req_bench"},
                           content=_CANNED)


def memory_clients(latency: float = 0.0) -> tuple[anthropic.Anthropic, anthropic.AsyncAnthropic]:
    """SDK clients on httpx2.MockTransport answering one canned Message: no sockets, no server. With
    `latency`, the async client's answers take that long (asyncio.sleep), so many calls can be in flight."""

    async def slow(request: httpx2.Request) -> httpx2.Response:
        await asyncio.sleep(latency)
        return _canned(request)

    return (
        anthropic.Anthropic(api_key=KEY, base_url=MEMORY_URL, max_retries=0,
                            http_client=httpx2.Client(transport=httpx2.MockTransport(_canned))),
        anthropic.AsyncAnthropic(api_key=KEY, base_url=MEMORY_URL, max_retries=0, http_client=httpx2.AsyncClient(
            transport=httpx2.MockTransport(slow if latency else _canned))),
    )


def memory_stream_client(deltas: int) -> anthropic.Anthropic:
    """A sync SDK client on httpx2.MockTransport whose every answer is one SSE stream of `deltas` text deltas
    of 20 chars (the whole body at once): the stream's parsing and handling, without sockets or a server."""
    body = b"".join([*wire.anthropic_stream_open("msg_bench", "claude-long", 8),
                     *[wire.anthropic_stream_delta("word word word word ")] * deltas,
                     *wire.anthropic_stream_close("end_turn", deltas * 4)])

    def answer(request: httpx2.Request) -> httpx2.Response:
        return httpx2.Response(200, headers={"content-type": "text/event-stream", "request-id": "req_bench"},
                               content=body)

    return anthropic.Anthropic(api_key=KEY, base_url=MEMORY_URL, max_retries=0,
                               http_client=httpx2.Client(transport=httpx2.MockTransport(answer)))


# -- litellm -------------------------------------------------------------------------------------------

_litellm: ModuleType | None = None
_litellm_tried = False


def import_litellm() -> ModuleType | None:
    """litellm, quiet and offline (local cost map), or None when it is not installed."""
    global _litellm, _litellm_tried
    if _litellm_tried:
        return _litellm
    _litellm_tried = True
    os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
    os.environ.setdefault("LITELLM_LOG", "ERROR")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            import litellm
    except ImportError:
        return None
    # litellm builds some pydantic schemas lazily, on the first call, and pydantic warns about them.
    warnings.filterwarnings("ignore", category=UserWarning, module=r"pydantic\..*")
    settle()  # litellm's import leaves a big heap: keep full collections from scanning it during timing
    litellm.suppress_debug_info = True
    litellm.telemetry = False
    for name in ("LiteLLM", "LiteLLM Router", "LiteLLM Proxy", "litellm"):
        logging.getLogger(name).setLevel(logging.CRITICAL)
    _litellm = litellm
    return litellm


async def close_litellm_clients() -> None:
    """Close litellm's cached async HTTP clients before their event loop ends (else aiohttp complains
    about unclosed sessions at exit) and forget them, so a later event loop gets fresh ones."""
    if _litellm is None:
        return
    try:
        await _litellm.close_litellm_async_clients()
        _litellm.in_memory_llm_clients_cache.flush_cache()
    except Exception:  # cleanup only: never fail a benchmark over it
        pass


def litellm_deployment(group: str, model: str, url: str, wire: str) -> dict[str, Any]:
    """A litellm Router deployment for `model` on the fake server: wire "anthropic" (/v1/messages) or
    "openai" (/v1/chat/completions)."""
    if wire == "anthropic":
        params = {"model": f"anthropic/{model}", "api_base": url, "api_key": KEY}
    else:
        params = {"model": f"openai/{model}", "api_base": url + "/v1", "api_key": KEY}
    return {"model_name": group, "litellm_params": params}


def litellm_version() -> str:
    try:
        from importlib.metadata import version

        return version("litellm")
    except Exception:
        return "not installed"
