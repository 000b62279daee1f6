"""One GET of a status page, bounded: a per-operation timeout, a deadline for the whole body, a size cap."""

from __future__ import annotations

from collections.abc import Callable

import httpx2

from ..providers.deadline import tls_context

MAX_BYTES = 2 * 1024 * 1024  # Anthropic's summary.json is tens of kB: anything this big is not a summary


class FetchError(Exception):
    """The page could not be read (connection, timeout, HTTP status, too big); the text is safe to log."""


def fetch(url: str, timeout: float, now: Callable[[], float]) -> bytes:
    """The body of `url` (2xx), read within `timeout` seconds in all; FetchError otherwise.

    Every socket operation is bounded by `timeout` (a server that never answers), and the body must be in
    by `now() + timeout` (a server that sends a byte now and then)."""
    deadline = now() + timeout
    headers = {"accept": "application/json", "user-agent": "failover-router status-page poller"}
    try:
        with httpx2.Client(timeout=httpx2.Timeout(timeout), verify=tls_context(), follow_redirects=True,
                           headers=headers) as client, client.stream("GET", url) as response:
            if not 200 <= response.status_code < 300:
                raise FetchError(f"HTTP {response.status_code}")
            body = bytearray()
            for chunk in response.iter_bytes():
                body += chunk
                if len(body) > MAX_BYTES:
                    raise FetchError(f"the body is over {MAX_BYTES} bytes")
                if now() > deadline:
                    raise FetchError(f"the body took over {timeout:g}s")
            return bytes(body)
    except httpx2.TimeoutException:
        raise FetchError(f"no answer within {timeout:g}s") from None
    except httpx2.HTTPError as exc:
        raise FetchError(f"{type(exc).__name__}: cannot read the page") from None
    except OSError as exc:
        raise FetchError(f"{type(exc).__name__}: cannot read the page") from None
