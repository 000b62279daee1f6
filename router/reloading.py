"""A policy kept current: the file watch, reloads, and reconciling providers and breakers with each edit."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from types import MappingProxyType

from .breaker import BreakerStore
from .commands import Target
from .policy import ModelConfig, Policy, PolicyError, load_policy
from .providers import Provider

log = logging.getLogger("router")

ProviderFactory = Callable[[ModelConfig], Provider]
_CHECK_EVERY = 1.0  # seconds between looks at the policy file


@dataclass(frozen=True, slots=True)
class Snapshot:
    """One consistent view of the policy: swapped whole on reload, so a request never sees a mix."""

    policy: Policy
    targets: Mapping[str, Target]
    routes: Mapping[str, tuple[Target, ...]]


def _credentials(config: ModelConfig) -> str:
    key = config.api_key.fingerprint() if config.api_key is not None else "env"
    return f"{config.provider}|{config.base_url or ''}|{key}"


def _calls_alike(a: ModelConfig, b: ModelConfig) -> bool:
    """Would a provider built for `b` make the same calls as one built for `a`?"""
    return (a.provider, a.model, a.base_url, a.api_key, a.timeout, a.outcomes, a.params, a.resume) == (
        b.provider, b.model, b.base_url, b.api_key, b.timeout, b.outcomes, b.params, b.resume
    )


class LivePolicy:
    """The running policy of one Router: what `current()` returns is always a whole, valid Snapshot."""

    def __init__(
        self, policy: Policy, store: BreakerStore, make_provider: ProviderFactory, now: Callable[[], float],
        watch: bool,
    ) -> None:
        self._store = store
        self._make_provider = make_provider
        self._now = now
        self._lock = threading.Lock()
        self._current = self._build(policy, None)
        self._watch_path = policy.source if watch and os.path.isfile(policy.source) else None
        self._file_stamp = self._stamp()
        self._next_check = now() + _CHECK_EVERY

    def current(self) -> Snapshot:
        """The snapshot to serve a request from; looks at the policy file at most once a second."""
        if self._watch_path is not None:
            now = self._now()
            if now >= self._next_check:
                self._next_check = now + _CHECK_EVERY
                self.check_file()
        return self._current

    @property
    def snapshot(self) -> Snapshot:
        return self._current

    def reload(self) -> Policy:
        """Re-read the policy file now, with the environment the running policy was loaded with."""
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

    def _stamp(self) -> tuple[int, int, int] | None:
        if self._watch_path is None:
            return None
        try:
            st = os.stat(self._watch_path)
        except OSError:
            return None
        return (st.st_mtime_ns, st.st_size, st.st_ino)  # the inode too: editors save by renaming a new file

    def check_file(self) -> None:
        """Reload if the file changed; a bad edit or a deleted file is logged once and the policy stays."""
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

    def _build(self, policy: Policy, previous: Snapshot | None) -> Snapshot:
        """The snapshot for `policy`: unchanged models keep their provider and breaker, changed ones get new
        ones (the old provider closes once its calls in flight are done), removed ones are forgotten."""
        targets: dict[str, Target] = {}
        for alias, config in policy.models.items():
            old = previous.targets.get(alias) if previous else None
            if old is not None and old.config == config:
                targets[alias] = old
                continue
            if old is not None and _calls_alike(old.config, config):
                # Only breaker or retry settings changed: keep the provider and its open connections.
                self._store.configure(alias, config.breaker)
                targets[alias] = Target(alias, config, old.provider, old.credentials)
                continue
            if old is not None:
                old.provider.retire()
                if (old.config.provider, old.config.model, old.config.base_url) != (
                    config.provider, config.model, config.base_url
                ):
                    self._store.forget(alias)  # a different model under the same alias: fresh breaker
            self._store.configure(alias, config.breaker)
            targets[alias] = Target(alias, config, self._make_provider(config), _credentials(config))
        if previous is not None:
            for alias, old in previous.targets.items():
                if alias not in targets:
                    old.provider.retire()
                    self._store.forget(alias)
        routes = {name: tuple(targets[a] for a in r.chain) for name, r in policy.routes.items()}
        return Snapshot(policy, MappingProxyType(targets), MappingProxyType(routes))
