"""Message Batches end to end: the real anthropic SDK against the fake server's batch endpoints, a real SQLite
queue file, retries through a real Router, polling on a virtual clock, and a kill -9 in the middle."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any

import pytest
from anthropic.types import Message
from anthropic.types.messages import MessageBatchIndividualResponse, MessageBatchSucceededResult

from router import RoutedMessage, Router, parse_policy
from router.batches import (
    BatchHandle,
    BatchLimits,
    BatchNotReady,
    BatchNotSupported,
    BatchOptions,
    BatchSubmitFailed,
    BatchTally,
    BatchTooLarge,
    resume,
    split,
    submit,
)
from router.batches.split import encoded_size
from router.batches.verdict import judge
from router.clock import Clock, VirtualClock
from router.errors import Expired, RequestFailed
from router.outcome import Kind
from router.queue.sqlite import SQLiteQueue
from router.testing import FakeServer, Fault, wire
from router.testing.batches import BATCH_ENDPOINT, BatchResult, mixed

from .conftest import KEYS, USER, policy_yaml

ROOT = Path(__file__).resolve().parents[1]

MIX_250 = {BatchResult.succeeded(): 200, BatchResult.errored("api_error"): 20,
           BatchResult.errored("invalid_request_error"): 10, BatchResult.expired(): 20}
TALLY_250 = BatchTally(total=250, succeeded=200, retried=40, recovered=40, failed=10)


class RecordingClock:
    """A VirtualClock whose sleeps are written down (the poll backoff is read from them)."""

    def __init__(self) -> None:
        self.virtual = VirtualClock()
        self.sleeps: list[float] = []

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.virtual.sleep(seconds)

    def clock(self) -> Clock:
        v = self.virtual
        return Clock(now=v.now, sleep=self.sleep, asleep=v.asleep, wall=v.wall)


FAST = BatchOptions(poll_initial=1.0, poll_factor=2.0, poll_max=8.0)


@pytest.fixture
def store(tmp_path: Path) -> Iterator[SQLiteQueue]:
    queue = SQLiteQueue(tmp_path / "queue.db")
    yield queue
    queue.close()


@pytest.fixture
def router(fake_server: FakeServer) -> Iterator[Router]:
    r = Router(parse_policy(policy_yaml(fake_server.url), env=KEYS), clock=VirtualClock().clock())
    yield r
    r.close()


def serve_with(r: Router) -> Callable[[str, Mapping[str, Any]], RoutedMessage]:
    def serve(route: str, params: Mapping[str, Any]) -> RoutedMessage:
        return r.complete(route=route, on_exhausted="raise", **params)

    return serve


def _requests(n: int, size: int = 0) -> list[dict[str, Any]]:
    return [{"max_tokens": 32, "messages": [{"role": "user", "content": f"question {i} " + "x" * size}]}
            for i in range(n)]


def _check_250(handle: BatchHandle, srv: FakeServer, store: SQLiteQueue) -> None:
    """Every one of the 250 requests ended as the fake server's batch said, counted exactly."""
    info = srv.batches.get(handle.id)
    assert info.status == "ended" and info.tally() == {"succeeded": 200, "errored": 30, "expired": 20}
    assert srv.batches.created == 1
    assert set(srv.batches.submitted_ids().values()) == {1}  # nothing submitted twice
    assert sorted(srv.batches.submitted_ids()) == sorted(handle.ticket_ids)
    assert srv.count("claude-primary") == 40  # the errored api_error and expired ones, each retried once
    assert handle.tally() == TALLY_250
    results = handle.results()
    assert len(results) == 250
    for ticket_id, got in results.items():
        planned = info.results[ticket_id]
        if planned.kind == "succeeded":
            assert isinstance(got, RoutedMessage)
            assert got.content[0].text == f"Hello from claude-primary for {ticket_id}"  # matched by custom_id
            assert got.routing.model == "primary" and len(got.routing.attempts) == 1
            assert got.routing.attempts[0].detail == f"message batch {handle.id}: succeeded"
        elif planned.kind == "expired" or planned.error_type == "api_error":
            assert isinstance(got, RoutedMessage), got
            assert got.content[0].text == "Hello from claude-primary"  # served by the Messages API
            first, second = got.routing.attempts
            assert first.outcome is Kind.SERVER_FAILURE and first.error_type == (planned.error_type or "expired")
            assert second.outcome is Kind.SUCCESS and second.model == "primary"
        else:
            assert isinstance(got, RequestFailed)
            assert (got.error_type, got.status) == ("invalid_request_error", 400)
    assert store.counts()["done"] == 240 and store.counts()["failed"] == 10
    assert store.open_batches() == []


