"""Reading a timeline YAML file into a `Timeline`, checked against the policy: errors name file, line and key."""

from __future__ import annotations

import itertools
import math
import os
import re
from collections.abc import Collection, Mapping
from types import MappingProxyType
from typing import NoReturn

from ..policy.durations import parse_duration
from ..policy.problems import Findings, Problem, suggest
from ..policy.yaml_nodes import MAX_BYTES, Map, Node, Scalar, Seq, describe, join, read
from .timeline import (
    DEFAULT_AFTER,
    DEFAULT_LATENCY,
    Fault,
    ModelTimeline,
    Request,
    Requests,
    Timeline,
    TimelineError,
    Window,
    count,
)

MAX_REQUESTS = 5_000_000
MAX_SECONDS = 7 * 86_400.0  # a week of virtual time
TOP_KEYS = ("description", "seed", "latency", "requests", "models")
REQUESTS_KEYS = ("rate", "duration", "times", "stream", "route", "timeout")
REQUEST_KEYS = ("at", "stream", "route", "timeout")
MODEL_KEYS = ("latency", "faults")
WINDOW_KEYS = ("from", "to", "fault", "retry_after")
WORD_FAULTS = {"ok": Fault("ok"), "reset": Fault("reset"), "hang": Fault("hang"), "stream_break": Fault("stream_break")}
FAULT_WORDS = tuple(WORD_FAULTS)
FAULT_KEYS = ("hang", "slow", "stream_break")
FAULT_FORMS = ("a status code (500, 529, 429, 401, 400, ...), reset, hang, ok, stream_break, "
               "or one of {hang: 30s}, {slow: 2s}, {stream_break: {after: 3}}")
RATE_FORMS = "a number of requests a second, or a string like '50/s', '600/m', '100/h'"
_RATE = re.compile(r"\s*(\d+(?:\.\d*)?|\.\d+)\s*/\s*(s|sec|second|m|min|minute|h|hour)\s*")
DURATION_FORMS = "a number of seconds or a string like '500ms', '30s', '5m', '1h', '1h30m', '2m30.5s'"
_PART = re.compile(r"(\d+(?:\.\d*)?|\.\d+)(ms|h|m|s)")
_UNITS = {"h": 3600.0, "m": 60.0, "s": 1.0, "ms": 0.001}
_PER = {"s": 1.0, "sec": 1.0, "second": 1.0, "m": 60.0, "min": 60.0, "minute": 60.0, "h": 3600.0, "hour": 3600.0}


def load_timeline(path: str | os.PathLike[str], models: Collection[str], routes: Collection[str]) -> Timeline:
    """Read and check the timeline file at `path` for a policy with these model aliases and routes."""
    file = os.fspath(path)
    file = file if isinstance(file, str) else os.fsdecode(file)
    try:
        with open(file, "rb") as handle:
            data = handle.read(MAX_BYTES + 1)
    except FileNotFoundError:
        raise TimelineError("no such timeline file", file) from None
    except OSError as e:
        raise TimelineError(f"cannot read the timeline file: {e.strerror or e}", file) from None
    if len(data) > MAX_BYTES:
        raise TimelineError(f"the timeline is larger than {MAX_BYTES // 1024} KiB", file)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        raise TimelineError(f"not UTF-8 text (binary data at byte {e.start}?)", file) from None
    return parse_timeline(text, models, routes, source=file)


def parse_timeline(
    text: str, models: Collection[str], routes: Collection[str], *, source: str = "<string>"
) -> Timeline:
    """Check timeline YAML given as text; raises TimelineError for its first problem."""
    found = Findings(source, limit=None)
    problem: Problem | None = None
    try:
        root = read(text, {}, found)
    except Problem as p:
        problem = p
    if problem is None and found.problems:
        problem = min(found.problems, key=lambda p: p.line or 0)
    if problem is not None:  # raised here, not inside the except: no YAML error rides along as __context__
        raise TimelineError(problem.message, source, problem.line, problem.key, problem.suggestion)
    if root is None:
        raise TimelineError("the timeline is empty: it needs at least 'requests:'", source, 1)
    return _Reader(source, models, routes).timeline(root)


