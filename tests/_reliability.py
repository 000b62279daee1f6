"""Shared by the reliability tests (concurrency, soak, secrets): a ledger of what every request got, and
the accounting that holds the router's attempt records against the fake server's counters.

Every request carries a unique tag in `metadata.user_id`, which the SDK sends in the body, so the fake
server's log says, per request and per model, how many HTTP requests really arrived: the ground truth
that the router's `Attempt` records are checked against, one for one.
"""

from __future__ import annotations

import asyncio
import json
import threading
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable, Mapping
from dataclasses import dataclass
from typing import Any

import anthropic

import router
from router import AllModelsFailed, Attempt, Kind
from router.testing import FakeServer

StreamInterrupted: type[BaseException] | None = getattr(router, "StreamInterrupted", None)

# Statuses the router never hands to the caller: they are classified and failed over.
_NEVER_RAISED = frozenset({401, 402, 403, 408, 409, 429})


@dataclass(frozen=True)
class Outcome:
    """What one request ended with."""

    tag: str
    route: str
    mode: str  # "sync" | "async" | "stream" | "astream"
    kind: str  # "message" | "all_failed" | "interrupted" | "caller" | "other"
    attempts: tuple[Attempt, ...]  # every try the router recorded (empty for caller errors: none is kept)
    served_by: str | None = None
    text: str | None = None
    error: BaseException | None = None
    elapsed: float = 0.0
    timeout: float | None = None

    def sent(self) -> Counter[str]:
        return Counter(a.model for a in self.attempts if a.sent)


def kind_of(exc: BaseException) -> str:
    """The documented class of an exception a request raised, or "other"."""
    if isinstance(exc, AllModelsFailed):
        return "all_failed"
    if StreamInterrupted is not None and isinstance(exc, StreamInterrupted):
        return "interrupted"
    # The SDK's own exception for a request the fallback would fail the same way: a 4xx. (An `error`
    # event of a caller type inside a 200 stream contradicts its status: it fails over, never raised.)
    if isinstance(exc, anthropic.APIStatusError) and 400 <= exc.status_code < 500 and (
        exc.status_code not in _NEVER_RAISED
    ):
        return "caller"
    return "other"


