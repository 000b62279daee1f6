"""The policy as data: the frozen dataclasses a loaded policy is made of, and the values its keys allow."""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

PROVIDERS = ("anthropic", "litellm")
RESUME_METHODS = ("prefill", "continue", "restart")
ON_INTERRUPT = ("resume", "raise")
ON_EXHAUSTED = ("raise", "wait", "queue")
QUEUE_DRAINS = ("requests", "batch")
DEFAULT_KEEP = 7 * 86_400.0  # queue.keep: how long finished tickets stay readable
MAX_KEEP = 366 * 86_400.0
STATUS_PAGE_ACTIONS = ("open", "lower_threshold", "log")
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
class RedisConfig:
    """`state.redis`: breaker state shared through this Redis. The URL may hold a password: a Secret."""

    url: Secret
    prefix: str = "fr"
    timeout: float = 0.05  # the most one call to Redis may take before the router uses local breakers


@dataclass(frozen=True, slots=True)
class StateConfig:
    """`state:`: where breaker state lives (None: in each process's memory)."""

    redis: RedisConfig | None = None


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
class Exhausted:
    """A route's `on_exhausted`: what happens when every model of the route failed or is unavailable."""

    mode: str = "raise"  # "raise" AllModelsFailed | "wait" for a model to be callable again | "queue" durably
    wait_max: float = 30.0  # wait: the longest wait in all, within the caller's timeout=


@dataclass(frozen=True, slots=True)
class Route:
    name: str
    chain: tuple[str, ...]  # model aliases, routes named in the file already expanded inline
    line: int = 0
    on_exhausted: Exhausted = Exhausted()


@dataclass(frozen=True, slots=True)
class QueueConfig:
    """`queue:`: where requests are kept when their route is exhausted (or `submit()`ted), and for how long."""

    backend: str  # "sqlite" | "redis"
    path: str | None = None  # sqlite: the database file (relative paths: to the policy file's folder)
    url: Secret | None = None  # redis: may hold a password
    stream: str = "fr:queue"  # redis: the stream key (also the prefix of the queue's other keys)
    ttl: float = 86400.0  # a request not served within this ends as expired
    keep: float = DEFAULT_KEEP  # a finished request stays readable (result()) this long, then is purged
    lease: float = 60.0  # a worker's claim on a request; a dead worker's requests are claimed again after it
    concurrency: int = 8  # requests one worker drains at once
    attempts: int = 5  # drain rounds before a request ends as failed (each round: the route's whole chain)
    drain: str = "requests"  # how `failover-router worker` drains: "requests" one by one, or as Message "batch"es


@dataclass(frozen=True, slots=True)
class StatusPageConfig:
    """`status_page:`: a Statuspage v2 summary.json polled in the background."""

    url: str
    interval: float = 60.0
    on_incident: str = "open"  # "open" the named model's breaker | "lower_threshold" to `threshold` | "log"
    threshold: int = 1
    timeout: float = 5.0


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
    state: StateConfig = StateConfig()
    queue: QueueConfig | None = None
    status_page: StatusPageConfig | None = None
