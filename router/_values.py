"""Policy value helpers: the internal Problem error and its collector, did-you-mean, durations, ${VAR} refs."""

from __future__ import annotations

import difflib
import math
import re
import secrets
from collections.abc import Iterable, Mapping
from dataclasses import dataclass

MAX_SECONDS = 86_400.0
MAX_PROBLEMS = 50  # a file with more is reported with its first 50
DURATION_FORMS = "a number of seconds or a string like '500ms', '30s', '5m', '1h'"

_DURATION = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ms|s|m|h)?")
_UNIT_SECONDS = {"ms": 0.001, "s": 1.0, "m": 60.0, "h": 3600.0, None: 1.0}
_REF = re.compile(r"\$\{([^${}\n'\"]*)\}")
_REF_BODY = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(?::-(.*))?", re.DOTALL)
_BARE = re.compile(r"\$\$|\$([A-Za-z_][A-Za-z0-9_]*)")  # $$ is skipped whole, so $$NAME is no reference
_ENV_NAME = re.compile(r"[A-Z_][A-Z0-9_]{0,63}")  # how environment variables are conventionally named
_MALFORMED = "malformed environment reference; write ${VAR} or ${VAR:-default} (VAR: letters, digits, _)"


class Problem(Exception):
    """A policy problem found before the file name is attached; policy.py turns it into a PolicyError."""

    def __init__(self, message: str, line: int | None, key: str | None = None, suggestion: str | None = None):
        super().__init__(message)
        self.message = message
        self.line = line
        self.key = key
        self.suggestion = suggestion


class Unset(Problem):
    """A ${NAME} reference to a variable that is not set."""

    def __init__(self, name: str, line: int | None, key: str | None):
        message = f"environment variable {name} is not set (write ${{{name}:-default}} for a fallback)"
        super().__init__(message, line, key)
        self.name = name


class Fatal(Problem):
    """A problem that makes the rest of the file meaningless (e.g. a newer version): reported alone."""


class TooMany(Exception):
    """Raised when MAX_PROBLEMS problems are found: the loader stops looking."""


class Findings:
    """What reading one policy found: its problems (deduplicated, capped) and the warnings to emit."""

    def __init__(self, file: str, limit: int | None = MAX_PROBLEMS):
        self.file = file
        self.limit = limit
        self.problems: list[Problem] = []
        self.notes: list[str] = []
        self._seen: set[tuple[int | None, str | None, str]] = set()

    def add(self, problem: Problem) -> None:
        mark = (problem.line, problem.key, problem.message)
        if mark in self._seen:  # e.g. a bad default, met again in every model that inherits it
            return
        self._seen.add(mark)
        self.problems.append(problem)
        if self.limit is not None and len(self.problems) >= self.limit:
            raise TooMany

    def warn(self, message: str, line: int | None, key: str) -> None:
        self.notes.append(f"{self.file}:{line}: {key}: {message}")


def bare_reference(raw: str) -> str | None:
    """NAME of the first $NAME outside ${...} in a value as written (a forgotten-brace reference), else None."""
    if "$" not in raw:
        return None
    for match in _BARE.finditer(_REF.sub(" ", raw)):
        if match.group(1):
            return match.group(1)
    return None


def env_like(name: str) -> bool:
    """Whether a name reads like an environment variable (safe to echo even from a secret's text)."""
    return _ENV_NAME.fullmatch(name) is not None


def suggest(word: str, candidates: Iterable[str]) -> str | None:
    matches = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return matches[0] if matches else None


def parse_duration(value: object) -> float | None:
    """Seconds for a duration value, or None when it is not one of the accepted forms (range unchecked)."""
    if isinstance(value, bool):
        return None
    if isinstance(value, (int, float)):
        return float(value) if math.isfinite(value) else None
    if not isinstance(value, str) or len(value) > 64:
        return None
    match = _DURATION.fullmatch(value.strip())
    if match is None:
        return None
    seconds = float(match.group(1)) * _UNIT_SECONDS[match.group(2)]
    return seconds if math.isfinite(seconds) else None


def format_seconds(seconds: float) -> str:
    if 0 < abs(seconds) < 1:
        return f"{seconds * 1000:g}ms"
    return f"{seconds:g}s"


@dataclass(frozen=True, slots=True)
class Substituted:
    value: str
    raw: str  # the text as written, refs included; may hold a literal secret, so never put in messages
    refs: tuple[str, ...]  # names of variables whose value came from the environment
    env_only: bool  # the whole value came from the environment (no literal text, no default used)


class EnvRefs:
    """Swaps ${VAR} references for plain tokens before YAML parsing, and back afterwards.

    An unquoted ${VAR} is not valid YAML inside a flow mapping ('{' is an indicator there), yet the
    policy format writes `{api_key: ${KEY}}`; a token made of letters and digits parses anywhere.
    Tokens stay on the line of their reference, so line numbers are unchanged.
    """

    def __init__(self, text: str):
        mark = "__ENVREF"
        while mark in text:  # one scan per try: a fixed suffix grown char by char would be quadratic
            mark = f"__ENVREF{secrets.token_hex(6)}x"
        self._refs: list[tuple[str, str | None, str | None]] = []  # (written text, name, default)
        self._token = re.compile(re.escape(mark) + r"(\d+)__")

        def swap(match: re.Match[str]) -> str:
            body = _REF_BODY.fullmatch(match.group(1))
            name, default = (body.group(1), body.group(2)) if body else (None, None)
            self._refs.append((match.group(0), name, default))
            return f"{mark}{len(self._refs) - 1}__"

        self.text = _REF.sub(swap, text)

    def raw(self, text: str) -> str:
        """The text with each token put back as the ${...} reference it replaced."""
        return self._token.sub(lambda m: self._refs[int(m.group(1))][0], text)

    def substitute(self, text: str, env: Mapping[str, str], line: int, key: str) -> Substituted:
        refs: list[str] = []
        env_only = True
        pieces: list[str] = []
        pos = 0
        for match in self._token.finditer(text):
            if match.start() > pos:
                env_only = False
                pieces.append(text[pos : match.start()])
            pos = match.end()
            _, name, default = self._refs[int(match.group(1))]
            if name is None:
                raise Problem(_MALFORMED, line, key)
            if name in env:
                refs.append(name)
                pieces.append(env[name])
            elif default is not None:
                env_only = False
                pieces.append(default)
            else:
                raise Unset(name, line, key)
        if pos < len(text):
            env_only = False
            pieces.append(text[pos:])
        raw = self.raw(text)
        if "${" in _REF.sub("", raw):
            raise Problem(_MALFORMED, line, key)
        return Substituted("".join(pieces), raw, tuple(refs), env_only and bool(refs))
