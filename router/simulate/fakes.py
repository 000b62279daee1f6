"""In-process fake models for `simulate`: each answers as its timeline says, on the injected (virtual) clock.

A fake answers with real `anthropic.types` objects (a Message, or the events of a stream), built once per
model and copied per call. A failure is a `SimulatedError`, which the fake's `classify` maps to the Failure
the real provider would report for the same thing on the wire (status and error type, retry-after, a reset
or closed connection, a timeout). Timeouts follow the real provider's: a call that gets no answer ends when
its attempt's budget does (`router.budget.CURRENT`), or at the socket's read timeout (a stream: its
stream-idle timeout) if that comes first.
"""

from __future__ import annotations

import re
from collections.abc import AsyncIterator, Iterator, Mapping
from typing import Any

from anthropic.types import (
    Message,
    RawContentBlockDeltaEvent,
    RawContentBlockStartEvent,
    RawContentBlockStopEvent,
    RawMessageDeltaEvent,
    RawMessageStartEvent,
    RawMessageStopEvent,
    RawMessageStreamEvent,
)

from ..budget import CURRENT
from ..clock import Clock
from ..outcome import Failure, Kind, classify, classify_status
from ..policy import ModelConfig
from .timeline import Fault, ModelTimeline

TEXT = "The quick brown fox jumps over the lazy dog, and then it naps in the warm afternoon sun."
_WORDS = tuple(re.findall(r"\S+\s*", TEXT))  # the text deltas of a stream: words with their spaces
ERROR_TYPES = {400: "invalid_request_error", 401: "authentication_error", 402: "billing_error",
               403: "permission_error", 404: "not_found_error", 408: "timeout_error", 409: "conflict_error",
               413: "request_too_large", 429: "rate_limit_error", 504: "timeout_error", 529: "overloaded_error"}
SDK_NAMES = {400: "BadRequestError", 401: "AuthenticationError", 403: "PermissionDeniedError", 404: "NotFoundError",
             409: "ConflictError", 413: "RequestTooLargeError", 422: "UnprocessableEntityError",
             429: "RateLimitError", 529: "OverloadedError"}


class SimulatedError(Exception):
    """A fake model's failure. `status` set: an HTTP error response; else a connection that failed
    (`error_type` "connection_error") or timed out ("timeout"). `sdk_name` is what the SDK would raise."""

    def __init__(self, detail: str, *, status: int | None = None, error_type: str = "connection_error",
                 retry_after: float | None = None) -> None:
        super().__init__(detail)
        self.status = status
        self.error_type = error_type
        self.retry_after = retry_after

    @property
    def sdk_name(self) -> str:
        if self.status is None:
            return "APITimeoutError" if self.error_type == "timeout" else "APIConnectionError"
        return SDK_NAMES.get(self.status, "InternalServerError" if self.status >= 500 else "APIStatusError")


def status_error(fault: Fault) -> SimulatedError:
    status = fault.status or 500
    error_type = ERROR_TYPES.get(status, "api_error" if status >= 500 else "invalid_request_error")
    return SimulatedError(f"simulated {status} {error_type}", status=status, error_type=error_type,
                          retry_after=fault.retry_after)


def _message(model: str) -> Message:
    return Message.model_validate({
        "id": "msg_simulated", "type": "message", "role": "assistant", "model": model,
        "content": [{"type": "text", "text": TEXT, "citations": None}], "stop_reason": "end_turn",
        "stop_sequence": None, "usage": {"input_tokens": 12, "output_tokens": len(_WORDS)},
    })


