"""Hostile chaos: the real anthropic SDK, through the Router, over real HTTP against router.testing's
FakeServer, with seeded random plans that mix the hostile wire (Fault.raw, trickle, drip, echo_headers,
sse) with the ordinary faults. Requests run one at a time, so for every request and every model the test
knows exactly which response each HTTP request got, and it holds the library's promises as invariants on
every single request:

1. The caller gets a `RoutedMessage` from a model whose planned response was a valid answer, with exactly
   the planned text; or `AllModelsFailed`; or `StreamInterrupted` (streams, after content only); or the
   SDK's own `APIStatusError` for a caller fault (400 not about length, 404, 413, 422). Nothing else.
2. `AllModelsFailed` only when no model of the chain was planned to answer validly (or it was open,
   cooling or out of budget), and a model is not denied the retry that would have answered.
3. Breakers read what really happened: each attempt's outcome is the one its planned response must have
   (a garbage 2xx is a counted `server_failure`), and the breaker's count and state follow those outcomes.
4. `timeout=` holds: every request ends within its timeout plus a generous slack.
5. No key (conftest.KEYS) appears in any exception text, repr, traceback, routing record or attempt.

The Router's clock is real time plus an offset the test jumps now and then (`JumpClock`): deadlines stay
wall-clock, and open breakers and cooldowns (10 minutes and 5 minutes long) end only when the test jumps.

Server reads are told apart by each request's `metadata.user_id` tag. On a loaded machine an attempt the
client gave up on (cut by first_byte before the server read it) may be read late, or not in time: such a
model's attempts cannot be paired with its plan in that request, so that pairing is skipped there, the
request is listed in the summary, and more than 1 in 20 such requests fails the test.

`ROUTER_HOSTILE_SEED=<n>` replays a seed's plans (network timing still varies); `--soak` runs 10x longer.
"""

from __future__ import annotations

import asyncio
import os
import random
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

import anthropic
import pytest

from router import (
    AllModelsFailed,
    Attempt,
    BreakerInfo,
    Kind,
    RoutedMessage,
    Router,
    StreamInterrupted,
    parse_policy,
)
from router.testing import FakeServer, Fault, anthropic_events

from ._hostile_plans import (
    AFTER_CONTENT_FAILURES,
    PLAIN_FAILURES,
    PLAIN_VALID,
    STREAM_FAILURES,
    STREAM_VALID,
    UNPLANNED,
    Catalogue,
    Ctx,
    Step,
    answer_text,
    pick,
)
from ._reliability import model_of
from .conftest import KEYS, USER

CHAIN = ("primary", "fallback", "third")
MODELS = {alias: f"claude-{alias}" for alias in CHAIN}
ALIAS_OF = {model: alias for alias, model in MODELS.items()}
SHORT, LONG = 120, 1200  # requests per test
TIMEOUTS = (0.4, 0.6, 0.9)  # timeout= of each request, seconds
SLACK = 2.0  # what a loaded, shared machine may add to a request's timeout=; never a speed test
CALLER_STATUSES = frozenset({400, 404, 413, 422})
SECRETS = tuple(KEYS.values())
RESET, MAX_RESET = 600.0, 1800.0  # breaker waits: only the test's clock jumps end them
JUMPS = (RESET + 50, 2 * RESET + 100, MAX_RESET + 100)


class JumpClock:
    """time.monotonic() plus an offset the test moves forward: real deadlines, breakers reopened at will."""

    def __init__(self) -> None:
        self.offset = 0.0

    def __call__(self) -> float:
        return time.monotonic() + self.offset

    def jump(self, seconds: float) -> None:
        self.offset += seconds


def policy(url: str, attempts: dict[str, int], thresholds: dict[str, int]) -> str:
    models = "".join(
        f"  {alias}: {{provider: anthropic, model: {MODELS[alias]}, base_url: '{url}', "
        f"api_key: '${{KEY_{alias.upper()}}}', retry: {{attempts: {attempts[alias]}}}, "
        f"breaker: {{failure_threshold: {thresholds[alias]}}}}}\n"
        for alias in CHAIN
    )
    return (
        "version: 1\n"
        "defaults:\n"
        f"  breaker: {{failure_threshold: 3, reset_timeout: {RESET:g}s, max_reset_timeout: {MAX_RESET:g}s}}\n"
        "  retry: {attempts: 1, backoff: {initial: 1ms, max: 5ms, jitter: 0.1}, max_retry_after: 10m}\n"
        "  timeout: {connect: 500ms, read: 300ms, total: 2s, stream_idle: 300ms, first_byte: 300ms,"
        " first_token: 300ms}\n"
        f"models:\n{models}"
        f"routes:\n  default: [{', '.join(CHAIN)}]\n"
    )


@dataclass(frozen=True)
class Config:
    """One run's router set-up, drawn from its seed."""

    attempts: dict[str, int]
    thresholds: dict[str, int]

    @classmethod
    def draw(cls, rng: random.Random) -> Config:
        return cls({a: rng.choice([1, 2]) for a in CHAIN}, {a: rng.choice([2, 3]) for a in CHAIN})


