"""One GET of a status page, bounded: a per-operation timeout, a deadline for the whole body, a size cap."""

from __future__ import annotations

import base64
import http.client
import urllib.error
import urllib.request
from collections.abc import Callable
from urllib.parse import unquote, urlsplit, urlunsplit

from ..providers.deadline import tls_context

MAX_BYTES = 2 * 1024 * 1024  # Anthropic's summary.json is tens of kB: anything this big is not a summary
_CHUNK = 64 * 1024


def shown_url(url: str) -> str:
    """The URL for logs and output: no user:password@ and no ?query (either may hold a token)."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"


class FetchError(Exception):
    """The page could not be read (connection, timeout, HTTP status, too big); the text is safe to log."""


def _request(url: str) -> urllib.request.Request:
    """The GET, with any user:password@ of the URL sent as Basic auth rather than left in the URL."""
    parts = urlsplit(url)
    headers = {"accept": "application/json", "user-agent": "failover-router status-page poller"}
    if parts.username is not None:
        pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}".encode()
        headers["authorization"] = "Basic " + base64.b64encode(pair).decode()
        netloc = parts.hostname or ""
        netloc = f"[{netloc}]" if ":" in netloc else netloc
        parts = parts._replace(netloc=netloc + (f":{parts.port}" if parts.port else ""))
    return urllib.request.Request(urlunsplit(parts), headers=headers)


def fetch(url: str, timeout: float, now: Callable[[], float]) -> bytes:
    """The body of `url` (2xx), read within `timeout` seconds in all; FetchError otherwise.

    Every socket operation is bounded by `timeout` (a server that never answers), and the body must be in
    by `now() + timeout` (a server that sends a byte now and then). The standard library's client is used
    because it logs nothing: a URL holding a token never reaches an HTTP library's request log."""
    deadline = now() + timeout
    try:
        with urllib.request.urlopen(_request(url), timeout=timeout, context=tls_context()) as response:
            body = bytearray()
            while chunk := response.read1(_CHUNK):
                body += chunk
                if len(body) > MAX_BYTES:
                    raise FetchError(f"the body is over {MAX_BYTES} bytes")
                if now() > deadline:
                    raise FetchError(f"the body took over {timeout:g}s")
            return bytes(body)
    except urllib.error.HTTPError as exc:
        exc.close()
        raise FetchError(f"HTTP {exc.code}") from None
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, TimeoutError):
            raise FetchError(f"no answer within {timeout:g}s") from None
        raise FetchError(f"{type(exc.reason).__name__}: cannot read the page") from None
    except TimeoutError:
        raise FetchError(f"no answer within {timeout:g}s") from None
    except (OSError, http.client.HTTPException) as exc:
        raise FetchError(f"{type(exc).__name__}: cannot read the page") from None
