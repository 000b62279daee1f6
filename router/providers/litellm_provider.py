"""Every non-Anthropic-SDK model (OpenAI, Gemini, Bedrock, Vertex, Azure, ...) through litellm, in Anthropic's format.

The request is translated Anthropic -> OpenAI and the response OpenAI -> Anthropic with litellm's own
Anthropic-messages adapter, so the caller gets an `anthropic.types.Message` whoever served it. litellm's
retries are off for every call, so each HTTP attempt reaches our breaker, and no litellm Router,
callback or fallback is used.
"""

from __future__ import annotations

import asyncio
import os
import threading
from collections.abc import AsyncIterable, AsyncIterator, Awaitable, Iterable, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from types import ModuleType
from typing import Any, TypeVar

from anthropic.types import Message, RawMessageStreamEvent
from pydantic import TypeAdapter

from ..budget import CURRENT
from ..outcome import Failure, Kind, WireError, classify, classify_chain
from ..policy import ModelConfig
from ..redact import scrub_exception
from ..reply import judge
from .deadline import LIMITS, Transport, on_response, tls_context

_T = TypeVar("_T")
_import_lock = threading.Lock()
_litellm: ModuleType | None = None
_adapter: Any = None


def load_litellm() -> ModuleType:
    """Import litellm on first use (it costs seconds and ~160 MB, so never at `import router`)."""
    global _litellm, _adapter
    if _litellm is None:
        with _import_lock:
            if _litellm is None:
                # Offline, litellm would stall on fetching its cost map: use the bundled one unless the
                # user chose otherwise.
                os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
                import litellm
                try:  # litellm >= 1.110 moved the adapter; the old path still works but warns
                    from litellm.llms.anthropic.messages.adapters.transformation import AnthropicAdapter
                except ImportError:
                    from litellm.llms.anthropic.pass_through.adapters.transformation import (  # type: ignore[no-redef]
                        AnthropicAdapter,
                    )

                # litellm prints a "Provider List" banner to stdout on every error; a library must not.
                litellm.suppress_debug_info = True
                _adapter = AnthropicAdapter()
                _litellm = litellm
    return _litellm


