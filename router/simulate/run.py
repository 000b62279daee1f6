"""Running a timeline: the real Router on a virtual loop with fake models, and what happened, as frozen records."""

from __future__ import annotations

import random
from collections.abc import Iterator, Mapping
from contextvars import ContextVar
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any

from ..events import AttemptStarted, BreakerTransition, Event, RequestEnded
from ..policy import ModelConfig, Policy
from ..router import Router
from ..routing import Attempt
from .fakes import FakeModel, SimulatedError
from .loop import Job, VirtualLoop
from .timeline import Request, Timeline, Window

PARAMS: dict[str, Any] = {"messages": [{"role": "user", "content": "Hi"}], "max_tokens": 256}


@dataclass(frozen=True, slots=True)
class RequestResult:
    """One request: when it was sent, who served it (None: it failed for the caller, with `error`), every
    attempt of it (models passed over included) and when it ended."""

    index: int
    at: float
    route: str
    stream: bool
    model: str | None
    error: str | None
    attempts: tuple[Attempt, ...]
    ended: float


@dataclass(frozen=True, slots=True)
class Transition:
    """`model`'s breaker went from `old` to `new` at virtual time `at`."""

    at: float
    model: str
    old: str
    new: str


@dataclass(frozen=True, slots=True)
class WindowCalls:
    """The calls `model` received during one of its fault windows (`probes` of them half-open probes)."""

    model: str
    window: Window
    calls: int
    probes: int


@dataclass(frozen=True, slots=True)
class Simulation:
    """Everything a run saw. `calls` counts the requests each model was sent in all; `end` is when the last
    request ended; `peak_in_flight` the most requests under way at one instant."""

    policy: Policy
    timeline: Timeline
    requests: tuple[RequestResult, ...]
    transitions: tuple[Transition, ...]
    windows: tuple[WindowCalls, ...]
    calls: Mapping[str, int] = field(hash=False)
    end: float
    peak_in_flight: int


class _Box:
    """Where a request's RequestEnded event lands (one per request, in its own context)."""

    __slots__ = ("ended",)

    def __init__(self) -> None:
        self.ended: RequestEnded | None = None


_BOX: ContextVar[_Box | None] = ContextVar("router_simulate_request", default=None)


class _Recorder:
    """The Router listener: breaker transitions, calls per model and per fault window, each request's end."""

    def __init__(self, timeline: Timeline, policy: Policy) -> None:
        self.timeline = timeline
        self.transitions: list[Transition] = []
        self.calls = dict.fromkeys(policy.models, 0)
        self.window_calls = {a: [0] * len(timeline.model(a).windows) for a in policy.models}
        self.window_probes = {a: [0] * len(timeline.model(a).windows) for a in policy.models}

    def __call__(self, event: Event) -> None:
        if isinstance(event, AttemptStarted):
            self.calls[event.model] += 1
            plan = self.timeline.models.get(event.model)
            if plan is not None and plan.windows:
                i = plan.window_at(event.at)
                if i is not None:
                    self.window_calls[event.model][i] += 1
                    if event.probe:
                        self.window_probes[event.model][i] += 1
        elif isinstance(event, RequestEnded):
            box = _BOX.get()
            if box is not None:
                box.ended = event
        elif isinstance(event, BreakerTransition):
            self.transitions.append(Transition(event.at, event.model, event.old, event.new))

    def windows(self) -> tuple[WindowCalls, ...]:
        out = []
        for alias, plan in self.timeline.models.items():
            for i, window in enumerate(plan.windows):
                out.append(WindowCalls(alias, window, self.window_calls[alias][i], self.window_probes[alias][i]))
        return tuple(sorted(out, key=lambda w: (w.window.start, w.model)))


async def _request(router: Router, results: list[RequestResult | None], index: int, req: Request) -> None:
    """Send one request the way a caller would, and record how it went."""
    box = _Box()
    _BOX.set(box)
    error: str | None = None
    try:
        if req.stream:
            async with router.astream(route=req.route, timeout=req.timeout, **PARAMS) as stream:
                await stream.get_final_message()
        else:
            await router.acomplete(route=req.route, timeout=req.timeout, **PARAMS)
    except SimulatedError as exc:  # a failure the router raises as it is (a 400): the SDK's own error
        error = exc.sdk_name
    except Exception as exc:
        error = type(exc).__name__
    ended = box.ended
    if ended is None:  # failed before its plan began (not reached: the timeline's routes are checked)
        results[index] = RequestResult(index, req.at, req.route, req.stream, None, error or "?", (), req.at)
        return
    results[index] = RequestResult(index, req.at, req.route, req.stream, ended.model, error if ended.model is None
                                   else None, ended.attempts, ended.at)


def simulate(policy: Policy, timeline: Timeline) -> Simulation:
    """Play `timeline` against `policy` with the real Router: every model a FakeModel, all time virtual."""
    loop = VirtualLoop()
    clock = loop.clock()
    recorder = _Recorder(timeline, policy)

    def fake(config: ModelConfig) -> FakeModel:
        return FakeModel(config, timeline.model(config.alias), clock)

    router = Router(policy, clock=clock, provider_factory=fake, watch=False, rng=random.Random(timeline.seed))
    router.add_listener(recorder)
    results: list[RequestResult | None] = [None] * len(timeline.requests)

    def arrivals() -> Iterator[tuple[float, Job]]:
        for index, req in enumerate(timeline.requests):
            yield req.at, _request(router, results, index, req)

    try:
        loop.run(arrivals())
    finally:
        router.close()
    done = tuple(r for r in results if r is not None)
    return Simulation(
        policy=policy, timeline=timeline, requests=done, transitions=tuple(recorder.transitions),
        windows=recorder.windows(), calls=MappingProxyType(recorder.calls), end=loop.now(),
        peak_in_flight=loop.peak,
    )
