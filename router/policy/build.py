"""Building the Policy from the checked YAML tree: defaults merged into models, cross-key checks, warnings."""

from __future__ import annotations

import importlib.util
import os
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from .checks import check_version
from .durations import format_seconds
from .model import (
    KNOWN_ERROR_TYPES,
    BackoffConfig,
    BreakerConfig,
    ModelConfig,
    Policy,
    QueueConfig,
    RedisConfig,
    RetryConfig,
    Route,
    Secret,
    StateConfig,
    StatusPageConfig,
    StreamingConfig,
    TimeoutConfig,
    empty_mapping,
)
from .problems import Fatal, Findings, Problem, suggest
from .routes import expand_routes
from .schema import MERGED, TOP, Given, merge, read_section
from .yaml_nodes import Map, Node, Scalar, describe


def _available(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except (ImportError, ValueError):
        return False


def _state(section: Given | None, found: Findings) -> StateConfig:
    redis = section.value.get("redis") if section is not None and not section.broken else None
    if redis is None or redis.broken or "url" not in redis.value or redis.value["url"].broken:
        return StateConfig()
    if not _available("redis"):
        found.add(Problem("state.redis needs the redis package: pip install 'failover-router[redis]'",
                          redis.line, redis.key))
        return StateConfig()
    fields = {name: g.value for name, g in redis.value.items() if not g.broken}
    return StateConfig(RedisConfig(Secret(*fields.pop("url")), **fields))


def _queue(section: Given | None, routes: dict[str, Route], found: Findings) -> QueueConfig | None:
    """The `queue:` section; every route that queues needs one."""
    config = None
    if section is not None and not section.broken:
        fields = {name: g.value for name, g in section.value.items()}
        backends = [name for name in ("sqlite", "redis") if name in fields]
        if len(backends) != 1:
            found.add(Problem("queue needs exactly one of sqlite: {path: ...} or redis: {url: ...}",
                              section.line, section.key))
        elif backends[0] == "sqlite":
            path = fields.pop("sqlite")["path"].value
            if not os.path.isabs(path) and found.file and os.path.exists(found.file):
                path = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(found.file)), path))
            config = QueueConfig("sqlite", path=path, **fields)
        else:
            redis = fields.pop("redis")
            if not _available("redis"):
                found.add(Problem("queue.redis needs the redis package: pip install 'failover-router[redis]'",
                                  section.line, "queue.redis"))
            else:
                extra = {"stream": redis["stream"].value} if "stream" in redis else {}
                config = QueueConfig("redis", url=Secret(*redis["url"].value), **extra, **fields)
    if config is None and (section is None or not section.broken):
        for route in routes.values():
            if route.on_exhausted.mode == "queue":
                found.add(Problem("on_exhausted: queue needs a queue: section, e.g. queue: {sqlite: {path: "
                                  "./router-queue.db}}", route.line, f"routes.{route.name}.on_exhausted"))
    return config


def _status_page(section: Given | None) -> StatusPageConfig | None:
    if section is None or section.broken:
        return None
    return StatusPageConfig(**{name: g.value for name, g in section.value.items()})


def _litellm_available() -> bool:
    try:
        return importlib.util.find_spec("litellm") is not None
    except (ImportError, ValueError):
        return False


_NO_DEFAULT_ROUTE = (
    "no route named 'default': complete()/stream() without route= will raise UnknownRoute; "
    "name one route 'default'"
)
_LITERAL_KEY = (
    "API key written in the policy file; take it from the environment instead, e.g. api_key: ${ANTHROPIC_API_KEY}"
)
_CREDENTIAL_VARS = ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN")


def _top(root: Node | None) -> Map | None:
    """The top mapping; None when it is a bad node, reported already."""
    if isinstance(root, Scalar) and root.bad:
        return None
    if root is None or (isinstance(root, Scalar) and root.value is None):
        raise Problem("the policy is empty; it needs version, models and routes", 1)
    if not isinstance(root, Map):
        what = describe(root)
        raise Problem(f"the policy must be a mapping of version, models and routes, got {what}", root.line)
    version = root.items.get("version")
    if version is not None and not version[1].bad:  # first: a newer file fails on its version alone
        try:
            check_version(version[1], "version")
        except Problem as p:
            raise Fatal(p.message, p.line, p.key, p.suggestion) from None
    return root


def build_policy(root: Node | None, found: Findings, env: Mapping[str, str] | None) -> Policy | None:
    """The Policy, or None when `found` has problems."""
    node = _top(root)
    if node is None:
        return None
    given = read_section(node, TOP, "", node.line, found)
    top: dict[str, Given] = given.value if given is not None else {}
    defaults = _defaults(node, top)
    _configs(defaults, found)
    _check_error_types(defaults.get("outcomes"), found)
    aliases = _aliases(top.get("models"))
    lookup = os.environ if env is None else env
    models = {}
    for alias, model in (top["models"].value if "models" in top else {}).items():
        config = _model(alias, model, defaults, found, lookup)
        if config is not None:
            models[alias] = config
    routes = expand_routes(top["routes"].value, aliases, found) if "routes" in top else {}
    if "routes" in top and top["routes"].value and "default" not in top["routes"].value:
        found.warn(_NO_DEFAULT_ROUTE, top["routes"].line, "routes")
    streaming = StreamingConfig(**_leaves(top.get("streaming")))
    state = _state(top.get("state"), found)
    queue = _queue(top.get("queue"), routes, found)
    status_page = _status_page(top.get("status_page"))
    if found.problems:
        return None
    return Policy(1, MappingProxyType(models), MappingProxyType(routes), found.file, streaming, env, state, queue,
                  status_page)


