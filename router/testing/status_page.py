"""FakeStatusPage: a Statuspage v2 `summary.json` served on 127.0.0.1, whose answer a test sets."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterable, Mapping
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any

__all__ = ["API_COMPONENT", "FakeStatusPage", "component", "incident", "summary"]

API_COMPONENT = "k8w3r06qmzrp"  # the id of the fake page's API component


def component(name: str, status: str = "operational", id: str | None = None) -> dict[str, Any]:
    return {"id": id or name.lower().replace(" ", "-"), "name": name, "status": status, "position": 1,
            "description": None, "showcase": True, "group": False, "only_show_if_degraded": False}


def incident(name: str, status: str = "investigating", *, id: str = "inc1", impact: str = "major",
             components: Iterable[Mapping[str, Any]] = ()) -> dict[str, Any]:
    """One incident as Statuspage writes it (with the fields this router ignores, to keep it honest)."""
    return {"id": id, "name": name, "status": status, "impact": impact, "shortlink": f"https://stspg.io/{id}",
            "created_at": "2026-02-26T10:00:00.000Z", "updated_at": "2026-02-26T10:05:00.000Z",
            "monitoring_at": None, "resolved_at": None, "started_at": "2026-02-26T10:00:00.000Z",
            "page_id": "tymt9n04zgry", "components": list(components),
            "incident_updates": [{"id": f"{id}-u1", "status": status, "body": "We are investigating.",
                                  "affected_components": None, "created_at": "2026-02-26T10:05:00.000Z"}]}


def summary(*incidents: Mapping[str, Any], api: str = "operational", **extra: Any) -> dict[str, Any]:
    """A whole summary.json: green with no incidents, else the indicator an incident would set."""
    indicator = "none" if not incidents and api == "operational" else "major"
    page = {
        "page": {"id": "tymt9n04zgry", "name": "Claude", "url": "https://status.claude.com",
                 "time_zone": "Etc/UTC", "updated_at": "2026-02-26T10:05:00.000Z"},
        "status": {"indicator": indicator,
                   "description": "All Systems Operational" if indicator == "none" else "Partial System Outage"},
        "components": [component("claude.ai"), component("Claude API (api.anthropic.com)", api, API_COMPONENT),
                       component("Claude Code")],
        "incidents": list(incidents),
        "scheduled_maintenances": [],
    }
    page.update(extra)
    return page


class _Handler(BaseHTTPRequestHandler):
    server: _Server
    protocol_version = "HTTP/1.1"

    def setup(self) -> None:
        super().setup()
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def do_GET(self) -> None:
        page = self.server.page
        with page._lock:
            page.requests += 1
            status, body, content_type, hang = page._answer
        if hang:
            page._released.wait()  # until release() or stop(): past any client timeout
            return
        self.send_response(status)
        self.send_header("content-type", content_type)
        self.send_header("content-length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: Any) -> None:
        pass


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    page: FakeStatusPage

    def handle_error(self, request: Any, client_address: Any) -> None:
        pass  # a client that gave up (its timeout) and reset the connection is part of the tests


class FakeStatusPage:
    """Serves `summary.json` on 127.0.0.1 on a thread: `show(...)` sets the page, `fail(...)` an error,
    `hang()` a response that never comes (until `release()` or `stop()`). Every method is thread-safe."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._answer: tuple[int, bytes, str, bool] = (200, json.dumps(summary()).encode(), "application/json", False)
        self._released = threading.Event()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None
        self.requests = 0

    def start(self) -> FakeStatusPage:
        server = _Server(("127.0.0.1", 0), _Handler)
        server.page = self
        self._server = server
        self._thread = threading.Thread(target=server.serve_forever, kwargs={"poll_interval": 0.05},
                                        name="fake-status-page", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        self._released.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
        if self._thread is not None:
            self._thread.join(5)
        self._server = self._thread = None

    @property
    def url(self) -> str:
        if self._server is None:
            raise RuntimeError("FakeStatusPage is not started")
        return f"http://127.0.0.1:{self._server.server_address[1]}/api/v2/summary.json"

    def show(self, page: Mapping[str, Any] | None = None) -> None:
        """Serve this summary (a dict as `summary()` builds; None: all green)."""
        self._set(200, json.dumps(page if page is not None else summary()).encode(), "application/json")

    def fail(self, status: int = 500, body: str = "<html><body>Internal Server Error</body></html>",
             content_type: str = "text/html") -> None:
        """Answer `status` with `body` (by default an HTML 500); `fail(200, ...)` serves a broken page."""
        self._set(status, body.encode(), content_type)

    def hang(self) -> None:
        """Read requests and never answer them (until release() or stop())."""
        with self._lock:
            self._released.clear()
            self._answer = (*self._answer[:3], True)

    def release(self) -> None:
        self._released.set()

    def _set(self, status: int, body: bytes, content_type: str) -> None:
        with self._lock:
            self._answer = (status, body, content_type, False)
        self._released.set()

    def __enter__(self) -> FakeStatusPage:
        return self.start()

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()
