"""Policy loading, second part: every problem of a file in one PolicyError, the load-time warnings (no
default route, $VAR without braces, no credentials), credentials in base_url, the env kept for reload,
and the keys added in this version (timeout.first_byte/first_token, retry.max_retry_after, too_large)."""

from __future__ import annotations

import pickle
import textwrap
import warnings
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from router import Policy, PolicyError, PolicyWarning, load_policy, parse_policy
from router.policy import OUTCOME_CLASSES, RetryConfig, TimeoutConfig

SECRET = "sk-ant-api03-PROBLEMSsecretvalue0123456789abcdef"
ENV = {"ANTHROPIC_API_KEY": SECRET}

BASE = """\
version: 1
models:
  opus: {provider: anthropic, model: claude-opus-4-1}
  sonnet: {provider: anthropic, model: claude-sonnet-4-5}
routes:
  default: [opus, sonnet]
"""


def parse(text: str, env: dict[str, str] | None = None) -> Policy:
    return parse_policy(textwrap.dedent(text), env=ENV if env is None else env)


def error(text: str, env: dict[str, str] | None = None) -> PolicyError:
    with pytest.raises(PolicyError) as info:
        parse(text, env)
    return info.value


def where(e: PolicyError) -> list[tuple[int | None, str | None]]:
    return [(p.line, p.key) for p in e.problems]


def quiet(text: str, env: dict[str, str] | None = None) -> Policy:
    """Parse, failing on any warning."""
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        return parse(text, env)


def warned(text: str, env: dict[str, str] | None = None) -> list[str]:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        parse(text, env)
    assert all(issubclass(w.category, PolicyWarning) for w in caught)
    return [str(w.message) for w in caught]


def with_opus(extra: str, text: str = BASE) -> str:
    return text.replace("model: claude-opus-4-1}", f"model: claude-opus-4-1, {extra}}}")


# ---- 1. every problem, not the first ----

MANY = """\
version: 1
defaults:
  breaker: {failure_treshold: 3}
models:
  opus: {provider: anthropic, model: claude-opus-4-1, breakr: {}}
  sonnet: {provider: antropic, model: claude-sonnet-4-5, retry: {attempts: 0}}
  haiku: {provider: anthropic, model: claude-haiku-4-5, timeout: {read: 5 minutes}}
routes:
  default: [opus, sonet, haiku]
  fast: {chain: [haiku, gpt]}
extra: 1
"""


def test_every_problem_of_a_file_in_file_order() -> None:
    e = error(MANY)
    assert where(e) == [
        (3, "defaults.breaker.failure_treshold"),
        (5, "models.opus.breakr"),
        (6, "models.sonnet.provider"),
        (6, "models.sonnet.retry.attempts"),
        (7, "models.haiku.timeout.read"),
        (9, "routes.default[1]"),
        (10, "routes.fast.chain[1]"),
        (11, "extra"),
    ]
    assert [p.suggestion for p in e.problems][:3] == ["failure_threshold", "breaker", "anthropic"]
    assert e.problems[5].suggestion == "sonnet"
    assert all(type(p) is PolicyError and p.file == "<string>" for p in e.problems)


def test_the_error_itself_is_the_first_problem() -> None:
    e = error(MANY)
    first = e.problems[0]
    assert first is e
    assert (e.message, e.file, e.line, e.key, e.suggestion) == (
        first.message, first.file, first.line, first.key, first.suggestion
    )
    assert str(e) == "<string>:3: defaults.breaker.failure_treshold: unknown key 'failure_treshold' (did you mean " \
                     "'failure_threshold'?)"
    assert "\n" not in str(e)


def test_report_lists_every_problem_one_per_line() -> None:
    e = error(MANY)
    assert e.report().split("\n") == [str(p) for p in e.problems]
    assert e.report().count("\n") == len(e.problems) - 1
    for problem in e.problems[1:]:
        assert problem.problems == (problem,) and problem.report() == str(problem)


def test_a_single_problem_gives_one_problem() -> None:
    e = error(with_opus("breakr: {}"))
    assert e.problems == (e,)
    assert e.report() == str(e) == "<string>:3: models.opus.breakr: unknown key 'breakr' (did you mean 'breaker'?)"
    assert not e.truncated


