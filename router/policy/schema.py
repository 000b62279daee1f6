"""Policy schema as data: the keys of each section and the checks that read each value."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

from .durations import DURATION_FORMS, MAX_SECONDS, format_seconds, parse_duration
from .env_refs import bare_reference, env_like
from .model import ON_INTERRUPT, OUTCOME_CLASSES, PROVIDERS, RESUME_METHODS
from .problems import Findings, Problem, suggest
from .yaml_nodes import Map, Node, Scalar, Seq, describe, join, to_plain

Check = Callable[[Node, str], Any]
CREDENTIALS_IN_URL = "base_url must not carry credentials (user:password@); put the key in api_key: ${...}"


@dataclass(frozen=True)
class Section:
    """Fixed keys, each read by a check or a nested section."""

    fields: Mapping[str, Spec]
    required: tuple[str, ...] = ()


@dataclass(frozen=True)
class Open:
    """A mapping with free keys (aliases, route names, outcome codes), every value read by one spec."""

    value: Spec
    name_check: Callable[[str, int, str], None]
    what: str
    non_empty: bool = False


Spec = Check | Section | Open


@dataclass(frozen=True, slots=True)
class Given:
    value: Any  # the checked value, or dict[str, Given] when nested; None when broken and not nested
    line: int  # line of the key
    key: str  # dotted path
    nested: bool = False
    broken: bool = False  # a problem was found in it (reported already): no cross-key checks, no config


@dataclass(frozen=True, slots=True)
class Entry:
    name: str
    line: int
    key: str


def read_section(node: Node, spec: Spec, path: str, line: int, found: Findings) -> Given | None:
    """The checked value of a node; None (the problem reported to `found`) when it has one."""
    if not isinstance(spec, (Section, Open)):
        if node.bad:
            return None
        try:
            value = spec(node, path)
        except Problem as p:
            found.add(p)
            return None
        _warn_bare_references(node, path, found)
        return Given(value, line, path)
    if not isinstance(node, Map):
        if not node.bad:
            found.add(Problem(f"expected a mapping, got {describe(node)}", node.line, path or None))
        return None
    out: dict[str, Given] = {}
    meant: set[str] = set()  # the keys that unknown keys were probably meant to be
    broken = node.bad
    if isinstance(spec, Open) and spec.non_empty and not node.items:
        found.add(Problem(f"needs at least one {spec.what}", node.line, path))
        broken = True
    for name, (key_line, value) in node.items.items():
        key = join(path, name)
        given = _read_entry(spec, name, key_line, value, key, found, meant)
        if given is None or given.broken:
            broken = True
        if given is not None:
            out[name] = given
    for name in spec.required if isinstance(spec, Section) else ():
        if name not in node.items and name not in meant:  # present but bad, or misspelt: reported already
            found.add(Problem(f"required key '{name}' is missing", line, join(path, name)))
            broken = True
    return Given(out, line, path, nested=True, broken=broken)


def _read_entry(
    spec: Section | Open, name: str, line: int, node: Node, key: str, found: Findings, meant: set[str]
) -> Given | None:
    """One key of a mapping. A bad entry of an Open mapping stays as a broken Given: a model alias
    with a problem is still a known alias (a route naming it is not reported again)."""
    if isinstance(spec, Open):
        try:
            spec.name_check(name, line, key)
            named = True
        except Problem as p:
            found.add(p)
            named = False
        given = read_section(node, spec.value, key, line, found)
        if given is None:
            return Given(None, line, key, broken=True)
        return given if named else Given(given.value, line, key, given.nested, broken=True)
    if name not in spec.fields:
        hint = suggest(name, spec.fields)
        allowed = "" if hint else f" (allowed: {', '.join(spec.fields)})"
        found.add(Problem(f"unknown key '{name}'{allowed}", line, key, hint))
        if hint is not None:
            meant.add(hint)
        return None
    return read_section(node, spec.fields[name], key, line, found)


def _strings(node: Node, key: str) -> Iterator[tuple[Scalar, str]]:
    if isinstance(node, Scalar):
        if isinstance(node.value, str):
            yield node, key
    elif isinstance(node, Seq):
        for i, item in enumerate(node.items):
            yield from _strings(item, f"{key}[{i}]")
    else:
        for name, (_, value) in node.items.items():
            yield from _strings(value, join(key, name))


def _warn_bare_references(node: Node, key: str, found: Findings) -> None:
    """A $NAME outside ${...} is most likely a reference missing its braces, sent as written."""
    for scalar, where in _strings(node, key):
        name = bare_reference(scalar.raw)
        if name is None:
            continue
        echo = env_like(name) or ".params" not in where  # params may hold secrets: echo env-like names only
        written = f"${{{name}}}" if echo else "${NAME}"
        shown = f"'${name}' " if echo else ""
        found.warn(f"{shown}looks like an environment reference without braces; write {written} "
                   "(as written it is used literally)", scalar.line, where)


def merge(base: dict[str, Given], over: dict[str, Given]) -> dict[str, Given]:
    out = dict(base)
    for name, given in over.items():
        old = out.get(name)
        if old is not None and old.nested and given.nested:
            broken = old.broken or given.broken
            given = Given(merge(old.value, given.value), given.line, given.key, nested=True, broken=broken)
        out[name] = given
    return out


def _number(node: Node) -> int | float | None:
    value = node.value if isinstance(node, Scalar) else None
    if isinstance(node, Scalar) and node.templated and isinstance(value, str):
        # ${VAR} always yields a string; let "3" or "0.5" from the environment count as numbers
        text = value.strip()
        if re.fullmatch(r"[+-]?\d{1,18}", text):
            value = int(text)
        elif re.fullmatch(r"[+-]?(\d{1,18}\.\d{0,18}|\.\d{1,18})", text):
            value = float(text)
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return value


def _integer(low: int, high: int) -> Check:
    def check(node: Node, key: str) -> int:
        value = _number(node)
        if not isinstance(value, int):
            what = describe(node)
            raise Problem(f"expected a whole number from {low} to {high}, got {what}", node.line, key)
        if value < low:
            raise Problem(f"must be at least {low}, got {value}", node.line, key)
        if value > high:
            raise Problem(f"must be at most {high}, got {value}", node.line, key)
        return value

    return check


def _duration(*, zero_ok: bool) -> Check:
    def check(node: Node, key: str) -> float:
        seconds = parse_duration(node.value) if isinstance(node, Scalar) else None
        if seconds is None:
            as_text = isinstance(node, Scalar) and isinstance(node.value, str)
            shown = f"'{node.raw}'" if as_text and isinstance(node, Scalar) else describe(node)
            raise Problem(f"invalid duration {shown}; use {DURATION_FORMS}", node.line, key)
        if seconds < 0 or (seconds == 0 and not zero_ok):
            least = "0 or more" if zero_ok else "more than 0"
            raise Problem(f"must be {least}, got {format_seconds(seconds)}", node.line, key)
        if seconds > MAX_SECONDS:
            raise Problem(f"must be at most 1 day (24h), got {format_seconds(seconds)}", node.line, key)
        return seconds

    return check


def _fraction(node: Node, key: str) -> float:
    value = _number(node)
    if value is None or not math.isfinite(value) or not 0 <= value <= 1:
        raise Problem(f"expected a number from 0 to 1, got {describe(node)}", node.line, key)
    return float(value)


def _text(node: Node, key: str) -> str:
    if not isinstance(node, Scalar) or not isinstance(node.value, str) or not node.value.strip():
        raise Problem(f"expected a non-empty string, got {describe(node)}", node.line, key)
    return node.value


def _provider(node: Node, key: str) -> str:
    name = _text(node, key)
    if name not in PROVIDERS:
        hint = suggest(name, PROVIDERS)
        raise Problem(f"unknown provider '{name}' (use one of: {', '.join(PROVIDERS)})", node.line, key, hint)
    return name


def _base_url(node: Node, key: str) -> str:
    text = _text(node, key)
    try:
        parts = urlsplit(text)
        ok = parts.scheme in ("http", "https") and bool(parts.netloc)
    except ValueError:
        ok = False
    if not ok:
        raise Problem("expected an http:// or https:// URL", node.line, key)
    if "@" in parts.netloc:  # the message never shows the URL: its userinfo is a secret
        raise Problem(CREDENTIALS_IN_URL, node.line, key)
    return text


def _redis_url(node: Node, key: str) -> tuple[str, str]:
    """(source, value) for the Secret of a Redis URL (it may carry a password: never echoed)."""
    text = _text(node, key)
    if not text.startswith(("redis://", "rediss://", "unix://")):
        raise Problem("expected a redis://, rediss:// or unix:// URL, e.g. ${REDIS_URL}", node.line, key)
    refs = getattr(node, "refs", ())
    source = "".join(f"${{{name}}}" for name in refs) if getattr(node, "env_only", False) else "literal"
    return source, text


def _api_key(node: Node, key: str) -> tuple[str, str]:
    """(source, value) for a Secret; messages never echo the value, describe() only says what it is."""
    if not isinstance(node, Scalar) or not isinstance(node.value, str):
        what = describe(node)
        raise Problem(f"expected a string such as ${{ANTHROPIC_API_KEY}}, got {what}", node.line, key)
    if not node.value.strip():
        where = f" ({', '.join(node.refs)} is set but empty)" if node.refs else ""
        raise Problem(f"API key is empty{where}", node.line, key)
    if node.value != node.value.strip():
        raise Problem("API key has leading or trailing whitespace", node.line, key)
    bare = bare_reference(node.raw)
    if bare is not None:  # sent as written, this would be a literal "$NAME" key; the name is echoed only
        named = env_like(bare)  # when it reads like a variable, not like a piece of a secret
        written = f"${{{bare}}}" if named else "${NAME}"
        message = f"looks like an environment reference without braces; write {written}"
        raise Problem(message, node.line, key, written if named else None)
    source = "".join(f"${{{name}}}" for name in node.refs) if node.env_only else "literal"
    return source, node.value


def _params(node: Node, key: str) -> Mapping[str, Any]:
    if not isinstance(node, Map):
        raise Problem(f"expected a mapping, got {describe(node)}", node.line, key)
    return MappingProxyType(to_plain(node))


def check_version(node: Node, key: str) -> int:
    if isinstance(node, Scalar) and type(node.value) is int and node.value == 1:
        return 1
    shown = f"'{node.raw}'" if isinstance(node, Scalar) else describe(node)
    raise Problem(f"unsupported version {shown}; this router reads version 1", node.line, key)


def _name(name: str, line: int, key: str) -> None:
    if not re.fullmatch(r"[^\s,\[\]{}]+", name):
        raise Problem("a name must be non-empty, without spaces, commas or brackets", line, key)


def _outcome_name(name: str, line: int, key: str) -> None:
    if not re.fullmatch(r"[1-5]\d\d|[a-z][a-z0-9_]*", name):
        raise Problem('expected an HTTP status ("529") or an error type ("overloaded_error")', line, key)


def _outcome_class(node: Node, key: str) -> str:
    name = _text(node, key)
    if name not in OUTCOME_CLASSES:
        known = ", ".join(OUTCOME_CLASSES)
        hint = suggest(name, OUTCOME_CLASSES)
        raise Problem(f"unknown outcome class '{name}' (use one of: {known})", node.line, key, hint)
    return name


def _choice(options: tuple[str, ...]) -> Check:
    def check(node: Node, key: str) -> str:
        name = _text(node, key)
        if name not in options:
            raise Problem(f"unknown value '{name}' (use one of: {', '.join(options)})", node.line, key,
                          suggest(name, options))
        return name

    return check


def _chain(node: Node, key: str) -> tuple[Entry, ...]:
    if not isinstance(node, Seq):
        what = describe(node)
        raise Problem(f"a route is a list of model aliases or {{chain: [...]}}, got {what}", node.line, key)
    entries = []
    for i, item in enumerate(node.items):
        if not isinstance(item, Scalar) or item.value is None or item.value == "":
            message = f"a route entry must be a model alias or route name, got {describe(item)}"
            raise Problem(message, item.line, f"{key}[{i}]")
        name = item.value if isinstance(item.value, str) else item.raw
        entries.append(Entry(name, item.line, f"{key}[{i}]"))
    return tuple(entries)


def _route(node: Node, key: str) -> tuple[Entry, ...]:
    if isinstance(node, Map):
        found = Findings("", limit=None)  # one route's value is one problem: the first one found in it
        given = read_section(node, _ROUTE_LONG, key, node.line, found)
        if found.problems:
            raise found.problems[0]
        assert given is not None  # a mapping read without problems
        chain: tuple[Entry, ...] = given.value["chain"].value
        return chain
    return _chain(node, key)


_BREAKER = Section(
    {
        "failure_threshold": _integer(1, 10_000),
        "reset_timeout": _duration(zero_ok=False),
        "max_reset_timeout": _duration(zero_ok=False),
    }
)
_BACKOFF = Section({"initial": _duration(zero_ok=True), "max": _duration(zero_ok=True), "jitter": _fraction})
_RETRY = Section({"attempts": _integer(1, 100), "backoff": _BACKOFF, "max_retry_after": _duration(zero_ok=False)})
_TIMEOUT_KEYS = ("connect", "read", "total", "stream_idle", "first_byte", "first_token")
_TIMEOUT = Section({name: _duration(zero_ok=False) for name in _TIMEOUT_KEYS})
_STREAMING = Section({"on_interrupt": _choice(ON_INTERRUPT)})
_REDIS = Section({"url": _redis_url, "prefix": _text, "timeout": _duration(zero_ok=False)}, required=("url",))
_STATE = Section({"redis": _REDIS})
_OUTCOMES = Open(_outcome_class, _outcome_name, "outcome override")
_DEFAULTS = Section({"breaker": _BREAKER, "retry": _RETRY, "timeout": _TIMEOUT, "outcomes": _OUTCOMES})
_MODEL = Section(
    {
        "provider": _provider,
        "model": _text,
        "base_url": _base_url,
        "api_key": _api_key,
        "breaker": _BREAKER,
        "retry": _RETRY,
        "timeout": _TIMEOUT,
        "outcomes": _OUTCOMES,
        "params": _params,
        "resume": _choice(RESUME_METHODS),
    },
    required=("provider", "model"),
)
_ROUTE_LONG = Section({"chain": _chain}, required=("chain",))
TOP = Section(
    {
        "version": check_version,
        "defaults": _DEFAULTS,
        "streaming": _STREAMING,
        "state": _STATE,
        "models": Open(_MODEL, _name, "model", non_empty=True),
        "routes": Open(_route, _name, "route", non_empty=True),
    },
    required=("version", "models", "routes"),
)
MERGED = ("breaker", "retry", "timeout", "outcomes")  # per-model sections merged over defaults key by key
