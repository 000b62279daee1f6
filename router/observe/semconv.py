"""The names the OpenTelemetry GenAI semantic conventions give, in the version the environment asks for.

By default: the GenAI conventions of OpenTelemetry semantic conventions v1.41.0 (`gen_ai.provider.name`,
`gen_ai.client.operation.duration`, `gen_ai.client.token.usage`, `gen_ai.usage.cache_creation.input_tokens`).
With `OTEL_SEMCONV_STABILITY_OPT_IN` containing `gen_ai_latest_experimental`: semantic-conventions-genai v0.1.0
(`gen_ai.client.inference.duration`, the `gen_ai.client.inference.usage.*` counters, `cache_write`), and not
the old names, as the conventions' transition plan asks. Pure data: no OpenTelemetry import.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass

OPT_IN_ENV = "OTEL_SEMCONV_STABILITY_OPT_IN"
LATEST = "gen_ai_latest_experimental"

#: Bucket boundaries the conventions give for operation durations (seconds) and token counts.
DURATION_BUCKETS = (0.01, 0.02, 0.04, 0.08, 0.16, 0.32, 0.64, 1.28, 2.56, 5.12, 10.24, 20.48, 40.96, 81.92)
TOKEN_BUCKETS = (1, 4, 16, 64, 256, 1024, 4096, 16384, 65536, 262144, 1048576, 4194304, 16777216, 67108864)

#: litellm's provider prefixes -> the conventions' well-known `gen_ai.provider.name` values.
_PROVIDERS: Mapping[str, str] = {
    "anthropic": "anthropic", "bedrock": "aws.bedrock", "bedrock_converse": "aws.bedrock",
    "azure": "azure.ai.openai", "azure_ai": "azure.ai.inference", "cohere": "cohere", "cohere_chat": "cohere",
    "deepseek": "deepseek", "gemini": "gcp.gemini", "vertex_ai": "gcp.vertex_ai", "groq": "groq",
    "watsonx": "ibm.watsonx.ai", "mistral": "mistral_ai", "moonshot": "moonshot_ai", "openai": "openai",
    "perplexity": "perplexity", "xai": "x_ai",
}


@dataclass(frozen=True, slots=True)
class Names:
    """Metric and attribute names of one version of the conventions."""

    latest: bool
    duration: str
    cache_write_attribute: str

    @property
    def version(self) -> str:
        return "semantic-conventions-genai v0.1.0" if self.latest else "semantic conventions v1.41.0"


OLD = Names(False, "gen_ai.client.operation.duration", "gen_ai.usage.cache_creation.input_tokens")
NEW = Names(True, "gen_ai.client.inference.duration", "gen_ai.usage.cache_write.input_tokens")

#: Old version: one histogram, split by gen_ai.token.type.
TOKEN_USAGE = "gen_ai.client.token.usage"
#: New version: one counter per kind of token (cache_read and cache_write are subsets of input_tokens).
USAGE_INPUT = "gen_ai.client.inference.usage.input_tokens"
USAGE_OUTPUT = "gen_ai.client.inference.usage.output_tokens"
USAGE_CACHE_READ = "gen_ai.client.inference.usage.cache_read.input_tokens"
USAGE_CACHE_WRITE = "gen_ai.client.inference.usage.cache_write.input_tokens"


def names(environ: Mapping[str, str] | None = None) -> Names:
    """The names `OTEL_SEMCONV_STABILITY_OPT_IN` (a comma-separated list) asks for."""
    env = os.environ if environ is None else environ
    wanted = {part.strip() for part in env.get(OPT_IN_ENV, "").split(",")}
    return NEW if LATEST in wanted else OLD


def provider_and_model(provider: str, model: str) -> tuple[str, str]:
    """(`gen_ai.provider.name`, `gen_ai.request.model`) of a policy model: litellm's `prefix/model` is split, the
    prefix named as the conventions do when they know it."""
    if provider != "litellm":
        return provider, model
    prefix, sep, rest = model.partition("/")
    if not sep:
        return "openai", model  # litellm's default provider for a bare model name
    return _PROVIDERS.get(prefix, prefix), rest


@dataclass(frozen=True, slots=True)
class Usage:
    """A reply's token counts, as the conventions count them: input includes cache reads and writes."""

    input_tokens: int
    output_tokens: int
    cache_read: int
    cache_write: int


def usage_of(message: object) -> Usage | None:
    """The token usage of an `anthropic.types.Message` (None when it has none)."""
    usage = getattr(message, "usage", None)
    if usage is None:
        return None
    fresh = getattr(usage, "input_tokens", 0) or 0
    read = getattr(usage, "cache_read_input_tokens", 0) or 0
    write = getattr(usage, "cache_creation_input_tokens", 0) or 0
    out = getattr(usage, "output_tokens", 0) or 0
    return Usage(fresh + read + write, out, read, write)
