"""The fake server's Message Batches: scripted batch plans, batch state and counters, and the endpoint replies."""

from __future__ import annotations

import json
import random
import re
import threading
import time
from collections import Counter, deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from typing import Any, Literal

from router.testing import wire

__all__ = ["BATCH_ENDPOINT", "BatchInfo", "BatchPlan", "BatchResult", "FakeBatches", "Reply", "mixed"]

#: The pseudo-model name batch endpoint requests are counted and faulted under: `srv.count(BATCH_ENDPOINT)`,
#: `srv.plan(BATCH_ENDPOINT, [Fault.status(529)])` (a planned fault answers the next batch request instead).
BATCH_ENDPOINT = "message-batches"

ResultKind = Literal["succeeded", "errored", "expired", "canceled"]

_CUSTOM_ID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")  # what the real API accepts
_EXPIRY = 24 * 3600.0
_ERROR_MESSAGES = {
    "api_error": "Internal server error",
    "overloaded_error": "Overloaded",
    "invalid_request_error": "messages: at least one message is required",
    "rate_limit_error": "Number of request tokens has exceeded your per-minute rate limit",
}


@dataclass(frozen=True, slots=True)
class BatchResult:
    """What one request of a batch ends as (hashable: usable as a key of `mixed`'s counts)."""

    kind: ResultKind
    error_type: str | None = None  # errored: the error.type of the error response
    message: str | None = None  # errored: the error message
    text: str | None = None  # succeeded: the reply text (default "Hello from MODEL for CUSTOM_ID")

    @classmethod
    def succeeded(cls, text: str | None = None) -> BatchResult:
        return cls("succeeded", text=text)

    @classmethod
    def errored(cls, error_type: str = "api_error", message: str | None = None) -> BatchResult:
        return cls("errored", error_type=error_type, message=message)

    @classmethod
    def expired(cls) -> BatchResult:
        return cls("expired")

    @classmethod
    def canceled(cls) -> BatchResult:
        return cls("canceled")


SUCCEEDED = BatchResult("succeeded")


@dataclass(frozen=True, slots=True)
class BatchPlan:
    """How the next batch created plays out.

    `results`: per custom_id (a mapping) or per position in the create request (a sequence); requests it
    does not name get `default`. The batch answers `in_progress` to its first `polls` retrieves (and, if
    `seconds` is set, until that much real time has passed since its creation), then `ended`. After a
    cancel it answers `canceling` to `cancel_polls` retrieves, then ends with every request canceled."""

    results: Mapping[str, BatchResult] | Sequence[BatchResult] = ()
    default: BatchResult = SUCCEEDED
    polls: int = 1
    seconds: float | None = None
    cancel_polls: int = 1

    def result_for(self, index: int, custom_id: str) -> BatchResult:
        if isinstance(self.results, Mapping):
            return self.results.get(custom_id, self.default)
        return self.results[index] if index < len(self.results) else self.default


def mixed(counts: Mapping[BatchResult, int], seed: int = 0) -> list[BatchResult]:
    """`counts` results (e.g. {BatchResult.succeeded(): 200, BatchResult.expired(): 50}) in a seeded order."""
    out = [result for result, n in counts.items() for _ in range(n)]
    random.Random(seed).shuffle(out)
    return out


@dataclass(frozen=True, slots=True)
class BatchInfo:
    """A batch as the fake server holds it, for tests: its requests and what each ended as."""

    id: str
    status: str
    custom_ids: tuple[str, ...]
    params: Mapping[str, Mapping[str, Any]]
    results: Mapping[str, BatchResult]  # the planned results (canceled ones if the batch was canceled)
    retrieves: int
    canceled: bool

    def tally(self) -> Counter[str]:
        """How many requests end as each kind (succeeded / errored / expired / canceled)."""
        return Counter(r.kind for r in self.results.values())


@dataclass(frozen=True, slots=True)
class Reply:
    """An HTTP reply the handler sends as is."""

    status: int
    body: bytes
    content_type: str = "application/json"
    headers: tuple[tuple[str, str], ...] = ()


@dataclass(slots=True)
class _Batch:
    id: str
    number: int
    requests: list[tuple[str, dict[str, Any]]]
    results: list[BatchResult]
    plan: BatchPlan
    created: float  # wall seconds
    started: float  # monotonic seconds, for `seconds`
    status: str = "in_progress"
    retrieves: int = 0
    cancel_at: float | None = None
    cancel_polls_left: int = 0
    ended_at: float | None = None


def _rfc3339(epoch: float | None) -> str | None:
    if epoch is None:
        return None
    return datetime.fromtimestamp(epoch, timezone.utc).isoformat().replace("+00:00", "Z")


def _error(status: int, error_type: str, message: str, request_id: str) -> Reply:
    return Reply(status, wire.anthropic_error(error_type, message, request_id))