def test_a_policy_error_made_by_hand_has_itself_as_its_problems() -> None:
    e = PolicyError("cannot reload", file="x.yaml")
    assert e.problems == (e,) and e.report() == "x.yaml: cannot reload" and not e.truncated
    with pytest.raises(ValueError):
        PolicyError.of([])


def test_problems_survive_pickling() -> None:
    e = error(MANY)
    again = pickle.loads(pickle.dumps(e))
    assert again.report() == e.report()
    assert str(again) == str(e) and again.problems[0] is again
    assert [str(p) for p in again.problems] == [str(p) for p in e.problems]


def test_the_error_carries_no_exception_context() -> None:
    e = error(MANY)
    assert e.__cause__ is None and e.__context__ is None


def test_bad_values_in_several_models() -> None:
    e = error("""\
        version: 1
        models:
          a: {provider: anthropic, model: m, breaker: {failure_threshold: 0}}
          b: {provider: anthropic, model: m, breaker: {reset_timeout: -1s}}
          c: {provider: anthropic, model: '', outcomes: {529: retry}}
        routes:
          default: [a, b, c]
        """)
    assert where(e) == [
        (3, "models.a.breaker.failure_threshold"),
        (4, "models.b.breaker.reset_timeout"),
        (5, "models.c.model"),
        (5, "models.c.outcomes.529"),
    ]


def test_unknown_aliases_in_several_routes() -> None:
    e = error(BASE + "  fast: [haiku, opus]\n  slow: {chain: [sonet]}\n  more: [opus, gpt, opus]\n")
    assert where(e) == [(7, "routes.fast[0]"), (8, "routes.slow.chain[0]"), (9, "routes.more[1]"),
                        (9, "routes.more[2]")]
    assert e.problems[1].suggestion == "sonnet"
    assert "appears twice in route 'more'" in e.problems[3].message


def test_unset_variables_and_duplicate_keys_in_several_places() -> None:
    e = error("""\
        version: 1
        models:
          a: {provider: anthropic, model: m, api_key: "${KEY_A}"}
          b: {provider: anthropic, model: m, base_url: "${URL_B}"}
          c: {provider: anthropic, model: m, model: n}
        routes:
          default: [a, b, c]
          default: [a]
        """, env={})
    assert where(e) == [(3, "models.a.api_key"), (4, "models.b.base_url"), (5, "models.c.model"), (8, "routes.default")]
    assert "KEY_A is not set" in e.problems[0].message
    assert "duplicate key 'default' (first at line 7)" in e.problems[3].message


def test_an_unset_variable_is_reported_where_it_is_first_used() -> None:
    e = error("""\
        version: 1
        models:
          a: {provider: anthropic, model: m, api_key: "${KEY}"}
          b: {provider: anthropic, model: m, api_key: "${KEY}", base_url: "${URL}"}
          c: {provider: anthropic, model: m, api_key: "${KEY}", base_url: "${URL}"}
        routes:
          default: [a, b, c]
        """, env={})
    assert where(e) == [(3, "models.a.api_key"), (4, "models.b.base_url")]
    assert ["KEY" in e.problems[0].message, "URL" in e.problems[1].message] == [True, True]


def test_a_misspelt_required_key_is_not_also_missing() -> None:
    e = error(BASE.replace("provider: anthropic, model: claude-opus-4-1", "provider: anthropic, modl: claude-opus-4-1"))
    assert where(e) == [(3, "models.opus.modl")]
    assert e.suggestion == "model"
    e = error(BASE.replace("routes:", "ruotes:"))
    assert where(e) == [(5, "ruotes")]


def test_a_model_with_a_problem_is_still_a_known_alias() -> None:
    e = error(BASE.replace("model: claude-sonnet-4-5}", "model: claude-sonnet-4-5, breaker: {reset_timeout: x}}"))
    assert where(e) == [(4, "models.sonnet.breaker.reset_timeout")]  # no "unknown model 'sonnet'" at line 6
    e = error(BASE.replace("  sonnet: {provider: anthropic, model: claude-sonnet-4-5}", "  sonnet: [oops]"))
    assert where(e) == [(4, "models.sonnet")]
    e = error(BASE.replace("  sonnet: {provider: anthropic,", "  son net: {provider: anthropic,")
              .replace("[opus, sonnet]", "[opus, son net]"))
    assert where(e) == [(4, "models.son net")]


