"""`StatusPageWatcher`: polls a status page in the background; acts once per incident and model on what it names."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass

from ..clock import Clock
from ..policy import ModelConfig, StatusPageConfig
from .fetch import FetchError, fetch, shown_url
from .matching import Finding, findings
from .page import PageError, Summary, parse_summary

log = logging.getLogger("router.status_page")

_SLICE = 0.25  # the longest single sleep, so stop() is prompt
Models = Mapping[str, ModelConfig] | Callable[[], Mapping[str, ModelConfig]]


@dataclass(frozen=True, slots=True)
class Actions:
    """What the watcher may do to breakers (the integrator wires these to the breaker store)."""

    trip: Callable[[str], None]  # open the model's breaker now, as if it had reached its threshold
    lower_threshold: Callable[[str, int], None]
    restore_threshold: Callable[[str], None]  # back to the policy's threshold


@dataclass(frozen=True, slots=True)
class Notice:
    """What the watcher did or saw: `kind` is "acted", "restored", "poll_failed" or "poll_recovered"."""

    kind: str
    at: float  # on the watcher's (monotonic) clock
    model: str | None = None
    action: str | None = None  # acted: "open" | "lower_threshold" | "log"; restored: "restore_threshold"
    incident: str | None = None  # the Finding's key (incident id, or component:<id>)
    title: str = ""
    detail: str = ""


@dataclass(frozen=True, slots=True)
class PollResult:
    """The latest poll, and what the page said when it was last read."""

    at: float  # this poll, on the watcher's monotonic clock
    wall: float  # the same moment, epoch seconds
    ok: bool
    error: str | None = None  # why this poll failed
    failures: int = 0  # consecutive failed polls, this one included
    summary: Summary | None = None  # the page as last read (by this poll or an earlier one)
    read_at: float | None = None  # when it was read (monotonic)
    findings: tuple[Finding, ...] = ()  # what it concerned, as last read
    acted: tuple[tuple[str, str, str], ...] = ()  # (incident key, model, action) ever taken, oldest first


Listener = Callable[[Notice], None]


class StatusPageWatcher:
    """Polls `config.url` every `config.interval` on a daemon thread (`start()`), or when asked (`poll_once()`).

    A failed poll (HTTP error, HTML, malformed JSON, timeout) changes nothing but `last`, and is logged
    once per streak of failures. What the page names is acted on once per incident and model, per
    `config.on_incident`; an incident's resolution restores a lowered threshold; nothing here ever closes
    a breaker. With a virtual clock, call `poll_once()` instead of `start()` (the thread's sleeps would
    move that clock)."""

    def __init__(self, config: StatusPageConfig, models: Models, actions: Actions | None, clock: Clock,
                 listener: Listener | None = None, fetcher: Callable[[str, float, Callable[[], float]], bytes] = fetch
                 ) -> None:
        self.config = config
        self._models = models
        self._actions = actions
        self._clock = clock
        self._listeners: tuple[Listener, ...] = (listener,) if listener is not None else ()
        self._fetch = fetcher
        self._lock = threading.Lock()
        self._stopped = threading.Event()
        self._thread: threading.Thread | None = None
        self._done: dict[tuple[str, str], str] = {}  # (incident key, model) -> action taken
        self._lowered: dict[str, set[str]] = {}  # model -> incident keys holding its threshold down
        self._failures = 0
        self._read: tuple[Summary, float, tuple[Finding, ...]] | None = None
        self.last: PollResult | None = None

    def add_listener(self, listener: Listener) -> None:
        self._listeners = (*self._listeners, listener)

    # -- lifetime ---------------------------------------------------------------------------------

    def start(self) -> StatusPageWatcher:
        """Poll now and then every `interval`, on a daemon thread, until stop(). A no-op if running."""
        if self._thread is None and not self._stopped.is_set():
            self._thread = threading.Thread(target=self._run, name="router-status-page", daemon=True)
            self._thread.start()
        return self

    def stop(self) -> None:
        """Stop polling; returns at once even if a fetch is in flight (it then ends without acting)."""
        self._stopped.set()
        thread = self._thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(_SLICE * 2)

    @property
    def running(self) -> bool:
        return self._thread is not None and self._thread.is_alive() and not self._stopped.is_set()

    def _run(self) -> None:
        while not self._stopped.is_set():
            try:
                self.poll_once()
            except Exception:  # never expected; the poller must not die of it
                log.exception("status page poll failed unexpectedly")
            self._nap(self.config.interval)

    def _nap(self, seconds: float) -> None:
        end = self._clock.now() + seconds
        while not self._stopped.is_set():
            left = end - self._clock.now()
            if left <= 0:
                return
            self._clock.sleep(min(left, _SLICE))

    # -- one poll ---------------------------------------------------------------------------------

    def poll_once(self) -> PollResult:
        """Read the page once, act on what is new, and return (and keep in `last`) what happened."""
        try:
            summary = parse_summary(self._fetch(self.config.url, self.config.timeout, self._clock.now))
        except (FetchError, PageError) as exc:
            return self._failed(str(exc))
        with self._lock:
            now = self._clock.now()
            found = findings(summary, self._current_models())
            if self._failures:
                log.info("status page %s answers again after %d failed polls", shown_url(self.config.url),
                         self._failures)
                self._tell(Notice("poll_recovered", now, detail=f"after {self._failures} failed polls"))
            self._failures = 0
            if self._actions is not None and not self._stopped.is_set():
                self._act(found, now)
            self._read = (summary, now, found)
            self.last = self._result(now, True, None)
            return self.last

    def _current_models(self) -> Mapping[str, ModelConfig]:
        return self._models() if callable(self._models) else self._models

    def _failed(self, error: str) -> PollResult:
        with self._lock:
            now = self._clock.now()
            self._failures += 1
            if self._failures == 1:
                log.warning("status page %s could not be read (%s); breakers are unchanged, and this is said "
                            "once until it answers again", shown_url(self.config.url), error)
                self._tell(Notice("poll_failed", now, detail=error))
            self.last = self._result(now, False, error)
            return self.last

    def _result(self, now: float, ok: bool, error: str | None) -> PollResult:
        summary, read_at, found = self._read if self._read is not None else (None, None, ())
        acted = tuple((key, model, action) for (key, model), action in self._done.items())
        return PollResult(now, self._clock.wall(), ok, error, self._failures, summary, read_at, found, acted)

    def _act(self, found: tuple[Finding, ...], now: float) -> None:
        action = self.config.on_incident
        for finding in found:
            if not finding.acting:
                continue
            for model in finding.models:
                if (finding.key, model) in self._done:
                    continue
                self._done[(finding.key, model)] = action
                self._apply(action, model, finding)
                log.warning("status page incident %r (%s, %s) concerns model %s: %s", finding.title,
                            finding.status, finding.why, model, _SAYS[action])
                self._tell(Notice("acted", now, model, action, finding.key, finding.title, finding.why))
        ongoing = {f.key for f in found if f.ongoing}
        for model, keys in list(self._lowered.items()):
            keys &= ongoing
            if not keys:
                del self._lowered[model]
                self._restore(model)
                log.info("status page: no incident concerns model %s any more: its breaker threshold is the "
                         "policy's again (its breaker state is left as it is)", model)
                self._tell(Notice("restored", now, model, "restore_threshold"))

    def _restore(self, model: str) -> None:
        if self._actions is not None:
            self._actions.restore_threshold(model)

    def _apply(self, action: str, model: str, finding: Finding) -> None:
        if action == "lower_threshold":
            self._lowered.setdefault(model, set()).add(finding.key)
        if self._actions is None:
            return
        if action == "open":
            self._actions.trip(model)
        elif action == "lower_threshold":
            self._actions.lower_threshold(model, self.config.threshold)

    def _tell(self, notice: Notice) -> None:
        for listener in self._listeners:
            try:
                listener(notice)
            except Exception:  # a buggy listener must never stop the poller
                log.exception("status page listener failed on %s", notice.kind)


_SAYS = {
    "open": "opening its breaker now (it half-opens after reset_timeout and a probe decides)",
    "lower_threshold": "lowering its breaker's failure threshold until the incident is resolved",
    "log": "logged only (on_incident: log)",
}
