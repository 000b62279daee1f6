"""Reading a policy: YAML text to a validated Policy, with file:line:key errors (imported on first load)."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from router._schema import MERGED, TOP, Given, check_version, merge, read_section
from router._values import Problem, format_seconds, suggest
from router._yamlnodes import MAX_BYTES, MAX_DEPTH, Map, Node, Scalar, describe, read
from router.policy import (
    KNOWN_ERROR_TYPES,
    BackoffConfig,
    BreakerConfig,
    ModelConfig,
    Policy,
    PolicyError,
    RetryConfig,
    Route,
    Secret,
    StreamingConfig,
    TimeoutConfig,
    empty_mapping,
)


def _litellm_available() -> bool:
    try:
        return importlib.util.find_spec("litellm") is not None
    except (ImportError, ValueError):
        return False


def load(path: str | os.PathLike[str], env: Mapping[str, str] | None) -> tuple[Policy, list[str]]:
    """Read and validate a policy file: the Policy and the warnings to emit."""
    try:
        name = os.fspath(path)
    except TypeError:
        raise PolicyError(f"a policy path must be a str or path, not {type(path).__name__}") from None
    file = name if isinstance(name, str) else os.fsdecode(name)
    try:
        with open(name, "rb") as handle:
            data = handle.read(MAX_BYTES + 1)
    except FileNotFoundError:
        raise PolicyError("no such policy file", file) from None
    except (OSError, ValueError) as e:
        raise PolicyError(f"cannot read the policy file: {getattr(e, 'strerror', None) or e}", file) from None
    if len(data) > MAX_BYTES:
        raise PolicyError(f"the policy is larger than {MAX_BYTES // 1024} KiB", file)
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        raise PolicyError(f"not UTF-8 text (binary data at byte {e.start}?)", file, line) from None
    return parse(text, file, env)


def parse(text: str, file: str, env: Mapping[str, str] | None) -> tuple[Policy, list[str]]:
    """Validate policy text: the Policy and the warnings to emit."""
    notes: list[str] = []
    try:
        if not isinstance(text, str):
            raise Problem(f"the policy text must be a str, not {type(text).__name__}", None)
        policy = _build(read(text, os.environ if env is None else env), file, notes)
    except Problem as p:
        raise PolicyError(p.message, file, p.line, p.key, p.suggestion) from None
    except Exception as e:  # the contract is PolicyError only; keep the cause for debugging
        name = type(e).__name__
        raise PolicyError(f"internal error while reading the policy ({name}); please report it", file) from e
    return policy, notes


# ---- building the Policy ----


def _build(root: Node | None, file: str, notes: list[str]) -> Policy:
    if root is None or (isinstance(root, Scalar) and root.value is None):
        raise Problem("the policy is empty; it needs version, models and routes", 1)
    if not isinstance(root, Map):
        what = describe(root)
        raise Problem(f"the policy must be a mapping of version, models and routes, got {what}", root.line)
    if "version" in root.items:  # first, so a newer file fails on its version, not on its new keys
        check_version(root.items["version"][1], "version")
    top: dict[str, Given] = read_section(root, TOP, "", root.line).value
    defaults: dict[str, Given] = top["defaults"].value if "defaults" in top else {}
    _configs(defaults)
    _check_error_types(defaults.get("outcomes"), notes, file)
    models = {}
    for alias, given in top["models"].value.items():
        fields: dict[str, Given] = given.value
        provider = fields["provider"]
        if provider.value == "litellm" and not _litellm_available():
            message = "provider 'litellm' needs the litellm package: pip install 'failover-router[litellm]'"
            raise Problem(message, provider.line, provider.key)
        merged = merge(defaults, {name: fields[name] for name in MERGED if name in fields})
        breaker, retry, timeout, outcomes = _configs(merged)
        _check_error_types(fields.get("outcomes"), notes, file)
        secret = Secret(*fields["api_key"].value) if "api_key" in fields else None
        if secret is not None and secret.source == "literal":
            where = f"{file}:{fields['api_key'].line}: {fields['api_key'].key}"
            notes.append(f"{where}: API key written in the policy file; take it from the environment "
                         "instead, e.g. api_key: ${ANTHROPIC_API_KEY}")
        models[alias] = ModelConfig(
            alias=alias,
            provider=fields["provider"].value,
            model=fields["model"].value,
            base_url=fields["base_url"].value if "base_url" in fields else None,
            api_key=secret,
            breaker=breaker,
            retry=retry,
            timeout=timeout,
            outcomes=outcomes,
            params=fields["params"].value if "params" in fields else empty_mapping(),
            line=given.line,
            resume=fields["resume"].value if "resume" in fields else None,
        )
    routes = _routes(top["routes"].value, models)
    streaming = StreamingConfig(**_leaves(top.get("streaming")))
    return Policy(1, MappingProxyType(models), MappingProxyType(routes), file, streaming)


def _leaves(section: Given | None) -> dict[str, Any]:
    return {name: g.value for name, g in section.value.items() if not g.nested} if section else {}


def _blame(section: Given, *names: str) -> Given:
    """The key to report for a cross-key problem: a model's own setting before an inherited default."""
    given: list[Given] = [section.value[name] for name in names if name in section.value]
    return next((g for g in given if g.key.startswith("models.")), given[0])


