"""Profile the router's hot path (router.complete / acomplete / stream, healthy primary) with cProfile.

Run: python -m benchmarks.profile_hotpath [--calls N] [--mode sync|async|open|stream|all] [--top K]
Not part of `python -m benchmarks` (it prints profiles, not figures). Against the fake server process on
127.0.0.1. For each mode it prints the router's own share of the profiled time and the router's functions
ranked by own time (tottime plus the builtins they call directly), so the SDK's and httpx2's costs stay
out of the ranking. cProfile inflates small functions, so read the ranking, not the absolute numbers.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import pstats
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

if not __package__:  # run as a script: make the `benchmarks` package importable
    sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import router
from benchmarks.common import MAX_TOKENS, USER, ServerProcess, router_policy
from router import Router

ROUTER_DIR = str(Path(router.__file__).resolve().parent)
TESTING_DIR = str(Path(router.__file__).resolve().parent / "testing")

Func = tuple[str, int, str]


def is_router(func: Func) -> bool:
    return func[0].startswith(ROUTER_DIR) and not func[0].startswith(TESTING_DIR)


def label(func: Func) -> str:
    file, line, name = func
    if file == "~":
        return name
    path = Path(file)
    if file.startswith(ROUTER_DIR):
        return f"{path.relative_to(Path(ROUTER_DIR).parent)}:{line}({name})"
    parts = path.parts
    where = "/".join(parts[parts.index("site-packages") + 1:]) if "site-packages" in parts else path.name
    return f"{where}:{line}({name})"


def report(profile: cProfile.Profile, calls: int, top: int) -> None:
    stats: dict[Func, Any] = pstats.Stats(profile).stats  # type: ignore[attr-defined]
    total = max(tt for _, _, tt, _, _ in stats.values()) and sum(tt for _, _, tt, _, _ in stats.values())
    own: dict[Func, float] = {}
    builtin_by: dict[Func, dict[str, float]] = {}
    for func, (_cc, _nc, tt, _ct, callers) in stats.items():
        if is_router(func):
            own[func] = own.get(func, 0.0) + tt
        elif func[0] == "~":  # a builtin: charge the router for the calls its functions made directly
            for caller, edge in callers.items():
                if is_router(caller):
                    edge_tt = edge[2]
                    own[caller] = own.get(caller, 0.0) + edge_tt
                    builtin_by.setdefault(caller, {})[func[2]] = builtin_by.get(caller, {}).get(func[2], 0.0) + edge_tt
    router_total = sum(own.values())
    print(f"profiled {total:.3f} s for {calls} calls ({total / calls * 1e6:.0f} µs/call under cProfile); "
          f"router's own code: {router_total / calls * 1e6:.1f} µs/call ({router_total / total:.1%})")
    print(f"{'µs/call':>8}  {'calls/call':>10}  {'cum µs/call':>11}  function (own time + builtins it calls)")
    for func, seconds in sorted(own.items(), key=lambda kv: kv[1], reverse=True)[:top]:
        _cc, nc, _tt, ct, _callers = stats[func]
        extra = builtin_by.get(func)
        detail = ""
        if extra:
            biggest = sorted(extra.items(), key=lambda kv: kv[1], reverse=True)[:2]
            detail = "  [" + ", ".join(f"{name} {t / calls * 1e6:.1f}" for name, t in biggest) + "]"
        print(f"{seconds / calls * 1e6:8.2f}  {nc / calls:10.1f}  {ct / calls * 1e6:11.1f}  {label(func)}{detail}")
    # What the router's code calls outside router/ (pydantic, dataclass __init__, enum, threading...),
    # leaving out the SDK's request itself (messages.create and the stream it returns).
    callees: dict[str, tuple[float, int]] = {}
    for func, (_cc, _nc, _tt, _ct, callers) in stats.items():
        if is_router(func) or func[0] == "~" or func[2] in SDK_CALLS:
            continue
        for caller, edge in callers.items():
            if is_router(caller):
                key = f"{label(func)}  <- {caller[2]}"
                seconds, count = callees.get(key, (0.0, 0))
                callees[key] = (seconds + edge[3], count + edge[1])
    if callees:
        print("  direct callees outside router/ (cumulative µs/call, calls/call), SDK request excluded:")
        for key, (seconds, count) in sorted(callees.items(), key=lambda kv: kv[1][0], reverse=True)[:top // 2]:
            print(f"  {seconds / calls * 1e6:8.2f}  {count / calls:6.1f}  {key}")
    print()


# The SDK calls whose cost is the request itself, not the router's.
SDK_CALLS = {"create", "wrapper", "__iter__", "__next__", "__aiter__", "__anext__", "close", "__enter__", "__exit__",
             "__aenter__", "__aexit__", "_iter_events", "stream"}


def profile_sync(fn: Callable[[], object], calls: int) -> cProfile.Profile:
    for _ in range(200):
        fn()
    profile = cProfile.Profile()
    profile.enable()
    for _ in range(calls):
        fn()
    profile.disable()
    return profile


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--calls", type=int, default=3000)
    parser.add_argument("--mode", choices=["sync", "async", "open", "stream", "all"], default="all")
    parser.add_argument("--top", type=int, default=15)
    args = parser.parse_args()
    modes = ["sync", "async", "open", "stream"] if args.mode == "all" else [args.mode]
    with ServerProcess() as server:
        server.fail("claude-dead")
        policy = router_policy(server.url, {"primary": "claude-primary", "fallback": "claude-fallback",
                                            "dead": "claude-dead"},
                               {"default": ["primary", "fallback"], "open_first": ["dead", "fallback"]})
        r = Router(policy, watch=False)
        for _ in range(3):
            r.complete(messages=USER, max_tokens=MAX_TOKENS, route="open_first")
        try:
            for mode in modes:
                print(f"== {mode}: ", end="")
                if mode == "sync":
                    print("router.complete, healthy primary")
                    prof = profile_sync(lambda: r.complete(messages=USER, max_tokens=MAX_TOKENS), args.calls)
                elif mode == "open":
                    print("router.complete, first model's breaker open -> fallback")
                    prof = profile_sync(
                        lambda: r.complete(messages=USER, max_tokens=MAX_TOKENS, route="open_first"), args.calls)
                elif mode == "stream":
                    if not callable(getattr(r, "stream", None)):
                        print("router.stream not available yet\n")
                        continue
                    print("router.stream, healthy primary, whole stream read")

                    def read_stream() -> None:
                        with r.stream(messages=USER, max_tokens=MAX_TOKENS) as s:
                            for _ in s.text_stream:
                                pass

                    prof = profile_sync(read_stream, args.calls)
                else:
                    print("router.acomplete, healthy primary")

                    async def many() -> cProfile.Profile:
                        for _ in range(200):
                            await r.acomplete(messages=USER, max_tokens=MAX_TOKENS)
                        profile = cProfile.Profile()
                        profile.enable()
                        for _ in range(args.calls):
                            await r.acomplete(messages=USER, max_tokens=MAX_TOKENS)
                        profile.disable()
                        return profile

                    prof = asyncio.run(many())
                report(prof, args.calls, args.top)
        finally:
            r.close()


if __name__ == "__main__":
    main()
