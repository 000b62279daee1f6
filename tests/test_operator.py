"""Operator actions on a breaker: force_open (no traffic, no probe), force_close and reset."""

from __future__ import annotations

import pytest

from router import Kind

from .conftest import USER


def test_force_open_sends_nothing_not_even_a_probe_until_force_close(make_router, fake_server, clock) -> None:
    r = make_router(reset="1s")
    r.force_open("primary")
    for _ in range(3):
        clock.advance(5)  # far past reset_timeout: a forced breaker is never probed
        msg = r.complete(messages=USER, max_tokens=32)
        assert msg.routing.model == "fallback" and msg.routing.attempts[0].outcome is Kind.BREAKER_OPEN
    info = r.breakers()["primary"]
    assert info.state == "open" and info.forced
    assert fake_server.count("claude-primary") == 0
    r.force_close("primary")
    assert r.breakers()["primary"].state == "closed" and not r.breakers()["primary"].forced
    assert r.complete(messages=USER, max_tokens=32).routing.model == "primary"


def test_reset_also_lifts_a_forced_open(make_router, clock) -> None:
    r = make_router()
    r.force_open("fallback")
    r.reset("fallback")
    assert r.breakers()["fallback"].state == "closed"


@pytest.mark.parametrize("action", ["force_open", "force_close", "reset"])
def test_operator_actions_name_a_model_of_the_policy(make_router, action) -> None:
    r = make_router()
    with pytest.raises(KeyError, match="no model 'opsu' in the policy"):
        getattr(r, action)("opsu")
