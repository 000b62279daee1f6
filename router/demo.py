"""`failover-router demo`: an outage of the primary model played on the fake server, shown live.

Any policy can be played, but never against a real endpoint: after loading, every model of the
policy's `default` route is pointed at the fake server with a demo key (see `point_at`).
"""

from __future__ import annotations

import contextlib
import dataclasses
import math
import os
import re
import sys
import threading
import warnings
from collections.abc import Callable, Iterator, Mapping
from importlib import resources
from types import MappingProxyType
from typing import TextIO

from .clock import SYSTEM
from .demo_view import Tally, View
from .outcome import Kind
from .policy import BreakerConfig, ModelConfig, Policy, PolicyError, PolicyWarning, Route, Secret, load_policy
from .router import Router
from .routing import Attempt, RoutedMessage
from .testing import FakeServer, Fault

# What an environment variable unset on this machine reads as: shaped like a URL, so that a policy
# taking its base_url from the environment still loads (its value is replaced anyway).
PLACEHOLDER = "http://demo-placeholder.invalid"
DEMO_KEY = Secret("demo", "demo-key")
SUPPORTED = "the demo plays anthropic models, and litellm models named openai/..., on its fake server"
_DEFAULTED = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*):-")


class DemoError(Exception):
    """A policy the demo cannot play. str() is one line for the user; hint, if any, a second one."""

    def __init__(self, message: str, hint: str | None = None) -> None:
        super().__init__(message)
        self.hint = hint


def demo_policy_path() -> str:
    return str(resources.files("router").joinpath("policies/demo.yaml"))


class DemoEnv(Mapping[str, str]):
    """os.environ for loading a policy in the demo: a variable that is not set reads as PLACEHOLDER.

    Variables the file gives a default (`${VAR:-default}`) keep that default; the bundled policy's
    DEMO_BASE_URL and DEMO_API_KEY always have a value. `placeholders` lists the variables read as
    PLACEHOLDER, to name them when the policy does not load.
    """

    FIXED = MappingProxyType({"DEMO_BASE_URL": "http://127.0.0.1", "DEMO_API_KEY": "demo-key"})

    def __init__(self, defaulted: frozenset[str] = frozenset(), placeholder: str = PLACEHOLDER) -> None:
        self.defaulted = defaulted
        self.placeholder = placeholder
        self.placeholders: list[str] = []

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and (name in self.FIXED or name in os.environ or name not in self.defaulted)

    def __getitem__(self, name: str) -> str:
        if name in self.FIXED:
            return self.FIXED[name]
        if name in os.environ:
            return os.environ[name]
        if name in self.defaulted:
            raise KeyError(name)
        if name not in self.placeholders:
            self.placeholders.append(name)
        return self.placeholder

    def __iter__(self) -> Iterator[str]:
        return iter({**os.environ, **self.FIXED})

    def __len__(self) -> int:
        return len({**os.environ, **self.FIXED})


def _read_lines(path: str) -> list[str]:
    try:
        with open(path, encoding="utf-8") as handle:
            return handle.read().splitlines()
    except (OSError, ValueError):  # load_policy reports an unreadable file
        return []


def load_demo_policy(path: str | None) -> Policy:
    """The policy at path (default: the bundled demo.yaml), checked that the demo can play it."""
    file = path or demo_policy_path()
    lines = _read_lines(file)
    defaulted = frozenset(name for line in lines for name in _DEFAULTED.findall(line))
    env = DemoEnv(defaulted)
    try:
        policy = _load(file, env)
    except PolicyError as exc:
        hint = None
        if env.placeholders and str(_error(file, DemoEnv(defaulted, placeholder="1"))) != str(exc):
            hint = _placeholder_hint(exc, env.placeholders, lines)  # the error comes from a placeholder
        more = len(getattr(exc, "problems", ())) - 1
        also = f" (and {more} more: failover-router validate {file})" if more > 0 else ""
        raise DemoError(f"cannot load {file}: {exc}{also}", hint) from None
    route = policy.routes.get("default")
    if route is None:
        have = ", ".join(policy.routes)
        raise DemoError(f"{file}: no route named 'default' (routes: {have}); the demo plays the default route")
    bad = [policy.models[a] for a in route.chain if not _playable(policy.models[a])]
    if bad:
        models = ", ".join(f"'{m.alias}' ({m.provider} model {m.model})" for m in bad)
        raise DemoError(f"{file}: cannot play {models}: {SUPPORTED}")
    return policy


