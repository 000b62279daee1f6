"""FakeServer: the fake Anthropic/OpenAI HTTP server on its own thread and event loop, and its test API."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import threading
from collections.abc import Iterable, Mapping, Sequence
from types import TracebackType

from router.testing._handler import serve_connection
from router.testing._http import Connection
from router.testing.batches import BatchPlan, BatchResult, FakeBatches
from router.testing.faults import Fault
from router.testing.state import ReceivedRequest, ServerState

__all__ = ["FakeServer"]

log = logging.getLogger(__name__)

_BACKLOG = 2048
_STOP_TIMEOUT = 5.0


class FakeServer:
    """A fake Anthropic Messages / OpenAI Chat Completions server that plays per-model fault plans.

    Usage::

        with FakeServer() as srv:
            srv.plan("claude-a", [Fault.status(529)])
            client = anthropic.Anthropic(base_url=srv.url, api_key="k", max_retries=0)

    Every public method is thread-safe.
    """

    def __init__(self, host: str = "127.0.0.1", port: int = 0) -> None:
        self.host = host
        self._requested_port = port
        self._port: int | None = None
        self._state = ServerState()
        self._lifecycle = threading.Lock()
        self._thread: threading.Thread | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._server: asyncio.Server | None = None
        # Touched only on the server's loop thread:
        self._connections: set[Connection] = set()
        self._tasks: set[asyncio.Task[None]] = set()

    # -- lifecycle -------------------------------------------------------------------------------

    def start(self) -> FakeServer:
        """Start listening; returns once the socket accepts connections. A no-op if running."""
        with self._lifecycle:
            if self._thread is not None:
                return self
            loop = asyncio.new_event_loop()
            ready = threading.Event()
            failure: list[BaseException] = []
            thread = threading.Thread(
                target=self._run, args=(loop, ready, failure), name="router-fake-server", daemon=True
            )
            thread.start()
            ready.wait()
            if failure:
                thread.join()
                raise failure[0]
            self._loop, self._thread = loop, thread
            return self

    def _run(
        self, loop: asyncio.AbstractEventLoop, ready: threading.Event, failure: list[BaseException]
    ) -> None:
        asyncio.set_event_loop(loop)
        try:
            server = loop.run_until_complete(
                asyncio.start_server(self._on_connect, self.host, self._requested_port, backlog=_BACKLOG)
            )
        except BaseException as exc:
            failure.append(exc)
            loop.close()
            ready.set()
            return
        self._server = server
        self._port = server.sockets[0].getsockname()[1]
        ready.set()
        try:
            loop.run_forever()
        finally:
            with contextlib.suppress(Exception):
                loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    def stop(self) -> None:
        """Close the listener and every connection (hanging handlers included), then join the thread.

        Idempotent.
        """
        with self._lifecycle:
            loop, thread = self._loop, self._thread
            if loop is None or thread is None:
                return
            try:
                asyncio.run_coroutine_threadsafe(self._shutdown(), loop).result(_STOP_TIMEOUT)
            except Exception:  # pragma: no cover - shutdown must not raise in teardown
                log.exception("fake server shutdown did not complete cleanly")
            loop.call_soon_threadsafe(loop.stop)
            thread.join(_STOP_TIMEOUT)
            self._loop = self._thread = self._server = None

    async def _shutdown(self) -> None:
        server = self._server
        if server is not None:
            server.close()
        for conn in list(self._connections):
            conn.abort()
        tasks = [t for t in self._tasks if t is not asyncio.current_task()]
        for task in tasks:
            task.cancel()
        if tasks:
            await asyncio.wait(tasks, timeout=_STOP_TIMEOUT / 2)
        if server is not None:
            with contextlib.suppress(asyncio.TimeoutError):
                await asyncio.wait_for(server.wait_closed(), _STOP_TIMEOUT / 2)

    async def _on_connect(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = Connection(reader, writer)
        task = asyncio.current_task()
        assert task is not None
        self._connections.add(conn)
        self._tasks.add(task)
        try:
            await serve_connection(conn, self._state)
        except asyncio.CancelledError:
            conn.abort()
        except Exception:
            log.exception("fake server connection handler failed")
            conn.abort()
        finally:
            self._connections.discard(conn)
            self._tasks.discard(task)

    def __enter__(self) -> FakeServer:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    def __repr__(self) -> str:
        where = self.url if self._port is not None else "not started"
        return f"<FakeServer {where}>"

    # -- addresses ---------------------------------------------------------------------------------

    @property
    def port(self) -> int:
        """The bound port (after :meth:`start`)."""
        if self._port is None:
            raise RuntimeError("FakeServer is not started")
        return self._port

    @property
    def url(self) -> str:
        """``http://HOST:PORT``, the ``base_url`` for the Anthropic SDK (add ``/v1`` for OpenAI's)."""
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"http://{host}:{self.port}"

    # -- test API --------------------------------------------------------------------------------

    def plan(self, model: str, faults: Iterable[Fault] = (), default: Fault | None = None) -> None:
        """Play ``faults`` in order, one per request for ``model`` (the body's ``model``), then
        ``default`` (``Fault.ok()`` if None) for every later request. Replaces any earlier plan."""
        self._state.plan(model, faults, default)

    def count(self, model: str) -> int:
        """Requests read for ``model`` on any endpoint (counted before the fault plays)."""
        return self._state.count(model)

    def received(self, model: str) -> list[ReceivedRequest]:
        """The requests read for ``model``, oldest first."""
        return self._state.received(model)

    def disconnects(self, model: str) -> int:
        """Responses for ``model`` that the client closed before the server finished sending: streams,
        and any response of the hostile-wire faults (raw, trickle, drip, echo_headers, sse)."""
        return self._state.disconnects(model)

    @property
    def batches(self) -> FakeBatches:
        """The Message Batches the server was sent (`created`, `submissions(custom_id)`, `get(id)`, ...)."""
        return self._state.batches

    def plan_batch(
        self,
        results: Mapping[str, BatchResult] | Sequence[BatchResult] = (),
        *,
        default: BatchResult | None = None,
        polls: int = 1,
        seconds: float | None = None,
        cancel_polls: int = 1,
    ) -> None:
        """Script the next Message Batch created: each request's result by custom_id (a mapping) or by
        position (a sequence, e.g. `batches.mixed(...)`), `default` for the others (succeeded), and how
        many retrieves (`polls`; and `seconds` of real time) it answers in_progress before it ends.
        Call again to script the batch after it."""
        plan = BatchPlan(results, default or BatchResult.succeeded(), polls, seconds, cancel_polls)
        self._state.batches.plan(plan)

    def reset(self) -> None:
        """Forget all plans, counters and received requests."""
        self._state.reset()