# -- splitting ----------------------------------------------------------------------------------------


def test_split_keeps_order_and_every_batch_within_both_limits() -> None:
    rng = random.Random(11)
    entries = [{"custom_id": f"t{i}", "params": {"x": "y" * rng.randrange(0, 400)}} for i in range(500)]
    limits = BatchLimits(max_requests=37, max_bytes=4_000)
    batches = split(entries, limits)
    assert [e for b in batches for e in b] == entries
    for b in batches:
        assert len(b) <= 37
        assert len(json.dumps({"requests": b}).encode()) <= 4_000
    assert len(batches) >= 500 / 37
    assert split(entries[:3]) == [entries[:3]]  # the API's own limits: one batch
    one = {"custom_id": "big", "params": {"x": "y" * 5_000}}
    with pytest.raises(BatchTooLarge, match="request 1 is"):
        split([entries[0], one], limits)
    assert encoded_size(one) > 5_000


def test_over_the_count_limit_becomes_several_batches_each_request_in_one(
        fake_server: FakeServer, store: SQLiteQueue, router: Router) -> None:
    fake_server.batches.limit(max_requests=4)  # the fake refuses what the limit forbids, as the API does
    options = BatchOptions(limits=BatchLimits(max_requests=4), poll_initial=1.0)
    handle = submit(store, router.policy, _requests(10), serve=serve_with(router), clock=VirtualClock().clock(),
                    options=options)
    assert [len(fake_server.batches.get(i).custom_ids) for i in handle.ids] == [4, 4, 2]
    assert fake_server.batches.ids() == list(handle.ids) and handle.id == handle.ids[0]
    assert fake_server.batches.submitted_ids() == dict.fromkeys(handle.ticket_ids, 1)
    assert [r.id for r in store.open_batches()] == list(handle.ids)
    assert handle.wait() == BatchTally(total=10, succeeded=10)
    assert all(isinstance(m, RoutedMessage) for m in handle.results().values())


def test_over_the_byte_limit_becomes_several_batches(
        fake_server: FakeServer, store: SQLiteQueue, router: Router) -> None:
    fake_server.batches.limit(max_bytes=3_000)
    options = BatchOptions(limits=BatchLimits(max_bytes=3_000), poll_initial=1.0)
    handle = submit(store, router.policy, _requests(12, size=600), serve=serve_with(router),
                    clock=VirtualClock().clock(), options=options)
    assert len(handle.ids) > 2
    assert sorted(fake_server.batches.submitted_ids()) == sorted(handle.ticket_ids)
    assert fake_server.batches.submissions() == 12
    assert handle.wait().succeeded == 12
    with pytest.raises(BatchTooLarge):
        submit(store, router.policy, _requests(1, size=5_000), serve=serve_with(router), options=options)


# -- 250 requests, mixed results ----------------------------------------------------------------------


def test_250_requests_with_mixed_results_end_with_an_exact_tally(
        fake_server: FakeServer, store: SQLiteQueue, router: Router) -> None:
    fake_server.plan_batch(mixed(MIX_250, seed=5), polls=3)
    clock = RecordingClock()
    handle = submit(store, router.policy, _requests(250), serve=serve_with(router), clock=clock.clock(),
                    options=FAST)
    assert store.counts()["batched"] == 250
    tally = handle.wait()
    assert tally == TALLY_250
    assert clock.sleeps == [1.0, 2.0, 4.0]  # in_progress for 3 retrieves: a growing wait between them
    _check_250(handle, fake_server, store)
    # the Router reads the same results by ticket
    planned = fake_server.batches.get(handle.id).results
    served = next(t for t in handle.ticket_ids if planned[t].kind == "succeeded")
    refused = next(t for t in handle.ticket_ids if planned[t].error_type == "invalid_request_error")
    with Router(router.policy, queue=store, clock=VirtualClock().clock()) as reader:
        assert reader.result(served, timeout=0).content[0].text == f"Hello from claude-primary for {served}"
        with pytest.raises(RequestFailed, match="invalid_request_error"):
            reader.result(refused, timeout=0)


