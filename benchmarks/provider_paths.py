"""What the litellm path and a mid-stream failover cost: figures for issues 3 and 4.

Run: python -m benchmarks.provider_paths [--calls N]
- router.acomplete to an OpenAI-compatible model through litellm vs a direct litellm.acompletion to the
  same fake endpoint (the router's side includes the Anthropic <-> OpenAI translation both ways);
- the cold start of the first litellm call in a fresh process (import included) vs the second call;
- a stream cut after two deltas and resumed on the fallback: the gap between the last delta before the
  cut and the first delta after it, next to the fallback's own time to first token;
- the same gap for a fallback that continues, restarts, or restarts after a preamble (what holding its
  text back until it is known to be new costs at a takeover).
Uses an in-process fake server (the gaps measured are milliseconds; the server's thread is idle while
the client waits). Figures only; nothing is asserted.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable

os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

import anthropic
from anthropic.types import MessageParam

from router import Router, parse_policy
from router.testing import FakeServer, Fault

USER: list[MessageParam] = [{"role": "user", "content": "Hi"}]


def policy(url: str) -> str:
    return textwrap.dedent(f"""
    version: 1
    defaults: {{retry: {{attempts: 1}}}}
    models:
      gpt: {{provider: litellm, model: openai/gpt-bench, base_url: "{url}/v1", api_key: "${{K}}"}}
      primary: {{provider: anthropic, model: claude-primary, base_url: "{url}", api_key: "${{K}}"}}
      fallback: {{provider: anthropic, model: claude-fallback, base_url: "{url}", api_key: "${{K}}"}}
    routes: {{default: [gpt], streamed: [primary, fallback]}}
    """)


def us(values: list[float]) -> float:
    return statistics.median(values) * 1e6


async def litellm_overhead(server: FakeServer, r: Router, calls: int) -> list[str]:
    import litellm

    litellm.suppress_debug_info = True
    direct_kwargs = {"model": "openai/gpt-bench", "api_base": server.url + "/v1", "api_key": "k",
                     "num_retries": 0, "max_retries": 0, "max_tokens": 16}
    direct_messages = [{"role": "user", "content": "Hi"}]
    for _ in range(100):
        await litellm.acompletion(messages=direct_messages, **direct_kwargs)
        await r.acomplete(messages=USER, max_tokens=16)
    direct, routed = [], []
    for _ in range(calls):
        t0 = time.perf_counter()
        await litellm.acompletion(messages=direct_messages, **direct_kwargs)
        t1 = time.perf_counter()
        await r.acomplete(messages=USER, max_tokens=16)
        t2 = time.perf_counter()
        direct.append(t1 - t0)
        routed.append(t2 - t1)
    return [
        f"| litellm path: direct litellm.acompletion, p50 | {us(direct):,.0f} µs |",
        f"| litellm path: router.acomplete (with Anthropic<->OpenAI translation), p50 | {us(routed):,.0f} µs |",
        f"| litellm path: added by the router, p50 | {us(routed) - us(direct):+,.0f} µs |",
    ]


def cold_start(url: str) -> list[str]:
    call = 'r.complete(messages=[{"role": "user", "content": "Hi"}], max_tokens=8)'
    code = "\n".join([
        "import time",
        "from router import Router, parse_policy",
        f"r = Router(parse_policy({policy(url)!r}, env={{'K': 'k'}}))",
        f"t0 = time.perf_counter(); {call}",
        f"t1 = time.perf_counter(); {call}",
        "t2 = time.perf_counter(); print(t1 - t0, t2 - t1)",
    ])
    firsts, seconds = [], []
    for _ in range(3):
        out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
        first, second = map(float, out.stdout.split())
        firsts.append(first)
        seconds.append(second)
    return [
        f"| first litellm call in a fresh process (imports litellm), median of 3 | {statistics.median(firsts):.2f} s |",
        f"| second litellm call | {statistics.median(seconds) * 1e3:.1f} ms |",
    ]


def resume_gap(server: FakeServer, r: Router, calls: int) -> list[str]:
    client = anthropic.Anthropic(base_url=server.url, api_key="k", max_retries=0)
    ttft, gaps = [], []
    for _ in range(calls):
        server.plan("claude-fallback", [Fault.ok(deltas=["ld", "!"])])
        t0 = time.perf_counter()
        with client.messages.stream(model="claude-fallback", messages=USER, max_tokens=16) as s:
            for _text in s.text_stream:
                ttft.append(time.perf_counter() - t0)
                break
        server.plan("claude-primary", [Fault.stream_cut(after=2, deltas=["Hello", " wor", "ld"])])
        server.plan("claude-fallback", [Fault.ok(deltas=["ld", "!"])])
        stamps = []
        with r.stream(messages=USER, max_tokens=16, route="streamed") as s:
            for _text in s.text_stream:
                stamps.append(time.perf_counter())
        gaps.append(stamps[2] - stamps[1])
        r._store.forget("primary")  # our own state: keep the primary's breaker closed between rounds
        r._store.configure("primary", r.policy.models["primary"].breaker)
    client.close()
    return [
        f"| fallback's own time to first token (SDK messages.stream), p50 | {us(ttft):,.0f} µs |",
        f"| mid-stream failover: last delta before the cut -> first delta after, p50 | {us(gaps):,.0f} µs |",
        f"| mid-stream failover: added on top of the fallback's own TTFT, p50 | {us(gaps) - us(ttft):+,.0f} µs |",
    ]


_ANSWER = ("The river ran quiet under the old stone bridge while the town slept, and a single lamp burned "
           "in the baker's window long after midnight, because the bread for the wedding had to be ready by "
           "dawn and nobody else in the valley knew how to make it rise in that damp autumn air.")
_TAKEOVERS: dict[str, Callable[[str, str], str]] = {
    "continues": lambda sent, rest: rest,
    "restarts": lambda sent, rest: sent + rest,
    "restarts after a preamble": lambda sent, rest: "Sure, here it is again: " + sent + rest,
}


def takeover_gaps(server: FakeServer, r: Router, calls: int) -> list[str]:
    """The delay a takeover adds while its text is held back, for each way a fallback takes over: the gap
    between the caller's last delta before the cut and its first delta after, minus the fallback's own
    time to first token for the same stream (measured with the SDK directly, interleaved)."""
    from router.testing.faults import split_words

    words = split_words(_ANSWER)
    sent, rest = "".join(words[:10]), "".join(words[10:])
    client = anthropic.Anthropic(base_url=server.url, api_key="k", max_retries=0)
    rows = []
    for name, takeover in _TAKEOVERS.items():
        deltas = split_words(takeover(sent, rest))
        ttft, gaps = [], []
        for _ in range(calls):
            server.plan("claude-fallback", [Fault.ok(deltas=deltas)])
            t0 = time.perf_counter()
            with client.messages.stream(model="claude-fallback", messages=USER, max_tokens=16) as s:
                for _text in s.text_stream:
                    ttft.append(time.perf_counter() - t0)
                    break
            server.plan("claude-primary", [Fault.stream_cut(after=10, deltas=words)])
            server.plan("claude-fallback", [Fault.ok(deltas=deltas)])
            stamps, texts = [], []
            with r.stream(messages=USER, max_tokens=16, route="streamed") as s:
                for text in s.text_stream:
                    stamps.append(time.perf_counter())
                    texts.append(text)
            assert "".join(texts) == _ANSWER, "the takeover was not stitched into the one answer"
            gaps.append(stamps[10] - stamps[9])
            r._store.forget("primary")  # our own state: keep the primary's breaker closed between rounds
            r._store.configure("primary", r.policy.models["primary"].breaker)
        rows.append(f"| takeover that {name}: gap over the fallback's own TTFT ({us(ttft):,.0f} µs), p50 | "
                    f"{us(gaps) - us(ttft):+,.0f} µs |")
    client.close()
    return rows


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--calls", type=int, default=400)
    args = parser.parse_args()
    with FakeServer() as server:
        r = Router(parse_policy(policy(server.url), env={"K": "k"}))
        rows = asyncio.run(litellm_overhead(server, r, args.calls))
        rows += resume_gap(server, r, max(50, args.calls // 4))
        rows += takeover_gaps(server, r, max(50, args.calls // 4))
        rows += cold_start(server.url)
        r.close()
    print("| figure | value |")
    print("|---|---:|")
    for row in rows:
        print(row)


if __name__ == "__main__":
    main()