def _load(file: str, env: DemoEnv) -> Policy:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", PolicyWarning)  # about the real keys, which the demo never uses
        return load_policy(file, env=env)


def _error(file: str, env: DemoEnv) -> PolicyError | None:
    try:
        _load(file, env)
    except PolicyError as exc:
        return exc
    return None


def _placeholder_hint(exc: PolicyError, placeholders: list[str], lines: list[str]) -> str:
    """Which unset variables, read as PLACEHOLDER, to set (those on the error's line if any), and how."""
    if exc.line is not None and 0 < exc.line <= len(lines):
        placeholders = [name for name in placeholders if f"${{{name}" in lines[exc.line - 1]] or placeholders
    names = ", ".join(placeholders)
    verb, them = ("is", "it") if len(placeholders) == 1 else ("are", "them")
    return (f"{names} {verb} not set here, so the demo read {them} as {PLACEHOLDER}; set {them} to a "
            f"well-formed value and run again (the demo never calls anything with {them})")


def _playable(cfg: ModelConfig) -> bool:
    return cfg.provider == "anthropic" or (cfg.provider == "litellm" and cfg.model.startswith("openai/"))


def wire_model(cfg: ModelConfig) -> str:
    """The model name the fake server sees in a request from this model (litellm drops `openai/`)."""
    return cfg.model.removeprefix("openai/") if cfg.provider == "litellm" else cfg.model


def point_at(policy: Policy, url: str) -> Policy:
    """The policy's default route alone, every model of it sent to the fake server at url.

    base_url and api_key are replaced and params dropped, so nothing can reach a real endpoint. Two
    models with the same model name get distinct names, so the outage of one is not the other's.
    """
    chain = policy.routes["default"].chain
    names = [wire_model(policy.models[a]) for a in chain]
    models = {}
    for alias, name in zip(chain, names, strict=True):
        cfg = policy.models[alias]
        models[alias] = dataclasses.replace(
            cfg,
            model=cfg.model if names.count(name) == 1 else f"{cfg.model}-{alias}",
            base_url=url + "/v1" if cfg.provider == "litellm" else url,
            api_key=DEMO_KEY,
            params=MappingProxyType({}),
        )
    routes = {"default": policy.routes["default"]}
    return dataclasses.replace(policy, models=MappingProxyType(models), routes=MappingProxyType(routes))


def recovery_time(breaker: BreakerConfig, outage: float, rate: float) -> float:
    """About when the primary's breaker closes: its probes come after reset_timeout, doubling while they fail."""
    t = breaker.failure_threshold / rate  # the breaker opens
    wait = breaker.reset_timeout
    while True:
        t += wait + 1.0 / rate  # the probe goes with the first request after the wait
        if t >= outage:
            return t
        wait = min(wait * 2, breaker.max_reset_timeout)


def _warm_up(policy: Policy) -> None:
    """One request to each model, on a router of its own, before the demo's clock starts.

    The first call through an SDK sets it up (litellm's takes seconds); done during the demo, it
    would delay the first requests past the start of a short outage.
    """
    routes = {alias: Route(alias, (alias,)) for alias in policy.models}
    with Router(dataclasses.replace(policy, routes=MappingProxyType(routes)), watch=False, warm_up=True) as warm:
        for alias in routes:
            with contextlib.suppress(Exception):  # should it fail, the demo's own requests will show why
                warm.complete(route=alias, messages=[{"role": "user", "content": "warm-up"}], max_tokens=8)


