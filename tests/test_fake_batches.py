"""The fake server's Message Batches endpoints, driven by the real anthropic SDK over HTTP."""

from __future__ import annotations

import urllib.error
import urllib.request
from collections import Counter
from typing import Any

import anthropic
import pytest

from router.testing import FakeServer, Fault
from router.testing.batches import BATCH_ENDPOINT, BatchResult, mixed

USER = [{"role": "user", "content": "Hi"}]


def _client(srv: FakeServer) -> anthropic.Anthropic:
    return anthropic.Anthropic(base_url=srv.url, api_key="k", max_retries=0)


def _requests(n: int, model: str = "claude-batch", prefix: str = "req") -> list[Any]:
    return [{"custom_id": f"{prefix}_{i}", "params": {"model": model, "max_tokens": 16, "messages": USER}}
            for i in range(n)]


def test_a_batch_moves_from_in_progress_to_ended_with_mixed_results(fake_server: FakeServer) -> None:
    planned = mixed({BatchResult.succeeded(): 6, BatchResult.errored("api_error"): 2,
                     BatchResult.errored("invalid_request_error"): 1, BatchResult.expired(): 2,
                     BatchResult.canceled(): 1}, seed=3)
    fake_server.plan_batch(planned, polls=2)
    client = _client(fake_server)

    batch = client.messages.batches.create(requests=_requests(12))
    assert batch.processing_status == "in_progress"
    assert batch.request_counts.processing == 12 and batch.results_url is None
    assert batch.expires_at > batch.created_at
    for _ in range(2):
        assert client.messages.batches.retrieve(batch.id).processing_status == "in_progress"
    ended = client.messages.batches.retrieve(batch.id)
    assert ended.processing_status == "ended" and ended.ended_at is not None
    counts = ended.request_counts
    assert (counts.processing, counts.succeeded, counts.errored, counts.expired, counts.canceled) == (0, 6, 3, 2, 1)

    lines = list(client.messages.batches.results(batch.id))
    assert sorted(r.custom_id for r in lines) == sorted(f"req_{i}" for i in range(12))
    assert [r.custom_id for r in lines] != [f"req_{i}" for i in range(12)]  # unordered, as the real API says
    by_id = {r.custom_id: r.result for r in lines}
    for i, want in enumerate(planned):
        got = by_id[f"req_{i}"]
        assert got.type == want.kind
        if got.type == "succeeded":
            assert got.message.model == "claude-batch"
            assert got.message.content[0].type == "text"
            assert got.message.content[0].text == f"Hello from claude-batch for req_{i}"
            assert got.message.usage.output_tokens > 0
        elif got.type == "errored":
            assert got.error.error.type == want.error_type
            assert got.error.error.message
    assert fake_server.batches.created == 1
    assert fake_server.batches.result_fetches == 1
    assert fake_server.batches.get(batch.id).tally() == Counter(succeeded=6, errored=3, expired=2, canceled=1)


def test_results_by_custom_id_and_text(fake_server: FakeServer) -> None:
    fake_server.plan_batch({"b": BatchResult.errored("overloaded_error", "busy"), "c": BatchResult.succeeded("yes")},
                           polls=0)
    client = _client(fake_server)
    batch = client.messages.batches.create(requests=[*_requests(1, prefix="a"), *[
        {"custom_id": cid, "params": {"model": "m", "max_tokens": 4, "messages": USER}} for cid in ("b", "c")]])
    assert client.messages.batches.retrieve(batch.id).processing_status == "ended"
    by_id = {r.custom_id: r.result for r in client.messages.batches.results(batch.id)}
    assert by_id["a_0"].type == "succeeded"
    assert by_id["b"].type == "errored" and by_id["b"].error.error.message == "busy"
    assert by_id["c"].type == "succeeded" and by_id["c"].message.content[0].text == "yes"


def test_cancel_goes_through_canceling_to_ended_with_every_request_canceled(fake_server: FakeServer) -> None:
    fake_server.plan_batch(polls=5, cancel_polls=1)
    client = _client(fake_server)
    batch = client.messages.batches.create(requests=_requests(4))
    canceling = client.messages.batches.cancel(batch.id)
    assert canceling.processing_status == "canceling" and canceling.cancel_initiated_at is not None
    assert client.messages.batches.retrieve(batch.id).processing_status == "canceling"
    ended = client.messages.batches.retrieve(batch.id)
    assert ended.processing_status == "ended" and ended.request_counts.canceled == 4
    assert {r.result.type for r in client.messages.batches.results(batch.id)} == {"canceled"}
    assert fake_server.batches.cancels == 1


def test_a_batch_gated_by_time_stays_in_progress_past_its_polls(fake_server: FakeServer) -> None:
    fake_server.plan_batch(polls=0, seconds=60.0)
    client = _client(fake_server)
    batch = client.messages.batches.create(requests=_requests(2))
    for _ in range(3):
        assert client.messages.batches.retrieve(batch.id).processing_status == "in_progress"


def test_results_before_the_end_and_unknown_batches(fake_server: FakeServer) -> None:
    fake_server.plan_batch(polls=3)
    client = _client(fake_server)
    batch = client.messages.batches.create(requests=_requests(2))
    with pytest.raises(anthropic.AnthropicError, match="results_url"):
        client.messages.batches.results(batch.id)
    with pytest.raises(anthropic.NotFoundError):
        client.messages.batches.retrieve("msgbatch_nope")
    with pytest.raises(anthropic.NotFoundError):
        client.messages.batches.cancel("msgbatch_nope")


def test_a_create_the_real_api_would_refuse_is_refused(fake_server: FakeServer) -> None:
    client = _client(fake_server)
    bad_id = [{"custom_id": "has space", "params": {"model": "m", "max_tokens": 4, "messages": USER}}]
    with pytest.raises(anthropic.BadRequestError, match="custom_id"):
        client.messages.batches.create(requests=bad_id)
    with pytest.raises(anthropic.BadRequestError, match="duplicate"):
        client.messages.batches.create(requests=[*_requests(1), *_requests(1)])
    with pytest.raises(anthropic.BadRequestError, match="max_tokens"):
        client.messages.batches.create(requests=[{"custom_id": "x", "params": {"model": "m", "messages": USER}}])
    fake_server.batches.limit(max_requests=3)
    with pytest.raises(anthropic.BadRequestError, match="at most 3"):
        client.messages.batches.create(requests=_requests(4))
    fake_server.batches.limit(max_requests=100, max_bytes=500)
    with pytest.raises(anthropic.APIStatusError) as too_large:
        client.messages.batches.create(requests=_requests(10))
    assert too_large.value.status_code == 413
    assert fake_server.batches.created == 0 and fake_server.batches.submissions() == 0


def test_faults_planned_for_the_batch_endpoint_answer_batch_requests(fake_server: FakeServer) -> None:
    fake_server.plan(BATCH_ENDPOINT, [Fault.status(529)])
    client = _client(fake_server)
    with pytest.raises(anthropic.APIStatusError) as overloaded:
        client.messages.batches.create(requests=_requests(2))
    assert overloaded.value.status_code == 529
    assert fake_server.batches.created == 0
    batch = client.messages.batches.create(requests=_requests(2))
    assert fake_server.batches.created == 1 and fake_server.batches.submissions("req_0") == 1
    assert fake_server.count(BATCH_ENDPOINT) == 2
    assert fake_server.count("claude-batch") == 0  # batched requests are not Messages requests
    with pytest.raises(urllib.error.HTTPError) as no_key:
        urllib.request.urlopen(f"{fake_server.url}/v1/messages/batches/{batch.id}", timeout=5)
    assert no_key.value.code == 401