def _defaults(root: Map, top: dict[str, Given]) -> dict[str, Given]:
    if "defaults" in top:
        defaults: dict[str, Given] = top["defaults"].value
        return defaults
    if "defaults" not in root.items:
        return {}
    # written but unreadable: every inherited section counts as broken, so no model's cross-key check
    # runs against built-in values the author did not mean
    line = root.items["defaults"][0]
    return {name: Given({}, line, f"defaults.{name}", nested=True, broken=True) for name in MERGED}


def _aliases(models: Given | None) -> frozenset[str] | None:
    """The model aliases routes may name, bad models included; None when the models section is unreadable
    or empty (then route entries are not checked against it)."""
    if models is None or not models.value:
        return None
    return frozenset(models.value)


def _model(
    alias: str, given: Given, defaults: dict[str, Given], found: Findings, env: Mapping[str, str]
) -> ModelConfig | None:
    """One model's config; None when it has a problem (reported to `found`)."""
    if given.value is None:
        return None
    fields: dict[str, Given] = given.value
    broken = given.broken
    provider = fields.get("provider")
    if provider is not None and provider.value == "litellm" and not _litellm_available():
        message = "provider 'litellm' needs the litellm package: pip install 'failover-router[litellm]'"
        found.add(Problem(message, provider.line, provider.key))
        broken = True
    merged = merge(defaults, {name: fields[name] for name in MERGED if name in fields})
    breaker, retry, timeout, outcomes = _configs(merged, found)
    _check_error_types(fields.get("outcomes"), found)
    secret = Secret(*fields["api_key"].value) if "api_key" in fields else None
    _check_credentials(alias, given, secret, found, env)
    if broken or "model" not in fields or provider is None:
        return None
    return ModelConfig(
        alias=alias,
        provider=provider.value,
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


def _check_credentials(
    alias: str, given: Given, secret: Secret | None, found: Findings, env: Mapping[str, str]
) -> None:
    fields: dict[str, Given] = given.value
    if secret is not None and secret.source == "literal":
        found.warn(_LITERAL_KEY, fields["api_key"].line, fields["api_key"].key)
    provider = fields.get("provider")
    anthropic = provider is not None and provider.value == "anthropic"
    if anthropic and "api_key" not in fields and not any(env.get(name) for name in _CREDENTIAL_VARS):
        # a warning, not an error: the running process may get the variable later
        found.warn(f"model '{alias}' has no credentials: no api_key, and neither ANTHROPIC_API_KEY nor "
                   "ANTHROPIC_AUTH_TOKEN is set; set ANTHROPIC_API_KEY, or write api_key: ${ANTHROPIC_API_KEY} "
                   "in the policy", given.line, given.key)


def _leaves(section: Given | None) -> dict[str, Any]:
    if section is None:
        return {}
    return {name: g.value for name, g in section.value.items() if not g.nested and not g.broken}


def _blame(section: Given, *names: str) -> Given:
    """The key to report for a cross-key problem: a model's own setting before an inherited default."""
    given: list[Given] = [section.value[name] for name in names if name in section.value]
    return next((g for g in given if g.key.startswith("models.")), given[0])


def _configs(
    tree: dict[str, Given], found: Findings
) -> tuple[BreakerConfig, RetryConfig, TimeoutConfig, Mapping[str, str]]:
    """The configs of a (merged) section tree; cross-key checks only where nothing is broken."""
    breaker_tree = tree.get("breaker")
    breaker = BreakerConfig(**_leaves(breaker_tree))
    if breaker_tree is not None and not breaker_tree.broken and breaker.max_reset_timeout < breaker.reset_timeout:
        g = _blame(breaker_tree, "max_reset_timeout", "reset_timeout")
        most, least = format_seconds(breaker.max_reset_timeout), format_seconds(breaker.reset_timeout)
        message = f"max_reset_timeout ({most}) must not be shorter than reset_timeout ({least})"
        found.add(Problem(message, g.line, g.key))
    retry_tree = tree.get("retry")
    backoff_tree = retry_tree.value.get("backoff") if retry_tree else None
    backoff = BackoffConfig(**_leaves(backoff_tree))
    if backoff_tree is not None and not backoff_tree.broken and backoff.max < backoff.initial:
        g = _blame(backoff_tree, "max", "initial")
        most, least = format_seconds(backoff.max), format_seconds(backoff.initial)
        found.add(Problem(f"backoff max ({most}) must not be shorter than initial ({least})", g.line, g.key))
    retry = RetryConfig(**_leaves(retry_tree), backoff=backoff)
    timeout = TimeoutConfig(**_leaves(tree.get("timeout")))
    return breaker, retry, timeout, MappingProxyType(_leaves(tree.get("outcomes")))


def _check_error_types(outcomes: Given | None, found: Findings) -> None:
    # Other providers have other error types, so an unknown one is fine; a near miss is likely a typo.
    for name, g in outcomes.value.items() if outcomes else ():
        hint = suggest(name, KNOWN_ERROR_TYPES)
        if not name.isdigit() and name not in KNOWN_ERROR_TYPES and hint:
            found.warn(f"'{name}' is not an Anthropic error type (did you mean '{hint}'?)", g.line, g.key)