def seconds_of(value: object) -> float | None:
    """Seconds for a duration: the policy's forms, and compound ones ('1h30m', '2m30s', '1s500ms')."""
    single = parse_duration(value)
    if single is not None or not isinstance(value, str) or len(value) > 64:
        return single
    text, total, pos, last = value.strip(), 0.0, 0, -1
    order = list(_UNITS)
    while pos < len(text):
        part = _PART.match(text, pos)
        if part is None or order.index(part.group(2)) <= last:
            return None  # not a duration, or units out of order ('30s1m') or repeated
        last = order.index(part.group(2))
        total += float(part.group(1)) * _UNITS[part.group(2)]
        pos = part.end()
    return total if pos and math.isfinite(total) else None


def _shown(node: Node) -> str:
    if isinstance(node, Scalar) and node.value is not None and not isinstance(node.value, bool):
        raw = node.raw if len(node.raw) <= 40 else node.raw[:37] + "..."
        return repr(raw) if isinstance(node.value, str) else raw
    return describe(node)


class _Reader:
    """Reads one timeline; stops at its first problem (TimelineError)."""

    def __init__(self, file: str, models: Collection[str], routes: Collection[str]) -> None:
        self.file = file
        self.models = models
        self.routes = routes

    def fail(self, message: str, line: int | None, key: str | None, suggestion: str | None = None) -> NoReturn:
        raise TimelineError(message, self.file, line, key, suggestion)

    def fields(self, node: Node, key: str, allowed: tuple[str, ...]) -> Mapping[str, tuple[int, Node]]:
        """A mapping's entries, every key one of `allowed`."""
        if not isinstance(node, Map):
            self.fail(f"expected a mapping, got {describe(node)}", node.line, key or None)
        for name, (line, _) in node.items.items():
            if name not in allowed:
                hint = suggest(name, allowed)
                more = "" if hint else f" (allowed: {', '.join(allowed)})"
                self.fail(f"unknown key '{name}'{more}", line, join(key, name), hint)
        return node.items

    def duration(self, node: Node, key: str, *, above_zero: bool = False) -> float:
        seconds = seconds_of(node.value) if isinstance(node, Scalar) else None
        if seconds is None:
            self.fail(f"expected a duration ({DURATION_FORMS}), got {_shown(node)}", node.line, key)
        if seconds < 0 or (above_zero and seconds == 0):
            self.fail(f"must be {'more than' if above_zero else 'at least'} 0, got {_shown(node)}", node.line, key)
        if seconds > MAX_SECONDS:
            self.fail(f"at most {MAX_SECONDS / 86_400:g} days, got {_shown(node)}", node.line, key)
        return seconds

    def boolean(self, node: Node, key: str) -> bool:
        if not isinstance(node, Scalar) or not isinstance(node.value, bool):
            self.fail(f"expected true or false, got {_shown(node)}", node.line, key)
        return node.value

    def integer(self, node: Node, key: str, low: int, high: int) -> int:
        value = node.value if isinstance(node, Scalar) else None
        if not isinstance(value, int) or isinstance(value, bool):
            self.fail(f"expected a whole number, got {_shown(node)}", node.line, key)
        if not low <= value <= high:
            self.fail(f"must be from {low} to {high}, got {value}", node.line, key)
        return value

    def route(self, node: Node, key: str) -> str:
        name = node.value if isinstance(node, Scalar) else None
        if not isinstance(name, str):
            self.fail(f"expected a route name, got {_shown(node)}", node.line, key)
        if name not in self.routes:
            routes = ", ".join(self.routes)
            self.fail(f"unknown route '{name}': the policy's routes are {routes}", node.line, key,
                      suggest(name, self.routes))
        return name

    # -- sections ---------------------------------------------------------------------------------

    def timeline(self, root: Node) -> Timeline:
        top = self.fields(root, "", TOP_KEYS)
        if "requests" not in top:
            self.fail("required key 'requests' is missing", root.line, "requests")
        description = None
        if "description" in top:
            node = top["description"][1]
            if not isinstance(node, Scalar) or not isinstance(node.value, str):
                self.fail(f"expected a string, got {_shown(node)}", node.line, "description")
            description = node.value
        seed = self.integer(top["seed"][1], "seed", 0, 2**63 - 1) if "seed" in top else 0
        latency = self.duration(top["latency"][1], "latency") if "latency" in top else DEFAULT_LATENCY
        requests = self.requests(top["requests"][1])
        models = self.model_section(top["models"][1], latency) if "models" in top else {}
        return Timeline(self.file, requests, MappingProxyType(models), latency, seed, description)

    def requests(self, node: Node) -> Requests:
        given = self.fields(node, "requests", REQUESTS_KEYS)
        stream = self.boolean(given["stream"][1], "requests.stream") if "stream" in given else False
        route = self.route(given["route"][1], "requests.route") if "route" in given else None
        timeout = None
        if "timeout" in given:
            timeout = self.duration(given["timeout"][1], "requests.timeout", above_zero=True)
        if "times" in given:
            for other in ("rate", "duration"):
                if other in given:
                    self.fail("give either times or rate and duration, not both", given[other][0],
                              f"requests.{other}")
            defaults = Request(0.0, stream, route or "default", timeout)
            explicit = self.times(given["times"][1], defaults, route is not None)
            return Requests(stream, route or "default", timeout, explicit=explicit)
        for needed in ("rate", "duration"):
            if needed not in given:
                self.fail(f"required key '{needed}' is missing (or give times: instead)", node.line,
                          f"requests.{needed}")
        if route is None:
            route = self.default_route(node.line, "requests.route")
        rate = self.rate(given["rate"][1], "requests.rate")
        duration = self.duration(given["duration"][1], "requests.duration", above_zero=True)
        if count(rate, duration) > MAX_REQUESTS:
            self.fail(f"{rate:g}/s for {duration:g}s is more than {MAX_REQUESTS:,} requests", given["rate"][0],
                      "requests.rate")
        return Requests(stream, route, timeout, rate, duration)

    def rate(self, node: Node, key: str) -> float:
        value = node.value if isinstance(node, Scalar) else None
        per_second: float | None = None
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            per_second = float(value)
        elif isinstance(value, str) and (match := _RATE.fullmatch(value)) is not None:
            per_second = float(match.group(1)) / _PER[match.group(2)]
        if per_second is None:
            self.fail(f"expected a rate ({RATE_FORMS}), got {_shown(node)}", node.line, key)
        if not per_second > 0 or per_second > 1e6:
            self.fail(f"must be more than 0 and at most 1000000/s, got {_shown(node)}", node.line, key)
        return per_second

    def default_route(self, line: int, key: str) -> str:
        if "default" not in self.routes:
            self.fail(f"the policy has no route 'default' (routes: {', '.join(self.routes)}): name one with route:",
                      line, key)
        return "default"

    def times(self, node: Node, defaults: Request, routed: bool) -> tuple[Request, ...]:
        if not isinstance(node, Seq) or not node.items:
            what = "an empty list" if isinstance(node, Seq) else describe(node)
            self.fail(f"expected a list of request times, got {what}", node.line, "requests.times")
        out = [self.one_request(item, f"requests.times[{i}]", defaults, routed) for i, item in enumerate(node.items)]
        return tuple(sorted(out, key=lambda r: r.at))  # stable: requests at the same time keep their order

    def one_request(self, node: Node, key: str, defaults: Request, routed: bool) -> Request:
        given = self.fields(node, key, REQUEST_KEYS) if isinstance(node, Map) else {}
        if not routed and "route" not in given:
            self.default_route(node.line, key)
        if not isinstance(node, Map):
            return Request(self.duration(node, key), defaults.stream, defaults.route, defaults.timeout)
        if "at" not in given:
            self.fail("required key 'at' is missing", node.line, join(key, "at"))
        at = self.duration(given["at"][1], join(key, "at"))
        stream = self.boolean(given["stream"][1], join(key, "stream")) if "stream" in given else defaults.stream
        route = self.route(given["route"][1], join(key, "route")) if "route" in given else defaults.route
        timeout = defaults.timeout
        if "timeout" in given:
            timeout = self.duration(given["timeout"][1], join(key, "timeout"), above_zero=True)
        return Request(at, stream, route, timeout)

    def model_section(self, node: Node, latency: float) -> dict[str, ModelTimeline]:
        if not isinstance(node, Map):
            self.fail(f"expected a mapping of model aliases, got {describe(node)}", node.line, "models")
        out: dict[str, ModelTimeline] = {}
        for alias, (line, value) in node.items.items():
            key = join("models", alias)
            if alias not in self.models:
                known = ", ".join(self.models)
                self.fail(f"unknown model '{alias}': the policy's models are {known}", line, key,
                          suggest(alias, self.models))
            out[alias] = self.model(alias, value, key, latency)
        return out

    def model(self, alias: str, node: Node, key: str, latency: float) -> ModelTimeline:
        given = self.fields(node, key, MODEL_KEYS)
        if "latency" in given:
            latency = self.duration(given["latency"][1], join(key, "latency"))
        windows: tuple[Window, ...] = ()
        if "faults" in given:
            windows = self.windows(given["faults"][1], join(key, "faults"))
        return ModelTimeline(alias, latency, windows)

    def windows(self, node: Node, key: str) -> tuple[Window, ...]:
        if not isinstance(node, Seq):
            self.fail(f"expected a list of {{from, to, fault}} windows, got {describe(node)}", node.line, key)
        windows = sorted((self.window(item, f"{key}[{i}]") for i, item in enumerate(node.items)),
                         key=lambda w: w.start)
        for before, after in itertools.pairwise(windows):
            if after.start < before.end:
                self.fail(f"overlaps the window from {before.start:g}s to {before.end:g}s (line {before.line})",
                          after.line, key)
        return tuple(windows)

    def window(self, node: Node, key: str) -> Window:
        given = self.fields(node, key, WINDOW_KEYS)
        for needed in ("from", "to", "fault"):
            if needed not in given:
                self.fail(f"required key '{needed}' is missing", node.line, join(key, needed))
        start = self.duration(given["from"][1], join(key, "from"))
        end = self.duration(given["to"][1], join(key, "to"))
        if end <= start:
            self.fail(f"'to' ({end:g}s) must be after 'from' ({start:g}s)", given["to"][0], join(key, "to"))
        fault = self.fault(given["fault"][1], join(key, "fault"))
        if "retry_after" in given:
            line, value = given["retry_after"]
            if fault.kind != "status":
                self.fail(f"retry_after goes with a status code fault, not {fault.label}", line,
                          join(key, "retry_after"))
            fault = Fault("status", fault.status, self.duration(value, join(key, "retry_after")))
        return Window(start, end, fault, node.line)

    def fault(self, node: Node, key: str) -> Fault:
        if isinstance(node, Map):
            return self.fault_mapping(node, key)
        value = node.value if isinstance(node, Scalar) else None
        if isinstance(value, str) and value.strip().isdigit():
            value = int(value.strip())
        if isinstance(value, int) and not isinstance(value, bool):
            if not 400 <= value <= 599:
                self.fail(f"a status code fault must be from 400 to 599, got {value}", node.line, key)
            return Fault("status", value)
        if isinstance(value, str) and value in WORD_FAULTS:
            return WORD_FAULTS[value]
        if value == "slow":
            self.fail("slow needs its seconds: write {slow: 2s}", node.line, key)
        hint = suggest(value, (*FAULT_WORDS, "slow")) if isinstance(value, str) else None
        self.fail(f"unknown fault {_shown(node)}: expected {FAULT_FORMS}", node.line, key, hint)

    def fault_mapping(self, node: Map, key: str) -> Fault:
        given = self.fields(node, key, FAULT_KEYS)
        if len(given) != 1:
            self.fail(f"a fault mapping has exactly one of {', '.join(FAULT_KEYS)}", node.line, key)
        (name, (_, value)), = given.items()
        where = join(key, name)
        if name == "stream_break":
            if isinstance(value, Scalar) and value.value is None:
                return Fault("stream_break", after=DEFAULT_AFTER)
            after = self.fields(value, where, ("after",))
            return Fault("stream_break", after=self.integer(after["after"][1], join(where, "after"), 0, 100_000)
                         if "after" in after else DEFAULT_AFTER)
        return Fault("hang" if name == "hang" else "slow", seconds=self.duration(value, where))
