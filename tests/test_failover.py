"""Failover through the real anthropic SDK over real HTTP to the fake server."""

from __future__ import annotations

import asyncio
import threading

import anthropic
import pytest
from anthropic.types import Message

import router
from router import AllModelsFailed, Kind
from router.testing import FakeServer, Fault

from .conftest import USER, Clock


def ask(r: router.Router, **kw: object) -> router.RoutedMessage:
    return r.complete(messages=USER, max_tokens=32, **kw)


def served_by(msg: Message) -> str:
    return msg.routing.model  # type: ignore[attr-defined, no-any-return]


def test_threshold_opens_and_open_breaker_gets_no_traffic(fake_server: FakeServer, make_router) -> None:
    fake_server.plan("claude-primary", default=Fault.status(500))
    r = make_router(attempts=1, threshold=3)
    for i in range(1, 11):
        msg = ask(r)
        assert isinstance(msg, Message)
        assert served_by(msg) == "fallback"
        assert msg.content[0].text == "Hello from claude-fallback"  # type: ignore[union-attr]
        assert fake_server.count("claude-primary") == min(i, 3)
    assert fake_server.count("claude-fallback") == 10
    info = r.breakers()["primary"]
    assert info.state == "open" and info.failures == 3
    last = msg.routing.attempts  # type: ignore[attr-defined]
    assert [a.outcome for a in last] == [Kind.BREAKER_OPEN, Kind.SUCCESS]
    assert last[0].status is None and last[0].duration_s == 0.0


def test_retries_on_one_model_can_trip_it_in_one_request(fake_server: FakeServer, make_router) -> None:
    fake_server.plan("claude-primary", default=Fault.status(500))
    r = make_router(attempts=3, threshold=3)
    msg = ask(r)
    assert served_by(msg) == "fallback"
    assert fake_server.count("claude-primary") == 3
    assert r.breakers()["primary"].state == "open"
    outcomes = [(a.model, a.outcome, a.status) for a in msg.routing.attempts]  # type: ignore[attr-defined]
    assert outcomes == [("primary", Kind.SERVER_FAILURE, 500)] * 3 + [("fallback", Kind.SUCCESS, 200)]


def test_success_between_failures_resets_the_count(fake_server: FakeServer, make_router) -> None:
    fake_server.plan(
        "claude-primary",
        [Fault.status(500), Fault.status(500), Fault.ok(), Fault.status(500), Fault.status(500)],
    )
    r = make_router(attempts=1)
    served = [served_by(ask(r)) for _ in range(5)]
    assert served == ["fallback", "fallback", "primary", "fallback", "fallback"]
    info = r.breakers()["primary"]
    assert (info.state, info.failures) == ("closed", 2)


def trip(fake_server: FakeServer, r: router.Router) -> None:
    fake_server.plan("claude-primary", [Fault.status(500)] * 3)
    for _ in range(3):
        ask(r)
    assert r.breakers()["primary"].state == "open"


def test_probe_after_reset_timeout_closes_on_success(fake_server: FakeServer, make_router, clock: Clock) -> None:
    r = make_router(reset="10s")
    trip(fake_server, r)
    clock.advance(9.9)
    assert served_by(ask(r)) == "fallback"
    assert fake_server.count("claude-primary") == 3
    clock.advance(0.1)
    msg = ask(r)
    assert served_by(msg) == "primary"
    assert msg.routing.attempts[0].probe  # type: ignore[attr-defined]
    assert fake_server.count("claude-primary") == 4
    assert r.breakers()["primary"].state == "closed"
    assert [served_by(ask(r)) for _ in range(3)] == ["primary"] * 3


def test_failed_probe_reopens_with_doubled_wait(fake_server: FakeServer, make_router, clock: Clock) -> None:
    r = make_router(reset="10s")
    trip(fake_server, r)
    fake_server.plan("claude-primary", default=Fault.status(503))
    clock.advance(10)
    msg = ask(r)
    assert served_by(msg) == "fallback"  # the probe's own request is still answered
    probe = msg.routing.attempts[0]  # type: ignore[attr-defined]
    assert (probe.model, probe.outcome, probe.status, probe.probe) == ("primary", Kind.SERVER_FAILURE, 503, True)
    info = r.breakers()["primary"]
    assert info.state == "open"
    assert info.retry_at == pytest.approx(clock.now + 20.0)
    clock.advance(19.9)
    ask(r)
    assert fake_server.count("claude-primary") == 4