def test_retries_that_find_the_whole_route_down_go_back_to_the_queue(
        fake_server: FakeServer, store: SQLiteQueue, router: Router) -> None:
    fake_server.plan_batch([BatchResult.errored("overloaded_error"), BatchResult.expired(), BatchResult.succeeded()],
                           polls=0)
    for model in ("claude-primary", "claude-fallback"):
        fake_server.plan(model, default=Fault.status(500))
    handle = submit(store, router.policy, _requests(3), serve=serve_with(router), clock=VirtualClock().clock(),
                    options=FAST)
    assert handle.wait() == BatchTally(total=3, succeeded=1, retried=2, pending=2)
    results = handle.results()
    assert set(results) == {handle.ticket_ids[2]}  # the two the route could not serve are the queue's again
    assert isinstance(results[handle.ticket_ids[2]], RoutedMessage)
    for ticket_id in handle.ticket_ids[:2]:
        ticket = store.get(ticket_id)
        assert ticket is not None and ticket.state == "queued" and ticket.attempts == 1
        assert ticket.error is not None and ticket.error["type"] == "AllModelsFailed"
        tried = [a["model"] for a in ticket.error["attempts"]][1:]  # after the batch's own attempt: the route's
        assert tried and set(tried) <= {"primary", "fallback"}


def test_retry_queue_puts_them_back_in_the_queue_and_none_ends_them(
        fake_server: FakeServer, store: SQLiteQueue, router: Router) -> None:
    plan = [BatchResult.errored("api_error"), BatchResult.expired(), BatchResult.errored("invalid_request_error")]
    fake_server.plan_batch(plan, polls=0)
    queued = submit(store, router.policy, _requests(3), clock=VirtualClock().clock(),
                    options=BatchOptions(retry="queue", poll_initial=1.0))
    assert queued.wait() == BatchTally(total=3, retried=2, failed=1, pending=2)
    states = [store.get(t).state for t in queued.ticket_ids]  # type: ignore[union-attr]
    assert states == ["queued", "queued", "failed"]
    assert fake_server.count("claude-primary") == 0  # left to the queue's workers

    fake_server.plan_batch(plan, polls=0)
    ended = submit(store, router.policy, _requests(3), clock=VirtualClock().clock(),
                   options=BatchOptions(retry="none", poll_initial=1.0))
    assert ended.wait() == BatchTally(total=3, failed=2, expired=1)
    results = ended.results()
    api_error, expired, invalid = (results[t] for t in ended.ticket_ids)
    assert isinstance(api_error, RequestFailed) and api_error.error_type == "api_error"
    assert isinstance(expired, Expired)
    assert isinstance(invalid, RequestFailed) and invalid.status == 400


def test_retry_batch_sends_them_again_in_a_new_batch_then_through_the_route(
        fake_server: FakeServer, store: SQLiteQueue, router: Router) -> None:
    first = [BatchResult.errored("api_error"), BatchResult.expired(), BatchResult.succeeded(),
             BatchResult.errored("invalid_request_error")]
    fake_server.plan_batch(first, polls=1)
    fake_server.plan_batch(polls=1)  # the second batch: both succeed
    handle = submit(store, router.policy, _requests(4), serve=serve_with(router), clock=VirtualClock().clock(),
                    options=BatchOptions(retry="batch", poll_initial=1.0))
    assert handle.wait() == BatchTally(total=4, succeeded=1, retried=2, recovered=2, failed=1)
    assert len(handle.ids) == 2 and fake_server.batches.created == 2
    again = fake_server.batches.get(handle.ids[1]).custom_ids
    assert sorted(again) == sorted(handle.ticket_ids[:2])
    assert fake_server.batches.submitted_ids() == {t: 1 + (t in again) for t in handle.ticket_ids}
    assert fake_server.count("claude-primary") == 0
    results = handle.results()
    assert results[again[0]].routing.attempts[0].detail == f"message batch {handle.ids[1]}: succeeded"  # type: ignore[union-attr]

    fake_server.plan_batch([BatchResult.errored("overloaded_error")], polls=0)
    fake_server.plan_batch(default=BatchResult.errored("api_error"), polls=0)  # errored again: the route serves it
    handle = submit(store, router.policy, _requests(1), serve=serve_with(router), clock=VirtualClock().clock(),
                    options=BatchOptions(retry="batch", poll_initial=1.0))
    assert handle.wait() == BatchTally(total=1, retried=1, recovered=1)
    assert fake_server.count("claude-primary") == 1
    served = handle.results()[handle.ticket_ids[0]]
    assert isinstance(served, RoutedMessage)
    assert [a.error_type for a in served.routing.attempts] == ["api_error", None]


