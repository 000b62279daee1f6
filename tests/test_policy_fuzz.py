"""Policy fuzzing: generated and mutated YAML (wrong types, unknown keys, huge numbers, deep nesting, anchor and
alias bombs, binary junk, empty files). Whatever the input, loading ends in a valid `Policy` or in a
`PolicyError` that names a line of the file, never in another exception, and with bounded memory.

Complements tests/test_policy.py (which checks the messages of hand-written mistakes and fuzzes a few
fragments): here the inputs are policy-shaped trees with random values, mutations of real policies, raw
bytes through `load_policy`, and size-bounded bombs. No wall-clock assertions: the inputs are bounded in
size, memory is measured with tracemalloc, and the one algorithmic check counts work deterministically.
"""

from __future__ import annotations

import math
import re
import tracemalloc
import warnings
from pathlib import Path
from typing import Any

import pytest
import yaml
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from router import Policy, PolicyError, PolicyWarning, load_policy, parse_policy
from router.policy import OUTCOME_CLASSES, PROVIDERS

ROOT = Path(__file__).resolve().parent.parent
ENV = {"X": "2", "KEY": "sk-ant-api03-FUZZsecretvalue0123456789abcdefghijklmn", "URL": "http://127.0.0.1:9"}
SECRET = ENV["KEY"]
DESIGN_EXAMPLE = """\
version: 1
defaults:
  breaker:
    failure_threshold: 3
    reset_timeout: 30s
    max_reset_timeout: 5m
  retry:
    attempts: 2
    backoff: {initial: 500ms, max: 8s, jitter: 0.25}
  timeout: {connect: 5s, read: 60s, total: 10m}
models:
  opus:   {provider: anthropic, model: claude-opus-4-1}
  sonnet: {provider: anthropic, model: claude-sonnet-4-5, api_key: "${KEY}"}
  haiku:  {provider: anthropic, model: claude-haiku-4-5, base_url: "${URL}", breaker: {failure_threshold: 5}}
routes:
  default: [opus, sonnet, haiku]
  fast: {chain: [haiku, sonnet]}
  careful: [opus, fast]
"""
CORPUS = [DESIGN_EXAMPLE, *(p.read_text(encoding="utf-8") for p in (ROOT / "policies").glob("*.yaml"))]
YAML_LINE_BREAKS = re.compile("\r\n|[\r\n\x85\u2028\u2029]")
MEMORY_LIMIT = 32 * 2**20  # bytes of tracemalloc peak for any one load of these inputs
FUZZ = settings(max_examples=200, deadline=None,
                suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


# ---- the oracle ---------------------------------------------------------------------------------------


def check_policy(policy: Policy) -> None:
    """A policy that loaded is a valid one."""
    assert policy.version == 1 and policy.models and policy.routes
    for alias, m in policy.models.items():
        assert m.alias == alias and m.provider in PROVIDERS and m.model.strip()
        b, r, t = m.breaker, m.retry, m.timeout
        assert 1 <= b.failure_threshold <= 10_000
        assert 0 < b.reset_timeout <= b.max_reset_timeout <= 86_400
        assert 1 <= r.attempts <= 100
        assert 0 <= r.backoff.initial <= r.backoff.max <= 86_400 and 0 <= r.backoff.jitter <= 1
        for seconds in (t.connect, t.read, t.total, t.stream_idle, t.first_byte, t.first_token, r.max_retry_after):
            assert math.isfinite(seconds) and 0 < seconds <= 86_400
        assert set(m.outcomes.values()) <= set(OUTCOME_CLASSES)
        if m.api_key is not None:
            assert m.api_key.reveal().strip() and SECRET not in repr(m)
    for name, route in policy.routes.items():
        assert route.name == name and route.chain
        assert len(set(route.chain)) == len(route.chain) and set(route.chain) <= set(policy.models)


def check_error(error: PolicyError, text: str, source: str) -> None:
    """A PolicyError and each of its problems names a line of the file, in one readable line, never an
    internal error; the problems are in file order, the error itself first, at most 50 of them."""
    problems = error.problems
    assert problems[0] is error and 1 <= len(problems) <= 50
    lines = [p.line or 0 for p in problems]
    assert lines == sorted(lines), error.report()
    assert error.report().split("\n")[: len(problems)] == [str(p) for p in problems]
    for problem in problems:
        check_problem(problem, text, source)
    assert error.__cause__ is None, f"{error} (caused by {error.__cause__!r})"


def check_problem(error: PolicyError, text: str, source: str) -> None:
    assert type(error) is PolicyError
    message = str(error)
    assert "internal error" not in message, message
    assert "\n" not in message and "\r" not in message
    assert SECRET not in message and SECRET[:20] not in message
    lines = len(YAML_LINE_BREAKS.findall(text)) + 1  # YAML's lines: NEL and LS/PS end a line too
    if len(text.encode("utf-8", "surrogatepass")) > 2**20:  # too large to read: the whole file is at fault
        assert error.line is None and "larger than" in message, message
        return
    assert error.line is not None, f"no line number: {message}"
    assert 1 <= error.line <= lines, f"line {error.line} of a {lines}-line file: {message}"
    assert message.startswith(f"{source}:{error.line}: "), message


def load_text(text: str, source: str = "<string>") -> Policy | PolicyError:
    """parse_policy(text): a checked Policy or a checked PolicyError; anything else fails the test."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PolicyWarning)
            policy = parse_policy(text, source=source, env=ENV)
    except PolicyError as error:
        check_error(error, text, source)
        return error
    check_policy(policy)
    return policy


def peak_memory(fn: Any, *args: Any) -> int:
    tracemalloc.start()
    try:
        tracemalloc.reset_peak()
        fn(*args)
        return tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()


# ---- generated policies -------------------------------------------------------------------------------

DURATIONS = ["500ms", "30s", "5m", "1h", "0", "0s", "-1s", "1.5", ".5s", "1e3", "1e999", "5 m", "5min", "24h",
             "86401", "nan", "inf", "${X}", "${X}s", "${MISSING}", "${X:-2s}", "${", "${}", "${1X}", ""]
TEXTS = ["anthropic", "litellm", "claude-opus-4-1", "server_failure", "rate_limited", "account", "caller",
         "too_large", "resume", "raise", "continue", "prefill", "restart", "${KEY}", "${URL}", "http://x", "ftp://x",
         "opus", "sonnet", "default", "fast", " ", "", "\t", "~", "null", "yes", "&a", "*a", "!!int 3", "<<", "-", "?",
         ":", "$KEY", "a$$b"]
NAMES = ["version", "defaults", "models", "routes", "streaming", "breaker", "retry", "timeout", "outcomes",
         "failure_threshold", "reset_timeout", "max_reset_timeout", "attempts", "backoff", "initial", "max",
         "jitter", "connect", "read", "total", "stream_idle", "first_byte", "first_token", "max_retry_after",
         "provider", "model", "base_url", "api_key",
         "params", "resume", "chain", "on_interrupt", "529", "overloaded_error", "failure_treshold", "retries",
         "timeouts", "route", "model_name", "opus", "sonnet", "haiku", "default", "fast"]

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**30), 10**30),
    st.integers(-3, 12),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from(DURATIONS),
    st.sampled_from(TEXTS),
    st.text(max_size=12),
)
names = st.sampled_from(NAMES) | st.text(min_size=1, max_size=10)
junk = st.recursive(
    scalars,
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(names, inner, max_size=4),
    max_leaves=12,
)


def section(fields: dict[str, st.SearchStrategy[Any]]) -> st.SearchStrategy[dict[str, Any]]:
    """A mapping of some of the known keys (mostly sensible values, sometimes junk), maybe an unknown key."""
    return st.fixed_dictionaries(
        {}, optional={name: strategy | junk for name, strategy in fields.items()} | {"typo": junk}
    ).map(lambda d: {("failure_treshold" if k == "typo" else k): v for k, v in d.items()})


durations = st.sampled_from(DURATIONS) | st.integers(0, 100_000) | st.floats(0, 1e6)
breaker = section({"failure_threshold": st.integers(-1, 10_001), "reset_timeout": durations,
                   "max_reset_timeout": durations})
retry = section({"attempts": st.integers(0, 101), "jitter": st.floats(-1, 2), "max_retry_after": durations,
                 "backoff": section({"initial": durations, "max": durations, "jitter": st.floats(-0.5, 1.5)})})
timeout = section({"connect": durations, "read": durations, "total": durations, "stream_idle": durations,
                   "first_byte": durations, "first_token": durations})
outcomes = st.dictionaries(st.sampled_from(["529", "500", "413", "429", "overloaded_error", "api_eror", "5xx", "X"]),
                           st.sampled_from([*OUTCOME_CLASSES, "fatal", "too_big"]) | junk,
                           max_size=3)
aliases = st.sampled_from(["opus", "sonnet", "haiku", "gpt", "a b", "x,y", "[z]"])
model = section({
    "provider": st.sampled_from(["anthropic", "anthropic", "anthropic", "anthropc", "openai"]),
    "model": st.sampled_from(["claude-opus-4-1", "claude-haiku-4-5", "", " "]),
    "base_url": st.sampled_from(["${URL}", "http://127.0.0.1:9", "https://api.anthropic.com", "localhost:80",
                                 "https://u:${KEY}@h", "http://$HOST"]),
    "api_key": st.sampled_from(["${KEY}", "${MISSING}", "${KEY} ", "", "sk-literal-key", "$KEY", "a$$b"]),
    "breaker": breaker, "retry": retry, "timeout": timeout, "outcomes": outcomes,
    "params": st.dictionaries(st.text(max_size=5), junk, max_size=3),
    "resume": st.sampled_from(["continue", "prefill", "restart", "resum"]),
})
routes = st.dictionaries(
    st.sampled_from(["default", "fast", "careful", "opus", "r"]),
    st.lists(aliases | st.sampled_from(["default", "fast", "careful", "r"]), max_size=4)
    | st.fixed_dictionaries({"chain": st.lists(aliases, max_size=3)})
    | junk,
    max_size=4,
)
policies = section({
    "version": st.sampled_from([1, 1, 1, 2, "1", 1.0, None]),
    "defaults": section({"breaker": breaker, "retry": retry, "timeout": timeout, "outcomes": outcomes}),
    "streaming": section({"on_interrupt": st.sampled_from(["resume", "raise", "ignore"])}),
    "models": st.dictionaries(aliases, model | junk, max_size=4),
    "routes": routes,
})


@st.composite
def with_shared_nodes(draw: st.DrawFn, tree: Any) -> Any:
    """Make some subtrees the same object, so that the YAML dump writes anchors and aliases for them."""
    pool: list[Any] = []

    def walk(node: Any) -> Any:
        if isinstance(node, (dict, list)):
            if pool and draw(st.integers(0, 9)) == 0:
                return draw(st.sampled_from(pool))
            node = {k: walk(v) for k, v in node.items()} if isinstance(node, dict) else [walk(v) for v in node]
            pool.append(node)
        return node

    return walk(tree)


def dump(tree: Any, flow: bool | None) -> str:
    try:
        return yaml.safe_dump(tree, default_flow_style=flow, allow_unicode=True, sort_keys=False, width=60)
    except yaml.YAMLError:
        return yaml.safe_dump(repr(tree))


@FUZZ
@given(policies.flatmap(with_shared_nodes), st.sampled_from([None, True, False]))
def test_generated_policies_load_or_fail_with_a_line(tree: Any, flow: bool | None) -> None:
    load_text(dump(tree, flow))


@FUZZ
@given(junk, st.sampled_from([None, True, False]))
def test_arbitrary_yaml_documents_load_or_fail_with_a_line(tree: Any, flow: bool | None) -> None:
    load_text(dump(tree, flow))


def test_the_generator_also_makes_valid_policies() -> None:
    """The oracle's other half is exercised too: a sensible tree loads into a policy that checks out."""
    tree = yaml.safe_load(DESIGN_EXAMPLE)
    shared = {"failure_threshold": 4, "reset_timeout": "10s", "max_reset_timeout": "1m"}
    tree["defaults"]["breaker"] = shared
    tree["models"]["opus"]["breaker"] = shared  # dumped as an anchor and an alias
    for flow in (None, True, False):
        result = load_text(dump(tree, flow))
        assert isinstance(result, Policy), result


# ---- mutated policies ---------------------------------------------------------------------------------

INSERTS = ["\n", "  ", "\t", ":", ": ", "- ", "{", "}", "[", "]", ",", "'", '"', "#", "&a ", "*a", "<<: *a\n",
           "!!str ", "!!python/object:os.system ", "? ", "---\n", "...\n", "${", "${X}", "}", "\x00", "\x85",
           "\ufeff", "\u2028", "\ud800", "9" * 40, "1e999", "-", "|\n", ">-\n", "%YAML 1.2\n", "@", "`"]


@st.composite
def mutated(draw: st.DrawFn) -> str:
    text = draw(st.sampled_from(CORPUS))
    for _ in range(draw(st.integers(1, 4))):
        at = draw(st.integers(0, len(text)))
        op = draw(st.sampled_from(["insert", "delete", "duplicate", "swap_lines", "indent"]))
        if op == "insert":
            text = text[:at] + draw(st.sampled_from(INSERTS) | st.text(max_size=4)) + text[at:]
        elif op == "delete":
            text = text[:at] + text[at + draw(st.integers(1, 12)):]
        elif op == "duplicate":
            text = text[:at] + text[at:at + draw(st.integers(1, 40))] + text[at:]
        else:
            lines = text.split("\n")
            i, j = draw(st.integers(0, len(lines) - 1)), draw(st.integers(0, len(lines) - 1))
            if op == "swap_lines":
                lines[i], lines[j] = lines[j], lines[i]
            else:
                lines[i] = " " * draw(st.integers(0, 5)) + lines[i].lstrip(" ")
            text = "\n".join(lines)
    return text


@FUZZ
@given(mutated())
def test_mutated_policies_load_or_fail_with_a_line(text: str) -> None:
    load_text(text)


@settings(max_examples=100, deadline=None,
          suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
@given(
    st.sampled_from(CORPUS).map(lambda t: t.encode("utf-8")),
    st.lists(st.tuples(st.integers(0, 4000), st.binary(min_size=1, max_size=6)), max_size=3),
    st.sampled_from([b"", b"\xef\xbb\xbf", b"\xff\xfe", b"\x00"]),
)
def test_files_with_binary_junk_load_or_fail_with_a_line(
    tmp_path_factory: pytest.TempPathFactory, data: bytes, junk_bytes: list[tuple[int, bytes]], prefix: bytes
) -> None:
    for at, chunk in junk_bytes:
        at = min(at, len(data))
        data = data[:at] + chunk + data[at:]
    data = prefix + data
    path = tmp_path_factory.mktemp("fuzz") / "policy.yaml"
    path.write_bytes(data)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", PolicyWarning)
            policy = load_policy(path, env=ENV)
    except PolicyError as error:
        check_error(error, data.decode("utf-8", "replace"), str(path))
        return
    check_policy(policy)


# ---- edge files, each named ---------------------------------------------------------------------------

EMPTY = ["", " ", "\n", "\n\n\n", "\t", "\ufeff", "\ufeff\n", "# just a comment", "---", "---\n...\n", "...",
         "~", "null", "Null", "''", '""', "[]", "{}", "- ", "? ", "!!null ''", "--- !!map {}", "%YAML 1.1\n---\n"]


@pytest.mark.parametrize("text", EMPTY, ids=repr)
def test_empty_and_nearly_empty_files(text: str, tmp_path: Path) -> None:
    assert isinstance(load_text(text), PolicyError)
    path = tmp_path / "empty.yaml"
    path.write_text(text, encoding="utf-8")
    with pytest.raises(PolicyError) as info:
        load_policy(path, env=ENV)
    check_error(info.value, text, str(path))


@pytest.mark.parametrize("value", [None, b"version: 1\n", 1, 1.5, ["version: 1"], {"version": 1}], ids=repr)
def test_a_policy_that_is_not_text_is_a_policy_error(value: Any) -> None:
    with pytest.raises(PolicyError) as info:
        parse_policy(value)
    assert "internal error" not in str(info.value)


HUGE = ["9" * 99, "9" * 101, "1" + "0" * 400, "1e308", "1e309", "-1e309", ".inf", "-.inf", ".nan", "0x" + "f" * 90,
        "0o7777777777777777777777777777777", "0b" + "1" * 98, "1_000_000_000_000_000_000", "9" * 60 + "h",
        "9" * 60 + "ms", "1" * 64 + "s", "1" * 65 + "s", "2" * 5000]


@pytest.mark.parametrize("number", HUGE, ids=lambda n: n[:20])
@pytest.mark.parametrize("key", ["breaker: {failure_threshold: %s}", "breaker: {reset_timeout: %s}",
                                 "retry: {attempts: %s}", "retry: {backoff: {jitter: %s}}", "timeout: {total: %s}"])
def test_huge_numbers_in_every_numeric_field(key: str, number: str) -> None:
    text = DESIGN_EXAMPLE.replace("  opus:   {provider: anthropic, model: claude-opus-4-1}",
                                  "  opus:   {provider: anthropic, model: claude-opus-4-1, " + key % number + "}")
    result = load_text(text)
    assert isinstance(result, PolicyError)
    assert result.line == 12 and (result.key or "").startswith("models.opus."), result


# ---- bombs: bounded work and memory -------------------------------------------------------------------


def alias_bomb(width: int, depth: int, where: str) -> str:
    """Billion laughs: each anchor a list of `width` aliases of the one before, `depth` levels deep."""
    anchors = [f"x0: &x0 [{', '.join(['lol'] * width)}]"]
    anchors += [f"x{i}: &x{i} [{', '.join([f'*x{i - 1}'] * width)}]" for i in range(1, depth)]
    if where == "top":
        return "\n".join(anchors) + "\n"
    opus = "model: claude-opus-4-1}"
    if where == "params":  # anchors under an unknown top-level key, the last one used in a model's params
        text = DESIGN_EXAMPLE.replace("version: 1\n", "version: 1\nanchors: {" + ", ".join(anchors) + "}\n")
        return text.replace(opus, f"model: claude-opus-4-1, params: {{p: *x{depth - 1}}}}}")
    # merge keys: a chain of mappings, each merging the one before, all merged again into a model's params
    n = depth * width
    chain = ["m0: &m0 {k0: 0}"] + [f"m{i}: &m{i} {{<<: *m{i - 1}, k{i}: {i}}}" for i in range(1, n)]
    text = DESIGN_EXAMPLE.replace("version: 1\n", "version: 1\nanchors: {" + ", ".join(chain) + "}\n")
    merged = ", ".join(f"*m{i}" for i in range(n))
    return text.replace(opus, f"model: claude-opus-4-1, params: {{<<: [{merged}]}}}}")


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.integers(2, 40), st.integers(2, 10), st.sampled_from(["top", "params", "merge"]))
def test_anchor_and_alias_bombs_stay_small(width: int, depth: int, where: str) -> None:
    text = alias_bomb(width, depth, where)
    assume(len(text) < 200_000)
    peak = peak_memory(load_text, text)
    assert peak < MEMORY_LIMIT, f"{peak / 2**20:.1f} MiB for a {len(text)}-char bomb ({width}x{depth}, {where})"


BIG = {  # about 200 KiB each (tracemalloc makes loading slow; the limit is 1 MiB), but one
    "deep flow nesting": "[" * 100_000 + "]" * 100_000,
    "deep block nesting": "".join("  " * i + "k:\n" for i in range(400)),
    "deep flow maps": "{a: " * 50_000 + "1" + "}" * 50_000,
    "many nodes": "x: [" + ", ".join(["1"] * 60_000) + "]\n",
    "many keys": "".join(f"k{i}: {i}\n" for i in range(20_000)),
    "long scalar": "x: '" + "y" * 200_000 + "'\n",
    "long comment": DESIGN_EXAMPLE + "#" + "z" * 200_000 + "\n",
    "many lines": DESIGN_EXAMPLE + "\n" * 200_000,
    "many env refs": "x: '" + "${X}" * 20_000 + "'\n",
    "unclosed refs": "x: '" + "${" * 100_000 + "'\n",
    "long model alias": DESIGN_EXAMPLE.replace("opus", "o" * 60_000),
    "binary-ish": "x: '" + "".join(chr(c) for c in range(32, 0x2FF)) * 300 + "'\n",
    "just over the limit": "#" * (2**20 + 1),
}
@pytest.mark.parametrize("name", list(BIG))
def test_big_inputs_stay_within_memory(name: str) -> None:
    text = BIG[name]
    peak = peak_memory(load_text, text)
    assert peak < MEMORY_LIMIT, f"{name}: peak {peak / 2**20:.1f} MiB for {len(text) / 2**20:.2f} MiB of text"


class _CountingText(str):
    """A str that counts how many characters its substring searches scan."""

    scanned = 0

    def __contains__(self, sub: object) -> bool:
        _CountingText.scanned += len(self)
        return super().__contains__(sub)  # type: ignore[operator]

    def find(self, *args: Any) -> int:  # type: ignore[override]
        _CountingText.scanned += len(self)
        return super().find(*args)

    def count(self, *args: Any) -> int:  # type: ignore[override]
        _CountingText.scanned += len(self)
        return super().count(*args)


@pytest.mark.parametrize("underscores", [1_000, 20_000])
def test_loading_scans_the_text_a_bounded_number_of_times(underscores: int) -> None:
    """Work must grow with the size of the file, not with its square. The text contains the marker the
    ${VAR} pre-pass uses for its placeholders, followed by a long run of underscores; the loader may scan
    the text a few times, not once per underscore (which makes a 1 MiB file take minutes)."""
    _CountingText.scanned = 0
    text = _CountingText(DESIGN_EXAMPLE + "# __ENVREF" + "_" * underscores + "\n")
    result = load_text(text)
    assert isinstance(result, Policy)
    assert _CountingText.scanned <= 20 * len(text), (
        f"{_CountingText.scanned / len(text):.0f} full scans of a {len(text)}-char policy"
    )