def _configs(tree: dict[str, Given]) -> tuple[BreakerConfig, RetryConfig, TimeoutConfig, Mapping[str, str]]:
    breaker = BreakerConfig(**_leaves(tree.get("breaker")))
    if breaker.max_reset_timeout < breaker.reset_timeout:
        g = _blame(tree["breaker"], "max_reset_timeout", "reset_timeout")
        most, least = format_seconds(breaker.max_reset_timeout), format_seconds(breaker.reset_timeout)
        message = f"max_reset_timeout ({most}) must not be shorter than reset_timeout ({least})"
        raise Problem(message, g.line, g.key)
    retry_tree = tree.get("retry")
    backoff_tree = retry_tree.value.get("backoff") if retry_tree else None
    backoff = BackoffConfig(**_leaves(backoff_tree))
    if backoff_tree is not None and backoff.max < backoff.initial:
        g = _blame(backoff_tree, "max", "initial")
        most, least = format_seconds(backoff.max), format_seconds(backoff.initial)
        raise Problem(f"backoff max ({most}) must not be shorter than initial ({least})", g.line, g.key)
    retry = RetryConfig(**_leaves(retry_tree), backoff=backoff)
    timeout = TimeoutConfig(**_leaves(tree.get("timeout")))
    return breaker, retry, timeout, MappingProxyType(_leaves(tree.get("outcomes")))


def _check_error_types(outcomes: Given | None, notes: list[str], file: str) -> None:
    # Other providers have other error types, so an unknown one is fine; a near miss is likely a typo.
    for name, g in outcomes.value.items() if outcomes else ():
        hint = suggest(name, KNOWN_ERROR_TYPES)
        if not name.isdigit() and name not in KNOWN_ERROR_TYPES and hint:
            message = f"'{name}' is not an Anthropic error type (did you mean '{hint}'?)"
            notes.append(f"{file}:{g.line}: {g.key}: {message}")


def _routes(given: dict[str, Given], models: Mapping[str, ModelConfig]) -> dict[str, Route]:
    for name, g in given.items():
        if name in models:
            raise Problem(f"'{name}' is both a model alias and a route name; rename one", g.line, g.key)
    done: dict[str, tuple[str, ...]] = {}

    def expand(name: str, stack: tuple[str, ...]) -> tuple[str, ...]:
        if name in done:
            return done[name]
        route = given[name]
        if len(stack) >= MAX_DEPTH:
            raise Problem(f"routes nest more than {MAX_DEPTH} levels deep", route.line, route.key)
        if not route.value:
            raise Problem(f"route '{name}' is empty; list at least one model", route.line, route.key)
        chain: list[str] = []
        seen: set[str] = set()  # a set beside the list: membership tests stay O(1) for long chains
        for entry in route.value:
            if entry.name in models:
                names: tuple[str, ...] = (entry.name,)
            elif entry.name in given:
                path = (*stack, name)
                if entry.name in path:
                    cycle = " -> ".join((*path[path.index(entry.name) :], entry.name))
                    raise Problem(f"route cycle: {cycle}", entry.line, entry.key)
                names = expand(entry.name, path)
            else:
                hint = suggest(entry.name, [*models, *given])
                raise Problem(f"unknown model or route '{entry.name}'", entry.line, entry.key, hint)
            for alias in names:
                if alias in seen:
                    via = f" (via route '{entry.name}')" if entry.name != alias else ""
                    message = f"model '{alias}' appears twice in route '{name}'{via}"
                    raise Problem(message, entry.line, entry.key)
                chain.append(alias)
                seen.add(alias)
        done[name] = tuple(chain)
        return done[name]

    return {name: Route(name, expand(name, ()), g.line) for name, g in given.items()}