def test_cancel_reports_every_request_canceled(
        fake_server: FakeServer, store: SQLiteQueue, router: Router) -> None:
    fake_server.plan_batch(polls=50, cancel_polls=1)
    handle = submit(store, router.policy, _requests(5), serve=serve_with(router), clock=VirtualClock().clock(),
                    options=FAST)
    assert handle.status().state == "in_progress"
    handle.cancel()
    assert handle.status().state == "canceling"
    assert handle.wait() == BatchTally(total=5, canceled=5)
    assert fake_server.batches.cancels == 1
    for error in handle.results().values():
        assert isinstance(error, RequestFailed) and error.error_type == "canceled"
    assert fake_server.count("claude-primary") == 0


def test_each_result_type_gets_its_verdict() -> None:
    def line(result: dict[str, Any]) -> Any:
        return MessageBatchIndividualResponse.model_validate({"custom_id": "t", "result": result}).result

    def error(error_type: str, message: str = "m") -> dict[str, Any]:
        return {"type": "errored", "error": {"type": "error", "error": {"type": error_type, "message": message}}}

    message = json.loads(wire.anthropic_message("msg_1", "claude-x", "hi", "end_turn", 1, 1))
    assert judge(line({"type": "succeeded", "message": message})).action == "done"
    unchecked = Message.model_construct(**{**message, "content": None})  # as the SDK's JSONL decoder may build it
    broken = judge(MessageBatchSucceededResult.model_construct(type="succeeded", message=unchecked))
    assert (broken.action, broken.error_type) == ("retry", "invalid_response")
    assert judge(line({"type": "expired"})).action == "retry"
    assert judge(line({"type": "canceled"})).action == "cancel"
    for error_type in ("api_error", "overloaded_error", "timeout_error", "rate_limit_error"):
        assert judge(line(error(error_type))).action == "retry", error_type
    for error_type in ("invalid_request_error", "not_found_error"):
        verdict = judge(line(error(error_type)))
        assert (verdict.action, verdict.outcome) == ("fail", Kind.CALLER), error_type
    too_long = judge(line(error("invalid_request_error", "prompt is too long: 210000 tokens > 200000 maximum")))
    assert (too_long.action, too_long.outcome) == ("retry", Kind.TOO_LARGE)  # a larger model of the route may serve it
    assert judge(line(error("api_error")), {"api_error": "caller"}).action == "fail"  # the model's outcomes: win


# -- polling, creating, models -----------------------------------------------------------------------


def test_poll_failures_are_retried_on_the_next_round_and_wait_can_time_out(
        fake_server: FakeServer, store: SQLiteQueue, router: Router) -> None:
    fake_server.plan_batch(polls=4)
    fake_server.plan(BATCH_ENDPOINT, [Fault.ok(), Fault.status(529), Fault.status(503), Fault.reset()])
    clock = RecordingClock()
    handle = submit(store, router.policy, _requests(2), serve=serve_with(router), clock=clock.clock(),
                    options=FAST)
    with pytest.raises(BatchNotReady, match="still in_progress after 5s"):
        handle.wait(timeout=5.0)
    assert clock.sleeps == [1.0, 2.0, 2.0]  # the last one cut to the timeout
    assert handle.wait() == BatchTally(total=2, succeeded=2)
    assert fake_server.batches.get(handle.id).retrieves >= 5


def test_a_refused_create_is_tried_again_and_a_broken_one_is_not(
        fake_server: FakeServer, store: SQLiteQueue, router: Router) -> None:
    fake_server.plan(BATCH_ENDPOINT, [Fault.status(529), Fault.status(429, retry_after=3)])
    clock = RecordingClock()
    handle = submit(store, router.policy, _requests(2), serve=serve_with(router), clock=clock.clock(), options=FAST)
    assert fake_server.batches.created == 1 and clock.sleeps == [1.0, 3.0]
    assert handle.wait().succeeded == 2

    fake_server.plan(BATCH_ENDPOINT, [Fault.reset()])  # the create may have gone through: never repeated
    before = fake_server.count(BATCH_ENDPOINT)
    with pytest.raises(BatchSubmitFailed, match="2 requests were not submitted") as failed:
        submit(store, router.policy, _requests(2), serve=serve_with(router), options=FAST)
    assert failed.value.submitted is None
    assert fake_server.count(BATCH_ENDPOINT) == before + 1


