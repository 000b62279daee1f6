"""`failover-router demo`: an outage of the primary model played on the fake server, shown live."""

from __future__ import annotations

import os
import sys
import threading
import time
from importlib import resources
from typing import TextIO

from .client import Router
from .demo_view import Tally, View
from .outcome import Kind
from .policy import load_policy
from .record import RoutedMessage
from .testing import FakeServer, Fault


def demo_policy_path() -> str:
    return str(resources.files("router").joinpath("policies/demo.yaml"))


def run_demo(
    *,
    policy_path: str | None = None,
    outage: float = 5.0,
    duration: float = 11.0,
    rate: float = 12.0,
    plain: bool | None = None,
    out: TextIO | None = None,
) -> int:
    out = out or sys.stdout
    plain = (not out.isatty()) if plain is None else plain
    with FakeServer() as server:
        policy = load_policy(
            policy_path or demo_policy_path(),
            env={"DEMO_API_KEY": "demo-key", **os.environ, "DEMO_BASE_URL": server.url},
        )
        primary_alias = policy.routes["default"].chain[0]
        primary = policy.models[primary_alias].model
        for alias, cfg in policy.models.items():
            server.plan(cfg.model, default=Fault.ok(text=f"Hello from {alias}", delay=0.01))
        server.plan(primary, default=Fault.status(500, message="the demo's outage"))
        lock = threading.Lock()
        now = time.monotonic()
        tally = Tally(started=now, outage_end=now + outage)

        def on_transition(alias: str, old: str, new: str) -> None:
            with lock:
                tally.transitions.append((time.monotonic(), alias, old, new))

        with Router(policy, on_transition=on_transition, watch=False) as router:
            view = View(router, tally, primary_alias, outage, duration, plain, out)
            outage_over = False
            interval = 1.0 / rate
            next_at = time.monotonic()
            with view:
                while True:
                    t = time.monotonic()
                    if not outage_over and t >= tally.outage_end:
                        server.plan(primary, default=Fault.ok(text=f"Hello from {primary_alias}", delay=0.01))
                        outage_over = True
                        view.note(f"[{tally.at(t):5.1f}s] outage over: {primary_alias} answers again")
                    if t - tally.started >= duration:
                        break
                    _one_request(router, tally, primary_alias, lock, view)
                    next_at += interval
                    time.sleep(max(0.0, next_at - time.monotonic()))
            primary_failures = _primary_failures(server, primary, primary_alias, tally)
        return view.summary(primary_failures)


def _one_request(router: Router, tally: Tally, primary: str, lock: threading.Lock, view: View) -> None:
    t = time.monotonic()
    try:
        msg: RoutedMessage = router.complete(messages=[{"role": "user", "content": "Hi"}], max_tokens=64)
    except Exception as exc:  # the demo reports every failure instead of stopping
        with lock:
            tally.failed += 1
            tally.timeline.append("!")
        view.note(f"[{tally.at(t):5.1f}s] request FAILED: {type(exc).__name__}")
        return
    routing = msg.routing
    with lock:
        tally.served[routing.model] = tally.served.get(routing.model, 0) + 1
        tally.timeline.append(routing.model)
        tally.probes += sum(1 for a in routing.attempts if a.probe)
        if routing.model == primary and t >= tally.outage_end and tally.recovered_at is None:
            tally.recovered_at = t
    view.request(t, routing.model, _describe(routing.attempts))


def _describe(attempts: tuple[object, ...]) -> str:
    parts = []
    for a in attempts:
        outcome: Kind = a.outcome  # type: ignore[attr-defined]
        model: str = a.model  # type: ignore[attr-defined]
        probe = " (probe)" if a.probe else ""  # type: ignore[attr-defined]
        if outcome is Kind.SUCCESS:
            parts.append(f"{model} ✓{probe}")
        elif outcome is Kind.BREAKER_OPEN:
            parts.append(f"{model} skipped (open)")
        else:
            parts.append(f"{model} ✗ {a.status or a.error_type}{probe}")  # type: ignore[attr-defined]
    return " → ".join(parts)


def _primary_failures(server: FakeServer, primary_model: str, primary_alias: str, tally: Tally) -> int:
    """Calls the primary received that did not serve a request: the price of the outage."""
    return server.count(primary_model) - tally.served.get(primary_alias, 0)