class LitellmProvider:
    """Calls one model through `litellm.completion` / `acompletion`."""

    def __init__(self, config: ModelConfig) -> None:
        self.config = config
        self._overrides = config.outcomes
        fixed: dict[str, Any] = {
            "num_retries": 0,  # litellm's own retry loop
            "max_retries": 0,  # the underlying SDK client's retries
            # Gap: with `tools`, litellm.completion imports its proxy's MCP handler, which needs the
            # `mcp` package of litellm[proxy] and fails in a plain install. We never use MCP tools.
            "_skip_mcp_handler": True,
        }
        if config.base_url is not None:
            fixed["api_base"] = config.base_url
        self._fixed = fixed
        self._params = dict(config.params)
        self._lock = threading.Lock()
        self._openai: Any = None

    def __repr__(self) -> str:
        return f"LitellmProvider({self.config.alias!r}, model={self.config.model!r})"

    def warm_up(self) -> None:
        """Import litellm now rather than on the first call."""
        load_litellm()

    def _request(self, params: Mapping[str, Any], timeout: float) -> tuple[dict[str, Any], dict[str, str]]:
        if _litellm is None:  # the first call imports litellm (seconds): the model's budget starts after it
            attempt = CURRENT.get()
            started = attempt.clock() if attempt is not None else 0.0
            load_litellm()
            if attempt is not None:
                attempt.shift(attempt.clock() - started)
        anthropic_request = {**params, "model": self.config.model}
        body, tool_names = _adapter.translate_completion_input_params_with_tool_mapping(anthropic_request)
        budget = min(timeout, self.config.timeout.read)
        request: dict[str, Any] = {**body, **self._params, **self._fixed, "timeout": budget}
        if self.config.api_key is not None:
            request["api_key"] = self.config.api_key.reveal()
        return request, tool_names

    def _message(self, response: Any, tool_names: Mapping[str, str]) -> Message:
        headers = (getattr(response, "_hidden_params", None) or {}).get("additional_headers") or {}
        request_id = headers.get("llm_provider-request-id") or headers.get("llm_provider-x-request-id")
        try:
            translated = _adapter.translate_completion_output_params(response, dict(tool_names) or None)
            message = Message.model_validate(_fix_response(translated, response))
        except Exception as exc:  # a 2xx whose body does not translate into a Message is the server's fault
            detail = f"200 whose body cannot be read as a Message ({type(exc).__name__})"
            raise WireError(detail, status=200, request_id=request_id) from exc
        message = judge(message, 200, "application/json", request_id)
        if request_id:
            object.__setattr__(message, "_request_id", request_id)
        return message

    def _sync_client(self) -> Any:
        """For litellm's `openai/` models, an OpenAI SDK client on the router's deadline transport, given to
        litellm as `client=`, so wall-clock deadlines hold for sync calls and streams as they do for Claude.
        None for other providers (litellm's own HTTP clients, per-read timeouts only)."""
        if not self.config.model.startswith("openai/"):
            return None
        with self._lock:
            if self._openai is None:
                import openai

                key = self.config.api_key.reveal() if self.config.api_key else os.environ.get("OPENAI_API_KEY")
                if not key:
                    return None  # litellm reports the missing key itself
                http = openai.DefaultHttpxClient(
                    transport=Transport(tls_context(), LIMITS), event_hooks={"response": [on_response]}
                )
                self._openai = openai.OpenAI(api_key=key, base_url=self.config.base_url, max_retries=0,
                                             http_client=http)
            return self._openai

    def call(self, params: Mapping[str, Any], timeout: float) -> Message:
        request, tool_names = self._request(params, timeout)
        client = self._sync_client()
        if client is not None:
            request["client"] = client
        assert _litellm is not None
        return self._message(_litellm.completion(**request), tool_names)

    async def acall(self, params: Mapping[str, Any], timeout: float) -> Message:
        request, tool_names = self._request(params, timeout)
        assert _litellm is not None
        return self._message(await _within(_litellm.acompletion(**request), None), tool_names)

    def _stream_request(self, params: Mapping[str, Any], timeout: float) -> tuple[dict[str, Any], dict[str, str]]:
        request, tool_names = self._request(params, min(timeout, self.config.timeout.stream_idle))
        request["stream"] = True
        request["stream_options"] = {"include_usage": True}
        return request, tool_names

    @contextmanager
    def stream(self, params: Mapping[str, Any], timeout: float) -> Iterator[Iterable[RawMessageStreamEvent]]:
        # Not litellm.anthropic.messages(stream=True): its native pass-through imports fastapi, which a
        # plain install lacks. The chat stream translated by the adapter's stream wrapper avoids it.
        request, tool_names = self._stream_request(params, timeout)
        client = self._sync_client()
        if client is not None:
            request["client"] = client
        assert _litellm is not None
        raw = _litellm.completion(**request)
        budget = CURRENT.get()
        if budget is not None:
            budget.head_arrived()
        try:
            yield _events(raw, tool_names, self.config.model)
        finally:
            _close(raw)

    @asynccontextmanager
    async def astream(
        self, params: Mapping[str, Any], timeout: float
    ) -> AsyncIterator[AsyncIterable[RawMessageStreamEvent]]:
        request, tool_names = self._stream_request(params, timeout)
        assert _litellm is not None
        raw = await _within(_litellm.acompletion(**request), None)
        budget = CURRENT.get()
        if budget is not None:
            budget.head_arrived()
        try:
            yield _aevents(raw, tool_names, self.config.model, self.config.timeout.stream_idle)
        finally:
            await _aclose(raw)

    def classify(self, exc: BaseException) -> Failure:
        if self.config.api_key is not None:
            scrub_exception(exc, (self.config.api_key.reveal(),))
        module = type(exc).__module__
        if module.startswith(("litellm", "openai", "httpx")):
            headers = getattr(exc, "litellm_response_headers", None)
            if _error_object_in_2xx(exc):
                return Failure(Kind.SERVER_FAILURE, 200, "invalid_response", None, exc,
                               note="200 carrying an error object instead of a completion")
            return classify_chain(exc, self._overrides, headers)
        return classify(exc, self._overrides)

    def close(self) -> None:
        """Close the OpenAI client we gave litellm; litellm's own clients live in a cache it owns."""
        with self._lock:
            client, self._openai = self._openai, None
        if client is not None:
            client.close()

    async def aclose(self) -> None:
        self.close()

    def retire(self) -> None:
        """Replaced by a reload: the OpenAI client (if any) is dropped and closed when garbage-collected,
        since a call may still be using it; litellm's own clients live in its shared cache."""
        with self._lock:
            self._openai = None


