"""Keeping keys out of what the router hands back: a server may echo a key into an error's text."""

from __future__ import annotations

import contextlib
from collections.abc import Iterable
from typing import Any

MASK = "[redacted]"
_MIN_SECRET = 8  # shorter strings would mask ordinary words; no real API key is this short


def scrub_text(text: str, secrets: Iterable[str]) -> str:
    for secret in secrets:
        if len(secret) >= _MIN_SECRET and secret in text:
            text = text.replace(secret, MASK)
    return text


def _scrub_value(value: Any, secrets: tuple[str, ...], depth: int = 0) -> Any:
    if isinstance(value, str):
        return scrub_text(value, secrets)
    if depth > 8:
        return value
    if isinstance(value, dict):
        return {k: _scrub_value(v, secrets, depth + 1) for k, v in value.items()}
    if isinstance(value, list):
        return [_scrub_value(v, secrets, depth + 1) for v in value]
    return value


def scrub_exception(exc: BaseException, secrets: Iterable[str]) -> None:
    """Mask every secret in `exc` and the exceptions it chains to, in place: their args, the `message` and
    `body` the SDKs' API errors carry, and our WireError's `detail` (what str(), repr(), tracebacks and
    attempt records show)."""
    keys = tuple(s for s in secrets if len(s) >= _MIN_SECRET)
    if not keys:
        return
    seen: set[int] = set()
    link: BaseException | None = exc
    while link is not None and id(link) not in seen and len(seen) < 16:
        seen.add(id(link))
        if any(key in repr(link.args) for key in keys):
            link.args = tuple(_scrub_value(a, keys) for a in link.args)
        for name in ("message", "body", "detail"):
            value = getattr(link, name, None)
            if isinstance(value, (str, dict, list)):
                scrubbed = _scrub_value(value, keys)
                if scrubbed != value:
                    with contextlib.suppress(AttributeError, TypeError):  # a read-only attribute stays
                        setattr(link, name, scrubbed)
        link = link.__cause__ or link.__context__
