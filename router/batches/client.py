"""The model a batch goes to and its sync anthropic client (no SDK retries: the router decides what to retry)."""

from __future__ import annotations

from typing import Any

import anthropic

from ..errors import UnknownRoute
from ..policy import ModelConfig, Policy
from .errors import BatchNotSupported


def batch_model(policy: Policy, route: str, model: str | None = None) -> ModelConfig:
    """The model that takes a batch of `route`: `model` (an alias of the policy) if given, else the first
    anthropic model of the route's chain."""
    if route not in policy.routes:
        raise UnknownRoute(route, list(policy.routes))
    if model is not None:
        if model not in policy.models:
            raise ValueError(f"no model named {model!r} in the policy; models: {', '.join(sorted(policy.models))}")
        config = policy.models[model]
        if config.provider != "anthropic":
            raise BatchNotSupported(config.alias, config.provider)
        return config
    chain = [policy.models[alias] for alias in policy.routes[route].chain]
    for config in chain:
        if config.provider == "anthropic":
            return config
    raise BatchNotSupported(chain[0].alias, chain[0].provider)


def batch_client(config: ModelConfig) -> anthropic.Anthropic:
    """A sync client for `config`'s API: its key, base URL and timeouts, max_retries=0."""
    if config.provider != "anthropic":
        raise BatchNotSupported(config.alias, config.provider)
    t = config.timeout
    kwargs: dict[str, Any] = {"max_retries": 0, "timeout": anthropic.Timeout(t.read, connect=t.connect)}
    if config.api_key is not None:
        kwargs["api_key"] = config.api_key.reveal()
    if config.base_url is not None:
        kwargs["base_url"] = config.base_url
    return anthropic.Anthropic(**kwargs)