class Ledger:
    """Thread-safe record of every request's outcome, keyed by tag."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.outcomes: dict[str, Outcome] = {}

    def add(self, outcome: Outcome) -> None:
        with self._lock:
            assert outcome.tag not in self.outcomes, f"tag {outcome.tag} used twice"
            self.outcomes[outcome.tag] = outcome

    def _record(self, tag: str, route: str, mode: str, timeout: float | None, started: float,
                result: Any = None, exc: BaseException | None = None) -> Outcome:
        elapsed = time.monotonic() - started
        if exc is None:
            routing = result.routing
            text = "".join(b.text for b in result.content if b.type == "text")
            outcome = Outcome(tag, route, mode, "message", routing.attempts, routing.model, text,
                              elapsed=elapsed, timeout=timeout)
        else:
            kind = kind_of(exc)
            attempts = tuple(getattr(exc, "attempts", ())) if kind in ("all_failed", "interrupted") else ()
            outcome = Outcome(tag, route, mode, kind, attempts, error=exc, elapsed=elapsed, timeout=timeout)
        self.add(outcome)
        return outcome

    def call(self, tag: str, route: str, mode: str, timeout: float | None, fn: Callable[[], Any]) -> Outcome:
        started = time.monotonic()
        try:
            result = fn()
        except Exception as exc:
            return self._record(tag, route, mode, timeout, started, exc=exc)
        return self._record(tag, route, mode, timeout, started, result)

    async def acall(self, tag: str, route: str, mode: str, timeout: float | None,
                    fn: Callable[[], Awaitable[Any]]) -> Outcome:
        started = time.monotonic()
        try:
            result = await fn()
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            return self._record(tag, route, mode, timeout, started, exc=exc)
        return self._record(tag, route, mode, timeout, started, result)

    def of_kind(self, *kinds: str) -> list[Outcome]:
        return [o for o in self.outcomes.values() if o.kind in kinds]


def server_counts(server: FakeServer, models: Mapping[str, str]) -> dict[str | None, Counter[str]]:
    """{tag: Counter(alias -> requests the fake server read for it)}; `models` maps alias -> model name."""
    by_tag: dict[str | None, Counter[str]] = {}
    for alias, model in models.items():
        for request in server.received(model):
            metadata = request.body.get("metadata")
            tag = metadata.get("user_id") if isinstance(metadata, dict) else None
            by_tag.setdefault(tag, Counter())[alias] += 1
    return by_tag


def model_of(error: BaseException) -> str | None:
    """The model named in the body of the request an SDK status error answered."""
    try:
        request = error.response.request  # type: ignore[attr-defined]
        return str(json.loads(request.content)["model"])
    except Exception:
        return None


def check_accounting(ledger: Ledger, server: FakeServer, models: Mapping[str, str]) -> list[str]:
    """Every HTTP request the fake server read is one sent attempt the router recorded, and vice versa.

    Returns the discrepancies (empty when the books balance). For a caller error the router keeps no
    attempts (the SDK's exception is raised unchanged), so only its last request can be matched."""
    problems: list[str] = []
    seen = server_counts(server, models)
    unknown = set(seen) - set(ledger.outcomes)
    if unknown:
        problems.append(f"the server read requests no caller made: tags {sorted(map(str, unknown))[:5]}")
    by_model = {alias: name for alias, name in models.items()}
    for tag, outcome in ledger.outcomes.items():
        got = seen.get(tag, Counter())
        if outcome.kind == "caller":
            raised_by = model_of(outcome.error) if outcome.error is not None else None
            alias = next((a for a, m in by_model.items() if m == raised_by), None)
            if alias is None or got[alias] < 1:
                problems.append(f"{tag}: caller error from {raised_by!r} but the server saw {dict(got)}")
            continue
        if outcome.kind == "other":
            continue  # reported separately
        expected = outcome.sent()
        if expected != got:
            tried = [(a.model, a.outcome.value, a.status, a.error_type) for a in outcome.attempts]
            problems.append(f"{tag} ({outcome.mode}, {outcome.kind}): router recorded {dict(expected)} sent, "
                            f"server read {dict(got)}; attempts: {tried}")
    return problems


def check_outcomes(ledger: Ledger, chains: Mapping[str, Iterable[str]], texts: Mapping[str, str]) -> list[str]:
    """What each outcome must look like: a message from the last model tried, with that model's text; an
    AllModelsFailed that names every model of its route and holds no success; nothing undocumented."""
    problems: list[str] = []
    for o in ledger.outcomes.values():
        if o.kind == "other":
            problems.append(f"{o.tag} ({o.mode}) raised an undocumented {type(o.error).__name__}: {o.error!r}")
            continue
        if o.kind == "message":
            last = o.attempts[-1] if o.attempts else None
            if last is None or last.outcome is not Kind.SUCCESS or last.model != o.served_by:
                problems.append(f"{o.tag}: served by {o.served_by} but the last attempt is {last}")
            if any(a.outcome is Kind.SUCCESS for a in o.attempts[:-1]):
                problems.append(f"{o.tag}: a success before the last attempt: {o.attempts}")
            if o.mode in ("sync", "async") and o.served_by is not None and o.text != texts[o.served_by]:
                problems.append(f"{o.tag}: served by {o.served_by} with text {o.text!r}")
        if o.kind == "all_failed":
            if not o.attempts or any(a.outcome is Kind.SUCCESS for a in o.attempts):
                problems.append(f"{o.tag}: AllModelsFailed with attempts {o.attempts}")
            elif {a.model for a in o.attempts} != set(chains[o.route]):
                problems.append(f"{o.tag}: AllModelsFailed on {o.route} names {[a.model for a in o.attempts]}")
        for a in o.attempts:
            if a.probe and not a.sent:
                problems.append(f"{o.tag}: a probe attempt that sent nothing: {a}")
    return problems
