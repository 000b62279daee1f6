"""Policy schema as data: the keys of each section and the checks that read each value."""

from __future__ import annotations

from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from .checks import (
    Check,
    _api_key,
    _base_url,
    _choice,
    _duration,
    _fraction,
    _integer,
    _name,
    _outcome_class,
    _outcome_name,
    _params,
    _provider,
    _redis_url,
    _status_page_url,
    _text,
    check_version,
)
from .env_refs import bare_reference, env_like
from .model import (
    MAX_KEEP,
    ON_EXHAUSTED,
    ON_INTERRUPT,
    QUEUE_DRAINS,
    RESUME_METHODS,
    STATUS_PAGE_ACTIONS,
    Exhausted,
)
from .problems import Findings, Problem, suggest
from .yaml_nodes import Map, Node, Scalar, Seq, describe, join


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


@dataclass(frozen=True, slots=True)
class RouteValue:
    """A route as written: its chain entries (not yet expanded) and its on_exhausted."""

    entries: tuple[Entry, ...]
    on_exhausted: Exhausted = field(default_factory=Exhausted)
    exhausted_line: int = 0


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


def _route(node: Node, key: str) -> RouteValue:
    if isinstance(node, Map):
        found = Findings("", limit=None)  # one route's value is one problem: the first one found in it
        given = read_section(node, _ROUTE_LONG, key, node.line, found)
        if found.problems:
            raise found.problems[0]
        assert given is not None  # a mapping read without problems
        chain: tuple[Entry, ...] = given.value["chain"].value
        exhausted = given.value.get("on_exhausted")
        if exhausted is None:
            return RouteValue(chain)
        return RouteValue(chain, exhausted.value, exhausted.line)
    return RouteValue(_chain(node, key))


def _on_exhausted(node: Node, key: str) -> Exhausted:
    """`raise` | `wait` | `queue`, or `{wait: {max: 30s}}`."""
    if isinstance(node, Scalar):
        return Exhausted(_choice(ON_EXHAUSTED)(node, key))
    if not isinstance(node, Map) or len(node.items) != 1:
        raise Problem(f"expected raise, wait, queue or {{wait: {{max: 30s}}}}, got {describe(node)}", node.line, key)
    (mode, (line, value)), = node.items.items()
    if mode not in ON_EXHAUSTED:
        raise Problem(f"unknown value '{mode}' (use one of: {', '.join(ON_EXHAUSTED)})", line, join(key, mode),
                      suggest(mode, ON_EXHAUSTED))
    if mode != "wait":
        if isinstance(value, Map) and value.items:
            raise Problem(f"'{mode}' takes no options here", line, join(key, mode))
        return Exhausted(mode)
    found = Findings("", limit=None)
    given = read_section(value, _WAIT, join(key, mode), line, found)
    if found.problems:
        raise found.problems[0]
    assert given is not None
    limit = given.value.get("max")
    return Exhausted("wait", limit.value) if limit is not None else Exhausted("wait")


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
_WAIT = Section({"max": _duration(zero_ok=False)})
_ROUTE_LONG = Section({"chain": _chain, "on_exhausted": _on_exhausted}, required=("chain",))
_QUEUE_SQLITE = Section({"path": _text}, required=("path",))
_QUEUE_REDIS = Section({"url": _redis_url, "stream": _text}, required=("url",))
_QUEUE = Section({
    "sqlite": _QUEUE_SQLITE,
    "redis": _QUEUE_REDIS,
    "ttl": _duration(zero_ok=False),
    "keep": _duration(zero_ok=False, most=(MAX_KEEP, "366 days (366d)")),
    "lease": _duration(zero_ok=False),
    "concurrency": _integer(1, 1024),
    "attempts": _integer(1, 1000),
    "drain": _choice(QUEUE_DRAINS),
})
_STATUS_PAGE = Section(
    {
        "url": _status_page_url,
        "interval": _duration(zero_ok=False),
        "on_incident": _choice(STATUS_PAGE_ACTIONS),
        "threshold": _integer(1, 10_000),
        "timeout": _duration(zero_ok=False),
    },
    required=("url",),
)
TOP = Section(
    {
        "version": check_version,
        "defaults": _DEFAULTS,
        "streaming": _STREAMING,
        "state": _STATE,
        "queue": _QUEUE,
        "status_page": _STATUS_PAGE,
        "models": Open(_MODEL, _name, "model", non_empty=True),
        "routes": Open(_route, _name, "route", non_empty=True),
    },
    required=("version", "models", "routes"),
)
MERGED = ("breaker", "retry", "timeout", "outcomes")  # per-model sections merged over defaults key by key
