"""How a request starts: its quiet first call, made before (and usually instead of) its plan."""

from __future__ import annotations

import random
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from . import plan as plans
from .commands import Call, Keeper, Plan, Target
from .events import Funnel
from .policy import Exhausted
from .streaming.stitcher import Stitcher

PlanArgs = tuple[
    str, Sequence[Target], Mapping[str, Any], Callable[[], float], random.Random, Funnel, "float | None",
    "Stitcher | None", Exhausted, "Keeper | None",
]


class Start:
    """One request, ready for a driver: its plan's arguments and, if the request is quiet, its first call.

    A quiet request (no timeout=, not a stream, nobody listening) has nothing to decide before its first
    attempt: admit the route's first model, call it if permitted. A driver makes that call before the plan
    exists. A message ends the request there: the driver records the success (as the plan's `Succeeded`)
    and returns the message with its routing record (`routing.served_deferred`). Any other answer (the
    breaker's, or a failure) starts the plan with the call's answer (`plan(made)`), and the plan goes on as
    if it had yielded the call itself (`plan.quiet_call`), so every decision stays in `router.plan`.

    Why: starting a plan (a generator driving nested generators) cost about twice the rest of a healthy
    request's routing, and several times that with the caches as cold as they are between two SDK calls.
    Most requests now never start one.
    """

    __slots__ = ("args", "at", "first")

    def __init__(self, args: PlanArgs) -> None:
        self.args = args  # plan.plan's positional arguments, `made` aside
        _, chain, _, clock, _, emit, deadline, stream, _, _ = args
        self.first: Target | None = None  # the model of the quiet first call; None: the request is not quiet
        self.at = 0.0  # when the quiet first call is admitted
        if deadline is None and stream is None and chain and not emit.listening:
            self.first, self.at = chain[0], clock()

    def call(self) -> Call:
        """The quiet first call, as the plan would have yielded it (drivers make it without building it)."""
        first = self.first
        assert first is not None
        return plans.quiet_call(first, self.args[2], first.config.timeout.total, self.at)

    def plan(self, made: plans.Made | None = None) -> Plan:
        """The request's plan; `made`: when its quiet first call was admitted, and that call's answer."""
        return plans.plan(*self.args, made)