class Demo:
    """One demo session: the policy pointed at the fake server, its router, and what it saw."""

    def __init__(
        self, policy: Policy, server: FakeServer, outage: float, clock: Callable[[], float] = SYSTEM.now
    ) -> None:
        self.policy = point_at(policy, server.url)
        self.server = server
        self.clock = clock
        self.chain = self.policy.routes["default"].chain
        self.primary = self.chain[0]
        self._primary_model = wire_model(self.policy.models[self.primary])
        for alias in self.chain:
            server.plan(wire_model(self.policy.models[alias]), default=Fault.ok(text=f"Hello from {alias}", delay=0.01))
        self.lock = threading.Lock()
        _warm_up(self.policy)
        self._warm_up_calls = server.count(self._primary_model)
        self.router = Router(self.policy, on_transition=self._on_transition, watch=False, warm_up=True, clock=clock)
        server.plan(self._primary_model, default=Fault.status(500, message="the demo's outage"))
        now = clock()
        self.tally = Tally(started=now, outage_end=now + outage)
        self.outage_over = False

    def __enter__(self) -> Demo:
        return self

    def __exit__(self, *exc: object) -> None:
        self.router.close()

    def _on_transition(self, alias: str, old: str, new: str) -> None:
        with self.lock:
            self.tally.transitions.append((self.clock(), alias, old, new))

    def end_outage(self, view: View) -> None:
        self.server.plan(self._primary_model, default=Fault.ok(text=f"Hello from {self.primary}", delay=0.01))
        self.outage_over = True
        view.note(f"[{self.tally.at(self.clock()):5.1f}s] outage over: {self.primary} answers again")

    def request(self, view: View) -> None:
        """Send one request down the default route and record who served it."""
        tally, t = self.tally, self.clock()
        try:
            msg: RoutedMessage = self.router.complete(messages=[{"role": "user", "content": "Hi"}], max_tokens=64)
        except Exception as exc:  # the demo reports every failure instead of stopping
            with self.lock:
                tally.failed += 1
                tally.timeline.append("!")
            view.note(f"[{tally.at(self.clock()):5.1f}s] request FAILED: {type(exc).__name__}")
            return
        routing = msg.routing
        with self.lock:
            tally.served[routing.model] = tally.served.get(routing.model, 0) + 1
            tally.timeline.append(routing.model)
            tally.probes += sum(1 for a in routing.attempts if a.probe)
            if routing.model == self.primary and t >= tally.outage_end and tally.recovered_at is None:
                tally.recovered_at = t
        view.request(self.clock(), routing.model, _describe(routing.attempts))  # when it was answered

    def primary_failures(self) -> int:
        """Calls the primary received that did not serve a request: the price of the outage."""
        calls = self.server.count(self._primary_model) - self._warm_up_calls
        return calls - self.tally.served.get(self.primary, 0)


def run_demo(
    *,
    policy_path: str | None = None,
    outage: float = 5.0,
    duration: float = 11.0,
    rate: float = 12.0,
    plain: bool | None = None,
    out: TextIO | None = None,
) -> int:
    """Play the demo; the exit status is 0 when no request failed. Raises DemoError for a policy it cannot play."""
    out = out or sys.stdout
    plain = (not out.isatty()) if plain is None else plain
    policy = load_demo_policy(policy_path)
    with FakeServer() as server, Demo(policy, server, outage) as demo:
        view = View(demo.router, demo.tally, demo.chain, outage, duration, plain, out)
        view.advice = _duration_advice(demo, outage, duration, rate)
        with view:
            _play(demo, view, duration, rate)
        return view.summary(demo.primary_failures())


def _play(demo: Demo, view: View, duration: float, rate: float) -> None:
    interval = 1.0 / rate
    next_at = demo.clock()
    while True:
        t = demo.clock()
        if not demo.outage_over and t >= demo.tally.outage_end:
            demo.end_outage(view)
        if t - demo.tally.started >= duration:
            return
        demo.request(view)
        next_at += interval
        SYSTEM.sleep(max(0.0, next_at - demo.clock()))


def _duration_advice(demo: Demo, outage: float, duration: float, rate: float) -> str | None:
    breaker = demo.policy.models[demo.primary].breaker
    close = recovery_time(breaker, outage, rate)
    if close < duration - 0.5:
        return None
    return (f"{demo.primary}'s breaker should close at about {close:.0f}s (it probes {breaker.reset_timeout:g}s "
            f"after opening, doubling after each failed probe): try --duration {math.ceil(close + 2)}")


def _describe(attempts: tuple[Attempt, ...]) -> str:
    parts = []
    for a in attempts:
        probe = " (probe)" if a.probe else ""
        if a.outcome is Kind.SUCCESS:
            parts.append(f"{a.model} ✓{probe}")
        elif a.outcome is Kind.BREAKER_OPEN:
            parts.append(f"{a.model} skipped (open)")
        else:
            parts.append(f"{a.model} ✗ {a.status or a.error_type}{probe}")
    return " → ".join(parts)
