"""The module-level Router behind `router.complete()` / `router.acomplete()`, built on first use."""

from __future__ import annotations

import os
import threading
from typing import Any

from .policy import PolicyError
from .router import Router
from .routing import RoutedMessage

DEFAULT_POLICY_PATH = os.path.join("policies", "default.yaml")

_default: Router | None = None
_default_lock = threading.Lock()


def default_router() -> Router:
    """The module-level Router: built on first use from $ROUTER_POLICY, else ./policies/default.yaml."""
    global _default
    if _default is None:
        with _default_lock:
            if _default is None:
                path = os.environ.get("ROUTER_POLICY") or DEFAULT_POLICY_PATH
                if not os.path.isfile(path):
                    where = "$ROUTER_POLICY" if os.environ.get("ROUTER_POLICY") else "the default path"
                    raise PolicyError(
                        f"no policy file at {where} ({path!r}): set ROUTER_POLICY to a policy file, or create "
                        f"{DEFAULT_POLICY_PATH} (see `failover-router validate`)",
                        file=path,
                    )
                _default = Router.from_yaml(path)
    return _default


def complete(**kwargs: Any) -> RoutedMessage:
    """`Router.complete()` on the module-level default Router."""
    return default_router().complete(**kwargs)


async def acomplete(**kwargs: Any) -> RoutedMessage:
    """`Router.acomplete()` on the module-level default Router."""
    return await default_router().acomplete(**kwargs)