def _hold_probe_then_release(fake_server: FakeServer, r: router.Router, clock: Clock) -> None:
    trip(fake_server, r)
    fake_server.plan("claude-primary", default=Fault.ok(delay=0.3))  # a slow probe, so everyone overlaps it
    clock.advance(10)


def test_half_open_fifty_threads_exactly_one_probe(fake_server: FakeServer, make_router, clock: Clock) -> None:
    r = make_router()
    _hold_probe_then_release(fake_server, r, clock)
    barrier = threading.Barrier(50)
    served: list[str] = []
    lock = threading.Lock()

    def one() -> None:
        barrier.wait()
        m = served_by(ask(r))
        with lock:
            served.append(m)

    threads = [threading.Thread(target=one) for _ in range(50)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert fake_server.count("claude-primary") == 3 + 1
    assert sorted(served).count("primary") == 1 and len(served) == 50
    assert r.breakers()["primary"].state == "closed"


async def test_half_open_fifty_coroutines_exactly_one_probe(
    fake_server: FakeServer, make_router, clock: Clock
) -> None:
    r = make_router()
    _hold_probe_then_release(fake_server, r, clock)
    results = await asyncio.gather(*(r.acomplete(messages=USER, max_tokens=32) for _ in range(50)))
    assert fake_server.count("claude-primary") == 3 + 1
    assert [served_by(m) for m in results].count("primary") == 1
    assert r.breakers()["primary"].state == "closed"
    await r.aclose()


COUNTED = {
    "529 overloaded": (Fault.status(529, should_retry=True), 529, "overloaded_error"),
    "502 html": (Fault.html(502), 502, None),
    "503": (Fault.status(503), 503, "api_error"),
    "504": (Fault.status(504), 504, "timeout_error"),
    "connection reset": (Fault.reset(), None, "connection_error"),
    "read timeout": (Fault.hang(2.0), None, "timeout"),
}


@pytest.mark.parametrize("name", list(COUNTED))
def test_server_failures_count(fake_server: FakeServer, make_router, name: str) -> None:
    fault, status, error_type = COUNTED[name]
    fake_server.plan("claude-primary", default=fault)
    r = make_router(read="0.2s")
    for _ in range(4):
        msg = ask(r)
        assert served_by(msg) == "fallback"
    assert fake_server.count("claude-primary") == 3
    assert r.breakers()["primary"].state == "open"
    first = msg.routing.attempts  # type: ignore[attr-defined]
    assert first[0].outcome is Kind.BREAKER_OPEN
    r.breakers()
    # The attempts of a tripping request say what happened.
    fake_server.reset()
    fake_server.plan("claude-primary", default=fault)
    r2 = make_router(read="0.2s")
    a = ask(r2).routing.attempts[0]  # type: ignore[attr-defined]
    assert (a.outcome, a.status, a.error_type) == (Kind.SERVER_FAILURE, status, error_type)
    if status is None or name == "502 html":
        assert a.request_id is None
    else:
        assert a.request_id and a.request_id.startswith("req_")


def test_x_should_retry_false_moves_on_without_retrying(fake_server: FakeServer, make_router) -> None:
    fake_server.plan("claude-primary", default=Fault.status(503, should_retry=False))
    r = make_router(attempts=3)
    assert served_by(ask(r)) == "fallback"
    assert fake_server.count("claude-primary") == 1
    assert r.breakers()["primary"].failures == 1


def test_retry_after_on_a_5xx_is_honoured_between_retries(fake_server: FakeServer, make_router) -> None:
    fake_server.plan("claude-primary", [Fault.status(529, retry_after_ms=50)], default=Fault.ok())
    r = make_router(attempts=2)
    msg = ask(r)
    assert served_by(msg) == "primary"
    attempts = msg.routing.attempts  # type: ignore[attr-defined]
    assert attempts[0].detail == "retry-after 0.05s"


def test_rate_limited_model_cools_down_without_counting(
    fake_server: FakeServer, make_router, clock: Clock
) -> None:
    fake_server.plan("claude-primary", [Fault.status(429, retry_after=2)], default=Fault.ok())
    r = make_router(attempts=3)
    msg = ask(r)
    assert served_by(msg) == "fallback"
    first = msg.routing.attempts[0]  # type: ignore[attr-defined]
    assert (first.outcome, first.status) == (Kind.RATE_LIMITED, 429)
    assert fake_server.count("claude-primary") == 1  # a 429 is not retried on the same model
    clock.advance(1.9)
    msg = ask(r)
    assert served_by(msg) == "fallback"
    assert msg.routing.attempts[0].outcome is Kind.COOLING_DOWN  # type: ignore[attr-defined]
    assert fake_server.count("claude-primary") == 1
    clock.advance(0.1)
    assert served_by(ask(r)) == "primary"
    info = r.breakers()["primary"]
    assert (info.state, info.failures) == ("closed", 0)


def test_caller_error_is_raised_at_once_as_the_sdk_exception(fake_server: FakeServer, make_router) -> None:
    fake_server.plan("claude-primary", default=Fault.status(400, message="messages: bad"))
    r = make_router(attempts=3)
    with pytest.raises(anthropic.BadRequestError) as exc:
        ask(r)
    assert exc.value.status_code == 400
    assert fake_server.count("claude-primary") == 1
    assert fake_server.count("claude-fallback") == 0
    info = r.breakers()["primary"]
    assert (info.state, info.failures) == ("closed", 0)


@pytest.mark.parametrize("code, exc_type", [(404, anthropic.NotFoundError), (413, anthropic.ContentTooLargeError),
                                            (422, anthropic.UnprocessableEntityError)])
def test_other_caller_errors_do_not_fail_over(fake_server: FakeServer, make_router, code: int, exc_type) -> None:
    fake_server.plan("claude-primary", default=Fault.status(code))
    r = make_router()
    with pytest.raises(exc_type):
        ask(r)
    assert fake_server.count("claude-fallback") == 0


def test_auth_error_moves_to_next_model_without_counting(fake_server: FakeServer, make_router) -> None:
    fake_server.plan("claude-primary", default=Fault.status(401))
    r = make_router(attempts=3)
    for _ in range(4):
        msg = ask(r)
        assert served_by(msg) == "fallback"
    assert fake_server.count("claude-primary") == 4  # one per request: no retry, no breaker
    info = r.breakers()["primary"]
    assert (info.state, info.failures) == ("closed", 0)
    a = msg.routing.attempts[0]  # type: ignore[attr-defined]
    assert (a.outcome, a.status, a.error_type) == (Kind.ACCOUNT, 401, "authentication_error")


def test_invalid_key_skips_later_models_sharing_that_key(fake_server: FakeServer, make_router) -> None:
    text = f"""
    version: 1
    defaults: {{retry: {{attempts: 1}}}}
    models:
      a: {{provider: anthropic, model: claude-a, base_url: '{fake_server.url}', api_key: '${{KEY_PRIMARY}}'}}
      b: {{provider: anthropic, model: claude-b, base_url: '{fake_server.url}', api_key: '${{KEY_PRIMARY}}'}}
      c: {{provider: anthropic, model: claude-c, base_url: '{fake_server.url}', api_key: '${{KEY_FALLBACK}}'}}
    routes: {{default: [a, b, c]}}
    """
    fake_server.plan("claude-a", default=Fault.status(401))
    r = make_router(text)
    msg = ask(r)
    assert served_by(msg) == "c"
    assert [a.outcome for a in msg.routing.attempts] == [Kind.ACCOUNT, Kind.SAME_CREDENTIALS, Kind.SUCCESS]  # type: ignore[attr-defined]
    assert fake_server.count("claude-b") == 0


def test_every_model_failing_raises_all_models_failed(fake_server: FakeServer, make_router) -> None:
    fake_server.plan("claude-primary", default=Fault.status(529, headers={"request-id": "req_primary_529"}))
    fake_server.plan("claude-fallback", default=Fault.status(500, headers={"request-id": "req_fallback_500"}))
    r = make_router(attempts=1)
    with pytest.raises(AllModelsFailed) as exc:
        ask(r)
    attempts = exc.value.attempts
    assert [(a.model, a.outcome, a.status, a.error_type, a.request_id) for a in attempts] == [
        ("primary", Kind.SERVER_FAILURE, 529, "overloaded_error", "req_primary_529"),
        ("fallback", Kind.SERVER_FAILURE, 500, "api_error", "req_fallback_500"),
    ]
    assert exc.value.route == "default"
    text = str(exc.value)
    assert "req_primary_529" in text and "req_fallback_500" in text and "overloaded_error" in text
    assert isinstance(exc.value.__cause__, anthropic.InternalServerError)


def test_raw_transport_errors_never_reach_the_caller(fake_server: FakeServer, make_router) -> None:
    fake_server.plan("claude-primary", default=Fault.reset())
    fake_server.plan("claude-fallback", default=Fault.hang(2.0))
    r = make_router(read="0.2s", attempts=2)
    with pytest.raises(AllModelsFailed) as exc:
        ask(r)
    assert [a.error_type for a in exc.value.attempts] == ["connection_error"] * 2 + ["timeout"] * 2


def test_connection_refused_counts_and_fails_over(fake_server: FakeServer, make_router) -> None:
    dead = FakeServer().start()
    dead_url = dead.url
    dead.stop()
    text = f"""
    version: 1
    defaults: {{retry: {{attempts: 1}}}}
    models:
      gone: {{provider: anthropic, model: claude-gone, base_url: '{dead_url}', api_key: '${{KEY_PRIMARY}}'}}
      ok: {{provider: anthropic, model: claude-ok, base_url: '{fake_server.url}', api_key: '${{KEY_FALLBACK}}'}}
    routes: {{default: [gone, ok]}}
    """
    r = make_router(text)
    msg = ask(r)
    assert served_by(msg) == "ok"
    a = msg.routing.attempts[0]  # type: ignore[attr-defined]
    assert (a.outcome, a.error_type) == (Kind.SERVER_FAILURE, "connection_error")
    assert r.breakers()["gone"].failures == 1


async def test_async_failover_matches_sync(fake_server: FakeServer, make_router) -> None:
    fake_server.plan("claude-primary", default=Fault.status(529))
    r = make_router(attempts=1)
    served = [served_by(await r.acomplete(messages=USER, max_tokens=32)) for _ in range(5)]
    assert served == ["fallback"] * 5
    assert fake_server.count("claude-primary") == 3
    assert r.breakers()["primary"].state == "open"
    fake_server.plan("claude-fallback", default=Fault.status(400))
    with pytest.raises(anthropic.BadRequestError):
        await r.acomplete(messages=USER, max_tokens=32)
    await r.aclose()


async def test_cancelled_probe_is_not_the_models_fault(fake_server: FakeServer, make_router, clock: Clock) -> None:
    r = make_router()
    trip(fake_server, r)
    fake_server.plan("claude-primary", default=Fault.hang(5.0))
    clock.advance(10)
    task = asyncio.create_task(r.acomplete(messages=USER, max_tokens=32))
    for _ in range(200):
        await asyncio.sleep(0.005)
        if fake_server.count("claude-primary") == 4:
            break
    assert r.breakers()["primary"].probe_in_flight
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    info = r.breakers()["primary"]
    assert info.state == "half_open" and not info.probe_in_flight  # the lease was handed back
    fake_server.plan("claude-primary", default=Fault.ok())
    assert served_by(await r.acomplete(messages=USER, max_tokens=32)) == "primary"
    await r.aclose()


def test_sdk_parameters_pass_through(fake_server: FakeServer, make_router) -> None:
    r = make_router()
    tools = [{"name": "get_time", "description": "Now.", "input_schema": {"type": "object", "properties": {}}}]
    ask(r, system="Be brief.", tools=tools, stop_sequences=["END"], metadata={"user_id": "u1"})
    body = fake_server.received("claude-primary")[0].body
    assert body["system"] == "Be brief." and body["tools"] == tools
    assert body["stop_sequences"] == ["END"] and body["model"] == "claude-primary"
    assert body["metadata"] == {"user_id": "u1"}


def test_an_argument_the_sdk_rejects_is_raised_unchanged_without_failover(
    fake_server: FakeServer, make_router
) -> None:
    r = make_router()
    with pytest.raises(TypeError, match="no_such_param"):
        ask(r, no_such_param=1)
    assert fake_server.count("claude-primary") == fake_server.count("claude-fallback") == 0
    assert r.breakers()["primary"].failures == 0


def test_router_only_arguments_are_checked(make_router) -> None:
    r = make_router()
    with pytest.raises(TypeError, match="route="):
        r.complete(model="claude-x", messages=USER, max_tokens=5)
    with pytest.raises(router.UnknownRoute, match=r"no route named 'nope'.*default"):
        r.complete(route="nope", messages=USER, max_tokens=5)
