"""The policy key `state: {redis: {url, prefix, timeout}}`: validated at load, its URL kept secret."""

from __future__ import annotations

import pytest

from router import PolicyError, parse_policy

BASE = """
version: 1
{state}
models:
  a: {{provider: anthropic, model: claude-a, api_key: "${{KEY}}"}}
routes:
  default: [a]
"""
ENV = {"KEY": "sk-ant-api03-abcdefghijklmnopqrstuvwxyz", "REDIS_URL": "redis://:hunter2hunter2@10.0.0.9:6379/0"}


def _parse(state: str):  # type: ignore[no-untyped-def]
    return parse_policy(BASE.format(state=state), env=ENV)


def test_a_redis_state_is_read_with_its_defaults_and_its_url_kept_secret() -> None:
    policy = _parse('state: {redis: {url: "${REDIS_URL}"}}')
    redis = policy.state.redis
    assert redis is not None and redis.prefix == "fr" and redis.timeout == 0.05
    assert redis.url.reveal() == ENV["REDIS_URL"]
    assert "hunter2" not in repr(policy) and "hunter2" not in repr(redis)


def test_no_state_means_breakers_in_memory() -> None:
    assert _parse("").state.redis is None


@pytest.mark.parametrize(
    "state, says",
    [
        ('state: {redis: {url: "http://x:1"}}', "state.redis.url: expected a redis://"),
        ('state: {redis: {prefix: fr}}', "state.redis.url: required key 'url' is missing"),
        ('state: {redis: {url: "${REDIS_URL}", prefx: fr}}', "unknown key 'prefx' (did you mean 'prefix'?)"),
        ('state: {redis: {url: "${REDIS_URL}", timeout: fast}}', "state.redis.timeout: invalid duration"),
        ('state: {memcached: {}}', "state.memcached: unknown key"),
    ],
)
def test_bad_state_is_a_policy_error_naming_the_key(state: str, says: str) -> None:
    with pytest.raises(PolicyError) as info:
        _parse(state)
    assert says in info.value.report()
    assert "hunter2" not in info.value.report()