def test_a_route_with_a_problem_is_still_a_known_route() -> None:
    e = error(BASE + "  fast: {chain: [opus], extra: 1}\n  both: [sonnet, fast]\n")
    assert where(e) == [(7, "routes.fast.extra")]
    e = error(BASE + "  fast: [opus, haiku]\n  both: [sonnet, fast]\n")
    assert where(e) == [(7, "routes.fast[1]")]  # `both` expands to what is known of `fast`: no noise


def test_no_route_noise_when_the_models_are_unreadable() -> None:
    e = error(BASE.replace("models:\n  opus: {provider: anthropic, model: claude-opus-4-1}\n"
                           "  sonnet: {provider: anthropic, model: claude-sonnet-4-5}\n", "models: [opus, sonnet]\n"))
    assert where(e) == [(2, "models")]
    e = error(BASE.replace("models:\n  opus: {provider: anthropic, model: claude-opus-4-1}\n"
                           "  sonnet: {provider: anthropic, model: claude-sonnet-4-5}\n", "models: {}\n"))
    assert where(e) == [(2, "models")]
    e = error("version: 1\nroutes:\n  default: [opus]\n")
    assert where(e) == [(1, "models")]  # missing: reported once, the routes are not checked against nothing


def test_present_but_bad_required_key_is_not_also_missing() -> None:
    e = error(with_opus("").replace("provider: anthropic, model: claude-opus-4-1, }", "provider: 5, model: [x]}"))
    assert where(e) == [(3, "models.opus.provider"), (3, "models.opus.model")]


def test_a_bad_default_is_reported_once_not_once_per_model() -> None:
    e = error("""\
        version: 1
        defaults:
          breaker: {max_reset_timeout: 10s}
        models:
          a: {provider: anthropic, model: m}
          b: {provider: anthropic, model: m}
          c: {provider: anthropic, model: m, breaker: {reset_timeout: 5s}}
          d: {provider: anthropic, model: m, breaker: {reset_timeout: 1m}}
        routes:
          default: [a, b, c, d]
        """)
    assert where(e) == [(3, "defaults.breaker.max_reset_timeout"), (8, "models.d.breaker.reset_timeout")]


def test_no_cross_key_noise_from_values_that_failed() -> None:
    # reset_timeout is bad, so max_reset_timeout is not compared with the built-in 30s
    e = error(with_opus("breaker: {reset_timeout: soon, max_reset_timeout: 10s}"))
    assert where(e) == [(3, "models.opus.breaker.reset_timeout")]
    e = error("""\
        version: 1
        defaults: [breaker]
        models:
          opus: {provider: anthropic, model: m, breaker: {max_reset_timeout: 10s}}
        routes:
          default: [opus]
        """)
    assert where(e) == [(2, "defaults")]


def test_yaml_syntax_errors_stay_a_single_problem() -> None:
    e = error(MANY.replace("  haiku: {provider", "  haiku: {{provider"))
    assert len(e.problems) == 1 and e.message.startswith("invalid YAML")
    e = error(MANY + "\tbad: tab\n")
    assert len(e.problems) == 1 and e.message.startswith("invalid YAML")


def test_a_newer_version_is_reported_alone() -> None:
    e = error(MANY.replace("version: 1", "version: 2"))
    assert where(e) == [(1, "version")]


def test_problems_are_capped() -> None:
    models = "".join(f"  m{i}: {{provider: anthropic, model: m, breakr: {{}}}}\n" for i in range(80))
    e = error(f"version: 1\nmodels:\n{models}routes:\n  default: [m0]\n")
    assert len(e.problems) == 50 and e.truncated
    assert [p.key for p in e.problems] == [f"models.m{i}.breakr" for i in range(50)]
    lines = e.report().split("\n")
    assert len(lines) == 51
    assert lines[-1] == "<string>: stopped after 50 problems; fix these and load it again"


