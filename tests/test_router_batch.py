"""`Router.batch()` and `Router.resume_batches()`: Message Batches through the router's own queue (a real SQLite
file), retried through the route's normal path, results readable by ticket with `Router.result()`."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest

from router import RequestFailed, Router, VirtualClock, parse_policy
from router.testing import FakeServer
from router.testing.batches import BatchResult

from .conftest import KEYS, USER


def _router(server: FakeServer, tmp_path: Path, clock: VirtualClock) -> Router:
    text = textwrap.dedent(f"""\
        version: 1
        models:
          opus: {{provider: anthropic, model: claude-opus, base_url: '{server.url}', api_key: '${{KEY_PRIMARY}}'}}
          sonnet: {{provider: anthropic, model: claude-sonnet, base_url: '{server.url}', api_key: '${{KEY_FALLBACK}}'}}
        queue: {{sqlite: {{path: '{tmp_path / "q.db"}'}}}}
        routes:
          default: [opus, sonnet]
        """)
    return Router(parse_policy(text, env=KEYS), watch=False, clock=clock.clock())


def test_a_batch_through_the_router_retries_server_errors_through_the_route(
    fake_server: FakeServer, tmp_path: Path
) -> None:
    fake_server.plan_batch([BatchResult.succeeded(), BatchResult.errored("overloaded_error"),
                            BatchResult.errored("invalid_request_error"), BatchResult.expired()], polls=2)
    clock = VirtualClock()
    r = _router(fake_server, tmp_path, clock)
    try:
        requests = [{"messages": USER, "max_tokens": 8 + i} for i in range(4)]
        handle = r.batch(requests)
        results = handle.results()
        ids = handle.ticket_ids
        assert len(ids) == 4 and set(results) == set(ids)
        first, overloaded, invalid, expired = (results[i] for i in ids)
        assert not isinstance(first, Exception) and first.routing.model == "opus"
        assert not isinstance(overloaded, Exception) and not isinstance(expired, Exception)
        assert isinstance(invalid, RequestFailed) and invalid.status == 400
        assert fake_server.count("claude-opus") == 2  # the two retried through the route, nothing else
        # the same outcomes read back by ticket, as a worker or another process would
        assert r.result(ids[0]).id == first.id
        assert r.result(ids[1]).routing.model == "opus"
        with pytest.raises(RequestFailed):
            r.result(ids[2])
    finally:
        r.close()


def test_a_batch_in_progress_is_picked_up_again_by_a_new_router(fake_server: FakeServer, tmp_path: Path) -> None:
    fake_server.plan_batch(polls=10**9)  # in progress until the test ends it
    first = _router(fake_server, tmp_path, VirtualClock())
    handle = first.batch([{"messages": USER, "max_tokens": 8}, {"messages": USER, "max_tokens": 9}])
    batch_ids = list(handle.ids)
    first.close()  # the process goes away without waiting

    again = _router(fake_server, tmp_path, VirtualClock())
    try:
        handles = again.resume_batches()
        assert [h.ids for h in handles] == [tuple(batch_ids)] or [list(h.ids) for h in handles] == [batch_ids]
        for batch_id in batch_ids:
            fake_server.batches.end(batch_id)
        results = handles[0].results()
        assert all(not isinstance(m, Exception) for m in results.values()) and len(results) == 2
        assert fake_server.batches.created == 1  # nothing submitted twice
    finally:
        again.close()
