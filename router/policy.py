"""The failover policy (version 1): its dataclasses, errors, and load_policy/parse_policy."""

from __future__ import annotations

import hashlib
import os
import warnings
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

__all__ = [
    "OUTCOME_CLASSES",
    "PROVIDERS",
    "BackoffConfig",
    "BreakerConfig",
    "ModelConfig",
    "Policy",
    "PolicyError",
    "PolicyWarning",
    "RetryConfig",
    "Route",
    "Secret",
    "StreamingConfig",
    "TimeoutConfig",
    "load_policy",
    "parse_policy",
]

PROVIDERS = ("anthropic", "litellm")
RESUME_METHODS = ("prefill", "continue", "restart")
ON_INTERRUPT = ("resume", "raise")
OUTCOME_CLASSES = ("server_failure", "rate_limited", "account", "caller", "too_large")
KNOWN_ERROR_TYPES = (
    "invalid_request_error",
    "authentication_error",
    "billing_error",
    "permission_error",
    "not_found_error",
    "request_too_large",
    "rate_limit_error",
    "api_error",
    "overloaded_error",
    "timeout_error",
)


def empty_mapping() -> Mapping[str, Any]:
    return MappingProxyType({})


@dataclass(frozen=True, slots=True)
class Secret:
    """An API key; its value never appears in repr/str/format/logs."""

    source: str  # "${ANTHROPIC_API_KEY}" when the value came from the environment, else "literal"
    _value: str = field(repr=False)

    def reveal(self) -> str:
        return self._value

    def fingerprint(self) -> str:
        return hashlib.sha256(self._value.encode("utf-8", "surrogatepass")).hexdigest()[:12]

    def __repr__(self) -> str:
        return f"Secret({self.source})"

    def __str__(self) -> str:
        return repr(self)

    def __format__(self, spec: str) -> str:
        return format(repr(self), spec)


@dataclass(frozen=True, slots=True)
class BreakerConfig:
    failure_threshold: int = 3
    reset_timeout: float = 30.0
    max_reset_timeout: float = 300.0


@dataclass(frozen=True, slots=True)
class BackoffConfig:
    initial: float = 0.5
    max: float = 8.0
    jitter: float = 0.25


@dataclass(frozen=True, slots=True)
class RetryConfig:
    attempts: int = 2
    backoff: BackoffConfig = BackoffConfig()
    max_retry_after: float = 60.0  # cap on any cooldown or wait taken from a retry-after header


@dataclass(frozen=True, slots=True)
class TimeoutConfig:
    connect: float = 5.0
    read: float = 60.0
    total: float = 600.0
    stream_idle: float = 30.0  # the longest silence between stream events before the stream counts as stalled
    first_byte: float = 10.0  # streams: the longest wait for the response head
    first_token: float = 30.0  # streams: the longest wait for the first content delta


@dataclass(frozen=True, slots=True)
class StreamingConfig:
    on_interrupt: str = "resume"  # "resume" on the next model, or "raise" StreamInterrupted


@dataclass(frozen=True, slots=True)
class ModelConfig:
    alias: str
    provider: str  # "anthropic" | "litellm"
    model: str
    base_url: str | None = None
    api_key: Secret | None = None  # None: the provider SDK's own default (e.g. $ANTHROPIC_API_KEY)
    breaker: BreakerConfig = BreakerConfig()
    retry: RetryConfig = RetryConfig()
    timeout: TimeoutConfig = TimeoutConfig()
    outcomes: Mapping[str, str] = field(default_factory=empty_mapping, hash=False)
    params: Mapping[str, Any] = field(default_factory=empty_mapping, hash=False, repr=False)  # may hold secrets
    line: int = 0
    resume: str | None = None  # how a broken stream resumes on this model; None: chosen by provider/model


@dataclass(frozen=True, slots=True)
class Route:
    name: str
    chain: tuple[str, ...]  # model aliases, routes named in the file already expanded inline
    line: int = 0


@dataclass(frozen=True, slots=True)
class Policy:
    version: int
    models: Mapping[str, ModelConfig] = field(hash=False)
    routes: Mapping[str, Route] = field(hash=False)
    source: str
    streaming: StreamingConfig = StreamingConfig()
    # The env mapping the policy was loaded with (the caller's own object, for reloads); None: os.environ.
    # It may hold secrets: never in repr, and not part of equality.
    env: Mapping[str, str] | None = field(default=None, repr=False, compare=False, hash=False)


class PolicyError(ValueError):
    """A bad policy; str() is one line: "file:line: key: what to fix (did you mean 'x'?)".

    Its own fields describe the first problem of the file; `problems` holds every problem found, in file
    order, this error first; `report()` gives them one per line.
    """

    def __init__(
        self,
        message: str,
        file: str = "<string>",
        line: int | None = None,
        key: str | None = None,
        suggestion: str | None = None,
    ):
        super().__init__(message, file, line, key, suggestion)
        self.message = message
        self.file = file
        self.line = line
        self.key = key
        self.suggestion = suggestion
        self.truncated = False  # the loader stopped looking after MAX_PROBLEMS problems
        self._more: tuple[PolicyError, ...] = ()

    @classmethod
    def of(cls, errors: Sequence[PolicyError], *, truncated: bool = False) -> PolicyError:
        """One error for several problems: the first one's fields, all of them in `problems`."""
        if not errors:
            raise ValueError("PolicyError.of needs at least one error")
        first = errors[0]
        error = cls(first.message, first.file, first.line, first.key, first.suggestion)
        error._more = tuple(errors[1:])
        error.truncated = truncated
        return error

    @property
    def problems(self) -> tuple[PolicyError, ...]:
        """Every problem found, in file order; the first is this error itself."""
        return (self, *self._more)

    def report(self) -> str:
        """All problems, one per line (the last line says so when the loader stopped early)."""
        lines = [str(problem) for problem in self.problems]
        if self.truncated:
            lines.append(f"{self.file}: stopped after {len(lines)} problems; fix these and load it again")
        return "\n".join(lines)

    def __str__(self) -> str:
        text = self.file + (f":{self.line}" if self.line is not None else "") + ": "
        text += (f"{self.key}: " if self.key else "") + self.message
        if self.suggestion:
            text += f" (did you mean '{self.suggestion}'?)"
        return text.replace("\r", "\\r").replace("\n", "\\n")


class PolicyWarning(UserWarning):
    """Something in a policy that works but should be fixed (e.g. a literal API key)."""


def load_policy(path: str | os.PathLike[str], *, env: Mapping[str, str] | None = None) -> Policy:
    """Read and validate a policy file; env (default os.environ) supplies ${VAR} references.

    Raises one PolicyError for all the problems of the file (see PolicyError.problems). The policy keeps
    `env` (the same object) as Policy.env, so that a reload can use it again."""
    from router._build import load  # YAML and the schema load with the first policy, not with `import router`

    policy, notes = load(path, env)
    _emit(notes)
    return policy


def parse_policy(text: str, *, source: str = "<string>", env: Mapping[str, str] | None = None) -> Policy:
    """Validate policy YAML given as text; source names it in errors; env as for load_policy."""
    from router._build import parse

    policy, notes = parse(text, source, env)
    _emit(notes)
    return policy


def _emit(notes: list[str]) -> None:
    for note in notes:
        warnings.warn(PolicyWarning(note), stacklevel=3)