def test_load_policy_reports_every_problem(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(MANY, encoding="utf-8")
    with pytest.raises(PolicyError) as info:
        load_policy(path, env=ENV)
    assert len(info.value.problems) == 8
    assert all(str(p).startswith(f"{path}:") for p in info.value.problems)


def test_no_warnings_when_the_file_is_invalid() -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        error(with_opus("api_key: sk-literal, breakr: {}"))


ALIASES = ["a", "b", "c", "d", "e", "f"]
TYPOS = [("breakr: {}", "breakr"), ("retry: {attempts: 0}", "retry.attempts"), ("params: [x]", "params"),
         ("timeout: {read: soon}", "timeout.read"), ("outcomes: {529: bad}", "outcomes.529")]


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(ALIASES), st.sampled_from(TYPOS)), unique_by=lambda t: t[0]))
def test_independent_problems_are_each_reported_once(bad: list[tuple[str, tuple[str, str]]]) -> None:
    broken = dict(bad)
    lines = ["version: 1", "models:"]
    for alias in ALIASES:
        extra = broken[alias][0] + ", " if alias in broken else ""
        lines.append(f"  {alias}: {{provider: anthropic, {extra}model: claude-{alias}}}")
    lines += ["routes:", f"  default: [{', '.join(ALIASES)}]", ""]
    text = "\n".join(lines)
    if not bad:
        assert set(parse(text).models) == set(ALIASES)
        return
    e = error(text)
    expected = [(3 + ALIASES.index(a), f"models.{a}.{broken[a][1]}") for a in ALIASES if a in broken]
    assert where(e) == expected


# ---- 2. no route named default ----


def test_no_default_route_warns_with_the_line_of_routes() -> None:
    text = BASE.replace("  default: [opus, sonnet]", "  fast: [opus, sonnet]")
    assert warned(text) == [
        "<string>:5: routes: no route named 'default': complete()/stream() without route= will raise "
        "UnknownRoute; name one route 'default'"
    ]
    with pytest.warns(PolicyWarning):
        assert "default" not in parse(text).routes  # it loads


def test_a_default_route_does_not_warn() -> None:
    quiet(BASE)
    quiet(BASE + "  fast: [sonnet]\n")


# ---- 3. $VAR without braces ----


@pytest.mark.parametrize("written", ["$ANTHROPIC_API_KEY", "'$ANTHROPIC_API_KEY'", "pre-$ANTHROPIC_API_KEY",
                                     "'${OTHER}$ANTHROPIC_API_KEY'"])
def test_api_key_without_braces_is_an_error(written: str) -> None:
    e = error(with_opus(f"api_key: {written}"), env={**ENV, "OTHER": "x"})
    assert (e.line, e.key) == (3, "models.opus.api_key")
    assert e.message == "looks like an environment reference without braces; write ${ANTHROPIC_API_KEY}"
    assert e.suggestion == "${ANTHROPIC_API_KEY}"
    assert str(e).endswith("(did you mean '${ANTHROPIC_API_KEY}'?)")


def test_api_key_without_braces_does_not_echo_what_may_be_a_secret() -> None:
    e = error(with_opus("api_key: 'sk-ant-$ecretPart0123'"))
    assert (e.line, e.key, e.suggestion) == (3, "models.opus.api_key", None)
    assert e.message == "looks like an environment reference without braces; write ${NAME}"
    assert "ecretPart" not in e.report()


@pytest.mark.parametrize("written", ["'${KEY}'", "'a$$b'", "'$$KEY'", "'cost$5'", "'a$-b'", "'end$'"])
def test_api_key_with_a_dollar_that_is_no_reference(written: str) -> None:
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        policy = parse(with_opus(f"api_key: {written}"), env={"KEY": SECRET, **ENV})
    assert policy.models["opus"].api_key is not None
    assert all("written in the policy file" in str(w.message) for w in caught)  # a literal key, no more


@pytest.mark.parametrize(
    ("opus", "key", "name"),
    [
        ("model: m, base_url: 'http://$HOST:8080'", "base_url", "HOST"),
        ("model: claude-$FAMILY-4", "model", "FAMILY"),
        ("model: m, params: {region: $REGION}", "params.region", "REGION"),
        ("model: m, params: {tags: [a, '$TAG']}", "params.tags[1]", "TAG"),
        ("model: m, resume: $MODE", "resume", None),  # an error too: the warning is not emitted
    ],
)
def test_other_values_without_braces_warn(opus: str, key: str, name: str | None) -> None:
    text = BASE.replace("model: claude-opus-4-1", opus)
    if name is None:
        assert error(text).key == f"models.opus.{key}"
        return
    messages = warned(text)
    assert messages == [f"<string>:3: models.opus.{key}: '${name}' looks like an environment reference without "
                        f"braces; write ${{{name}}} (as written it is used literally)"]


def test_params_values_without_braces_do_not_echo_non_variable_names() -> None:
    messages = warned(with_opus("params: {token: 'x-$secretish'}"))
    assert len(messages) == 1 and "secretish" not in messages[0] and "${NAME}" in messages[0]


