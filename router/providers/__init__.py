"""What a provider is (call / acall / classify / close) and how one is made for a policy entry."""

from __future__ import annotations

from collections.abc import AsyncIterable, Iterable, Mapping
from contextlib import AbstractAsyncContextManager, AbstractContextManager
from typing import Any, Protocol

from anthropic.types import Message, RawMessageStreamEvent

from ..outcome import Failure
from ..policy import ModelConfig


class Provider(Protocol):
    """Calls one model. One instance per model, created once; its SDK clients are reused across calls."""

    config: ModelConfig

    def call(self, params: Mapping[str, Any], timeout: float) -> Message: ...

    async def acall(self, params: Mapping[str, Any], timeout: float) -> Message: ...

    def stream(
        self, params: Mapping[str, Any], timeout: float
    ) -> AbstractContextManager[Iterable[RawMessageStreamEvent]]:
        """Anthropic stream events of one attempt; `timeout` bounds the wait for each event."""
        ...

    def astream(
        self, params: Mapping[str, Any], timeout: float
    ) -> AbstractAsyncContextManager[AsyncIterable[RawMessageStreamEvent]]: ...

    def classify(self, exc: BaseException) -> Failure: ...

    def close(self) -> None: ...

    def retire(self) -> None:
        """No longer in the policy: close once the calls in flight are done."""
        ...

    async def aclose(self) -> None: ...


def make_provider(config: ModelConfig) -> Provider:
    """The provider for a policy entry. Heavy SDKs (litellm) are imported only when a policy names them."""
    if config.provider == "anthropic":
        from .anthropic import AnthropicProvider

        return AnthropicProvider(config)
    if config.provider == "litellm":
        from .litellm_provider import LitellmProvider

        return LitellmProvider(config)
    raise ValueError(f"unknown provider {config.provider!r}")  # the policy loader rejects these first
