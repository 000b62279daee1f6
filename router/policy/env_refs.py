"""${VAR} references in policy text: swapped out before YAML parsing, substituted from the env after."""

from __future__ import annotations

import re
import secrets
from collections.abc import Mapping
from dataclasses import dataclass

from .problems import Problem, Unset

_REF = re.compile(r"\$\{([^${}\n'\"]*)\}")
_REF_BODY = re.compile(r"([A-Za-z_][A-Za-z0-9_]*)(?::-(.*))?", re.DOTALL)
_BARE = re.compile(r"\$\$|\$([A-Za-z_][A-Za-z0-9_]*)")  # $$ is skipped whole, so $$NAME is no reference
_ENV_NAME = re.compile(r"[A-Z_][A-Z0-9_]{0,63}")  # how environment variables are conventionally named
_MALFORMED = "malformed environment reference; write ${VAR} or ${VAR:-default} (VAR: letters, digits, _)"


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
