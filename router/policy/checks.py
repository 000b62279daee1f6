"""The checks that read one policy value each (numbers, durations, URLs, keys, names, choices)."""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from types import MappingProxyType
from typing import Any
from urllib.parse import urlsplit

from .durations import DURATION_FORMS, LONG_DURATION_FORMS, MAX_SECONDS, format_seconds, parse_duration
from .env_refs import bare_reference, env_like
from .model import OUTCOME_CLASSES, PROVIDERS
from .problems import Problem, suggest
from .yaml_nodes import Map, Node, Scalar, describe, to_plain

Check = Callable[[Node, str], Any]
CREDENTIALS_IN_URL = "base_url must not carry credentials (user:password@); put the key in api_key: ${...}"


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


def _duration(*, zero_ok: bool, most: tuple[float, str] | None = None) -> Check:
    """A duration; `most` (the largest allowed and how to say it) makes it a long one, in days too."""
    limit, said = most or (MAX_SECONDS, "1 day (24h)")

    def check(node: Node, key: str) -> float:
        seconds = parse_duration(node.value, days=most is not None) if isinstance(node, Scalar) else None
        if seconds is None:
            as_text = isinstance(node, Scalar) and isinstance(node.value, str)
            shown = f"'{node.raw}'" if as_text and isinstance(node, Scalar) else describe(node)
            forms = DURATION_FORMS if most is None else LONG_DURATION_FORMS
            raise Problem(f"invalid duration {shown}; use {forms}", node.line, key)
        if seconds < 0 or (seconds == 0 and not zero_ok):
            least = "0 or more" if zero_ok else "more than 0"
            raise Problem(f"must be {least}, got {format_seconds(seconds)}", node.line, key)
        if seconds > limit:
            raise Problem(f"must be at most {said}, got {format_seconds(seconds)}", node.line, key)
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


def _status_page_url(node: Node, key: str) -> str:
    text = _text(node, key)
    parts = urlsplit(text)
    if parts.scheme not in ("http", "https") or not parts.netloc:
        raise Problem("expected an http:// or https:// URL of a Statuspage summary.json", node.line, key)
    return text
