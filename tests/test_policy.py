"""Policy loading and validation: every bad input is a PolicyError naming file, line and key."""

from __future__ import annotations

import dataclasses
import pickle
import textwrap
import warnings
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import router.policy.build as policy_build
from router.policy import (
    BackoffConfig,
    BreakerConfig,
    Policy,
    PolicyError,
    PolicyWarning,
    RetryConfig,
    Secret,
    TimeoutConfig,
    load_policy,
    parse_policy,
)

SECRET = "sk-ant-api03-very-secret-value"

# The policy format's reference example (version 1), verbatim.
DESIGN_EXAMPLE = """\
version: 1
defaults:
  breaker:
    failure_threshold: 3        # consecutive counted failures that open a model's breaker
    reset_timeout: 30s          # open -> half-open
    max_reset_timeout: 5m       # each failed probe doubles the wait, up to this
  retry:
    attempts: 2                 # tries on one model per request (1 = no retry, fail over at once)
    backoff: {initial: 500ms, max: 8s, jitter: 0.25}
  timeout: {connect: 5s, read: 60s, total: 10m}
models:                         # alias -> where and how to call it
  opus:   {provider: anthropic, model: claude-opus-4-1}
  sonnet: {provider: anthropic, model: claude-sonnet-4-5, api_key: ${ANTHROPIC_API_KEY}}
  bedrock-sonnet: {provider: litellm, model: bedrock/us.anthropic.claude-sonnet-4-5-20250929-v1:0}
  gpt:    {provider: litellm, model: openai/gpt-4.1-mini, breaker: {failure_threshold: 5}}
routes:
  default: [opus, sonnet, bedrock-sonnet, gpt]
  fast: {chain: [sonnet, gpt]}
"""

# A small valid policy; tests append or substitute lines. Line numbers below are 1-based in this text.
BASE = """\
version: 1
models:
  opus: {provider: anthropic, model: claude-opus-4-1}
  sonnet: {provider: anthropic, model: claude-sonnet-4-5}
routes:
  default: [opus, sonnet]
"""


# A credential in the environment, so that models without api_key do not warn in tests about other things.
CREDENTIALS = {"ANTHROPIC_AUTH_TOKEN": "token-from-the-environment"}


def parse(text: str, **env: str) -> Policy:
    return parse_policy(textwrap.dedent(text), env={**CREDENTIALS, **env})


def error(text: str, **env: str) -> PolicyError:
    with pytest.raises(PolicyError) as info:
        parse(text, **env)
    return info.value


def with_opus(extra: str) -> str:
    """BASE with the opus model given `extra` keys (line 3)."""
    return BASE.replace("model: claude-opus-4-1}", f"model: claude-opus-4-1, {extra}}}")


# ---- valid policies ----


def test_design_example_loads_with_defaults_merged() -> None:
    p = parse_policy(DESIGN_EXAMPLE, env={"ANTHROPIC_API_KEY": SECRET})
    assert p.version == 1
    assert p.source == "<string>"
    assert list(p.models) == ["opus", "sonnet", "bedrock-sonnet", "gpt"]
    assert p.routes["default"].chain == ("opus", "sonnet", "bedrock-sonnet", "gpt")
    assert p.routes["default"].line == 17
    assert p.routes["fast"].chain == ("sonnet", "gpt")
    assert p.routes["fast"].line == 18

    opus = p.models["opus"]
    assert (opus.alias, opus.provider, opus.model, opus.line) == ("opus", "anthropic", "claude-opus-4-1", 12)
    assert opus.base_url is None and opus.api_key is None
    assert opus.breaker == BreakerConfig(failure_threshold=3, reset_timeout=30.0, max_reset_timeout=300.0)
    assert opus.retry == RetryConfig(attempts=2, backoff=BackoffConfig(initial=0.5, max=8.0, jitter=0.25))
    assert opus.timeout == TimeoutConfig(connect=5.0, read=60.0, total=600.0)
    assert dict(opus.outcomes) == {} and dict(opus.params) == {}

    bedrock = p.models["bedrock-sonnet"]
    assert bedrock.provider == "litellm"
    assert bedrock.model == "bedrock/us.anthropic.claude-sonnet-4-5-20250929-v1:0"

    # gpt overrides one breaker key and keeps the others from defaults
    assert p.models["gpt"].breaker == BreakerConfig(failure_threshold=5, reset_timeout=30.0, max_reset_timeout=300.0)

    key = p.models["sonnet"].api_key
    assert key is not None
    assert key.reveal() == SECRET
    assert key.source == "${ANTHROPIC_API_KEY}"


