"""Every non-Anthropic-SDK model (OpenAI, Gemini, Bedrock, Vertex, Azure, ...) through litellm, in Anthropic's format.

The request is translated Anthropic -> OpenAI and the response OpenAI -> Anthropic with litellm's own
Anthropic-messages adapter, so the caller gets an `anthropic.types.Message` whoever served it. litellm's
retries are off for every call, so each HTTP attempt reaches our breaker, and no litellm Router,
callback or fallback is used.
"""

from __future__ import annotations

import os
import threading
from collections.abc import AsyncIterable, AsyncIterator, Iterable, Iterator, Mapping
from contextlib import asynccontextmanager, contextmanager
from types import ModuleType
from typing import Any

from anthropic.types import Message, RawMessageStreamEvent
from pydantic import TypeAdapter

from ..outcome import Failure, classify, classify_chain
from ..policy import ModelConfig

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
                from litellm.llms.anthropic.pass_through.adapters.transformation import AnthropicAdapter

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

    def __repr__(self) -> str:
        return f"LitellmProvider({self.config.alias!r}, model={self.config.model!r})"

    def warm_up(self) -> None:
        """Import litellm now rather than on the first call."""
        load_litellm()

    def _request(self, params: Mapping[str, Any], timeout: float) -> tuple[dict[str, Any], dict[str, str]]:
        load_litellm()
        anthropic_request = {**params, "model": self.config.model}
        body, tool_names = _adapter.translate_completion_input_params_with_tool_mapping(anthropic_request)
        budget = min(timeout, self.config.timeout.read)
        request: dict[str, Any] = {**body, **self._params, **self._fixed, "timeout": budget}
        if self.config.api_key is not None:
            request["api_key"] = self.config.api_key.reveal()
        return request, tool_names

    def _message(self, response: Any, tool_names: Mapping[str, str]) -> Message:
        translated = _adapter.translate_completion_output_params(response, dict(tool_names) or None)
        message = Message.model_validate(_fix_response(translated, response))
        headers = (getattr(response, "_hidden_params", None) or {}).get("additional_headers") or {}
        request_id = headers.get("llm_provider-request-id") or headers.get("llm_provider-x-request-id")
        if request_id:
            object.__setattr__(message, "_request_id", request_id)
        return message

    def call(self, params: Mapping[str, Any], timeout: float) -> Message:
        request, tool_names = self._request(params, timeout)
        assert _litellm is not None
        return self._message(_litellm.completion(**request), tool_names)

    async def acall(self, params: Mapping[str, Any], timeout: float) -> Message:
        request, tool_names = self._request(params, timeout)
        assert _litellm is not None
        return self._message(await _litellm.acompletion(**request), tool_names)

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
        assert _litellm is not None
        raw = _litellm.completion(**request)
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
        raw = await _litellm.acompletion(**request)
        try:
            yield _aevents(raw, tool_names, self.config.model)
        finally:
            await _aclose(raw)

    def classify(self, exc: BaseException) -> Failure:
        module = type(exc).__module__
        if module.startswith(("litellm", "openai", "httpx")):
            headers = getattr(exc, "litellm_response_headers", None)
            return classify_chain(exc, self._overrides, headers)
        return classify(exc, self._overrides)

    def close(self) -> None:
        """litellm keeps its HTTP clients in a shared cache it owns; there is nothing of ours to close."""

    async def aclose(self) -> None:
        self.close()

    def retire(self) -> None:
        """Nothing to close: litellm's clients live in its own shared cache."""


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
    from litellm.llms.anthropic.pass_through.adapters.streaming_iterator import AnthropicStreamWrapper

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


async def _aevents(raw: Any, tool_names: Mapping[str, str], model: str) -> AsyncIterator[RawMessageStreamEvent]:
    translate = _Translate(raw)
    async for event in _wrapper(raw, tool_names, model):
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