@dataclass
class Request:
    index: int
    mode: str  # "complete" | "acomplete" | "stream" | "astream"
    timeout: float
    steps: dict[str, list[Step]]
    on_interrupt: str | None = None
    jump: float = 0.0  # the clock jumps this far just before the request

    @property
    def streaming(self) -> bool:
        return self.mode in ("stream", "astream")

    def describe(self) -> str:
        lines = [f"request #{self.index} {self.mode} timeout={self.timeout}"
                 + (f" on_interrupt={self.on_interrupt}" if self.on_interrupt else "")
                 + (f" (clock jumped {self.jump:g}s)" if self.jump else "")]
        for alias in CHAIN:
            lines.append(f"    {alias}: " + " | ".join(s.describe() for s in self.steps[alias]))
        return "\n".join(lines)


@dataclass
class Result:
    req: Request
    kind: str  # "message" | "all_failed" | "interrupted" | "caller" | "other"
    elapsed: float
    counts: dict[str, int]
    pre: dict[str, BreakerInfo]
    post: dict[str, BreakerInfo]
    message: RoutedMessage | None = None
    streamed: str | None = None
    error: BaseException | None = None
    attempts: tuple[Attempt, ...] = ()
    late: dict[str, int] = field(default_factory=dict)  # reads of an earlier request's tag in this window

    @property
    def attempts_known(self) -> bool:
        return self.kind in ("message", "all_failed", "interrupted")


# -- plans ------------------------------------------------------------------------------------------


@dataclass
class Planner:
    """Seeded request plans. Each model drifts between healthy, sick and dead, so breakers open and close."""

    rng: random.Random
    config: Config
    valid: Catalogue
    failures: Catalogue
    modes: tuple[str, ...]
    health: dict[str, str] = field(default_factory=dict)
    on_interrupt: bool = False

    def __post_init__(self) -> None:
        self.health = {a: self.rng.choice(["healthy", "sick", "dead"]) for a in CHAIN}

    def request(self, index: int) -> Request:
        rng = self.rng
        for alias in CHAIN:
            if rng.random() < 0.12:
                self.health[alias] = rng.choice(["healthy", "healthy", "sick", "sick", "dead"])
        mode = rng.choice(self.modes)
        steps: dict[str, list[Step]] = {}
        for alias in CHAIN:
            p_valid = {"healthy": 0.65, "sick": 0.25, "dead": 0.0}[self.health[alias]]
            steps[alias] = []
            for _ in range(self.config.attempts[alias]):
                ctx = Ctx(MODELS[alias], answer_text(rng, alias, index), mode in ("stream", "astream"), rng,
                          KEYS[f"KEY_{alias.upper()}"])
                steps[alias].append(pick(self.valid if rng.random() < p_valid else self.failures, ctx))
        on_interrupt = rng.choice([None, "raise"]) if self.on_interrupt else None
        jump = rng.choice(JUMPS) if rng.random() < 0.25 else 0.0
        return Request(index, mode, rng.choice(TIMEOUTS), steps, on_interrupt, jump)


# -- running one request -----------------------------------------------------------------------------


def _tag(req: Request) -> str:
    return f"hostile-{req.index}"


def _kwargs(req: Request) -> dict[str, Any]:
    kw: dict[str, Any] = {"messages": USER, "max_tokens": 64, "timeout": req.timeout,
                          "metadata": {"user_id": _tag(req)}}
    if req.on_interrupt is not None:
        kw["on_interrupt"] = req.on_interrupt
    return kw


def _caller_error(exc: BaseException) -> bool:
    return isinstance(exc, anthropic.APIStatusError) and exc.status_code in CALLER_STATUSES


def _kind_of(exc: BaseException, streaming: bool) -> str:
    if isinstance(exc, AllModelsFailed):
        return "all_failed"
    if isinstance(exc, StreamInterrupted) and streaming:
        return "interrupted"
    if _caller_error(exc):
        return "caller"
    return "other"


