"""on_exhausted: wait — a route whose every model is down waits for the soonest moment one may be tried again
(within wait.max and the caller's timeout=), and the single-probe rule still holds for every waiting caller."""

from __future__ import annotations

import asyncio
import itertools
import textwrap
import threading
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from router import AllModelsFailed, AttemptEnded, AttemptStarted, Kind, Router, VirtualClock, parse_policy
from router.clock import SYSTEM
from router.events import Event
from router.testing import FakeServer, Fault

from .conftest import KEYS, USER


def _policy(url: str, on_exhausted: str, *, reset: str = "10s", attempts: int = 1) -> str:
    return textwrap.dedent(f"""\
        version: 1
        defaults:
          breaker: {{failure_threshold: 1, reset_timeout: {reset}, max_reset_timeout: {reset}}}
          retry: {{attempts: {attempts}, backoff: {{initial: 1ms, max: 5ms, jitter: 0}}}}
          timeout: {{connect: 2s, read: 5s, total: 30s}}
        models:
          primary: {{provider: anthropic, model: claude-primary, base_url: '{url}', api_key: '${{KEY_PRIMARY}}'}}
          fallback: {{provider: anthropic, model: claude-fallback, base_url: '{url}', api_key: '${{KEY_FALLBACK}}'}}
        routes:
          default: {{chain: [primary, fallback], on_exhausted: {on_exhausted}}}
        """)


@pytest.fixture
def routers() -> Iterator[Callable[..., Router]]:
    made: list[Router] = []

    def make(text: str, **kwargs: Any) -> Router:
        r = Router(parse_policy(text, env=KEYS), watch=False, **kwargs)
        made.append(r)
        return r

    yield make
    for r in made:
        r.close()


def _outcomes(attempts: Any) -> list[tuple[str, str, bool]]:
    return [(a.model, a.outcome.value, a.probe) for a in attempts]


def test_wait_sleeps_to_the_primary_probe_and_is_served(fake_server: FakeServer, routers: Any) -> None:
    """Both models down: the request waits (on the virtual clock) exactly until the primary half-opens, and
    the primary's probe serves it."""
    fake_server.plan("claude-primary", [Fault.status(500)])
    fake_server.plan("claude-fallback", [], default=Fault.status(529))
    clock = VirtualClock(start=100.0)
    r = routers(_policy(fake_server.url, "{wait: {max: 30s}}"), clock=clock.clock())
    msg = r.complete(messages=USER, max_tokens=16)
    assert msg.routing.model == "primary"
    assert _outcomes(msg.routing.attempts) == [
        ("primary", "server_failure", False),
        ("fallback", "server_failure", False),
        ("primary", "waited", False),
        ("primary", "success", True),
    ]
    assert msg.routing.attempts[2].duration_s == pytest.approx(10.0)  # the reset timeout, to the tick
    assert clock.now() == pytest.approx(110.0)
    assert (fake_server.count("claude-primary"), fake_server.count("claude-fallback")) == (2, 1)


def test_async_wait_is_the_same_plan(fake_server: FakeServer, routers: Any) -> None:
    fake_server.plan("claude-primary", [Fault.status(500)])
    fake_server.plan("claude-fallback", [], default=Fault.status(500))
    clock = VirtualClock(start=100.0)
    r = routers(_policy(fake_server.url, "wait"), clock=clock.clock())

    async def go() -> Any:
        try:
            return await r.acomplete(messages=USER, max_tokens=16)
        finally:
            await r.aclose()

    msg = asyncio.run(go())
    assert [o for _, o, _ in _outcomes(msg.routing.attempts)] == ["server_failure", "server_failure", "waited",
                                                                  "success"]


def test_wait_gives_up_at_its_max_and_says_so(fake_server: FakeServer, routers: Any) -> None:
    """A probe due after wait.max is not waited for: AllModelsFailed at once, naming the limit."""
    fake_server.plan("claude-primary", [], default=Fault.status(500))
    fake_server.plan("claude-fallback", [], default=Fault.status(500))
    clock = VirtualClock(start=100.0)
    r = routers(_policy(fake_server.url, "{wait: {max: 5s}}"), clock=clock.clock())
    with pytest.raises(AllModelsFailed) as info:
        r.complete(messages=USER, max_tokens=16)
    assert "on_exhausted.wait.max" in str(info.value)
    assert clock.now() == 100.0  # nothing was waited for: the next chance (110 s) is past the limit
    assert fake_server.count("claude-primary") == 1


def test_wait_stays_within_the_callers_timeout(fake_server: FakeServer, routers: Any) -> None:
    fake_server.plan("claude-primary", [], default=Fault.status(500))
    fake_server.plan("claude-fallback", [], default=Fault.status(500))
    clock = VirtualClock(start=100.0)
    r = routers(_policy(fake_server.url, "{wait: {max: 60s}}", reset="3s"), clock=clock.clock())
    with pytest.raises(AllModelsFailed) as info:
        r.complete(messages=USER, max_tokens=16, timeout=7.0)
    # probes at 103 (both fail, reopen for 3 s), at 106 (fail again); the next chance, 109, is past 107
    assert clock.now() == pytest.approx(106.0)
    kinds = [a.outcome for a in info.value.attempts]
    assert kinds.count(Kind.WAITED) == 2
    assert fake_server.count("claude-primary") == 3


