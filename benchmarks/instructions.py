"""Instructions per call under valgrind's callgrind: the client_cpu ladder, counted instead of timed.

Run: python -m benchmarks.instructions [--calls N] [--cache] [--only NAME ...]   (needs valgrind on PATH)
Not part of `python -m benchmarks`: callgrind runs the client ~50x slower. On a shared machine the CPU
figures of `benchmarks.client_cpu` move by +-10 µs from run to run; an instruction count does not, so it
tells whether a change to the hot path made a request do less. Each contender runs in its own python under
callgrind with instrumentation off while it imports and warms up (WARM calls), then on for N calls and 2N
calls (two processes): the difference over N is the count of one call, start-up and exit left out.

Contenders: the client_cpu rungs A (a plain anthropic client), D (the provider inside a Budget) and E
(Router.complete) against the fake server in its own process (not under valgrind), sync and async; and
`stub` / `astub`: Router.complete / acomplete on a provider that returns a ready Message at once, minus that
provider called directly, which is the router's own count with no HTTP at all. `--cache` adds callgrind's
cache simulation (first-level and last-level misses per call): a proxy for what the cold caches between
two SDK calls cost, which a tight loop never shows.
"""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

if not __package__:  # run as a script: make the `benchmarks` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from benchmarks.common import ROOT, ServerProcess

WARM = 100
CALLS = 200

# The measured process: imports and warms up uninstrumented, says READY, waits for a line on stdin (the parent
# turns instrumentation on meanwhile), makes the calls and leaves at once (os._exit: no interpreter teardown).
_HARNESS = r'''
import asyncio, gc, os, sys
from benchmarks.instructions import contender
name, url, warm, calls = sys.argv[1], sys.argv[2], int(sys.argv[3]), int(sys.argv[4])
fn, is_async = contender(name, url)
gc.disable()
async def amain():
    for _ in range(warm):
        await fn()
    print("READY", flush=True)
    sys.stdin.readline()
    for _ in range(calls):
        await fn()
    os._exit(0)
def main():
    for _ in range(warm):
        fn()
    print("READY", flush=True)
    sys.stdin.readline()
    for _ in range(calls):
        fn()
    os._exit(0)
asyncio.run(amain()) if is_async else main()
'''

SYNC = ("A", "D", "E", "stub-direct", "stub")
ASYNC = ("aA", "aD", "aE", "astub-direct", "astub")


def contender(name: str, url: str) -> tuple[object, bool]:
    """The call to count: (a function of no arguments, whether it returns a coroutine)."""
    from benchmarks import client_cpu
    from router import Router
    from router.providers.anthropic import AnthropicProvider

    if name.startswith(("stub", "astub")):
        return _stub_contender(name)
    policy = client_cpu.one_model_policy(url)
    r = Router(policy, watch=False)
    provider = AnthropicProvider(policy.models["primary"])
    is_async = name.startswith("a")
    build = client_cpu.async_contenders if is_async else client_cpu.sync_contenders
    contenders, _clients = build(url, provider, r)
    rung = {"A": client_cpu.A, "D": client_cpu.D, "E": client_cpu.E}[name.removeprefix("a")]
    return contenders[rung], is_async


def _stub_contender(name: str) -> tuple[object, bool]:
    from anthropic.types import Message

    from benchmarks import client_cpu
    from router import Router
    from router.budget import CURRENT, Budget
    from router.outcome import classify

    reply = Message.model_validate({
        "id": "msg_1", "type": "message", "role": "assistant", "model": "m", "stop_reason": "end_turn",
        "stop_sequence": None, "content": [{"type": "text", "text": "hi"}],
        "usage": {"input_tokens": 1, "output_tokens": 1}})
    fresh = object.__setattr__

    def as_sent() -> Message:  # the reply as the SDK hands it over: a plain Message carrying its request id
        fresh(reply, "__class__", Message)
        fresh(reply, "__pydantic_private__", None)
        reply.__dict__["_request_id"] = "req_1"
        return reply

    class Stub:
        def __init__(self, config: object) -> None:
            self.config = config

        def call(self, params: object, timeout: float) -> Message:
            return as_sent()

        async def acall(self, params: object, timeout: float) -> Message:
            return as_sent()

        def classify(self, exc: BaseException) -> object:
            return classify(exc)

        def close(self) -> None: ...

        async def aclose(self) -> None: ...

        def retire(self) -> None: ...

    policy = client_cpu.one_model_policy("http://127.0.0.1:9")
    r = Router(policy, watch=False, provider_factory=Stub)  # type: ignore[arg-type]
    stub = Stub(None)
    params = client_cpu.PARAMS

    def direct() -> object:
        token = CURRENT.set(Budget(600.0))
        try:
            return stub.call(params, 600.0)
        finally:
            CURRENT.reset(token)

    async def adirect() -> object:
        token = CURRENT.set(Budget(600.0))
        try:
            return await stub.acall(params, 600.0)
        finally:
            CURRENT.reset(token)

    table = {"stub-direct": (direct, False), "astub-direct": (adirect, True),
             "stub": (lambda: r.complete(**params), False), "astub": (lambda: r.acomplete(**params), True)}
    return table[name]


