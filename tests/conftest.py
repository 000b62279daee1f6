"""Shared fixtures: the fake provider server, an injectable clock, and policies pointed at the server."""

from __future__ import annotations

import os
import textwrap
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from router import Router, parse_policy
from router.testing import FakeServer

pytest_plugins = ["router.testing.pytest_plugin"]

# Test modules import litellm directly; offline, its import would retry fetching its cost map for seconds.
os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")

# Distinct, realistic-looking keys per model, so tests can check none of them leaks anywhere.
KEYS = {
    "KEY_PRIMARY": "sk-ant-api03-PRIMARYsecretvalue0123456789abcdefghijklmnop",
    "KEY_FALLBACK": "sk-ant-api03-FALLBACKsecretvalue0123456789abcdefghijklmn",
    "KEY_THIRD": "sk-ant-api03-THIRDsecretvalue0123456789abcdefghijklmnopqr",
}


class Clock:
    """A monotonic clock the test moves by hand."""

    def __init__(self, start: float = 1000.0) -> None:
        self.now = start

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def clock() -> Clock:
    return Clock()


def policy_yaml(
    url: str,
    *,
    models: tuple[str, ...] = ("primary", "fallback"),
    attempts: int = 1,
    threshold: int = 3,
    reset: str = "10s",
    max_reset: str = "5m",
    read: str = "5s",
    extra_model: str = "",
) -> str:
    lines = [
        "version: 1",
        "defaults:",
        f"  breaker: {{failure_threshold: {threshold}, reset_timeout: {reset}, max_reset_timeout: {max_reset}}}",
        f"  retry: {{attempts: {attempts}, backoff: {{initial: 1ms, max: 5ms, jitter: 0.1}}}}",
        f"  timeout: {{connect: 2s, read: {read}, total: 30s}}",
        "models:",
    ]
    for alias in models:
        lines.append(
            f"  {alias}: {{provider: anthropic, model: claude-{alias}, base_url: '{url}', "
            f"api_key: '${{KEY_{alias.upper()}}}'{extra_model}}}"
        )
    lines.append("routes:")
    lines.append(f"  default: [{', '.join(models)}]")
    return "\n".join(lines) + "\n"


@pytest.fixture
def make_router(fake_server: FakeServer, clock: Clock) -> Iterator[Callable[..., Router]]:
    made: list[Router] = []

    def make(text: str | None = None, **kwargs: Any) -> Router:
        router_kwargs = {k: kwargs.pop(k) for k in ("store", "on_transition", "rng", "clock") if k in kwargs}
        router_kwargs.setdefault("clock", clock)  # clock=router.clock.SYSTEM for tests whose deadlines are real
        source = text if text is not None else policy_yaml(fake_server.url, **kwargs)
        r = Router(parse_policy(textwrap.dedent(source), env=KEYS), **router_kwargs)
        made.append(r)
        return r

    yield make
    for r in made:
        r.close()


USER = [{"role": "user", "content": "Hi"}]


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--soak",
        action="store_true",
        default=False,
        help="run the long chaos soak (a few thousand requests) instead of the short default one",
    )


from ._redis import redis_factory, redis_server  # noqa: E402, F401  (a real redis-server: tests/_redis.py)