def test_load_policy_reads_a_file(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(DESIGN_EXAMPLE, encoding="utf-8")
    p = load_policy(path, env={"ANTHROPIC_API_KEY": SECRET})
    assert p.source == str(path)
    assert p == load_policy(str(path), env={"ANTHROPIC_API_KEY": SECRET})


def test_policy_is_immutable() -> None:
    p = parse(BASE)
    with pytest.raises(TypeError):
        p.models["x"] = p.models["opus"]  # type: ignore[index]
    with pytest.raises(dataclasses.FrozenInstanceError):
        p.models["opus"].model = "other"  # type: ignore[misc]
    assert hash(p.models["opus"]) == hash(p.models["opus"])


def test_model_settings_override_defaults_key_by_key() -> None:
    p = parse("""\
        version: 1
        defaults:
          breaker: {failure_threshold: 4, reset_timeout: 10s}
          retry: {attempts: 3, backoff: {initial: 1s, max: 20s}}
          timeout: {connect: 2s}
          outcomes: {"529": rate_limited, overloaded_error: server_failure}
        models:
          opus:
            provider: anthropic
            model: claude-opus-4-1
            breaker: {reset_timeout: 20s}
            retry: {backoff: {jitter: 0}}
            timeout: {read: 30s}
            outcomes: {529: server_failure, 402: account}
          sonnet: {provider: anthropic, model: claude-sonnet-4-5}
        routes:
          default: [opus, sonnet]
        """)
    opus, sonnet = p.models["opus"], p.models["sonnet"]
    assert opus.breaker == BreakerConfig(failure_threshold=4, reset_timeout=20.0, max_reset_timeout=300.0)
    assert opus.retry == RetryConfig(attempts=3, backoff=BackoffConfig(initial=1.0, max=20.0, jitter=0.0))
    assert opus.timeout == TimeoutConfig(connect=2.0, read=30.0, total=600.0)
    assert dict(opus.outcomes) == {"529": "server_failure", "overloaded_error": "server_failure", "402": "account"}
    assert sonnet.breaker == BreakerConfig(failure_threshold=4, reset_timeout=10.0, max_reset_timeout=300.0)
    assert sonnet.retry == RetryConfig(attempts=3, backoff=BackoffConfig(initial=1.0, max=20.0, jitter=0.25))
    assert dict(sonnet.outcomes) == {"529": "rate_limited", "overloaded_error": "server_failure"}


def test_no_defaults_section_uses_built_in_defaults() -> None:
    opus = parse(BASE).models["opus"]
    assert opus.breaker == BreakerConfig()
    assert opus.retry == RetryConfig()
    assert opus.timeout == TimeoutConfig()


def test_routes_expand_other_routes_inline() -> None:
    p = parse("""\
        version: 1
        models:
          a: {provider: anthropic, model: m1}
          b: {provider: anthropic, model: m2}
          c: {provider: anthropic, model: m3}
        routes:
          default: [a, tail]
          tail: {chain: [b, c]}
        """)
    assert p.routes["default"].chain == ("a", "b", "c")
    assert p.routes["tail"].chain == ("b", "c")


def test_yaml_merge_keys_and_base_url_and_params() -> None:
    p = parse("""\
        version: 1
        models:
          opus: &common
            provider: anthropic
            model: claude-opus-4-1
            base_url: http://127.0.0.1:8080
            params: {region: us-east-1, tags: [a, b]}
          sonnet:
            <<: *common
            model: claude-sonnet-4-5
        routes:
          default: [opus, sonnet]
        """)
    sonnet = p.models["sonnet"]
    assert (sonnet.model, sonnet.base_url) == ("claude-sonnet-4-5", "http://127.0.0.1:8080")
    assert dict(sonnet.params) == {"region": "us-east-1", "tags": ["a", "b"]}
    assert "us-east-1" not in repr(sonnet)  # params may carry credentials: kept out of repr


@pytest.mark.parametrize(
    ("written", "seconds"),
    [
        ("500ms", 0.5),
        ("30s", 30.0),
        ("5m", 300.0),
        ("1h", 3600.0),
        ("1.5m", 90.0),
        ("45", 45.0),
        ("2.5", 2.5),
        ("'45'", 45.0),
        ("86400", 86400.0),
    ],
)
def test_durations_in_every_form(written: str, seconds: float) -> None:
    opus = parse(with_opus(f"timeout: {{read: {written}}}")).models["opus"]
    assert opus.timeout.read == seconds
    assert isinstance(opus.timeout.read, float)


def test_zero_backoff_is_allowed() -> None:
    opus = parse(with_opus("retry: {backoff: {initial: 0, max: 0s, jitter: 0}}")).models["opus"]
    assert opus.retry.backoff == BackoffConfig(initial=0.0, max=0.0, jitter=0.0)


# ---- environment references ----


def test_env_reference_and_default() -> None:
    text = with_opus("base_url: '${BASE_URL}', api_key: ${KEY:-}, breaker: {reset_timeout: ${RESET:-45s}}")
    text = text.replace("claude-opus-4-1", "claude-${FAMILY:-opus}-4-1")
    with pytest.raises(PolicyError):  # ${KEY:-} falls back to "" and an empty key is refused
        parse(text, BASE_URL="http://localhost:9")
    opus = parse(text, BASE_URL="http://localhost:9", KEY=SECRET).models["opus"]
    assert opus.base_url == "http://localhost:9"
    assert opus.model == "claude-opus-4-1"
    assert opus.breaker.reset_timeout == 45.0
    assert opus.api_key == Secret("${KEY}", SECRET)
    opus = parse(text, BASE_URL="http://x", KEY=SECRET, RESET="2m", FAMILY="sonnet").models["opus"]
    assert (opus.model, opus.breaker.reset_timeout) == ("claude-sonnet-4-1", 120.0)


def test_numbers_from_env_references() -> None:
    opus = parse(with_opus("breaker: {failure_threshold: '${N}'}, retry: {backoff: {jitter: ${J:-0.5}}}"), N="7")
    assert opus.models["opus"].breaker.failure_threshold == 7
    assert opus.models["opus"].retry.backoff.jitter == 0.5


def test_env_defaults_to_os_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ROUTER_TEST_KEY", SECRET)
    monkeypatch.setenv("ANTHROPIC_AUTH_TOKEN", "token")  # sonnet has no api_key: it would warn without one
    p = parse_policy(with_opus("api_key: ${ROUTER_TEST_KEY}"))
    assert p.models["opus"].api_key is not None
    assert p.models["opus"].api_key.reveal() == SECRET


def test_missing_env_var() -> None:
    e = error(with_opus("api_key: ${ANTHROPIC_API_KEY}"))
    assert (e.line, e.key) == (3, "models.opus.api_key")
    assert "ANTHROPIC_API_KEY" in e.message and "not set" in e.message


def test_malformed_env_reference() -> None:
    e = error(with_opus("api_key: ${1BAD}"))
    assert (e.line, e.key) == (3, "models.opus.api_key")
    assert "malformed environment reference" in e.message
    e = error(with_opus("api_key: '${UNCLOSED'"))
    assert (e.line, e.key) == (3, "models.opus.api_key")


# ---- secrets ----


def test_secret_never_shows_its_value() -> None:
    p = parse(with_opus("api_key: ${KEY}"), KEY=SECRET)
    key = p.models["opus"].api_key
    assert key is not None
    shown = [repr(key), str(key), f"{key}", f"{key!r}", f"{key:>40}", format(key), repr(p), repr(p.models["opus"])]
    assert all(SECRET not in s for s in shown)
    assert repr(key) == str(key) == "Secret(${KEY})"
    assert key.fingerprint() == Secret("other", SECRET).fingerprint()
    assert len(key.fingerprint()) == 12 and int(key.fingerprint(), 16) >= 0
    assert key.fingerprint() != Secret("${KEY}", SECRET + "x").fingerprint()


def test_secret_never_in_errors() -> None:
    # the key is fine, but the same model has an error: the message must not carry the key
    e = error(with_opus("api_key: ${KEY}, breaker: {failure_threshold: 0}"), KEY=SECRET)
    assert SECRET not in str(e) and SECRET not in repr(e)
    # a literal key with whitespace, a literal key of the wrong type: refused without echoing it
    e = error(with_opus(f"api_key: ' {SECRET}'"))
    assert (e.line, e.key) == (3, "models.opus.api_key")
    assert SECRET not in str(e)
    e = error(with_opus("api_key: 12345678987654321"))
    assert (e.line, e.key) == (3, "models.opus.api_key")
    assert "12345678987654321" not in str(e)


def test_literal_key_warns_without_showing_it() -> None:
    with pytest.warns(PolicyWarning) as caught:
        p = parse(with_opus(f"api_key: {SECRET}"))
    assert p.models["opus"].api_key == Secret("literal", SECRET)
    assert repr(p.models["opus"].api_key) == "Secret(literal)"
    assert len(caught) == 1
    message = str(caught[0].message)
    assert message.startswith("<string>:3: models.opus.api_key: ")
    assert SECRET not in message
    assert caught[0].filename == __file__  # points at the caller, not at router internals


def test_env_key_does_not_warn() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        parse(with_opus("api_key: ${KEY}"), KEY=SECRET)


# ---- errors: each names file, line and key ----


def test_error_format_is_one_readable_line() -> None:
    e = error(BASE.replace("  opus: {", "  opus: {breakr: {}, "))
    assert str(e) == "<string>:3: models.opus.breakr: unknown key 'breakr' (did you mean 'breaker'?)"
    assert (e.file, e.line, e.key, e.suggestion) == ("<string>", 3, "models.opus.breakr", "breaker")
    assert isinstance(e, ValueError)
    again = pickle.loads(pickle.dumps(e))
    assert str(again) == str(e) and again.line == 3


def test_unknown_top_level_key() -> None:
    e = error(BASE + "modles: {}\n")
    assert (e.line, e.key, e.suggestion) == (7, "modles", "models")
    e = error(BASE + "zzz: 1\n")
    assert (e.line, e.key, e.suggestion) == (7, "zzz", None)
    assert "allowed: version, defaults, streaming, state, queue, status_page, models, routes" in str(e)


def test_unknown_nested_key_with_did_you_mean() -> None:
    e = error(with_opus("breaker: {failure_treshold: 3}"))
    assert (e.line, e.key, e.suggestion) == (3, "models.opus.breaker.failure_treshold", "failure_threshold")
    e = error("""\
        version: 1
        defaults:
          retry:
            backoff: {inital: 1s}
        models:
          opus: {provider: anthropic, model: m}
        routes:
          default: [opus]
        """)
    assert (e.line, e.key, e.suggestion) == (4, "defaults.retry.backoff.inital", "initial")


def test_missing_required_keys() -> None:
    e = error(BASE.replace("provider: anthropic, model: claude-opus-4-1", "model: claude-opus-4-1"))
    assert (e.line, e.key) == (3, "models.opus.provider")
    e = error("version: 1\nmodels:\n  opus: {provider: anthropic, model: m}\n")
    assert (e.line, e.key) == (1, "routes")
    e = error(BASE.replace("version: 1\n", "# no version\n"))
    assert (e.line, e.key) == (2, "version")  # the line where the mapping lacking the key starts


def test_unsupported_version() -> None:
    e = error(BASE.replace("version: 1", "version: 2") + "future_key: 1\n")
    assert (e.line, e.key) == (1, "version")
    assert "version 1" in e.message
    e = error(BASE.replace("version: 1", "version: '1'"))
    assert (e.line, e.key) == (1, "version")


def test_unknown_alias_in_route_with_did_you_mean() -> None:
    e = error(BASE.replace("[opus, sonnet]", "[opus, sonet]"))
    assert (e.line, e.key, e.suggestion) == (6, "routes.default[1]", "sonnet")
    e = error(BASE + "  fast: {chain: [haiku]}\n")
    assert (e.line, e.key, e.suggestion) == (7, "routes.fast.chain[0]", None)


def test_empty_route() -> None:
    e = error(BASE.replace("[opus, sonnet]", "[]"))
    assert (e.line, e.key) == (6, "routes.default")
    assert "empty" in e.message
    e = error(BASE + "  fast: {chain: []}\n")
    assert (e.line, e.key) == (7, "routes.fast")
    e = error(BASE.replace("routes:\n  default: [opus, sonnet]\n", "routes: {}\n"))
    assert (e.line, e.key) == (5, "routes")


def test_duplicate_alias() -> None:
    e = error(BASE.replace("  sonnet:", "  opus:"))
    assert (e.line, e.key) == (4, "models.opus")
    assert "duplicate key 'opus' (first at line 3)" in e.message
    e = error(with_opus("breaker: {reset_timeout: 1s, reset_timeout: 2s}"))
    assert (e.line, e.key) == (3, "models.opus.breaker.reset_timeout")


@pytest.mark.parametrize("written", ["5 minutes", "-1s", "abc", "true", "5d", "''", "1s5", ".inf", "[1]", "~"])
def test_bad_duration(written: str) -> None:
    e = error(with_opus(f"breaker: {{reset_timeout: {written}}}"))
    assert (e.line, e.key) == (3, "models.opus.breaker.reset_timeout")
    assert "500ms" in e.message and "30s" in e.message


@pytest.mark.parametrize(
    ("extra", "key", "words"),
    [
        ("breaker: {reset_timeout: 0}", "breaker.reset_timeout", "more than 0"),
        ("breaker: {reset_timeout: -1}", "breaker.reset_timeout", "more than 0"),
        ("timeout: {total: 0s}", "timeout.total", "more than 0"),
        ("retry: {backoff: {initial: -5}}", "retry.backoff.initial", "0 or more"),
        ("retry: {backoff: {jitter: 1.5}}", "retry.backoff.jitter", "from 0 to 1"),
        ("retry: {backoff: {jitter: yes}}", "retry.backoff.jitter", "from 0 to 1"),
        ("retry: {attempts: 0}", "retry.attempts", "at least 1"),
        ("retry: {attempts: 2.5}", "retry.attempts", "whole number"),
        ("breaker: {max_reset_timeout: 10s}", "breaker.max_reset_timeout", "must not be shorter"),
        ("breaker: {reset_timeout: 10m}", "breaker.reset_timeout", "must not be shorter"),
        ("retry: {backoff: {initial: 10s}}", "retry.backoff.initial", "must not be shorter"),
        ("base_url: localhost:8080", "base_url", "http"),
        ("provider: anthropic", "provider", "duplicate"),
        ("outcomes: {529: retry}", "outcomes.529", "unknown outcome class"),
        ("outcomes: {'5xx': caller}", "outcomes.5xx", "HTTP status"),
        ("params: [a]", "params", "mapping"),
        ("model: ''", "model", "duplicate"),
    ],
)
def test_bad_values(extra: str, key: str, words: str) -> None:
    e = error(with_opus(extra))
    assert (e.line, e.key) == (3, f"models.opus.{key}")
    assert words in e.message


def test_outcome_class_did_you_mean() -> None:
    e = error(with_opus("outcomes: {overloaded_error: server_failures}"))
    assert (e.line, e.key, e.suggestion) == (3, "models.opus.outcomes.overloaded_error", "server_failure")


def test_outcome_error_type_typo_warns() -> None:
    with pytest.warns(PolicyWarning, match="did you mean 'overloaded_error'"):
        parse(with_opus("outcomes: {overloaded_eror: server_failure}"))


def test_cross_key_error_blames_the_models_own_key() -> None:
    e = error("""\
        version: 1
        defaults:
          breaker: {reset_timeout: 1m}
        models:
          opus: {provider: anthropic, model: m, breaker: {max_reset_timeout: 30s}}
        routes:
          default: [opus]
        """)
    assert (e.line, e.key) == (5, "models.opus.breaker.max_reset_timeout")
    e = error("""\
        version: 1
        defaults:
          breaker: {max_reset_timeout: 10s}
        models:
          opus: {provider: anthropic, model: m}
        routes:
          default: [opus]
        """)
    assert (e.line, e.key) == (3, "defaults.breaker.max_reset_timeout")


@pytest.mark.parametrize("value", ["0", "-1"])
def test_zero_and_negative_threshold(value: str) -> None:
    e = error(with_opus(f"breaker: {{failure_threshold: {value}}}"))
    assert (e.line, e.key) == (3, "models.opus.breaker.failure_threshold")
    assert f"must be at least 1, got {value}" in e.message


@pytest.mark.parametrize("value", ["true", "false", "yes", "'3'"])
def test_bool_or_string_threshold(value: str) -> None:
    e = error(with_opus(f"breaker: {{failure_threshold: {value}}}"))
    assert (e.line, e.key) == (3, "models.opus.breaker.failure_threshold")
    assert "whole number" in e.message


def test_unknown_provider() -> None:
    e = error(BASE.replace("provider: anthropic, model: claude-opus", "provider: antropic, model: claude-opus"))
    assert (e.line, e.key, e.suggestion) == (3, "models.opus.provider", "anthropic")


def test_litellm_provider_when_litellm_is_not_installed(monkeypatch: pytest.MonkeyPatch) -> None:
    text = BASE.replace("provider: anthropic, model: claude-sonnet-4-5", "provider: litellm, model: openai/gpt-4.1")
    assert parse(text).models["sonnet"].provider == "litellm"
    monkeypatch.setattr(policy_build, "_litellm_available", lambda: False)
    e = error(text)
    assert (e.line, e.key) == (4, "models.sonnet.provider")
    assert "pip install 'failover-router[litellm]'" in str(e)


def test_name_is_both_model_and_route() -> None:
    e = error(BASE + "  opus: [sonnet]\n")
    assert (e.line, e.key) == (7, "routes.opus")


def test_route_cycle() -> None:
    e = error(BASE + "  a: [opus, b]\n  b: [sonnet, a]\n")
    assert (e.line, e.key) == (8, "routes.b[1]")
    assert "route cycle: a -> b -> a" in e.message
    e = error(BASE + "  me: {chain: [opus, me]}\n")
    assert (e.line, e.key) == (7, "routes.me.chain[1]")
    assert "route cycle: me -> me" in e.message


def test_model_twice_in_a_chain() -> None:
    e = error(BASE.replace("[opus, sonnet]", "[opus, sonnet, opus]"))
    assert (e.line, e.key) == (6, "routes.default[2]")
    assert "'opus' appears twice in route 'default'" in e.message
    e = error(BASE + "  more: [sonnet, default]\n")
    assert (e.line, e.key) == (7, "routes.more[1]")
    assert "via route 'default'" in e.message


# ---- malformed files ----


def test_non_mapping_yaml() -> None:
    e = error("- version\n- models\n")
    assert (e.line, e.key) == (1, None)
    e = error("just a string\n")
    assert (e.line, e.key) == (1, None)
    e = error(BASE.replace("routes:\n  default: [opus, sonnet]", "routes: [opus, sonnet]"))
    assert (e.line, e.key) == (5, "routes")


def test_yaml_syntax_error() -> None:
    e = error(BASE.replace("  sonnet: {provider: anthropic, model: claude-sonnet-4-5}", "  sonnet: a: b"))
    assert (e.line, e.key) == (4, None)
    assert str(e).startswith("<string>:4: invalid YAML: ")
    # An unclosed { [ or quote is blamed where it opens, not where PyYAML gives up (often the end of file).
    e = error(BASE.replace("model: claude-opus-4-1}", "model: claude-opus-4-1"))
    assert (e.line, e.key) == (3, None)
    assert "a { opened on this line is never closed" in str(e) and "at line 4" in str(e)
    e = error(BASE.replace("default: [opus, sonnet]", "default: [opus, sonnet\n  other: [opus]"))
    assert (e.line, e.key) == (6, None)
    assert "a [ opened on this line is never closed" in str(e)
    e = error(BASE.replace("model: claude-opus-4-1}", 'model: "claude-opus-4-1}'))
    assert (e.line, e.key) == (3, None)
    assert str(e).startswith("<string>:3: invalid YAML: a quoted string opened on this line is never closed")
    e = error(BASE.replace("model: claude-opus-4-1}", 'model: "claude-opus-4-1\\q"}'))
    assert (e.line, e.key) == (3, None)
    assert "unknown escape character" in str(e)  # a problem inside the quote: blamed where it is
    e = error(BASE + "\tbad: tab\n")
    assert (e.line, e.key) == (7, None)
    e = error(BASE + "---\nversion: 1\n")
    assert (e.line, e.key) == (7, None)


@pytest.mark.parametrize("text", ["", "\n\n", "# only a comment\n", "---\n", "~\n"])
def test_empty_file(text: str) -> None:
    e = error(text)
    assert (e.line, e.key) == (1, None)
    assert "empty" in e.message


def test_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "nope.yaml"
    with pytest.raises(PolicyError) as info:
        load_policy(path)
    assert (info.value.file, info.value.line, info.value.key) == (str(path), None, None)
    assert str(info.value) == f"{path}: no such policy file"
    with pytest.raises(PolicyError) as info:
        load_policy(tmp_path)  # a directory
    assert info.value.line is None


def test_binary_junk(tmp_path: Path) -> None:
    path = tmp_path / "junk.yaml"
    path.write_bytes(b"version: 1\nmodels:\n\x89PNG\r\n\x1a\n\x00\xff\xfe")
    with pytest.raises(PolicyError) as info:
        load_policy(path)
    assert (info.value.line, info.value.key) == (3, None)
    assert "UTF-8" in info.value.message
    e = error("version: 1\nmodels: \x00\x01\n")  # valid UTF-8 but not YAML text
    assert (e.line, e.key) == (2, None)


def test_file_too_large(tmp_path: Path) -> None:
    big = BASE + "# " + "x" * (1 << 20) + "\n"
    e = error(big)
    assert (e.line, e.key) == (None, None)
    assert "larger than 1024 KiB" in e.message
    path = tmp_path / "big.yaml"
    path.write_text(big, encoding="utf-8")
    with pytest.raises(PolicyError, match="larger than"):
        load_policy(path)


def test_alias_bomb() -> None:
    lines = ["a: &a [" + ", ".join(["lol"] * 10) + "]"]
    for prev, name in zip("abcdefgh", "bcdefghi", strict=True):
        lines.append(f"{name}: &{name} [" + ", ".join([f"*{prev}"] * 10) + "]")
    e = error("\n".join(lines) + "\n")
    assert (e.line, e.key) == (1, "d[7][8][8][9]")
    assert "more than 10000 YAML nodes" in e.message


def test_alias_bomb_inside_params() -> None:
    e = error(with_opus("params: {x: *d}").replace("version: 1\n", "version: 1\nx: &d [&c [&b [&a [1, 2]]]]\n"))
    assert e.key == "x"  # small expansions are fine; an unknown key is still reported
    bomb = "a: &a [1, 1, 1, 1, 1, 1, 1, 1, 1, 1]\n" + "".join(
        f"{n}: &{n} [" + ", ".join([f"*{p}"] * 10) + "]\n" for p, n in zip("abcde", "bcdef", strict=True)
    )
    e = error(bomb + with_opus("params: {x: *f}"))
    assert e.line is not None and "more than 10000" in e.message


def test_deep_nesting() -> None:
    e = error("[" * 100_000 + "]" * 100_000)
    assert (e.line, e.key) == (1, None)
    assert "nested deeper than 50 levels" in e.message
    e = error("".join("  " * i + "a:\n" for i in range(60)))
    assert (e.line, e.key) == (50, None)


def test_recursive_alias() -> None:
    e = error("a: &a [*a]\n")
    assert e.line == 1 and e.key is not None and e.key.startswith("a[0][0]")
    assert "nested deeper than 50 levels" in e.message


@pytest.mark.parametrize(
    ("extra", "key", "words"),
    [
        ("breaker: {failure_threshold: 99999999999999999999}", "breaker.failure_threshold", "at most 10000"),
        ("breaker: {failure_threshold: " + "9" * 5000 + "}", "breaker.failure_threshold", "too long"),
        ("retry: {attempts: 1000000}", "retry.attempts", "at most 100"),
        ("breaker: {reset_timeout: 1.0e+300}", "breaker.reset_timeout", "at most 1 day"),
        ("breaker: {reset_timeout: 9999999999999999h}", "breaker.reset_timeout", "at most 1 day"),
        ("timeout: {total: 86401}", "timeout.total", "at most 1 day"),
        ("retry: {backoff: {max: " + "9" * 1000 + "s}}", "retry.backoff.max", "500ms"),
    ],
)
def test_huge_numbers(extra: str, key: str, words: str) -> None:
    e = error(with_opus(extra))
    assert (e.line, e.key) == (3, f"models.opus.{key}")
    assert words in e.message


def test_unsupported_tags_are_refused() -> None:
    e = error(with_opus("params: {x: !!python/object:os.system {}}"))
    assert (e.line, e.key) == (3, "models.opus.params.x")
    e = error(with_opus("params: {x: !!binary aGVsbG8=}"))
    assert (e.line, e.key) == (3, "models.opus.params.x")


def test_complex_keys_are_refused() -> None:
    e = error(BASE + "? [a, b]\n: c\n")
    assert (e.line, e.key) == (7, None)


# ---- never anything but PolicyError ----

_FRAGMENTS = [
    "version: 1\n", "models:\n", "routes:\n", "  opus: {provider: anthropic, model: m}\n", "  default: [opus]\n",
    "defaults:\n", "  breaker: {failure_threshold: 3}\n", "&a [*a]\n", "${X}", "${X:-1s}", "{", "}", "[", "]",
    ":", "- ", "!!int ", "<<: *a\n", "\t", "\x00", "\ud800", "'", '"', "? ", "5m", "1e999", "---\n", "\n",
]  # fmt: skip


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(_FRAGMENTS) | st.text(max_size=8), max_size=25))
def test_fuzz_only_policy_errors(parts: list[str]) -> None:
    try:
        parse_policy("".join(parts), env={"X": "2"})
    except PolicyError as e:
        assert "internal error" not in str(e)
        assert "\n" not in str(e)


