"""The timeline `simulate` plays: requests over virtual time and per-model fault windows, as frozen dataclasses.

Reading one from YAML (with file:line:key errors) is in `timeline_file.py`; this module is the data.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

from ..policy.durations import format_seconds

FaultKind = Literal["ok", "status", "reset", "hang", "slow", "stream_break"]
DEFAULT_LATENCY = 0.2  # seconds a healthy model takes to answer, unless the timeline says otherwise
DEFAULT_AFTER = 2  # text deltas a stream_break sends before it breaks, unless given


class TimelineError(ValueError):
    """A bad timeline; str() is one line: "file:line: key: what is wrong (did you mean 'x'?)"."""

    def __init__(
        self, message: str, file: str = "<string>", line: int | None = None, key: str | None = None,
        suggestion: str | None = None,
    ) -> None:
        super().__init__(message, file, line, key, suggestion)
        self.message = message
        self.file = file
        self.line = line
        self.key = key
        self.suggestion = suggestion

    def __str__(self) -> str:
        text = self.file + (f":{self.line}" if self.line is not None else "") + ": "
        text += (f"{self.key}: " if self.key else "") + self.message
        if self.suggestion:
            text += f" (did you mean '{self.suggestion}'?)"
        return text.replace("\r", "\\r").replace("\n", "\\n")


@dataclass(frozen=True, slots=True)
class Fault:
    """What a model does with a call inside a fault window.

    `status`: answers that HTTP status at once (`retry_after` seconds in its retry-after header, if given);
    `reset`: the connection is reset at once; `hang`: no answer: the call times out when its time is up
    (the attempt's budget, or the socket's read / stream-idle timeout), or the connection closes after
    `seconds` if that comes first; `slow`: answers after `seconds` (or times out first); `stream_break`: a
    stream sends `after` text deltas and the connection breaks (a call that does not stream: a reset);
    `ok`: answers normally."""

    kind: FaultKind
    status: int | None = None
    retry_after: float | None = None
    seconds: float | None = None
    after: int = DEFAULT_AFTER

    @property
    def label(self) -> str:
        """How the timeline would write it: "529", "429 retry_after 5s", "hang 30s", "slow 2s", ..."""
        if self.kind == "status":
            extra = f" retry_after {format_seconds(self.retry_after)}" if self.retry_after is not None else ""
            return f"{self.status}{extra}"
        if self.kind in ("hang", "slow") and self.seconds is not None:
            return f"{self.kind} {format_seconds(self.seconds)}"
        if self.kind == "stream_break":
            return f"stream_break after {self.after}"
        return self.kind


@dataclass(frozen=True, slots=True)
class Window:
    """From `start` (included) to `end` (excluded), seconds of virtual time, the model does `fault`."""

    start: float
    end: float
    fault: Fault
    line: int = 0


@dataclass(frozen=True, slots=True)
class ModelTimeline:
    """One model of the policy: how long it takes to answer when healthy, and its fault windows (in order,
    never overlapping)."""

    alias: str
    latency: float = DEFAULT_LATENCY
    windows: tuple[Window, ...] = ()
    _starts: tuple[float, ...] = field(default=(), repr=False, compare=False)

    def __post_init__(self) -> None:
        object.__setattr__(self, "_starts", tuple(w.start for w in self.windows))

    def window_at(self, t: float) -> int | None:
        """The index of the window in force at `t`, or None."""
        i = bisect.bisect_right(self._starts, t) - 1
        if i >= 0 and t < self.windows[i].end:
            return i
        return None


@dataclass(frozen=True, slots=True)
class Request:
    """One request: when it is sent (seconds from 0), whether it streams, its route and its timeout=."""

    at: float
    stream: bool = False
    route: str = "default"
    timeout: float | None = None


@dataclass(frozen=True, slots=True)
class Requests:
    """The requests of a timeline: `rate` a second for `duration` seconds (evenly spaced, the first at 0),
    or the `explicit` ones (in time order). `stream`, `route` and `timeout` are the rate's requests' own,
    and the defaults of explicit ones."""

    stream: bool = False
    route: str = "default"
    timeout: float | None = None
    rate: float | None = None
    duration: float = 0.0
    explicit: tuple[Request, ...] = ()

    def __len__(self) -> int:
        if self.rate is None:
            return len(self.explicit)
        return count(self.rate, self.duration)

    def __iter__(self) -> Iterator[Request]:
        if self.rate is None:
            yield from self.explicit
            return
        rate, stream, route, timeout = self.rate, self.stream, self.route, self.timeout
        for i in range(len(self)):
            yield Request(i / rate, stream, route, timeout)

    @property
    def span(self) -> float:
        """Seconds from 0 to the last request's start (the duration, for a rate)."""
        if self.rate is None:
            return self.explicit[-1].at if self.explicit else 0.0
        return self.duration

    @property
    def routes(self) -> tuple[str, ...]:
        """The routes the requests use, in order of first use."""
        if self.rate is not None:
            return (self.route,)
        return tuple(dict.fromkeys(r.route for r in self.explicit))


def count(rate: float, duration: float) -> int:
    """How many requests `rate` a second make in `duration` seconds, the first at 0 and none at the end."""
    n = duration * rate
    whole = int(n)
    return whole if n - whole < 1e-9 else whole + 1


@dataclass(frozen=True, slots=True)
class Timeline:
    """A whole timeline: its requests, each listed model's latency and faults, and the jitter's seed."""

    source: str
    requests: Requests
    models: Mapping[str, ModelTimeline] = field(default_factory=lambda: MappingProxyType({}), hash=False)
    latency: float = DEFAULT_LATENCY  # of every model not given its own
    seed: int = 0  # of the random numbers behind the backoff jitter: the same timeline plays the same way
    description: str | None = None

    def model(self, alias: str) -> ModelTimeline:
        """The timeline of `alias`: its own, or healthy at the timeline's latency."""
        found = self.models.get(alias)
        return found if found is not None else ModelTimeline(alias, self.latency)