def count(name: str, url: str, calls: int, cache: bool) -> dict[str, int]:
    """callgrind's totals (Ir, and the cache misses with `cache`) over `calls` calls of one contender."""
    with tempfile.TemporaryDirectory() as tmp:
        out = os.path.join(tmp, "callgrind.out")
        command = ["valgrind", "--tool=callgrind", "--instr-atstart=no", f"--callgrind-out-file={out}"]
        if cache:
            command.append("--cache-sim=yes")
        command += [sys.executable, "-c", _HARNESS, name, url, str(WARM), str(calls)]
        env = dict(os.environ, PYTHONPATH=str(ROOT), PYTHONHASHSEED="0")  # the same dict layouts in every process
        proc = subprocess.Popen(command, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, cwd=ROOT, env=env)
        assert proc.stdout is not None and proc.stdin is not None
        line = proc.stdout.readline()
        if not line.startswith("READY"):
            proc.kill()
            raise RuntimeError(f"{name}: the harness did not start: {proc.communicate()[1][-2000:]}")
        subprocess.run(["callgrind_control", "-i", "on", str(proc.pid)], check=True, capture_output=True)
        proc.stdin.write("go\n")
        proc.stdin.flush()
        _, err = proc.communicate()
        with open(out) as f:
            text = f.read()
    events = re.search(r"^events: (.+)$", text, re.MULTILINE)
    totals = re.search(r"^totals: (.+)$", text, re.MULTILINE) or re.search(r"^summary: (.+)$", text, re.MULTILINE)
    if events is None or totals is None:
        raise RuntimeError(f"{name}: no totals in callgrind's output; stderr: {err[-2000:]}")
    return dict(zip(events.group(1).split(), (int(x) for x in totals.group(1).split()), strict=False))


def per_call(name: str, url: str, calls: int, cache: bool) -> dict[str, float]:
    one, two = count(name, url, calls, cache), count(name, url, 2 * calls, cache)
    return {event: (two[event] - one[event]) / calls for event in one}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=CALLS)
    parser.add_argument("--cache", action="store_true", help="simulate the caches too (slower)")
    parser.add_argument("--only", nargs="*", help=f"contenders among {', '.join(SYNC + ASYNC)}")
    args = parser.parse_args()
    if shutil.which("valgrind") is None or shutil.which("callgrind_control") is None:
        sys.exit("valgrind (with callgrind_control) is not on PATH")
    names = args.only or list(SYNC + ASYNC)
    figures: dict[str, dict[str, float]] = {}
    with ServerProcess() as server:
        for name in names:
            figures[name] = per_call(name, server.url, args.calls, args.cache)
            shown = "  ".join(f"{event} {value:,.0f}" for event, value in figures[name].items())
            print(f"{name:>13}: {shown}", flush=True)
    for mode, (base, provider, whole, direct, stub) in (("sync", SYNC), ("async", ASYNC)):
        if {base, provider, whole} <= figures.keys():
            e, d, a = figures[whole]["Ir"], figures[provider]["Ir"], figures[base]["Ir"]
            print(f"{mode}: router over a plain client (E - A) {e - a:+,.0f} Ir/call; over the provider in a "
                  f"Budget (E - D) {e - d:+,.0f}")
        if {direct, stub} <= figures.keys():
            print(f"{mode}: the router's own count, no HTTP (stub - stub-direct) "
                  f"{figures[stub]['Ir'] - figures[direct]['Ir']:+,.0f} Ir/call")


if __name__ == "__main__":
    main()
