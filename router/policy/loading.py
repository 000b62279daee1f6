"""Reading a policy file or text into a Policy and its warnings, or one PolicyError for all its problems."""

from __future__ import annotations

import os
from collections.abc import Mapping

from .build import build_policy
from .errors import PolicyError
from .model import Policy
from .problems import Fatal, Findings, Problem, TooMany
from .yaml_nodes import MAX_BYTES, read


def load(path: str | os.PathLike[str], env: Mapping[str, str] | None) -> tuple[Policy, list[str]]:
    """Read and validate a policy file: the Policy and the warnings to emit."""
    try:
        name = os.fspath(path)
    except TypeError:
        raise PolicyError(f"a policy path must be a str or path, not {type(path).__name__}") from None
    file = name if isinstance(name, str) else os.fsdecode(name)
    try:
        with open(name, "rb") as handle:
            data = handle.read(MAX_BYTES + 1)
    except FileNotFoundError:
        raise PolicyError("no such policy file", file) from None
    except (OSError, ValueError) as e:
        raise PolicyError(f"cannot read the policy file: {getattr(e, 'strerror', None) or e}", file) from None
    if len(data) > MAX_BYTES:
        raise PolicyError(f"the policy is larger than {MAX_BYTES // 1024} KiB", file)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise PolicyError(f"not UTF-8 text (binary data at byte {e.start}?)", file, line) from None
    return parse(text, file, env)


def parse(text: str, file: str, env: Mapping[str, str] | None) -> tuple[Policy, list[str]]:
    """Validate policy text: the Policy and the warnings to emit, or one PolicyError for all its problems."""
    found = Findings(file)
    policy: Policy | None = None
    truncated = False
    try:
        if not isinstance(text, str):
            raise Problem(f"the policy text must be a str, not {type(text).__name__}", None)
        policy = build_policy(read(text, os.environ if env is None else env, found), found, env)
    except TooMany:
        truncated = True
    except Fatal as p:
        found.problems[:] = [p]
    except Problem as p:  # a problem after which nothing more can be read (a syntax error, a bomb, ...)
        found.problems.append(p)
    except Exception as e:  # the contract is PolicyError only; keep the cause for debugging
        name = type(e).__name__
        raise PolicyError(f"internal error while reading the policy ({name}); please report it", file) from e
    if found.problems or policy is None:
        # raised outside the except blocks: no Problem rides along as the error's __context__
        raise _error(found.problems, file, truncated)
    return policy, found.notes


def _error(problems: list[Problem], file: str, truncated: bool) -> PolicyError:
    ordered = sorted(problems, key=lambda p: 0 if p.line is None else p.line)  # stable: same line, found order
    errors = [PolicyError(p.message, file, p.line, p.key, p.suggestion) for p in ordered]
    if not errors:  # not reached: a build without problems makes a policy
        errors = [PolicyError("internal error while reading the policy (no problem recorded); please report it", file)]
    return PolicyError.of(errors, truncated=truncated)