def _events(model: str) -> tuple[RawMessageStreamEvent, ...]:
    start = Message.model_validate({
        "id": "msg_simulated", "type": "message", "role": "assistant", "model": model, "content": [],
        "stop_reason": None, "stop_sequence": None, "usage": {"input_tokens": 12, "output_tokens": 1},
    })
    deltas = [RawContentBlockDeltaEvent.model_validate(
        {"type": "content_block_delta", "index": 0, "delta": {"type": "text_delta", "text": word}}) for word in _WORDS]
    return (
        RawMessageStartEvent(type="message_start", message=start),
        RawContentBlockStartEvent.model_validate(
            {"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
        *deltas,
        RawContentBlockStopEvent(type="content_block_stop", index=0),
        RawMessageDeltaEvent.model_validate({"type": "message_delta", "delta": {"stop_reason": "end_turn",
                                             "stop_sequence": None}, "usage": {"output_tokens": len(_WORDS)}}),
        RawMessageStopEvent(type="message_stop"),
    )


class _Events:
    """One attempt's stream events, sync or async; with `cut`, the connection breaks before event `cut`."""

    __slots__ = ("_cut", "_events", "_i")

    def __init__(self, events: tuple[RawMessageStreamEvent, ...], cut: int | None) -> None:
        self._events = events
        self._cut = cut
        self._i = 0

    def _next(self) -> RawMessageStreamEvent:
        i = self._i
        if i == self._cut:
            raise SimulatedError("simulated stream break: the connection closed in the middle of the body")
        if i >= len(self._events):
            raise StopIteration
        self._i = i + 1
        return self._events[i]

    def __iter__(self) -> Iterator[RawMessageStreamEvent]:
        return self

    def __next__(self) -> RawMessageStreamEvent:
        return self._next()

    def __aiter__(self) -> AsyncIterator[RawMessageStreamEvent]:
        return self

    async def __anext__(self) -> RawMessageStreamEvent:
        try:
            return self._next()
        except StopIteration:
            raise StopAsyncIteration from None


class _Opening:
    """`stream()` / `astream()`: the wait for the response head, then the events (or the failure)."""

    __slots__ = ("_model",)

    def __init__(self, model: FakeModel) -> None:
        self._model = model

    def __enter__(self) -> _Events:
        delay, failure, cut = self._model.answer(stream=True)
        self._model.clock.sleep(delay)
        if failure is not None:
            raise failure
        return _Events(self._model.events, cut)

    def __exit__(self, *exc: object) -> None:
        return None

    async def __aenter__(self) -> _Events:
        delay, failure, cut = self._model.answer(stream=True)
        if delay:
            await self._model.clock.asleep(delay)
        if failure is not None:
            raise failure
        return _Events(self._model.events, cut)

    async def __aexit__(self, *exc: object) -> None:
        return None


class FakeModel:
    """The fake provider of one policy model (the `Provider` protocol), playing its `ModelTimeline`."""

    def __init__(self, config: ModelConfig, plan: ModelTimeline, clock: Clock) -> None:
        self.config = config
        self.plan = plan
        self.clock = clock
        self.message = _message(config.model)
        self.events = _events(config.model)
        self._overrides = config.outcomes
        self._read = config.timeout.read
        self._idle = config.timeout.stream_idle

    def __repr__(self) -> str:
        return f"FakeModel({self.config.alias!r})"

    def fault_now(self) -> Fault | None:
        """The fault in force now, or None when the model is healthy."""
        plan = self.plan
        if not plan.windows:
            return None
        i = plan.window_at(self.clock.now())
        return plan.windows[i].fault if i is not None else None

    def answer(self, stream: bool) -> tuple[float, Exception | None, int | None]:
        """What this call does: (seconds until it answers or fails, the failure or None, for a stream the
        index of the event it breaks before or None)."""
        fault = self.fault_now()
        kind = fault.kind if fault is not None else "ok"
        if kind == "status":
            assert fault is not None
            return 0.0, status_error(fault), None
        if kind == "reset" or (kind == "stream_break" and not stream):
            return 0.0, SimulatedError("simulated connection reset by peer"), None
        left = self._left(stream)
        if kind == "hang":
            assert fault is not None
            if fault.seconds is not None and fault.seconds < left:
                return fault.seconds, SimulatedError("simulated hang: the server closed the connection"), None
            return left, _timeout(), None
        delay = fault.seconds if fault is not None and kind == "slow" and fault.seconds is not None else \
            self.plan.latency
        if delay > left:
            return left, _timeout(), None
        cut = 2 + min(fault.after, len(_WORDS)) if fault is not None and kind == "stream_break" else None
        return delay, None, cut

    def _left(self, stream: bool) -> float:
        """How long a call can wait for its answer: the socket's timeout, or what the attempt has left."""
        socket = self._idle if stream else self._read
        budget = CURRENT.get()
        if budget is None:
            return socket
        left = budget.bound(socket, TimeoutError)  # raises TimeoutError if nothing is left
        return socket if left is None else left

    # -- the Provider protocol ----------------------------------------------------------------------

    def call(self, params: Mapping[str, Any], timeout: float) -> Message:
        delay, failure, _ = self.answer(stream=False)
        self.clock.sleep(delay)
        if failure is not None:
            raise failure
        return self.message.model_copy()

    async def acall(self, params: Mapping[str, Any], timeout: float) -> Message:
        delay, failure, _ = self.answer(stream=False)
        if delay:
            await self.clock.asleep(delay)
        if failure is not None:
            raise failure
        return self.message.model_copy()

    def stream(self, params: Mapping[str, Any], timeout: float) -> _Opening:
        return _Opening(self)

    def astream(self, params: Mapping[str, Any], timeout: float) -> _Opening:
        return _Opening(self)

    def classify(self, exc: BaseException) -> Failure:
        if not isinstance(exc, SimulatedError):
            return classify(exc, self._overrides)  # a timeout, or a stream the router refused
        overrides = self._overrides
        if exc.status is None:
            kind = classify_status(None, exc.error_type, None, overrides) if overrides else Kind.SERVER_FAILURE
            return Failure(kind, None, exc.error_type, None, exc)
        kind = classify_status(exc.status, exc.error_type, None, overrides, str(exc))
        return Failure(kind, exc.status, exc.error_type, None, exc, retry_after=exc.retry_after)

    def close(self) -> None:
        return None

    def retire(self) -> None:
        return None

    async def aclose(self) -> None:
        return None


def _timeout() -> TimeoutError:
    return TimeoutError("simulated: no answer before the attempt's time ran out")
