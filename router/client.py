"""The Router: holds a policy, its breakers and providers, reloads the policy file when it changes."""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

from . import engine
from .breaker import BreakerInfo, BreakerStore, MemoryStore, TransitionHook
from .errors import UnknownRoute
from .policy import ModelConfig, Policy, PolicyError, load_policy
from .providers import make_provider
from .record import RoutedMessage
from .stream_state import Stitcher
from .streaming import AsyncRoutedStream, RoutedStream

log = logging.getLogger("router")

DEFAULT_POLICY_PATH = os.path.join("policies", "default.yaml")
_RESERVED = {"model": "the policy chooses the model: pass route= (a route of the policy) instead of model=",
             "stream": "use Router.stream() / Router.astream() for streaming"}


@dataclass(frozen=True, slots=True)
class _Snapshot:
    """One consistent view of the policy: swapped whole on reload, so a request never sees a mix."""

    policy: Policy
    targets: Mapping[str, engine.Target]
    routes: Mapping[str, tuple[engine.Target, ...]]


def _credentials(config: ModelConfig) -> str:
    key = config.api_key.fingerprint() if config.api_key is not None else "env"
    return f"{config.provider}|{config.base_url or ''}|{key}"


def _calls_alike(a: ModelConfig, b: ModelConfig) -> bool:
    """Would a provider built for `b` make the same calls as one built for `a`?"""
    return (a.provider, a.model, a.base_url, a.api_key, a.timeout, a.outcomes, a.params, a.resume) == (
        b.provider, b.model, b.base_url, b.api_key, b.timeout, b.outcomes, b.params, b.resume
    )


def _log_transition(alias: str, old: str, new: str) -> None:
    level = logging.WARNING if new == "open" else logging.INFO
    log.log(level, "breaker %s: %s -> %s", alias, old, new)


