"""The failover policy (version 1): its public names, and load_policy/parse_policy (the reader loads lazily)."""

from __future__ import annotations

import os
import warnings
from collections.abc import Mapping

from .errors import PolicyError, PolicyWarning
from .model import (
    KNOWN_ERROR_TYPES,
    ON_INTERRUPT,
    OUTCOME_CLASSES,
    PROVIDERS,
    RESUME_METHODS,
    BackoffConfig,
    BreakerConfig,
    Exhausted,
    ModelConfig,
    Policy,
    QueueConfig,
    RedisConfig,
    RetryConfig,
    Route,
    Secret,
    StateConfig,
    StatusPageConfig,
    StreamingConfig,
    TimeoutConfig,
)

__all__ = [
    "KNOWN_ERROR_TYPES",
    "ON_INTERRUPT",
    "OUTCOME_CLASSES",
    "PROVIDERS",
    "RESUME_METHODS",
    "BackoffConfig",
    "BreakerConfig",
    "Exhausted",
    "ModelConfig",
    "Policy",
    "PolicyError",
    "PolicyWarning",
    "QueueConfig",
    "RedisConfig",
    "RetryConfig",
    "Route",
    "Secret",
    "StateConfig",
    "StatusPageConfig",
    "StreamingConfig",
    "TimeoutConfig",
    "load_policy",
    "parse_policy",
]


def load_policy(path: str | os.PathLike[str], *, env: Mapping[str, str] | None = None) -> Policy:
    """Read and validate a policy file; env (default os.environ) supplies ${VAR} references.

    Raises one PolicyError for all the problems of the file (see PolicyError.problems). The policy keeps
    `env` (the same object) as Policy.env, so that a reload can use it again."""
    from .loading import load  # YAML and the schema load with the first policy, not with `import router`

    policy, notes = load(path, env)
    _emit(notes)
    return policy


def parse_policy(text: str, *, source: str = "<string>", env: Mapping[str, str] | None = None) -> Policy:
    """Validate policy YAML given as text; source names it in errors; env as for load_policy."""
    from .loading import parse

    policy, notes = parse(text, source, env)
    _emit(notes)
    return policy


def _emit(notes: list[str]) -> None:
    for note in notes:
        warnings.warn(PolicyWarning(note), stacklevel=3)
