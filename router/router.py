"""`Router`: the request API over a live policy, its breaker store, its clock and its event listeners."""

from __future__ import annotations

import asyncio
import logging
import os
import random
from collections.abc import Callable, Mapping
from typing import TYPE_CHECKING, Any

from . import drivers, plan
from .breaker import BreakerInfo, BreakerStore, MemoryStore, TransitionHook
from .clock import SYSTEM, Clock, as_clock
from .commands import Plan
from .errors import UnknownRoute
from .events import BreakerTransition, Event, Funnel, Listener
from .policy import Policy, load_policy
from .providers import make_provider
from .queue.api import QueueMethods, override
from .queue.store import QueueStore
from .reloading import LivePolicy, ProviderFactory, Snapshot
from .routing import RoutedMessage, refuse_reserved
from .start import Start
from .streaming.routed import AsyncRoutedStream, RoutedStream
from .streaming.stitcher import Stitcher

if TYPE_CHECKING:
    from .status_page import StatusPageWatcher

log = logging.getLogger("router")

class _TransitionAdapter:
    """The `on_transition=(alias, old, new)` hook of earlier versions, as a listener."""

    def __init__(self, hook: TransitionHook) -> None:
        self.hook = hook

    def __call__(self, event: Event) -> None:
        if isinstance(event, BreakerTransition):
            self.hook(event.model, event.old, event.new)