def test_values_with_braces_or_escaped_dollars_do_not_warn() -> None:
    text = with_opus("base_url: '${URL}', params: {x: '$$HOME', y: 'cost: $5', z: '$'}")
    quiet(text.replace("claude-opus-4-1", "'a$$B'"), env={**ENV, "URL": "http://localhost:1"})


# ---- 4. no credential source ----


def test_anthropic_model_without_credentials_warns() -> None:
    messages = warned(BASE, env={})
    assert messages == [
        f"<string>:{line}: models.{alias}: model '{alias}' has no credentials: no api_key, and neither "
        "ANTHROPIC_API_KEY nor ANTHROPIC_AUTH_TOKEN is set; set ANTHROPIC_API_KEY, or write "
        "api_key: ${ANTHROPIC_API_KEY} in the policy"
        for line, alias in ((3, "opus"), (4, "sonnet"))
    ]


@pytest.mark.parametrize("env", [{"ANTHROPIC_API_KEY": "k"}, {"ANTHROPIC_AUTH_TOKEN": "t"},
                                 {"ANTHROPIC_API_KEY": "", "ANTHROPIC_AUTH_TOKEN": "t"}])
def test_credentials_in_the_environment_do_not_warn(env: dict[str, str]) -> None:
    quiet(BASE, env=env)


def test_an_empty_variable_is_no_credential() -> None:
    assert len(warned(BASE, env={"ANTHROPIC_API_KEY": "", "ANTHROPIC_AUTH_TOKEN": ""})) == 2


def test_api_key_or_litellm_need_no_environment_credentials() -> None:
    text = with_opus("api_key: '${MY_KEY}'").replace(
        "provider: anthropic, model: claude-sonnet-4-5", "provider: litellm, model: openai/gpt-4.1"
    )
    quiet(text, env={"MY_KEY": SECRET})