class Router:
    """Routes Anthropic Messages requests down a policy's fallback chains, one circuit breaker per model."""

    def __init__(
        self,
        policy: Policy,
        *,
        store: BreakerStore | None = None,
        clock: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        watch: bool = True,
        on_transition: TransitionHook | None = None,
        warm_up: bool = False,
    ) -> None:
        self._clock = clock
        self._rng = rng or random.Random()
        self._on_transition = on_transition
        self._store: BreakerStore = store if store is not None else MemoryStore(self._transition)
        self._lock = threading.Lock()
        self._current = self._build(policy, None)
        if warm_up:  # import heavy provider SDKs (litellm) now instead of on their first call
            for target in self._current.targets.values():
                warm = getattr(target.provider, "warm_up", None)
                if warm is not None:
                    warm()
        self._watch_path = policy.source if watch and os.path.isfile(policy.source) else None
        self._file_stamp = self._stamp()
        self._next_check = time.monotonic() + 1.0

    @classmethod
    def from_yaml(cls, path: str | os.PathLike[str], **kwargs: Any) -> Router:
        """A Router for the policy file at `path` (watched for changes unless watch=False)."""
        return cls(load_policy(path), **kwargs)

    def __repr__(self) -> str:
        p = self._current.policy
        return f"Router({p.source!r}, models={list(p.models)}, routes={list(p.routes)})"

    @property
    def policy(self) -> Policy:
        return self._current.policy

    # -- requests ---------------------------------------------------------------------------------

    def complete(self, *, route: str = "default", timeout: float | None = None, **params: Any) -> RoutedMessage:
        """Like `anthropic.Anthropic().messages.create(...)`, served by the first model of `route` that can."""
        return engine.run(self._plan(route, timeout, params), params)

    async def acomplete(
        self, *, route: str = "default", timeout: float | None = None, **params: Any
    ) -> RoutedMessage:
        """Like `await anthropic.AsyncAnthropic().messages.create(...)`, with failover."""
        return await engine.arun(self._plan(route, timeout, params), params)

    def stream(
        self, *, route: str = "default", timeout: float | None = None, on_interrupt: str | None = None,
        **params: Any,
    ) -> RoutedStream:
        """Like `anthropic.Anthropic().messages.stream(...)`, failing over before and after the first token.

        `on_interrupt` ("resume" or "raise") overrides the policy's `streaming.on_interrupt` for this call.
        """
        stitcher = self._stitcher(on_interrupt)
        return RoutedStream(self._plan(route, timeout, params, stitcher), stitcher, params)

    def astream(
        self, *, route: str = "default", timeout: float | None = None, on_interrupt: str | None = None,
        **params: Any,
    ) -> AsyncRoutedStream:
        """Like `anthropic.AsyncAnthropic().messages.stream(...)`; use with `async with`."""
        stitcher = self._stitcher(on_interrupt)
        return AsyncRoutedStream(self._plan(route, timeout, params, stitcher), stitcher, params)

    def _stitcher(self, on_interrupt: str | None) -> Stitcher:
        mode = on_interrupt or self._current.policy.streaming.on_interrupt
        if mode not in ("resume", "raise"):
            raise ValueError(f"on_interrupt must be 'resume' or 'raise', not {mode!r}")
        return Stitcher(mode)

    def _plan(
        self, route: str, timeout: float | None, params: Mapping[str, Any], stream: Stitcher | None = None
    ) -> engine.Plan:
        if "model" in params or "stream" in params:
            name = "model" if "model" in params else "stream"
            raise TypeError(f"{name}= is not accepted here: {_RESERVED[name]}")
        snapshot = self._snapshot()
        try:
            chain = snapshot.routes[route]
        except KeyError:
            raise UnknownRoute(route, list(snapshot.routes)) from None
        deadline = self._clock() + timeout if timeout is not None else None
        return engine.plan(route, chain, self._store, self._clock, self._rng, deadline, stream)

    # -- state ------------------------------------------------------------------------------------

    def reset(self, alias: str) -> None:
        """Operator action: close `alias`'s breaker, zero its failure count, and end any cooldown a
        retry-after imposed (e.g. after a provider sent an absurd one)."""
        if alias not in self._current.policy.models:
            raise KeyError(f"no model {alias!r} in the policy; models: {', '.join(self._current.policy.models)}")
        self._store.reset(alias)

    def breakers(self) -> dict[str, BreakerInfo]:
        """The state of every model's breaker: {alias: BreakerInfo}."""
        now = self._clock()
        return {alias: self._store.info(alias, now) for alias in self._current.policy.models}

    def reload(self) -> Policy:
        """Re-read the policy file now. A bad file raises PolicyError and the running policy stays.

        The file is read with the environment the running policy was loaded with (`load_policy(path,
        env=...)`'s mapping, else os.environ as it is now)."""
        running = self._current.policy
        source = running.source
        stamp = self._stamp()  # before reading: an edit saved during the read makes the next check reload
        if not os.path.isfile(source):
            raise PolicyError(f"cannot reload: {source!r} is not a file", file=source)
        policy = load_policy(source, env=running.env)
        with self._lock:
            self._current = self._build(policy, self._current)
            self._file_stamp = stamp
        log.info("policy reloaded from %s: %d models, %d routes", source, len(policy.models), len(policy.routes))
        return policy

    def _snapshot(self) -> _Snapshot:
        if self._watch_path is not None:
            now = time.monotonic()
            if now >= self._next_check:
                self._next_check = now + 1.0
                self._check_file()
        return self._current

    def _stamp(self) -> tuple[int, int, int] | None:
        if self._watch_path is None:
            return None
        try:
            st = os.stat(self._watch_path)
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)  # the inode too: editors save by renaming a new file

    def _check_file(self) -> None:
        stamp = self._stamp()
        if stamp == self._file_stamp:
            return
        if stamp is None:
            self._file_stamp = None  # say it once; a file that comes back is loaded
            log.warning("policy file %s was deleted or cannot be read; keeping the running policy",
                        self._watch_path)
            return
        try:
            self.reload()
        except PolicyError as exc:
            self._file_stamp = stamp  # report a bad edit once, not on every check
            log.error("policy file changed but is invalid; keeping the running policy: %s", exc)

    def _build(self, policy: Policy, previous: _Snapshot | None) -> _Snapshot:
        targets: dict[str, engine.Target] = {}
        for alias, config in policy.models.items():
            old = previous.targets.get(alias) if previous else None
            if old is not None and old.config == config:
                targets[alias] = old
                continue
            if old is not None and _calls_alike(old.config, config):
                # Only breaker or retry settings changed: keep the provider and its open connections.
                self._store.configure(alias, config.breaker)
                targets[alias] = engine.Target(alias, config, old.provider, old.credentials)
                continue
            if old is not None:
                old.provider.retire()
                if (old.config.provider, old.config.model, old.config.base_url) != (
                    config.provider, config.model, config.base_url
                ):
                    self._store.forget(alias)  # a different model under the same alias: fresh breaker
            self._store.configure(alias, config.breaker)
            targets[alias] = engine.Target(alias, config, make_provider(config), _credentials(config))
        if previous is not None:
            for alias, old in previous.targets.items():
                if alias not in targets:
                    old.provider.retire()
                    self._store.forget(alias)
        routes = {name: tuple(targets[a] for a in r.chain) for name, r in policy.routes.items()}
        return _Snapshot(policy, MappingProxyType(targets), MappingProxyType(routes))

    def _transition(self, alias: str, old: str, new: str) -> None:
        _log_transition(alias, old, new)
        if self._on_transition is not None:
            self._on_transition(alias, old, new)

    # -- lifetime ---------------------------------------------------------------------------------

    def close(self) -> None:
        """Close every provider's HTTP clients."""
        for target in self._current.targets.values():
            target.provider.close()

    async def aclose(self) -> None:
        """Close every provider's HTTP clients, the async ones included (call from the event loop)."""
        for target in self._current.targets.values():
            await target.provider.aclose()

    async def __aenter__(self) -> Router:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __enter__(self) -> Router:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


_default: Router | None = None
_default_lock = threading.Lock()


def default_router() -> Router:
    """The module-level Router: built on first use from $ROUTER_POLICY, else ./policies/default.yaml."""
    global _default
    if _default is None:
        with _default_lock:
            if _default is None:
                path = os.environ.get("ROUTER_POLICY") or DEFAULT_POLICY_PATH
                if not os.path.isfile(path):
                    where = "$ROUTER_POLICY" if os.environ.get("ROUTER_POLICY") else "the default path"
                    raise PolicyError(
                        f"no policy file at {where} ({path!r}): set ROUTER_POLICY to a policy file, or create "
                        f"{DEFAULT_POLICY_PATH} (see `failover-router validate`)",
                        file=path,
                    )
                _default = Router.from_yaml(path)
    return _default


def complete(**kwargs: Any) -> RoutedMessage:
    """`Router.complete()` on the module-level default Router."""
    return default_router().complete(**kwargs)


async def acomplete(**kwargs: Any) -> RoutedMessage:
    """`Router.acomplete()` on the module-level default Router."""
    return await default_router().acomplete(**kwargs)