class Run:
    """One Router, one FakeServer, one seed: plays requests one by one and checks each."""

    def __init__(self, server: FakeServer, seed: int, planner: Planner, after_content: bool = False) -> None:
        self.server, self.seed, self.planner = server, seed, planner
        self.after_content = after_content
        self.clock = JumpClock()
        text = policy(server.url, planner.config.attempts, planner.config.thresholds)
        self.router = Router(parse_policy(text, env=KEYS), clock=self.clock, rng=random.Random(seed), watch=False)
        self.results: list[Result] = []
        self.problems: list[str] = []

    # The plan is set, the breakers read and the counters noted before each request; read again after.
    def _before(self, req: Request) -> tuple[dict[str, int], dict[str, BreakerInfo]]:
        if req.jump:
            self.clock.jump(req.jump)
        for alias in CHAIN:
            self.server.plan(MODELS[alias], [s.fault for s in req.steps[alias]], default=UNPLANNED)
        return {a: self.server.count(MODELS[a]) for a in CHAIN}, self.router.breakers()

    def _reads(self, req: Request, counts0: dict[str, int]) -> tuple[dict[str, int], dict[str, int]]:
        """Per model, the requests the server read for this request (by its metadata tag), and the ones it
        read in this window for an earlier request (an attempt the client had given up on, read late)."""
        mine, late = {}, {}
        for a in CHAIN:
            tags = [(r.body.get("metadata") or {}).get("user_id") for r in self.server.received(MODELS[a])[counts0[a]:]]
            mine[a] = tags.count(_tag(req))
            if len(tags) > mine[a]:
                late[a] = len(tags) - mine[a]
        return mine, late

    def _after(self, req: Request, started: float, counts0: dict[str, int], pre: dict[str, BreakerInfo],
               value: Any = None, exc: BaseException | None = None, streamed: str | None = None) -> Result:
        elapsed = time.monotonic() - started
        counts, late = self._reads(req, counts0)
        post = self.router.breakers()
        if exc is None:
            assert value is not None
            res = Result(req, "message", elapsed, counts, pre, post, message=value, streamed=streamed,
                         attempts=tuple(value.routing.attempts) if isinstance(value, RoutedMessage) else ())
        else:
            kind = _kind_of(exc, req.streaming)
            attempts = tuple(getattr(exc, "attempts", ())) if kind in ("all_failed", "interrupted") else ()
            res = Result(req, kind, elapsed, counts, pre, post, error=exc, attempts=attempts, streamed=streamed)
        res.late = late
        self.results.append(res)
        found = check(res, self.planner.config, self.after_content)
        if found:
            text = report(res, found)
            if any("the server read" in f for f in found) and len(self.results) > 1:
                text += "\n  the request before it:\n" + report(self.results[-2], [])
            self.problems.append(text)
        return res

    def one(self, req: Request) -> Result:
        counts0, pre = self._before(req)
        parts: list[str] = []
        started = time.monotonic()
        try:
            if req.mode == "complete":
                value = self.router.complete(**_kwargs(req))
            else:
                with self.router.stream(**_kwargs(req)) as s:
                    parts.extend(s.text_stream)
                    value = s.get_final_message()
        except Exception as exc:
            return self._after(req, started, counts0, pre, exc=exc, streamed="".join(parts))
        return self._after(req, started, counts0, pre, value, streamed="".join(parts) if req.streaming else None)

    async def aone(self, req: Request) -> Result:
        if req.mode in ("complete", "stream"):
            return self.one(req)
        counts0, pre = self._before(req)
        parts: list[str] = []
        started = time.monotonic()
        try:
            if req.mode == "acomplete":
                value = await self.router.acomplete(**_kwargs(req))
            else:
                async with self.router.astream(**_kwargs(req)) as s:
                    async for text in s.text_stream:
                        parts.append(text)
                    value = await s.get_final_message()
        except Exception as exc:
            return self._after(req, started, counts0, pre, exc=exc, streamed="".join(parts))
        return self._after(req, started, counts0, pre, value, streamed="".join(parts) if req.streaming else None)

    def requests(self, n: int) -> Iterable[Request]:
        for i in range(n):
            yield self.planner.request(i)

    def summary(self) -> str:
        kinds = Counter((r.req.mode, r.kind) for r in self.results)
        outcomes = Counter(a.outcome.value for r in self.results for a in r.attempts)
        played = Counter(r.req.steps[a][i].name for r in self.results for a in CHAIN
                         for i in range(min(r.counts[a], len(r.req.steps[a]))))
        slowest = max((r.elapsed - r.req.timeout for r in self.results), default=0.0)
        noisy = sum(1 for r in self.results if unreliable(r))
        return (f"seed {self.seed}, config {self.planner.config}: {dict(kinds)}; attempts {dict(outcomes)}; "
                f"slowest request {slowest:+.2f}s past its timeout; {sum(played.values())} responses of "
                f"{len(played)} kinds played; {noisy} requests with a late or undelivered read")

    def verdict(self) -> None:
        print(self.summary())
        noisy = [r for r in self.results if unreliable(r)]
        for r in noisy:
            print(f"  request #{r.req.index}: {unreliable(r)}")
        if len(noisy) > max(2, len(self.results) // 20):  # the network's timing, not a habit
            self.problems.append(f"{len(noisy)} requests had late or undelivered reads: " + "; ".join(
                f"#{r.req.index} {unreliable(r)}" for r in noisy[:10]))
        if self.problems:
            shown = "\n\n".join(self.problems[:12])
            raise AssertionError(
                f"seed {self.seed} (replay: ROUTER_HOSTILE_SEED={self.seed}): {len(self.problems)} of "
                f"{len(self.results)} requests broke an invariant\n{self.summary()}\n\n{shown}"
            )


# -- the invariants ------------------------------------------------------------------------------------


def _text(message: Any) -> str:
    return "".join(b.text for b in message.content if b.type == "text")


def _fmt(a: Attempt) -> str:
    bits = [a.model, a.outcome.value]
    if a.status is not None:
        bits.append(str(a.status))
    if a.error_type:
        bits.append(a.error_type)
    if a.probe:
        bits.append("probe")
    if a.detail:
        bits.append(f"({a.detail})")
    return " ".join(bits)


def report(res: Result, found: list[str]) -> str:
    got = res.kind
    if res.message is not None:
        got += f" from {res.message.routing.model}: {_text(res.message)!r}"
    if res.error is not None:
        got += f" {type(res.error).__module__}.{type(res.error).__qualname__}: {str(res.error)[:300]!r}"
    lines = [res.req.describe(), f"  got {got} after {res.elapsed:.2f}s; server reads {res.counts}"]
    if res.attempts:
        lines.append("  attempts: " + "; ".join(_fmt(a) for a in res.attempts))
    lines.append("  breakers before: " + ", ".join(f"{a}={i.state}/{i.failures}" + (" cooling" if i.cooling_until
                                                                                      else "")
                                                   for a, i in res.pre.items()))
    lines.append("  breakers after:  " + ", ".join(f"{a}={i.state}/{i.failures}" for a, i in res.post.items()))
    lines += [f"  BROKEN: {p}" for p in found]
    if res.kind == "other" and res.error is not None:
        tb = traceback.format_exception(res.error)
        lines.append("  traceback (last lines):\n" + "".join(tb[-8:]))
    return "\n".join(lines)


def exception_texts(exc: BaseException) -> list[str]:
    texts = [str(exc), repr(exc), "".join(traceback.format_exception(exc))]
    link: BaseException | None = exc
    seen: set[int] = set()
    while link is not None and id(link) not in seen:
        seen.add(id(link))
        texts += [str(link), repr(link), repr(getattr(link, "body", None)), str(getattr(link, "message", ""))]
        link = link.__cause__ or link.__context__
    for name in ("attempts", "partial_text", "reason"):
        if hasattr(exc, name):
            texts.append(repr(getattr(exc, name)))
    return texts


def leaked(texts: Iterable[str]) -> list[str]:
    found = []
    for text in texts:
        for secret in SECRETS:
            if secret[:20] in text:
                at = text.index(secret[:20])
                found.append(f"...{text[max(0, at - 60):at]}<KEY {secret[:16]}...>")
    return found


def _sent(res: Result) -> dict[str, list[Attempt]]:
    return {a: [att for att in res.attempts if att.model == a and att.sent] for a in CHAIN}


def _kinds(res: Result) -> dict[str, list[Kind]]:
    """Per model, the outcome of each request it was sent: as the router recorded them when it says, else
    (a caller error carries no attempts) what the plan says each of those requests had to be."""
    if res.attempts_known:
        return {a: [att.outcome for att in atts] for a, atts in _sent(res).items()}
    return {a: [s.expect for s in res.req.steps[a][:res.counts[a]]] for a in CHAIN}


def check(res: Result, config: Config, after_content: bool = False) -> list[str]:
    """Every invariant on one request; returns what broke (empty when all held)."""
    req, p = res.req, []
    # 1. only documented outcomes
    if res.kind == "other":
        p.append(f"undocumented exception {type(res.error).__module__}.{type(res.error).__qualname__}")
    if res.kind == "interrupted" and not after_content:
        p.append("StreamInterrupted although no planned fault breaks a stream after content")
    # 4. timeout= holds
    if res.elapsed > req.timeout + SLACK:
        p.append(f"took {res.elapsed:.2f}s with timeout={req.timeout}")
    # 5. no secret anywhere
    texts: list[str] = []
    if res.error is not None:
        texts += exception_texts(res.error)
    if res.message is not None:
        texts += [repr(res.message.routing), res.message.model_dump_json(), repr(res.message)]
    texts += [repr(a) for a in res.attempts]
    p += [f"a key leaked: {leak}" for leak in leaked(texts)]
    # no model gets more requests than its retry.attempts
    for a in CHAIN:
        if res.counts[a] > len(req.steps[a]):
            p.append(f"{a} was sent {res.counts[a]} requests, more than its {len(req.steps[a])} attempts")
    if res.attempts_known:
        p += _check_attempts(res, after_content)
    if res.kind == "message":
        p += _check_message(res, after_content)
    elif res.kind == "all_failed":
        p += _check_all_failed(res, config)
    elif res.kind == "caller":
        p += _check_caller(res)
    elif res.kind == "interrupted" and after_content:
        exc = res.error
        assert isinstance(exc, StreamInterrupted)
        if res.streamed != exc.partial_text:
            p.append(f"StreamInterrupted.partial_text {exc.partial_text!r} but the caller got {res.streamed!r}")
    # 3. breakers follow what happened
    kinds, noisy = _kinds(res), unreliable(res)
    for a in CHAIN:
        if a in noisy and not res.attempts_known:
            continue  # a caller error: the outcomes come from the plan, whose pairing is off for this model
        probes = [att.probe for att in _sent(res)[a]] if res.attempts_known else None
        p += _check_breaker(a, res.pre[a], res.post[a], kinds[a], probes, config.thresholds[a])
    return p


#: A timed-out attempt at a response planned to succeed at once that ran this long was starved by the loaded
#: machine, not cut early by the router (a wrong judgment of the content would not be a timeout, or be quick).
SLOW_CUT = 0.2


def unreliable(res: Result) -> dict[str, str]:
    """Models whose attempts cannot be paired with planned responses in this request, and why: the server
    read a request an earlier one had given up on (it took one of this request's planned responses), or
    an attempt that timed out without any response never reached the server in time (it was read late, or
    not at all). Both are the network's timing on a loaded machine, not the router's doing; they are
    counted and reported, and every other invariant is still checked."""
    why: dict[str, str] = {a: f"read {n} late request(s) of an earlier request" for a, n in res.late.items()}
    if res.attempts_known:
        for a, atts in _sent(res).items():
            surplus = atts[res.counts[a]:]
            if surplus and all(x.error_type == "timeout" and x.request_id is None for x in surplus):
                why.setdefault(a, f"{len(surplus)} timed-out attempt(s) never reached the server in time")
            steps = res.req.steps.get(a, ())
            slow = [x for i, x in enumerate(atts) if i < len(steps) and steps[i].expect is Kind.SUCCESS
                    and x.error_type == "timeout" and x.duration_s >= SLOW_CUT]
            if slow:  # the answer was planned to come at once, but nothing came for a long while: the machine
                why.setdefault(a, f"{len(slow)} attempt(s) cut by a limit after {SLOW_CUT}s of nothing arriving")
    return why


def _check_attempts(res: Result, after_content: bool) -> list[str]:
    """Each attempt: sent ones match the server's reads one for one and have the outcome their planned
    response must have; models passed over were passed over for a reason the breakers bear out."""
    p, req = [], res.req
    noisy = unreliable(res)
    order = [CHAIN.index(a.model) for a in res.attempts if a.model in CHAIN]
    if len(order) != len(res.attempts) or order != sorted(order):
        p.append(f"attempts out of chain order: {[a.model for a in res.attempts]}")
    for alias, atts in _sent(res).items():
        if alias in noisy:
            continue
        if len(atts) != res.counts[alias]:
            p.append(f"{alias}: the router recorded {len(atts)} sent attempts, the server read {res.counts[alias]}")
        for i, att in enumerate(atts[:len(req.steps[alias])]):
            step = req.steps[alias][i]
            if step.sends_head(req.streaming) and not (att.request_id or "").startswith("req_fake_"):
                p.append(f"{alias} attempt {i + 1}: {_fmt(att)} lost the request-id of its response head "
                         f"({step.name})")
            if att.outcome is not step.expect and not _salvaged(att, step):
                p.append(f"{alias} attempt {i + 1}: {_fmt(att)}, but its planned response ({step.name}) "
                         f"must be {step.expect.value}")
    for att in res.attempts:
        if att.sent:
            continue
        info = res.pre[att.model]
        if att.outcome is Kind.BREAKER_OPEN and info.state != "open":
            p.append(f"{att.model} passed over as breaker_open, but its breaker was {info.state}")
        elif att.outcome is Kind.COOLING_DOWN and info.cooling_until is None:
            p.append(f"{att.model} passed over as cooling_down, but it was not cooling down")
        elif att.outcome is Kind.DEADLINE and res.elapsed < req.timeout - 0.02:
            p.append(f"{att.model} passed over as deadline after {res.elapsed:.2f}s of timeout={req.timeout}")
        elif att.outcome is Kind.SAME_CREDENTIALS:
            p.append(f"{att.model} passed over as same_credentials, but every model has its own key")
        elif att.outcome is Kind.CANNOT_RESUME and not after_content:
            p.append(f"{att.model} passed over as cannot_resume in a stream that never broke after content")
    return p


def _salvaged(att: Attempt, step: Step) -> bool:
    """A valid answer whose stream was cut (by its deadline) after the message was complete: the router
    records the failure and still serves the answer (stream_state.Salvaged)."""
    return step.valid and att.outcome is Kind.SERVER_FAILURE and "message complete" in (att.detail or "")


def _check_message(res: Result, after_content: bool) -> list[str]:
    p, req, msg = [], res.req, res.message
    if not isinstance(msg, RoutedMessage):
        return [f"the result is a {type(msg).__name__}, not a RoutedMessage"]
    served = msg.routing.model
    if served not in CHAIN:
        return [f"served by {served!r}, not a model of the route"]
    last = res.attempts[-1] if res.attempts else None
    if served in unreliable(res):
        return p
    n = res.counts[served]
    step = req.steps[served][n - 1] if 1 <= n <= len(req.steps[served]) else None
    if last is None or last.model != served or (last.outcome is not Kind.SUCCESS
                                                 and not (step is not None and _salvaged(last, step))):
        p.append(f"served by {served}, but the last attempt is {last}")
    if any(a.outcome is Kind.SUCCESS for a in res.attempts[:-1]):
        p.append("a success before the last attempt")
    text = _text(msg)
    if step is None or not step.valid:
        p.append(f"served by {served}, whose response #{n} was planned as "
                 f"{step.name if step else 'nothing'} (not a valid answer)")
    elif after_content:
        if text.count(step.text or "") != 1 or not text.endswith(step.text or ""):
            p.append(f"stitched text {text!r} does not end with {served}'s planned answer {step.text!r} once")
    elif text != step.text:
        p.append(f"text {text!r}, but {served} was planned to send {step.text!r}")
    if req.streaming and res.streamed != text:
        p.append(f"the stream delivered {res.streamed!r}, but its final message says {text!r}")
    for a in CHAIN[CHAIN.index(served) + 1:]:
        if res.counts[a]:
            p.append(f"{a} was sent {res.counts[a]} requests after {served} had answered")
    return p


def _check_all_failed(res: Result, config: Config) -> list[str]:
    p, req = [], res.req
    named = {a.model for a in res.attempts}
    if named != set(CHAIN):
        p.append(f"AllModelsFailed names only {sorted(named)}")
    if any(a.outcome is Kind.SUCCESS for a in res.attempts):
        p.append("AllModelsFailed holds a success")
    # A model denied the retry that was planned to answer, where the documented rules say retry.
    noisy = unreliable(res)
    for alias, atts in _sent(res).items():
        n = len(atts)
        if alias in noisy or not n or n >= len(req.steps[alias]) or not req.steps[alias][n].valid:
            continue
        last, step = atts[-1], req.steps[alias][n - 1]
        if last.outcome is not Kind.SERVER_FAILURE or step.no_retry or last.error_type == "timeout" or last.probe:
            continue
        if res.pre[alias].failures + n >= config.thresholds[alias] or res.post[alias].state != "closed":
            continue  # the breaker opened: no retry
        if res.elapsed > req.timeout - 0.15:
            continue  # the budget was (nearly) spent
        p.append(f"{alias} was not retried after {_fmt(last)}, though its attempts were not used up and its "
                 f"retry was planned to answer ({req.steps[alias][n].name})")
    return p


def _check_caller(res: Result) -> list[str]:
    p, req, exc = [], res.req, res.error
    assert isinstance(exc, anthropic.APIStatusError)
    raised_by = ALIAS_OF.get(model_of(exc) or "")
    if raised_by is None:
        return [f"a caller error {exc.status_code} from no model of the route"]
    if unreliable(res):
        return p
    n = res.counts[raised_by]
    step = req.steps[raised_by][n - 1] if 1 <= n <= len(req.steps[raised_by]) else None
    if step is None or step.expect is not Kind.CALLER:
        p.append(f"{type(exc).__name__} {exc.status_code} raised from {raised_by}, whose response #{n} was "
                 f"planned as {step.name if step else 'nothing'} (not a caller error)")
    elif exc.status_code != step.fault.status_code:
        p.append(f"raised status {exc.status_code}, planned {step.fault.status_code}")
    for a in CHAIN[CHAIN.index(raised_by) + 1:]:
        if res.counts[a]:
            p.append(f"{a} was sent a request after {raised_by}'s caller error (no failover is documented)")
    for a in CHAIN[:CHAIN.index(raised_by)]:
        for s in req.steps[a][:res.counts[a]]:
            if s.valid or s.expect is Kind.CALLER:
                p.append(f"{a} was sent {s.name} before {raised_by}'s caller error: that should have ended it")
    return p


def _check_breaker(alias: str, pre: BreakerInfo, post: BreakerInfo, kinds: list[Kind],
                   probes: list[bool] | None, threshold: int) -> list[str]:
    p: list[str] = []
    if not kinds:
        if (pre.state, pre.failures) != (post.state, post.failures):
            p.append(f"{alias}: no request sent, yet its breaker went {pre.state}/{pre.failures} -> "
                     f"{post.state}/{post.failures}")
        return p
    if pre.cooling_until is not None:
        p.append(f"{alias} was sent a request while cooling down (until {pre.cooling_until:.1f})")
    if pre.state == "open":
        return [*p, f"{alias} was sent a request while its breaker was open"]
    if pre.state == "half_open":
        if probes is not None and not probes[0]:
            p.append(f"{alias}: the half-open breaker's first request is not marked as the probe")
        if len(kinds) > 1:
            p.append(f"{alias}: the probe was retried ({len(kinds)} requests)")
        expected = {Kind.SUCCESS: ("closed", 0), Kind.SERVER_FAILURE: ("open", None)}.get(kinds[0],
                                                                                          ("half_open", None))
    else:
        if probes is not None and any(probes):
            p.append(f"{alias}: an attempt marked as a probe while the breaker was closed")
        f, opened = pre.failures, False
        for i, kind in enumerate(kinds):
            if opened:
                p.append(f"{alias}: request {i + 1} was sent after its breaker opened")
                break
            if kind is Kind.SERVER_FAILURE:
                f += 1
                opened = f >= threshold
            elif kind is Kind.SUCCESS:
                f = 0
        expected = ("open", None) if opened else ("closed", f)
    state, failures = expected
    if post.state != state or (failures is not None and post.failures != failures):
        p.append(f"{alias}: after {[k.value for k in kinds]} from {pre.state}/{pre.failures} the breaker is "
                 f"{post.state}/{post.failures}, expected {state}/{'any' if failures is None else failures}")
    return p


# -- the chaos tests -----------------------------------------------------------------------------------


def _seed() -> int:
    seed = int(os.environ.get("ROUTER_HOSTILE_SEED") or random.randrange(1 << 30))
    print(f"hostile chaos seed {seed} (replay with ROUTER_HOSTILE_SEED={seed})")
    return seed


def _n(request: pytest.FixtureRequest) -> int:
    return LONG if request.config.getoption("--soak") else SHORT


def _run(server: FakeServer, seed: int, valid: Catalogue, failures: Catalogue, modes: tuple[str, ...],
         after_content: bool = False) -> Run:
    rng = random.Random(seed)
    planner = Planner(rng, Config.draw(rng), valid, failures, modes, on_interrupt=after_content)
    return Run(server, seed, planner, after_content)


def test_hostile_chaos_complete(fake_server: FakeServer, request: pytest.FixtureRequest) -> None:
    seed = _seed()
    run = _run(fake_server, seed, PLAIN_VALID, PLAIN_FAILURES, ("complete",))
    try:
        for req in run.requests(_n(request)):
            run.one(req)
    finally:
        run.router.close()
    run.verdict()


async def test_hostile_chaos_acomplete(fake_server: FakeServer, request: pytest.FixtureRequest) -> None:
    seed = _seed()
    run = _run(fake_server, seed, PLAIN_VALID, PLAIN_FAILURES, ("acomplete",))
    try:
        for req in run.requests(_n(request)):
            await run.aone(req)
    finally:
        await run.router.aclose()
    run.verdict()


async def test_hostile_chaos_streams_fail_before_content(fake_server: FakeServer,
                                                         request: pytest.FixtureRequest) -> None:
    seed = _seed()
    run = _run(fake_server, seed, STREAM_VALID, STREAM_FAILURES, ("stream", "astream"))
    try:
        for req in run.requests(_n(request)):
            await run.aone(req)
    finally:
        await run.router.aclose()
    run.verdict()


async def test_hostile_chaos_streams_break_after_content(fake_server: FakeServer,
                                                         request: pytest.FixtureRequest) -> None:
    """Streams that break after text reached the caller (being reworked elsewhere): the caller gets either
    a correctly stitched answer (what it streamed is the final message's text, which ends with the serving
    model's planned answer exactly once) or StreamInterrupted; every other invariant holds as above."""
    seed = _seed()
    run = _run(fake_server, seed, STREAM_VALID, AFTER_CONTENT_FAILURES, ("stream", "astream"), after_content=True)
    try:
        for req in run.requests(_n(request)):
            await run.aone(req)
    finally:
        await run.router.aclose()
    resumed = sum(1 for r in run.results if r.kind == "message" and any(
        "resumed" in (a.detail or "") for a in r.attempts))
    interrupted = sum(1 for r in run.results if r.kind == "interrupted")
    print(f"after content: {resumed} streams resumed and stitched, {interrupted} raised StreamInterrupted")
    run.verdict()


# -- deterministic plans ---------------------------------------------------------------------------------


async def play(server: FakeServer, mode: str, steps: dict[str, list[Step]], timeout: float = 0.9,
               after_content: bool = False) -> tuple[Run, Result]:
    """One request with a fixed plan (a model left out gets only UNPLANNED), checked like the chaos ones."""
    full = {a: steps.get(a) or [Step("unplanned", UNPLANNED, Kind.SERVER_FAILURE)] for a in CHAIN}
    config = Config({a: len(full[a]) for a in CHAIN}, dict.fromkeys(CHAIN, 3))
    run = Run(server, 0, Planner(random.Random(0), config, [], [], (mode,)), after_content)
    try:
        res = await run.aone(Request(0, mode, timeout, full))
    finally:
        await run.router.aclose()
    return run, res


def _ok_step(alias: str, text: str) -> Step:
    return Step("ok", Fault.ok(text=text), Kind.SUCCESS, text=text)


def _catalogue_builders(catalogue: Catalogue) -> list[Callable[[Ctx], Step]]:
    seen: list[Callable[[Ctx], Step]] = []
    for _, build in catalogue:
        if build not in seen:
            seen.append(build)
    return seen


@pytest.mark.parametrize("mode", ["complete", "astream"])
async def test_every_planned_response_alone_on_the_primary(fake_server: FakeServer, mode: str) -> None:
    """Each entry of the catalogues (two draws of its variants) as the primary's only response, with the
    fallback answering: the same invariants as the chaos, one fault at a time, no breaker in the way."""
    valid, failures = (PLAIN_VALID, PLAIN_FAILURES) if mode == "complete" else (STREAM_VALID, STREAM_FAILURES)
    rng = random.Random(20261201)
    problems, n = [], 0
    for build in _catalogue_builders(valid + failures):
        for draw in range(2):
            ctx = Ctx(MODELS["primary"], f"primary#{n} says amber birch.", mode == "astream", rng, KEYS["KEY_PRIMARY"])
            step = build(ctx)
            run, _ = await play(fake_server, mode, {"primary": [step],
                                                   "fallback": [_ok_step("fallback", f"fallback#{n} says cedar.")]})
            problems += [f"[{step.name}, draw {draw}] {p}" for p in run.problems]
            n += 1
    assert not problems, f"{len(problems)} of {n} single-fault plans broke an invariant:\n\n" + "\n\n".join(problems)


# -- minimal plans kept from what the chaos found ---------------------------------------------------------

# Bug 1, found by every stream chaos run ("sse broken before content (no message_start at all)").
# README, Failure semantics: "A reply is a success only when it is a valid Message: type "message", role
# "assistant", an id, a usage, and a list of typed content blocks (for a stream: an event stream that ends
# with message_stop)". A stream that never sends `message_start` has no id and no usage, yet the router
# serves it as a success (id "", model "", usage.input_tokens 0: the stitcher's `_empty_message()`) and
# resets the model's breaker count, where a `message_start` *without its message* is refused as
# `malformed_stream` and fails over.
NO_MESSAGE_START_TEXT = "primary#0 says amber birch."
NO_MESSAGE_START = {
    "all but message_start": anthropic_events(NO_MESSAGE_START_TEXT, model=MODELS["primary"])[1:],
    "message_stop only": [("message_stop", {"type": "message_stop"})],
}


@pytest.mark.parametrize("events", list(NO_MESSAGE_START))
@pytest.mark.parametrize("mode", ["stream", "astream"])
async def test_a_stream_without_message_start_is_not_a_success(fake_server: FakeServer, mode: str,
                                                                events: str) -> None:
    primary = Step("sse without message_start", Fault.sse(NO_MESSAGE_START[events]), Kind.SERVER_FAILURE)
    run, res = await play(fake_server, mode, {"primary": [primary],
                                              "fallback": [_ok_step("fallback", "fallback#0 says cedar.")]})
    got = res.message
    assert res.kind == "message" and got is not None, report(res, run.problems)
    assert got.routing.model == "fallback", (
        f"served by {got.routing.model} with id {got.id!r}, model {got.model!r}, "
        f"usage.input_tokens {got.usage.input_tokens}, text {_text(got)!r}: {got.routing.attempts}")
    assert res.attempts[0].outcome is Kind.SERVER_FAILURE
    assert not run.problems, run.problems


@pytest.mark.parametrize("mode", ["stream", "astream"])
async def test_a_stream_without_message_start_counts_against_the_breaker(fake_server: FakeServer, mode: str) -> None:
    """The same reply, three times in a row on a threshold-3 breaker: three counted failures open it."""
    config = Config(dict.fromkeys(CHAIN, 1), dict.fromkeys(CHAIN, 3))
    run = Run(fake_server, 0, Planner(random.Random(0), config, [], [], (mode,)))
    try:
        for i in range(3):
            steps = {"primary": [Step("sse without message_start", Fault.sse(NO_MESSAGE_START["all but message_start"]),
                                      Kind.SERVER_FAILURE)],
                     "fallback": [_ok_step("fallback", f"fallback#{i} says cedar.")],
                     "third": [Step("unplanned", UNPLANNED, Kind.SERVER_FAILURE)]}
            await run.aone(Request(i, mode, 0.9, steps))
        info = run.router.breakers()["primary"]
    finally:
        await run.router.aclose()
    assert info.state == "open", f"primary's breaker after three streams without message_start: {info}"


# Bug 2, found by the stream chaos once `stream_error(after=0, error_type=invalid_request_error)` was in the
# catalogue. Before any content, an `error` event of a "your request is wrong" type inside a 200 stream is
# raised to the caller at once as a bare `anthropic.APIStatusError` with status_code 200 (not a 4xx caller
# error, and no failover), though README says: before the first token "a 5xx, an `error` event, a cut
# connection or a stall simply moves the request to the next model", and "a 'your request is wrong' type
# inside a 2xx contradicts its own status and counts as the server's failure" (which is what the router
# does with the same envelope in a 200 JSON body).
@pytest.mark.parametrize("error_type", ["invalid_request_error", "not_found_error"])
@pytest.mark.parametrize("mode", ["stream", "astream"])
async def test_a_caller_type_error_event_in_a_200_stream_fails_over(fake_server: FakeServer, mode: str,
                                                                    error_type: str) -> None:
    primary = Step(f"stream_error {error_type} after 0", Fault.stream_error(after=0, error_type=error_type),
                   Kind.SERVER_FAILURE)
    run, res = await play(fake_server, mode, {"primary": [primary],
                                              "fallback": [_ok_step("fallback", "fallback#0 says cedar.")]})
    assert res.kind == "message", (
        f"got {type(res.error).__module__}.{type(res.error).__qualname__} "
        f"(status_code {getattr(res.error, 'status_code', None)}): {res.error}")
    assert res.message is not None and res.message.routing.model == "fallback"
    assert not run.problems, run.problems


def test_the_same_envelope_in_a_200_json_body_fails_over(fake_server: FakeServer) -> None:
    """The contrast for bug 2 (passes): an invalid_request_error envelope in a 200 JSON reply is counted as
    the server's failure and the request fails over, as README says."""
    from ._hostile_plans import envelope

    primary = Step("200 envelope invalid_request_error", Fault.raw(200, envelope("invalid_request_error"),
                                                                   {"content-type": "application/json"}),
                   Kind.SERVER_FAILURE)
    run, res = asyncio.run(play(fake_server, "complete", {
        "primary": [primary], "fallback": [_ok_step("fallback", "fallback#0 says cedar.")]}))
    assert res.kind == "message" and res.message is not None and res.message.routing.model == "fallback"
    assert not run.problems, run.problems