def _error_object_in_2xx(exc: BaseException) -> bool:
    """litellm turns a 2xx whose JSON holds an `error` object into a bare `Exception` carrying a made-up
    `status_code` (often 422) on the cause chain, with no HTTP error under it: the server answered 2xx,
    so this is the server's failure, not the caller's. (litellm's convert_dict_to_response does this.)"""
    link: BaseException | None = exc
    for _ in range(8):
        if link is None:
            return False
        if type(link) is Exception and hasattr(link, "status_code"):
            return True
        if type(link).__name__ == "HTTPStatusError":
            return False
        link = link.__cause__ or link.__context__
    return False


def _fix_response(translated: Mapping[str, Any], response: Any) -> dict[str, Any]:
    """Small fixes on top of litellm's translation (each names the gap it covers)."""
    data = dict(translated)
    # Gap: the adapter echoes the provider's model name without the route prefix; keep it as sent.
    data.setdefault("model", getattr(response, "model", "") or "")
    # Gap: a response with no content blocks (an empty completion) must still be a valid Message.
    if data.get("content") is None:
        data["content"] = []
    return data


_EVENT = TypeAdapter(RawMessageStreamEvent)


def _wrapper(raw: Any, tool_names: Mapping[str, str], model: str) -> Any:
    try:
        from litellm.llms.anthropic.messages.adapters.streaming_iterator import AnthropicStreamWrapper
    except ImportError:
        from litellm.llms.anthropic.pass_through.adapters.streaming_iterator import (  # type: ignore[no-redef]
            AnthropicStreamWrapper,
        )

    return AnthropicStreamWrapper(completion_stream=raw, model=model, tool_name_mapping=dict(tool_names) or None)


def _fabricated_end(event: Mapping[str, Any], raw: Any) -> bool:
    # Gap: when a provider's stream ends without a finish_reason (and without [DONE]), litellm invents
    # finish_reason "stop" and the adapter a clean ending. Only `received_finish_reason` tells the two
    # apart; a made-up ending is dropped so the stream counts as broken, as it is.
    return event.get("type") in ("message_delta", "message_stop") and raw.received_finish_reason is None


class _Translate:
    """litellm's Anthropic-format event dicts -> SDK event objects, minus a made-up ending.

    A content_block_stop is held until the next event: it belongs to a made-up ending when a
    made-up message_delta follows it, and then it is dropped too (the block is still open)."""

    def __init__(self, raw: Any) -> None:
        self.raw = raw
        self.held: Mapping[str, Any] | None = None
        self.ended = False

    def __call__(self, event: Mapping[str, Any]) -> list[RawMessageStreamEvent]:
        if self.ended:
            return []
        if _fabricated_end(event, self.raw):
            self.ended = True
            self.held = None
            return []
        out = [_EVENT.validate_python(self.held)] if self.held is not None else []
        self.held = None
        if event.get("type") == "content_block_stop":
            self.held = event
        else:
            out.append(_EVENT.validate_python(event))
        return out


def _events(raw: Any, tool_names: Mapping[str, str], model: str) -> Iterator[RawMessageStreamEvent]:
    translate = _Translate(raw)
    for event in _wrapper(raw, tool_names, model):
        yield from translate(event)


async def _within(step: Awaitable[_T], idle: float | None) -> _T:
    """Await one step of litellm's async I/O no longer than the attempt's budget allows (its sockets are
    litellm's, so they know nothing of the budget)."""
    budget = CURRENT.get()
    wait = idle if budget is None else budget.bound(idle, TimeoutError)
    if wait is None:
        return await step
    try:
        return await asyncio.wait_for(step, wait)
    except asyncio.TimeoutError:
        raise TimeoutError(f"nothing from the model within {wait:.3g}s") from None


async def _aevents(
    raw: Any, tool_names: Mapping[str, str], model: str, idle: float
) -> AsyncIterator[RawMessageStreamEvent]:
    translate = _Translate(raw)
    events = _wrapper(raw, tool_names, model).__aiter__()
    while True:
        try:
            event = await _within(events.__anext__(), idle)
        except StopAsyncIteration:
            return
        for out in translate(event):
            yield out


def _close(raw: Any) -> None:
    inner = getattr(raw, "completion_stream", None)
    close = getattr(inner, "close", None)
    if callable(close):
        close()


async def _aclose(raw: Any) -> None:
    inner = getattr(raw, "completion_stream", None)
    close = getattr(inner, "aclose", None) or getattr(inner, "close", None)
    if callable(close):
        result = close()
        if hasattr(result, "__await__"):
            await result