def test_only_anthropic_models_take_batches(fake_server: FakeServer, store: SQLiteQueue) -> None:
    text = textwrap.dedent(f"""\
        version: 1
        models:
          gpt: {{provider: litellm, model: openai/gpt-4.1, base_url: "{fake_server.url}/v1",
                 api_key: "${{KEY_FALLBACK}}"}}
          claude: {{provider: anthropic, model: claude-x, base_url: "{fake_server.url}", api_key: "${{KEY_PRIMARY}}"}}
        routes:
          default: [gpt, claude]
          only_gpt: [gpt]
        """)
    policy = parse_policy(text, env=KEYS)
    with pytest.raises(BatchNotSupported, match="only anthropic models can take Message Batches"):
        submit(store, policy, _requests(1), route="only_gpt", options=BatchOptions(retry="none"))
    with pytest.raises(BatchNotSupported):
        submit(store, policy, _requests(1), model="gpt", options=BatchOptions(retry="none"))
    handle = submit(store, policy, _requests(1), options=BatchOptions(retry="none"))
    assert fake_server.batches.get(handle.id).params[handle.ticket_ids[0]]["model"] == "claude-x"


def test_bad_requests_are_refused_before_anything_is_sent(
        fake_server: FakeServer, store: SQLiteQueue, router: Router) -> None:
    policy, serve = router.policy, serve_with(router)
    with pytest.raises(TypeError, match="model= is not accepted"):
        submit(store, policy, [{"model": "x", "max_tokens": 1, "messages": USER}], serve=serve)
    with pytest.raises(ValueError, match="lacks max_tokens"):
        submit(store, policy, [{"messages": USER}], serve=serve)
    with pytest.raises(TypeError, match="JSON"):
        submit(store, policy, [{"max_tokens": 1, "messages": USER, "metadata": {"x": object()}}], serve=serve)
    with pytest.raises(TypeError, match="needs serve="):
        submit(store, policy, _requests(1))
    assert fake_server.count(BATCH_ENDPOINT) == 0 and store.counts()["batched"] == 0


# -- a restart in the middle ---------------------------------------------------------------------------

_SUBMITTER = """
import sys
from router import parse_policy
from router.batches import BatchOptions, submit
from router.queue.sqlite import SQLiteQueue
from tests.conftest import KEYS, policy_yaml

url, path = sys.argv[1], sys.argv[2]
policy = parse_policy(policy_yaml(url), env=KEYS)
store = SQLiteQueue(path)
requests = [{"max_tokens": 32, "messages": [{"role": "user", "content": f"question {i} "}]} for i in range(250)]
handle = submit(store, policy, requests, options=BatchOptions(retry="queue", poll_initial=0.02, poll_max=0.05))
print(handle.id, flush=True)
handle.wait()
print("ended", flush=True)
"""


def _until(check: Callable[[], bool], what: str, seconds: float = 30.0) -> None:
    deadline = time.monotonic() + seconds
    while not check():
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.02)


def test_a_process_killed_while_polling_is_picked_up_again_by_a_new_one(
        fake_server: FakeServer, tmp_path: Path, router: Router) -> None:
    fake_server.plan_batch(mixed(MIX_250, seed=9), polls=10**9)  # in progress until the test ends it
    path = tmp_path / "queue.db"
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    proc = subprocess.Popen([sys.executable, "-c", _SUBMITTER, fake_server.url, str(path)], cwd=ROOT, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        _until(lambda: fake_server.batches.created == 1 or proc.poll() is not None, "the submitter to create")
        batch_id = proc.stdout.readline().strip()  # printed once submit() returned: the batch is in the file
        assert batch_id.startswith("msgbatch_"), proc.stderr.read() if proc.stderr else ""
        _until(lambda: fake_server.batches.get(batch_id).retrieves >= 3, "the submitter to poll")
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.communicate(timeout=10)
    assert proc.returncode == -signal.SIGKILL
    fake_server.batches.end(batch_id)

    store = SQLiteQueue(path)  # a new process's view: nothing but the file
    try:
        handles = resume(store, router.policy, serve=serve_with(router), clock=VirtualClock().clock(), options=FAST)
        assert [h.id for h in handles] == [batch_id]
        assert handles[0].route == "default" and len(handles[0].ticket_ids) == 250
        assert handles[0].wait() == TALLY_250
        _check_250(handles[0], fake_server, store)
        assert resume(store, router.policy, serve=serve_with(router)) == []
    finally:
        store.close()
