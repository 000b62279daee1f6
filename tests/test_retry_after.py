"""Retry-After is read defensively (seconds, ms, every HTTP-date form as UTC), capped by
`retry.max_retry_after`, clearable by an operator, and a cooling model is never probed."""

from __future__ import annotations

import datetime
import email.utils
import os
import subprocess
import sys

import pytest

from router import Kind
from router.retry_after import parse_retry_after
from router.testing import Fault

from .conftest import USER

NOW = 1_800_000_000.0  # a fixed wall-clock instant


def _at(seconds_from_now: float) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(NOW + seconds_from_now, datetime.timezone.utc)


@pytest.mark.parametrize(
    "headers, expected",
    [
        ({"retry-after": "3"}, 3.0),
        ({"retry-after": " 2.5 "}, 2.5),
        ({"retry-after-ms": "1500"}, 1.5),
        ({"retry-after-ms": "1500", "retry-after": "9"}, 1.5),
        ({"retry-after-ms": "garbage", "retry-after": "9"}, 9.0),
        ({"retry-after": email.utils.format_datetime(_at(3), usegmt=True)}, 3.0),  # IMF-fixdate
        ({"retry-after": _at(3).strftime("%a, %d %b %Y %H:%M:%S -0000")}, 3.0),  # zone "unknown": UTC
        ({"retry-after": _at(3).strftime("%A, %d-%b-%y %H:%M:%S GMT")}, 3.0),  # RFC 850
        ({"retry-after": _at(3).strftime("%a %b %d %H:%M:%S %Y")}, 3.0),  # asctime, no zone: UTC
        ({"retry-after": email.utils.format_datetime(_at(-30), usegmt=True)}, 0.0),  # in the past: now
    ],
)
def test_retry_after_forms(headers, expected) -> None:
    assert parse_retry_after(headers, now=NOW) == pytest.approx(expected, abs=1e-6)


@pytest.mark.parametrize("raw", ["inf", "-inf", "nan", "1e12", "-5", "", "soon", "Tue, 99 Foo 2026", "0x10"])
def test_absurd_or_garbage_retry_after_is_ignored(raw) -> None:
    assert parse_retry_after({"retry-after": raw}, now=NOW) is None
    assert parse_retry_after({"retry-after-ms": raw}, now=NOW) is None


def test_an_http_date_does_not_depend_on_the_local_time_zone() -> None:
    # Under America/New_York, a zone-less date read as local time is five hours off.
    code = (
        "import time, datetime; from router.retry_after import parse_retry_after as p; now = time.time(); "
        "t = datetime.datetime.fromtimestamp(now + 3, datetime.timezone.utc); "
        "print(p({'retry-after': t.strftime('%a, %d %b %Y %H:%M:%S -0000')}, now), "
        "p({'retry-after': t.strftime('%a %b %d %H:%M:%S %Y')}, now))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env={**os.environ, "TZ": "America/New_York"}).stdout.split()
    assert all(2.0 <= float(v) <= 3.0 for v in out), out


def test_a_huge_retry_after_is_capped_and_an_operator_can_clear_it(make_router, fake_server, clock) -> None:
    fake_server.plan("claude-primary", [Fault.status(429, retry_after=10_000)])
    r = make_router(extra_model=", retry: {max_retry_after: 5s}")
    msg = r.complete(messages=USER, max_tokens=32)
    assert msg.routing.model == "fallback"
    first = msg.routing.attempts[0]
    assert first.outcome is Kind.RATE_LIMITED and "capped at 5s" in (first.detail or "")
    info = r.breakers()["primary"]
    assert info.cooling_until == pytest.approx(clock.now + 5.0)
    assert r.complete(messages=USER, max_tokens=32).routing.attempts[0].outcome is Kind.COOLING_DOWN
    r.reset("primary")
    assert r.breakers()["primary"].cooling_until is None
    assert r.complete(messages=USER, max_tokens=32).routing.model == "primary"
    with pytest.raises(KeyError, match="no model 'nope'"):
        r.reset("nope")


def test_a_cooling_half_open_model_is_not_probed(make_router, fake_server, clock) -> None:
    r = make_router(reset="1s")
    fake_server.plan("claude-primary", [Fault.status(500)] * 3 + [Fault.status(429, retry_after=3)])
    for _ in range(3):
        r.complete(messages=USER, max_tokens=32)
    assert r.breakers()["primary"].state == "open"
    clock.advance(1.5)
    probe = r.complete(messages=USER, max_tokens=32)  # the probe meets a 429 with retry-after: 3
    assert probe.routing.attempts[0].probe and probe.routing.attempts[0].outcome is Kind.RATE_LIMITED
    for _ in range(28):  # 1.5 s of traffic: nobody may probe a model that asked for 3 s
        clock.advance(0.05)
        assert r.complete(messages=USER, max_tokens=32).routing.model == "fallback"
    assert fake_server.count("claude-primary") == 4
    clock.advance(2.0)  # the cooldown is over: the next request probes, and closes the breaker
    assert r.complete(messages=USER, max_tokens=32).routing.model == "primary"
    assert r.breakers()["primary"].state == "closed"