def test_on_exhausted_per_call_overrides_the_route(fake_server: FakeServer, routers: Any) -> None:
    fake_server.plan("claude-primary", [Fault.status(500)])
    fake_server.plan("claude-fallback", [], default=Fault.status(500))
    clock = VirtualClock(start=100.0)
    r = routers(_policy(fake_server.url, "raise"), clock=clock.clock())
    msg = r.complete(messages=USER, max_tokens=16, on_exhausted="wait")
    assert msg.routing.model == "primary"
    with pytest.raises(ValueError, match="needs a queue"):
        r.complete(messages=USER, max_tokens=16, on_exhausted="queue")
    with pytest.raises(ValueError, match="must be 'raise', 'wait' or 'queue'"):
        r.complete(messages=USER, max_tokens=16, on_exhausted="later")


def test_a_stream_waits_too(fake_server: FakeServer, routers: Any) -> None:
    fake_server.plan("claude-primary", [Fault.status(529)])
    fake_server.plan("claude-fallback", [], default=Fault.status(529))
    clock = VirtualClock(start=100.0)
    r = routers(_policy(fake_server.url, "wait"), clock=clock.clock())
    with r.stream(messages=USER, max_tokens=16) as s:
        text = "".join(s.text_stream)
        final = s.get_final_message()
    assert text and final.routing.model == "primary"
    assert [a.outcome.value for a in final.routing.attempts][-2:] == ["waited", "success"]


def test_waiting_callers_never_stampede_the_recovering_primary(fake_server: FakeServer, routers: Any) -> None:
    """Real time, tenths of a second: twelve callers wait out an outage of both models. When the primary comes
    back, exactly one probe reaches it before any other request does, and every caller gets a message."""
    fake_server.plan("claude-primary", [], default=Fault.status(500))
    fake_server.plan("claude-fallback", [], default=Fault.status(500))
    r = routers(_policy(fake_server.url, "{wait: {max: 20s}}", reset="150ms"), clock=SYSTEM)
    events: list[Event] = []
    lock = threading.Lock()

    def listen(event: Event) -> None:
        if isinstance(event, (AttemptStarted, AttemptEnded)):
            with lock:
                events.append(event)

    r.add_listener(listen)
    results: list[Any] = []
    barrier = threading.Barrier(13)

    def caller() -> None:
        barrier.wait()
        try:
            results.append(r.complete(messages=USER, max_tokens=16, timeout=20.0))
        except Exception as exc:  # recorded, and the assertion below names it
            results.append(exc)

    threads = [threading.Thread(target=caller) for _ in range(12)]
    for t in threads:
        t.start()
    barrier.wait()
    outage_over = threading.Event()

    def recover() -> None:  # once every caller has failed at least once, the primary comes back
        fake_server.plan("claude-primary", [], default=Fault.ok(delay=0.05))
        outage_over.set()

    timer = threading.Timer(0.4, recover)
    timer.start()
    for t in threads:
        t.join(30)
    timer.join()
    assert outage_over.is_set()
    assert all(not isinstance(x, Exception) for x in results), [x for x in results if isinstance(x, Exception)]
    assert len(results) == 12
    primary = [e for e in events if (e.model if isinstance(e, AttemptStarted) else e.attempt.model) == "primary"]
    first_pass: set[int] = set()  # each caller's first try, sent while the breaker was still closed
    later: list[Any] = []
    for e in primary:
        if e.request not in first_pass and isinstance(e, AttemptStarted):
            first_pass.add(e.request)
            continue
        if (isinstance(e, AttemptEnded) and e.attempt.sent and not e.attempt.probe
                and e.attempt.outcome is not Kind.SUCCESS):
            continue  # the end of a first-pass try
        later.append(e)
    first_success = next(i for i, e in enumerate(later)
                         if isinstance(e, AttemptEnded) and e.attempt.outcome is Kind.SUCCESS)
    before = [e for e in later[:first_success] if isinstance(e, AttemptStarted) or e.attempt.sent]
    # until its first success, the primary saw probes only, one at a time: each start is followed by its end
    assert before and all(e.probe for e in before if isinstance(e, AttemptStarted))
    assert all(isinstance(a, AttemptStarted) != isinstance(b, AttemptStarted)
               for a, b in itertools.pairwise(before))
    assert later[first_success].attempt.probe  # the probe closed it; then traffic resumed
    for m in results:  # a round that sent nothing is folded into the wait before it, not recorded again
        kinds = [a.outcome for a in m.routing.attempts]
        waits = [i for i, k in enumerate(kinds) if k is Kind.WAITED]
        for i, j in itertools.pairwise([*waits, len(kinds)]):
            assert any(a.sent for a in m.routing.attempts[i + 1:j]), _outcomes(m.routing.attempts)
    told: dict[int, list[Any]] = {}
    for e in events:
        if isinstance(e, AttemptEnded):
            told.setdefault(e.request, []).append(e.attempt)
    assert sorted(map(repr, map(tuple, told.values()))) == sorted(repr(m.routing.attempts) for m in results)
    served_by = {m.routing.model for m in results}
    assert served_by == {"primary"}
