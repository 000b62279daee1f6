"""What the plan asks its drivers to do: every effect on the world is one of these commands.

The plan yields a command and receives its answer. Calls and sleeps are I/O or time; the breaker-store
operations are commands too, so a store that does I/O (Redis) is awaited by the async driver and called
by the sync one while the algorithm stays written once. A later `Race` (hedging: the first of several
calls to answer) fits here as one more command.

Commands are slotted dataclasses that nobody mutates, but not `frozen=True`: a request makes several, and
a frozen dataclass costs four times as much to build (0.8 µs against 0.2 µs each, on the hot path).
"""

from __future__ import annotations

from collections.abc import Awaitable, Generator, Mapping
from dataclasses import dataclass
from typing import Any, Protocol

from anthropic.types import Message

from .breaker import Admission, BreakerInfo, Lease
from .outcome import Failure
from .policy import ModelConfig
from .providers import Provider
from .queue.keeper import NotKept
from .routing import RoutedMessage
from .streaming.stitcher import Salvaged


@dataclass(frozen=True, slots=True)
class Target:
    """A model as the engine sees it: its policy entry, the provider that calls it, its credential group."""

    alias: str
    config: ModelConfig
    provider: Provider
    credentials: str  # models sharing this share an API key: an invalid key fails them all alike


@dataclass(slots=True)
class Call:
    """Call `target` once. `timeout` is the attempt's hard end (seconds from now); a stream must also
    send its response head within `first_byte` and its first content within `first_token`.

    With `admit_at`, the driver first asks the store what `Admit(alias, admit_at, timeout)` asks, and makes the
    call only if the answer is PERMIT; any other answer (OPEN, COOLING, a probe's Lease) is the reply instead.
    The plan sends this for the common attempt, where nothing is decided between the admission and the call:
    one round trip fewer, the same store operations in the same order."""

    target: Target
    params: Mapping[str, Any]  # the Messages API request for this attempt (a resumed stream's included)
    timeout: float
    probe: Lease | None
    first_byte: float | None = None
    first_token: float | None = None
    limit: str = "timeout.total"  # what set `timeout`, for the attempt record
    admit_at: float | None = None  # ask the store first (see above); None: already admitted


@dataclass(slots=True)
class Sleep:
    seconds: float


class StoreLike(Protocol):
    """The store operations' view of a breaker store: each method may return a value or an awaitable.
    A store may also offer `aadmit`, `arecord_success`, ... coroutines: the async drivers use those."""

    def admit(self, alias: str, now: float, lease_ttl: float) -> Any: ...

    def record_success(self, alias: str, now: float, *, probe: Lease | None) -> Any: ...

    def record_failure(self, alias: str, now: float, *, probe: Lease | None) -> Any: ...

    def release(self, alias: str, *, probe: Lease | None) -> Any: ...

    def cool_down(self, alias: str, until: float) -> Any: ...

    def info(self, alias: str, now: float) -> Any: ...


@dataclass(slots=True)
class Admit:
    """May `alias` be called now? Answer: Admission or Lease."""

    alias: str
    now: float
    lease_ttl: float

    def run(self, store: StoreLike) -> Admission | Lease | Awaitable[Admission | Lease]:
        result: Admission | Lease | Awaitable[Admission | Lease] = store.admit(self.alias, self.now, self.lease_ttl)
        return result

    def arun(self, store: StoreLike) -> Any:
        method = getattr(store, "aadmit", None) or store.admit  # (run()'s call, spelled out: this is every request)
        return method(self.alias, self.now, self.lease_ttl)


@dataclass(slots=True)
class Succeeded:
    alias: str
    now: float
    probe: Lease | None

    def run(self, store: StoreLike) -> Any:
        return store.record_success(self.alias, self.now, probe=self.probe)

    def arun(self, store: StoreLike) -> Any:
        method = getattr(store, "arecord_success", None) or store.record_success
        return method(self.alias, self.now, probe=self.probe)


@dataclass(slots=True)
class Failed:
    """A counted failure. Answer: True if the breaker is open afterwards."""

    alias: str
    now: float
    probe: Lease | None

    def run(self, store: StoreLike) -> Any:
        return store.record_failure(self.alias, self.now, probe=self.probe)

    def arun(self, store: StoreLike) -> Any:
        method = getattr(store, "arecord_failure", None)
        return method(self.alias, self.now, probe=self.probe) if method is not None else self.run(store)


@dataclass(slots=True)
class Release:
    """A neutral outcome: hand back the probe lease, change nothing else."""

    alias: str
    probe: Lease | None

    def run(self, store: StoreLike) -> Any:
        return store.release(self.alias, probe=self.probe)

    def arun(self, store: StoreLike) -> Any:
        method = getattr(store, "arelease", None)
        return method(self.alias, probe=self.probe) if method is not None else self.run(store)


@dataclass(slots=True)
class CoolDown:
    alias: str
    until: float

    def run(self, store: StoreLike) -> Any:
        return store.cool_down(self.alias, self.until)

    def arun(self, store: StoreLike) -> Any:
        method = getattr(store, "acool_down", None)
        return method(self.alias, self.until) if method is not None else self.run(store)


@dataclass(slots=True)
class Peek:
    """What is `alias`'s breaker doing? Answer: BreakerInfo, or None for a model the store no longer has."""

    alias: str
    now: float

    def run(self, store: StoreLike) -> BreakerInfo | Awaitable[BreakerInfo | None] | None:
        method = getattr(store, "peek", None) or store.info  # a shared store may answer from its local view
        try:
            result: BreakerInfo | Awaitable[BreakerInfo | None] | None = method(self.alias, self.now)
        except KeyError:  # removed by a reload meanwhile
            return None
        return result

    def arun(self, store: StoreLike) -> Any:
        method = getattr(store, "apeek", None) or getattr(store, "ainfo", None)
        return method(self.alias, self.now) if method is not None else self.run(store)


class Keeper(Protocol):
    """Where an exhausted request is kept (the Router's durable queue). `keep` returns the ticket id; a
    keeper may also offer an `akeep` coroutine for the async drivers."""

    def keep(self, route: str, params: Mapping[str, Any], reason: str) -> str | NotKept: ...


@dataclass(slots=True)
class Enqueue:
    """Keep the request durably (`on_exhausted: queue`). Answer: its ticket id."""

    keeper: Keeper
    route: str
    params: Mapping[str, Any]

    def run(self, store: StoreLike) -> Any:
        return self.keeper.keep(self.route, self.params, "exhausted")

    def arun(self, store: StoreLike) -> Any:
        method = getattr(self.keeper, "akeep", None)
        return method(self.route, self.params, "exhausted") if method is not None else self.run(store)


StoreOp = Admit | Succeeded | Failed | Release | CoolDown | Peek | Enqueue
Command = Call | Sleep | StoreOp
Reply = Message | Failure | Salvaged | Admission | Lease | BreakerInfo | bool | str | NotKept | None
Plan = Generator[Command, Reply, RoutedMessage]