class Router(QueueMethods):
    """Routes Anthropic Messages requests down a policy's fallback chains, one circuit breaker per model.

    `clock` is where all of its time comes from (a `router.clock.Clock`, or a bare monotonic `now`
    function); `provider_factory` builds the provider of each model (the default calls the real SDKs).
    `worker=True` also drains the durable queue in a background thread (a `router.queue.worker.Worker`
    with the policy's `queue:` settings) until close()."""

    def __init__(
        self,
        policy: Policy,
        *,
        store: BreakerStore | None = None,
        clock: Clock | Callable[[], float] | None = None,
        rng: random.Random | None = None,
        watch: bool = True,
        on_transition: TransitionHook | None = None,
        warm_up: bool = False,
        provider_factory: ProviderFactory | None = None,
        queue: QueueStore | None = None,
        worker: bool = False,
    ) -> None:
        self._clock = as_clock(clock)
        self._rng = rng or random.Random()
        self._events = Funnel(self._clock.now)
        self._owns_store = store is None  # a store the caller passed may serve other Routers: theirs to close
        self._store: BreakerStore = store if store is not None else self._store_for(policy)
        subscribe = getattr(self._store, "subscribe", None)
        if subscribe is not None:  # every store that can tell its transitions tells them to the funnel
            subscribe(self._events.transition)
        if on_transition is not None:
            self._events.add(_TransitionAdapter(on_transition))
        self._live = LivePolicy(policy, self._store, provider_factory or make_provider, self._clock.now, watch)
        self._keeper = self._keeper_for(policy, queue)
        self._status_page = self._watch_status_page(policy)
        if worker and self._keeper is None:
            raise ValueError("worker=True needs a queue: give the policy a queue: section (or Router(queue=))")
        if warm_up:  # import heavy provider SDKs (litellm) now instead of on their first call
            for target in self._live.snapshot.targets.values():
                warm = getattr(target.provider, "warm_up", None)
                if warm is not None:
                    warm()
        self._worker = self._start_worker() if worker else None

    def _start_worker(self) -> Any:
        """`worker=True`: a Worker thread drains this Router's queue until close()."""
        from .queue.worker import Worker

        return Worker(self).start()

    def _store_for(self, policy: Policy) -> BreakerStore:
        """The policy's `state:` store (chosen once, when the Router is built), else breakers in memory."""
        redis = policy.state.redis
        if redis is None:
            return MemoryStore()
        from .redis_store import RedisStore

        return RedisStore(redis.url.reveal(), prefix=redis.prefix, timeout=redis.timeout, now=self._clock.now)

    def _watch_status_page(self, policy: Policy) -> StatusPageWatcher | None:
        """The `status_page:` poller, on its own daemon thread (polled by hand under a virtual clock)."""
        if policy.status_page is None:
            return None
        if not hasattr(self._store, "trip"):
            log.warning("status_page: the breaker store %s cannot trip breakers; the page is only logged",
                        type(self._store).__name__)
            return None
        from .status_page import start_watcher

        background = self._clock.sleep is SYSTEM.sleep
        return start_watcher(policy.status_page, lambda: self._live.snapshot.policy.models, self._store,  # type: ignore[arg-type]
                             self._clock, background=background)

    @property
    def status_page(self) -> StatusPageWatcher | None:
        """The status page watcher (`.last`: what the page said at the last poll); None without `status_page:`."""
        return self._status_page
    @classmethod
    def from_yaml(cls, path: str | os.PathLike[str], **kwargs: Any) -> Router:
        """A Router for the policy file at `path` (watched for changes unless watch=False)."""
        return cls(load_policy(path), **kwargs)

    def __repr__(self) -> str:
        p = self._live.snapshot.policy
        return f"Router({p.source!r}, models={list(p.models)}, routes={list(p.routes)})"

    @property
    def policy(self) -> Policy:
        return self._live.snapshot.policy

    @property
    def _current(self) -> Snapshot:
        return self._live.snapshot

    # -- requests ---------------------------------------------------------------------------------

    def complete(
        self, *, route: str = "default", timeout: float | None = None, on_exhausted: str | None = None,
        **params: Any,
    ) -> RoutedMessage:
        """Like `anthropic.Anthropic().messages.create(...)`, served by the first model of `route` that can.

        `on_exhausted` ("raise", "wait" or "queue") overrides the route's `on_exhausted` for this call."""
        return drivers.serve(self._start(route, timeout, params, None, on_exhausted), self._store, self._clock)

    async def acomplete(
        self, *, route: str = "default", timeout: float | None = None, on_exhausted: str | None = None,
        **params: Any,
    ) -> RoutedMessage:
        """Like `await anthropic.AsyncAnthropic().messages.create(...)`, with failover."""
        start = self._start(route, timeout, params, None, on_exhausted)
        return await drivers.aserve(start, self._store, self._clock)

    def stream(
        self, *, route: str = "default", timeout: float | None = None, on_interrupt: str | None = None,
        **params: Any,
    ) -> RoutedStream:
        """Like `anthropic.Anthropic().messages.stream(...)`, failing over before and after the first token.

        `on_interrupt` ("resume" or "raise") overrides the policy's `streaming.on_interrupt` for this call.
        """
        stitcher = self._stitcher(on_interrupt)
        steps = self._plan(route, timeout, params, stitcher)
        return RoutedStream(steps, stitcher, self._store, self._clock)

    def astream(
        self, *, route: str = "default", timeout: float | None = None, on_interrupt: str | None = None,
        **params: Any,
    ) -> AsyncRoutedStream:
        """Like `anthropic.AsyncAnthropic().messages.stream(...)`; use with `async with`."""
        stitcher = self._stitcher(on_interrupt)
        steps = self._plan(route, timeout, params, stitcher)
        return AsyncRoutedStream(steps, stitcher, self._store, self._clock)

    def _stitcher(self, on_interrupt: str | None) -> Stitcher:
        mode = on_interrupt or self._live.snapshot.policy.streaming.on_interrupt
        if mode not in ("resume", "raise"):
            raise ValueError(f"on_interrupt must be 'resume' or 'raise', not {mode!r}")
        return Stitcher(mode)

    def _plan(self, route: str, timeout: float | None, params: Mapping[str, Any], stream: Stitcher | None = None,
              on_exhausted: str | None = None) -> Plan:
        return self._start(route, timeout, params, stream, on_exhausted).plan()

    def _start(self, route: str, timeout: float | None, params: Mapping[str, Any], stream: Stitcher | None = None,
               on_exhausted: str | None = None) -> Start:
        if "model" in params or "stream" in params:
            refuse_reserved(params)
        snapshot = self._live.current()
        try:
            chain = snapshot.routes[route]
        except KeyError:
            raise UnknownRoute(route, list(snapshot.routes)) from None
        exhausted = snapshot.policy.routes[route].on_exhausted
        if on_exhausted is not None and on_exhausted != exhausted.mode:
            exhausted = override(exhausted, on_exhausted, self._keeper is not None)
        now = self._clock.now
        deadline = now() + timeout if timeout is not None else None
        return Start((route, chain, params, now, self._rng, self._events, deadline, stream, exhausted, self._keeper))

    def _serve_batched(self, route: str, params: Mapping[str, Any]) -> RoutedMessage:
        return self.complete(route=route, on_exhausted="raise", **params)

    def ready_in(self, route: str = "default") -> float | None:
        """Seconds until some model of `route` may be tried (0: now); None if every one is held open."""
        now = self._clock.now()
        soonest: float | None = None
        for target in self._live.snapshot.routes[route]:
            info = self._store.info(target.alias, now)
            if info.forced:
                continue
            wait = max(0.0, plan.next_chance(info, now) - now)
            soonest = wait if soonest is None else min(soonest, wait)
        return soonest

    # -- events -----------------------------------------------------------------------------------

    def add_listener(self, listener: Listener) -> None:
        """Call `listener(event)` with every event (`router.events`): attempts started and ended, breaker
        transitions, failovers, resumed streams, finished requests. One that raises is logged and ignored."""
        self._events.add(listener)

    def remove_listener(self, listener: Listener) -> None:
        self._events.remove(listener)

    # -- state ------------------------------------------------------------------------------------

    def _known(self, alias: str) -> str:
        models = self._live.snapshot.policy.models
        if alias not in models:
            raise KeyError(f"no model {alias!r} in the policy; models: {', '.join(models)}")
        return alias

    def reset(self, alias: str) -> None:
        """Operator action: close `alias`'s breaker, zero its failure count, and end any cooldown a
        retry-after imposed (e.g. after a provider sent an absurd one)."""
        self._store.reset(self._known(alias))

    def force_open(self, alias: str) -> None:
        """Operator action: send `alias` no traffic at all (no probe either) until force_close() or reset()."""
        self._store.force_open(self._known(alias), self._clock.now())

    def force_close(self, alias: str) -> None:
        """Operator action: close `alias`'s breaker now and zero its count (a retry-after cooldown stays)."""
        self._store.force_close(self._known(alias))

    def breakers(self) -> dict[str, BreakerInfo]:
        """The state of every model's breaker: {alias: BreakerInfo}."""
        now = self._clock.now()
        return {alias: self._store.info(alias, now) for alias in self._live.snapshot.policy.models}

    def reload(self) -> Policy:
        """Re-read the policy file now. A bad file raises PolicyError and the running policy stays.

        The file is read with the environment the running policy was loaded with (`load_policy(path,
        env=...)`'s mapping, else os.environ as it is now)."""
        return self._live.reload()

    def _check_file(self) -> None:
        self._live.check_file()

    # -- lifetime ---------------------------------------------------------------------------------

    def close(self) -> None:
        """Close every provider's HTTP clients (and the breaker store the Router made from its policy)."""
        if self._status_page is not None:
            self._status_page.stop()
        self._stop_worker()
        for target in self._live.snapshot.targets.values():
            target.provider.close()
        self._close_store()

    async def aclose(self) -> None:
        """Close every provider's HTTP clients, the async ones included (call from the event loop)."""
        if self._status_page is not None:
            self._status_page.stop()
        await asyncio.to_thread(self._stop_worker)
        for target in self._live.snapshot.targets.values():
            await target.provider.aclose()
        aclose = getattr(self._store, "aclose", None)
        if self._owns_store and aclose is not None:
            await aclose()
        else:
            self._close_store()

    def _close_store(self) -> None:
        close = getattr(self._store, "close", None)
        if self._owns_store and close is not None:
            close()
        if self._keeper is not None and self._owns_queue:
            self._keeper.store.close()

    async def __aenter__(self) -> Router:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    def __enter__(self) -> Router:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