@settings(max_examples=300, deadline=None)
@given(st.integers(0, len(DESIGN_EXAMPLE) - 1), st.integers(1, 5), st.text(max_size=3))
def test_fuzz_mutated_design_example(start: int, length: int, insert: str) -> None:
    text = DESIGN_EXAMPLE[:start] + insert + DESIGN_EXAMPLE[start + length :]
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PolicyWarning)
            parse_policy(text, env={"ANTHROPIC_API_KEY": SECRET})
    except PolicyError as e:
        assert "internal error" not in str(e)
        assert SECRET not in str(e)


def test_streaming_keys() -> None:
    p = parse(
        "version: 1\n"
        "defaults: {timeout: {stream_idle: 2s}}\n"
        "streaming: {on_interrupt: raise}\n"
        "models:\n"
        "  opus: {provider: anthropic, model: claude-opus-4-6, resume: prefill, timeout: {stream_idle: 500ms}}\n"
        "  sonnet: {provider: anthropic, model: claude-sonnet-4-6}\n"
        "routes: {default: [opus, sonnet]}\n"
    )
    assert p.streaming.on_interrupt == "raise"
    assert (p.models["opus"].resume, p.models["opus"].timeout.stream_idle) == ("prefill", 0.5)
    assert (p.models["sonnet"].resume, p.models["sonnet"].timeout.stream_idle) == (None, 2.0)
    assert parse(BASE).streaming.on_interrupt == "resume"


def test_bad_streaming_values() -> None:
    e = error(BASE.replace("model: claude-opus-4-1}", "model: claude-opus-4-1, resume: contine}"))
    assert (e.line, e.key, e.suggestion) == (3, "models.opus.resume", "continue")
    e = error(BASE + "streaming: {on_interupt: raise}\n")
    assert (e.line, e.key, e.suggestion) == (7, "streaming.on_interupt", "on_interrupt")
    e = error(BASE + "streaming: {on_interrupt: resum}\n")
    assert (e.line, e.key, e.suggestion) == (7, "streaming.on_interrupt", "resume")


def test_a_yaml_error_on_a_line_with_a_literal_key_keeps_the_key_out_of_the_chain() -> None:
    secret = "sk-ant-api03-LITERALinthefile0123456789abcdef"
    text = (
        f'version: 1\nmodels:\n  a: {{provider: anthropic, model: m, api_key: "{secret}}}\n'
        "routes: {default: [a]}\n"
    )
    e = error(text)
    chain, link = [], e
    while link is not None:
        chain.append(str(link))
        link = link.__cause__ or link.__context__
    assert all(secret[:20] not in text for text in chain)