def test_credentials_are_looked_up_in_os_environ_by_default(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.delenv("ANTHROPIC_AUTH_TOKEN", raising=False)
    with pytest.warns(PolicyWarning, match="has no credentials"):
        parse_policy(BASE)
    monkeypatch.setenv("ANTHROPIC_API_KEY", SECRET)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        parse_policy(BASE)


# ---- 5. credentials in base_url ----

URL_SECRET = "sk-ant-api03-INURLsecret0123456789"


@pytest.mark.parametrize("url", [f"https://user:{URL_SECRET}@api.example.com", f"https://{URL_SECRET}@h",
                                 f"http://:{URL_SECRET}@127.0.0.1:8080/v1", f"https://u:{URL_SECRET}@"])
def test_base_url_with_credentials_is_refused(url: str) -> None:
    for written, env in ((f"'{url}'", ENV), ("'${URL}'", {**ENV, "URL": url})):
        e = error(with_opus(f"base_url: {written}, breakr: 1"), env=env)
        assert where(e) == [(3, "models.opus.base_url"), (3, "models.opus.breakr")]
        assert e.message == "base_url must not carry credentials (user:password@); put the key in api_key: ${...}"
        for text in (str(e), e.report(), repr(e), *(repr(p) for p in e.problems)):
            assert URL_SECRET not in text and URL_SECRET[:12] not in text


def test_base_url_with_an_at_sign_in_its_path_is_fine() -> None:
    policy = quiet(with_opus("base_url: 'https://proxy.example.com/team@x/v1'"))
    assert policy.models["opus"].base_url == "https://proxy.example.com/team@x/v1"


def test_repr_never_shows_keys_params_or_env() -> None:
    env = {**ENV, "PARAM": "param-secret-0123456789"}
    policy = parse(with_opus("api_key: '${ANTHROPIC_API_KEY}', params: {token: '${PARAM}', other: hidden-value}"),
                   env=env)
    assert policy.models["opus"].params["token"] == "param-secret-0123456789"
    shown = [repr(policy), str(policy), repr(policy.models["opus"]), repr(dict(policy.models))]
    for text in shown:
        for secret in (SECRET, "param-secret-0123456789", "hidden-value"):
            assert secret not in text
    assert "env=" not in repr(policy)


# ---- 6. the env kept for reload ----


def test_load_policy_keeps_the_env_object(tmp_path: Path) -> None:
    path = tmp_path / "policy.yaml"
    path.write_text(with_opus("api_key: '${KEY}'"), encoding="utf-8")
    env = {"KEY": SECRET, **ENV}
    policy = load_policy(path, env=env)
    assert policy.env is env
    assert parse_policy(BASE, env=env).env is env
    assert SECRET not in repr(policy) and "env=" not in repr(policy)
    env["KEY"] = "sk-ant-rotated-0123456789"  # the caller's later change is seen at the next reload
    again = load_policy(policy.source, env=policy.env)
    assert again.models["opus"].api_key is not None
    assert again.models["opus"].api_key.reveal() == "sk-ant-rotated-0123456789"


def test_env_defaults_to_none_and_is_not_compared(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", SECRET)
    assert parse_policy(BASE).env is None
    assert parse_policy(BASE) == parse_policy(BASE, env=dict(ENV))
    assert hash(parse_policy(BASE)) == hash(parse_policy(BASE, env=dict(ENV)))


# ---- 7. new keys ----


def test_new_keys_default() -> None:
    opus = parse(BASE).models["opus"]
    assert (opus.timeout.first_byte, opus.timeout.first_token) == (10.0, 30.0)
    assert opus.retry.max_retry_after == 60.0
    assert TimeoutConfig() == TimeoutConfig(first_byte=10.0, first_token=30.0)
    assert RetryConfig().max_retry_after == 60.0
    assert "too_large" in OUTCOME_CLASSES


def test_new_keys_in_models_and_defaults() -> None:
    p = parse("""\
        version: 1
        defaults:
          timeout: {first_byte: 5s, first_token: 1m}
          retry: {max_retry_after: 2m}
          outcomes: {"413": too_large}
        models:
          opus: {provider: anthropic, model: m, timeout: {first_byte: 500ms}, retry: {max_retry_after: 15}}
          sonnet: {provider: anthropic, model: m, outcomes: {request_too_large: too_large}}
        routes:
          default: [opus, sonnet]
        """)
    opus, sonnet = p.models["opus"], p.models["sonnet"]
    assert (opus.timeout.first_byte, opus.timeout.first_token, opus.retry.max_retry_after) == (0.5, 60.0, 15.0)
    assert (sonnet.timeout.first_byte, sonnet.timeout.first_token, sonnet.retry.max_retry_after) == (5.0, 60.0, 120.0)
    assert dict(opus.outcomes) == {"413": "too_large"}
    assert dict(sonnet.outcomes) == {"413": "too_large", "request_too_large": "too_large"}


@pytest.mark.parametrize(
    ("extra", "key", "words"),
    [
        ("timeout: {first_byte: 0}", "timeout.first_byte", "more than 0"),
        ("timeout: {first_byte: -1s}", "timeout.first_byte", "500ms"),
        ("timeout: {first_byte: soon}", "timeout.first_byte", "invalid duration 'soon'"),
        ("timeout: {first_token: 25h}", "timeout.first_token", "at most 1 day"),
        ("timeout: {first_token: [1]}", "timeout.first_token", "invalid duration a list"),
        ("timeout: {first_tokn: 1s}", "timeout.first_tokn", "unknown key"),
        ("retry: {max_retry_after: 0s}", "retry.max_retry_after", "more than 0"),
        ("retry: {max_retry_after: true}", "retry.max_retry_after", "invalid duration"),
        ("retry: {max_retry_after: 86401}", "retry.max_retry_after", "at most 1 day"),
        ("retry: {max_retry_afer: 1s}", "retry.max_retry_afer", "unknown key"),
        ("outcomes: {'413': too_big}", "outcomes.413", "too_large"),
    ],
)
def test_new_keys_bad_values(extra: str, key: str, words: str) -> None:
    e = error(with_opus(extra))
    assert (e.line, e.key) == (3, f"models.opus.{key}")
    assert words in str(e)


def test_new_keys_did_you_mean() -> None:
    assert error(with_opus("timeout: {first_tokn: 1s}")).suggestion == "first_token"
    assert error(with_opus("retry: {max_retry_afer: 1s}")).suggestion == "max_retry_after"
    assert error(with_opus("outcomes: {'413': too_larg}")).suggestion == "too_large"
    e = error("version: 1\ndefaults: {timeout: {first_byte: 0}}\nmodels: {a: {provider: anthropic, model: m}}\n"
              "routes: {default: [a]}\n")
    assert (e.line, e.key) == (2, "defaults.timeout.first_byte")
