"""The routing record of a served request is the same whether it is built at once (someone listens for
events) or on the first read of `.routing` (nobody does): fields, equality, copies and pickles."""

from __future__ import annotations

import copy
import pickle
from typing import Any

from router import AttemptEnded, Event, Kind, MemoryStore, RequestEnded, Routing
from router.routing import Attempt, DeferredRouting
from router.testing import Fault

from .conftest import USER


def test_a_healthy_request_without_listeners_has_the_full_record(make_router) -> None:
    r = make_router()
    msg = r.complete(messages=USER, max_tokens=32)
    assert type(msg.__pydantic_private__["routing"]) is DeferredRouting  # built on the read below
    routing = msg.routing
    assert type(routing) is Routing
    assert routing == Routing("primary", "default", (
        Attempt("primary", Kind.SUCCESS, 200, None, msg._request_id, 0.0, False, None),))
    assert msg._request_id and msg._request_id.startswith("req_")
    assert msg.routing is routing  # built once


def test_the_record_is_the_same_with_and_without_a_listener(make_router, fake_server) -> None:
    quiet, heard = make_router(), make_router()
    events: list[Event] = []
    heard.add_listener(events.append)
    records = []
    for r in (quiet, heard):
        fake_server.plan("claude-primary", [Fault.status(500)])
        msg = r.complete(messages=USER, max_tokens=32)
        records.append((msg.routing, msg._request_id))
    (deferred, deferred_id), (eager, eager_id) = records
    assert deferred_id != eager_id

    def without_ids(routing: Routing) -> list[tuple[Any, ...]]:
        return [(a.model, a.outcome, a.status, a.error_type, a.duration_s, a.probe, a.detail) for a in routing.attempts]

    assert [a.outcome for a in deferred.attempts] == [Kind.SERVER_FAILURE, Kind.SUCCESS]
    assert (deferred.model, deferred.route, without_ids(deferred)) == (eager.model, eager.route, without_ids(eager))
    assert deferred.attempts[-1].request_id == deferred_id and eager.attempts[-1].request_id == eager_id
    ended = [e for e in events if isinstance(e, RequestEnded)]
    assert ended[-1].attempts == eager.attempts
    assert [e.attempt for e in events if isinstance(e, AttemptEnded)][-2:] == list(eager.attempts)


def test_a_listener_added_during_a_request_is_told_whole_requests(make_router) -> None:
    """Whether a request is listened to is decided when it starts: a listener added while one runs hears
    nothing of that one (not half of it), and everything of the next."""
    events: list[Event] = []

    class AddsAListener(MemoryStore):
        router: Any = None

        def record_success(self, alias: str, now: float, *, probe: Any) -> None:
            super().record_success(alias, now, probe=probe)
            if not events and self.router is not None:
                self.router.add_listener(events.append)
                self.router = None

    store = AddsAListener()
    r = make_router(store=store)
    store.router = r
    first = r.complete(messages=USER, max_tokens=32)
    assert events == [] and [a.outcome for a in first.routing.attempts] == [Kind.SUCCESS]
    second = r.complete(messages=USER, max_tokens=32)
    kinds = [type(e).__name__ for e in events]
    assert kinds == ["RequestStarted", "AttemptStarted", "AttemptEnded", "RequestEnded"]
    (ended,) = [e for e in events if isinstance(e, RequestEnded)]
    assert ended.attempts == second.routing.attempts and ended.model == "primary"


def test_copies_pickles_and_equality_keep_the_record(make_router) -> None:
    r = make_router()
    msg = r.complete(messages=USER, max_tokens=32)
    shallow, deep = msg.model_copy(), msg.model_copy(deep=True)
    assert shallow == msg and deep == msg
    routing = msg.routing  # the original builds its record; the copies have not yet
    assert shallow == msg and msg == deep
    assert shallow.routing == routing and deep.routing == routing and copy.copy(msg).routing == routing
    back = pickle.loads(pickle.dumps(msg))
    assert back == msg and back.routing == routing
    other = r.complete(messages=USER, max_tokens=32)
    assert other != msg  # another request: another response id and request id


def test_a_deferred_record_compares_equal_to_the_routing_it_stands_for() -> None:
    last = ("m", Kind.SUCCESS, 200, None, "req_1", 0.5, False, None)
    first = Attempt("n", Kind.BREAKER_OPEN)
    deferred = DeferredRouting("m", "default", (first,), last)
    built = Routing("m", "default", (first, Attempt(*last)))
    assert deferred == built and built == deferred
    assert deferred == DeferredRouting("m", "default", (first,), last)
    assert deferred != Routing("m", "other", built.attempts)
    assert repr(deferred) == repr(built)