class FakeBatches:
    """Every batch the fake server was sent, the plans for the next ones, and counters; thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._plans: deque[BatchPlan] = deque()
        self._batches: dict[str, _Batch] = {}
        self._submitted: Counter[str] = Counter()
        self._created = 0
        self._cancels = 0
        self._result_fetches = 0
        self.max_requests = 100_000
        self.max_bytes = 256_000_000

    # -- test API ------------------------------------------------------------------------------------

    def plan(self, plan: BatchPlan) -> None:
        """Queue `plan` for the next batch created (plans are used in the order queued; with none left,
        every request succeeds after one in_progress retrieve)."""
        if not isinstance(plan, BatchPlan):
            raise TypeError(f"expected BatchPlan, got {type(plan).__name__}")
        with self._lock:
            self._plans.append(plan)

    def limit(self, max_requests: int | None = None, max_bytes: int | None = None) -> None:
        """Refuse creates over these limits as the real API does (400 / 413); defaults 100,000 and 256 MB."""
        with self._lock:
            if max_requests is not None:
                self.max_requests = max_requests
            if max_bytes is not None:
                self.max_bytes = max_bytes

    @property
    def created(self) -> int:
        """Batches created (accepted creates)."""
        with self._lock:
            return self._created

    @property
    def cancels(self) -> int:
        with self._lock:
            return self._cancels

    @property
    def result_fetches(self) -> int:
        """Result files downloaded."""
        with self._lock:
            return self._result_fetches

    def submissions(self, custom_id: str | None = None) -> int:
        """How many times `custom_id` was sent in a batch (None: requests sent in all batches)."""
        with self._lock:
            return self._submitted[custom_id] if custom_id is not None else sum(self._submitted.values())

    def submitted_ids(self) -> Counter[str]:
        with self._lock:
            return Counter(self._submitted)

    def ids(self) -> list[str]:
        """Batch ids, oldest first."""
        with self._lock:
            return list(self._batches)

    def get(self, batch_id: str) -> BatchInfo:
        with self._lock:
            b = self._batches[batch_id]
            ids = tuple(c for c, _ in b.requests)
            return BatchInfo(b.id, b.status, ids, {c: p for c, p in b.requests}, dict(zip(ids, b.results, strict=True)),
                             b.retrieves, b.cancel_at is not None)

    def end(self, batch_id: str) -> None:
        """End an in-progress batch now, with its planned results (whatever its plan said about polls)."""
        with self._lock:
            batch = self._batches[batch_id]
            if batch.status == "in_progress":
                _end(batch)

    def reset(self) -> None:
        with self._lock:
            self._plans.clear()
            self._batches.clear()
            self._submitted.clear()
            self._created = self._cancels = self._result_fetches = 0

    # -- endpoints -------------------------------------------------------------------------------------

    def create(self, raw: bytes, body: object, number: int, host: str) -> Reply:
        request_id = f"req_fake_{number}"
        problem = _check_create(body)
        if problem is not None:
            return _error(400, "invalid_request_error", problem, request_id)
        assert isinstance(body, dict)
        requests = [(r["custom_id"], r["params"]) for r in body["requests"]]
        with self._lock:
            if len(requests) > self.max_requests:
                message = f"requests: a batch holds at most {self.max_requests} requests, got {len(requests)}"
                return _error(400, "invalid_request_error", message, request_id)
            if len(raw) > self.max_bytes:
                return _error(413, "request_too_large", f"batch of {len(raw)} bytes exceeds {self.max_bytes}",
                              request_id)
            plan = self._plans.popleft() if self._plans else BatchPlan()
            results = [plan.result_for(i, cid) for i, (cid, _) in enumerate(requests)]
            batch = _Batch(f"msgbatch_fake_{number}", number, requests, results, plan, time.time(),
                           time.monotonic())
            self._batches[batch.id] = batch
            self._created += 1
            self._submitted.update(cid for cid, _ in requests)
            return Reply(200, wire.dumps(_batch_json(batch, host)), headers=(("request-id", request_id),))

    def retrieve(self, batch_id: str, number: int, host: str) -> Reply:
        with self._lock:
            batch = self._batches.get(batch_id)
            if batch is None:
                return _not_found(batch_id, number)
            batch.retrieves += 1
            _advance(batch)
            return Reply(200, wire.dumps(_batch_json(batch, host)), headers=(("request-id", f"req_fake_{number}"),))

    def cancel(self, batch_id: str, number: int, host: str) -> Reply:
        with self._lock:
            batch = self._batches.get(batch_id)
            if batch is None:
                return _not_found(batch_id, number)
            if batch.status == "in_progress":
                self._cancels += 1
                batch.status = "canceling"
                batch.cancel_at = time.time()
                batch.cancel_polls_left = batch.plan.cancel_polls
                batch.results = [BatchResult.canceled()] * len(batch.results)
                if batch.cancel_polls_left <= 0:
                    _end(batch)
            return Reply(200, wire.dumps(_batch_json(batch, host)), headers=(("request-id", f"req_fake_{number}"),))

    def results(self, batch_id: str, number: int) -> Reply:
        with self._lock:
            batch = self._batches.get(batch_id)
            if batch is None:
                return _not_found(batch_id, number)
            if batch.status != "ended":
                message = f"Batch {batch_id} has not ended yet: its results are not available"
                return _error(404, "not_found_error", message, f"req_fake_{number}")
            self._result_fetches += 1
            lines = [_result_line(batch, i) for i in range(len(batch.requests))]
        random.Random(batch.number).shuffle(lines)  # results are unordered: clients must match by custom_id
        headers = (("request-id", f"req_fake_{number}"),
                   ("content-disposition", f"attachment; filename*=utf-8''{batch_id}_results.jsonl"))
        return Reply(200, b"".join(lines), "application/x-jsonl", headers)


def _not_found(batch_id: str, number: int) -> Reply:
    return _error(404, "not_found_error", f"No message batch with id {batch_id}", f"req_fake_{number}")


def _check_create(body: object) -> str | None:
    """What is wrong with a create body, as the API's error message; None if nothing."""
    requests = body.get("requests") if isinstance(body, dict) else None
    if not isinstance(requests, list) or not requests:
        return "requests: a non-empty list of requests is required"
    seen: set[str] = set()
    for i, item in enumerate(requests):
        custom_id = item.get("custom_id") if isinstance(item, dict) else None
        params = item.get("params") if isinstance(item, dict) else None
        if not isinstance(custom_id, str) or not _CUSTOM_ID.match(custom_id):
            return f"requests.{i}.custom_id: String should match pattern '^[a-zA-Z0-9_-]{{1,64}}$'"
        if custom_id in seen:
            return f"requests.{i}.custom_id: duplicate custom_id {custom_id!r}"
        seen.add(custom_id)
        if not isinstance(params, dict):
            return f"requests.{i}.params: Field required"
        for key, kind in (("model", str), ("max_tokens", int), ("messages", list)):
            if not isinstance(params.get(key), kind):
                return f"requests.{i}.params.{key}: Field required"
        if params.get("stream"):
            return f"requests.{i}.params.stream: streaming is not supported in a batch"
    return None


def _advance(batch: _Batch) -> None:
    """The progress one retrieve shows: in_progress for `polls` retrieves, canceling for `cancel_polls`."""
    if batch.status == "canceling":
        if batch.cancel_polls_left <= 0:
            _end(batch)
        batch.cancel_polls_left -= 1
        return
    if batch.status != "in_progress":
        return
    plan = batch.plan
    waited = plan.seconds is None or time.monotonic() - batch.started >= plan.seconds
    if batch.retrieves > plan.polls and waited:
        _end(batch)


def _end(batch: _Batch) -> None:
    batch.status = "ended"
    batch.ended_at = time.time()


def _batch_json(batch: _Batch, host: str) -> dict[str, Any]:
    counts = {"processing": 0, "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0}
    if batch.status == "ended":
        for result in batch.results:
            counts[result.kind] += 1
    else:
        counts["processing"] = len(batch.requests)
    ended = batch.status == "ended"
    return {
        "id": batch.id,
        "type": "message_batch",
        "processing_status": batch.status,
        "request_counts": counts,
        "created_at": _rfc3339(batch.created),
        "expires_at": _rfc3339(batch.created + _EXPIRY),
        "ended_at": _rfc3339(batch.ended_at),
        "cancel_initiated_at": _rfc3339(batch.cancel_at),
        "archived_at": None,
        "results_url": f"http://{host}/v1/messages/batches/{batch.id}/results" if ended else None,
    }


def _result_line(batch: _Batch, index: int) -> bytes:
    custom_id, params = batch.requests[index]
    planned = batch.results[index]
    result: dict[str, Any] = {"type": planned.kind}
    if planned.kind == "succeeded":
        model = str(params.get("model", ""))
        text = planned.text if planned.text is not None else f"Hello from {model} for {custom_id}"
        msg_id = f"msg_fake_b{batch.number}_{index}"
        input_tokens = wire.estimate_input_tokens(params)
        output_tokens = max(1, len(text.split()))
        result["message"] = json.loads(wire.anthropic_message(msg_id, model, text, "end_turn", input_tokens,
                                                              output_tokens))
    elif planned.kind == "errored":
        error_type = planned.error_type or "api_error"
        message = planned.message or _ERROR_MESSAGES.get(error_type, error_type)
        result["error"] = json.loads(wire.anthropic_error(error_type, message, f"req_fake_b{batch.number}_{index}"))
    return wire.dumps({"custom_id": custom_id, "result": result}) + b"\n"
