"""A real `redis-server` for tests: the `redis_server` fixture (and `redis_factory` for servers with options).

Each server is a subprocess this fixture owns (no daemonize), on a free port of 127.0.0.1, with no
persistence (`--save "" --appendonly no`) and its working directory in the test's tmp_path. The object
yielded can SIGKILL the server, start it again on the same port, and pause it (SIGSTOP, then SIGCONT from
a timer thread): a paused server still accepts TCP connections (the kernel does) but answers nothing,
which is what a slow or wedged Redis looks like to a client.

Without `redis-server` on PATH (or the `redis` package) the tests skip; with CI=true they fail instead,
since CI installs both.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

__all__ = ["RedisServer", "redis_factory", "redis_server", "require_redis"]

_READY_WITHIN = 5.0


def _missing(reason: str) -> None:
    if os.environ.get("CI") == "true":
        pytest.fail(f"{reason} (CI=true: the CI image must provide it)")
    pytest.skip(reason)


def require_redis() -> str:
    """The redis-server binary, after checking the `redis` package imports; skip (fail on CI) otherwise."""
    try:
        import redis  # noqa: F401
    except ImportError:
        _missing("the redis package is not installed (pip install 'failover-router[redis]')")
    binary = shutil.which("redis-server")
    if binary is None:
        _missing("redis-server is not on PATH")
    assert binary is not None
    return binary


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        port: int = s.getsockname()[1]
        return port


class RedisServer:
    """One redis-server subprocess on 127.0.0.1:`port`."""

    def __init__(self, binary: str, workdir: Path, password: str | None = None, port: int | None = None) -> None:
        self.binary = binary
        self.workdir = workdir
        self.password = password
        self.port = port if port is not None else _free_port()
        self.proc: subprocess.Popen[bytes] | None = None
        self._timers: list[threading.Timer] = []
        self._paused = threading.Lock()

    # -- addresses --------------------------------------------------------------------------------

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def client(self, **kwargs: Any) -> Any:
        """A plain redis-py client (for the test's own looks at the server), 1 s timeouts."""
        import redis

        kwargs.setdefault("socket_timeout", 1.0)
        kwargs.setdefault("socket_connect_timeout", 1.0)
        return redis.Redis(host="127.0.0.1", port=self.port, password=self.password, **kwargs)

    # -- lifecycle --------------------------------------------------------------------------------

    def start(self) -> RedisServer:
        """Start (again, on the same port) and return once it answers PING; at most 5 s."""
        if self.running:
            return self
        args = [self.binary, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "", "--appendonly", "no",
                "--daemonize", "no", "--dir", str(self.workdir), "--loglevel", "warning"]
        if self.password:
            args += ["--requirepass", self.password]
        self.proc = subprocess.Popen(args, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        give_up = time.monotonic() + _READY_WITHIN
        while True:
            if self.proc.poll() is not None:
                raise RuntimeError(f"redis-server on port {self.port} exited with {self.proc.returncode}")
            if self._answers():
                return self
            if time.monotonic() > give_up:
                self.kill()
                raise RuntimeError(f"redis-server on port {self.port} did not answer PING within {_READY_WITHIN}s")
            time.sleep(0.01)

    def _answers(self) -> bool:
        try:
            client = self.client(socket_timeout=0.2, socket_connect_timeout=0.2)
            try:
                return bool(client.ping())
            finally:
                client.close()
        except Exception:
            return False

    @property
    def running(self) -> bool:
        return self.proc is not None and self.proc.poll() is None

    def kill(self) -> None:
        """SIGKILL, and wait for the process to be gone (the port is free again at once: no TIME_WAIT on a
        listening socket)."""
        self._cancel_timers()
        proc, self.proc = self.proc, None
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGCONT)  # a stopped process dies of SIGKILL too, but be plain
                proc.kill()
            proc.wait(5)

    def stop(self) -> None:
        """End the server (SIGTERM, then SIGKILL after 2 s)."""
        self._cancel_timers()
        proc, self.proc = self.proc, None
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            proc.send_signal(signal.SIGCONT)
            proc.terminate()
        try:
            proc.wait(2)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)

    # -- a slow Redis -----------------------------------------------------------------------------

    def pause(self, seconds: float) -> threading.Timer:
        """Freeze the server (SIGSTOP) for `seconds`, then let it go on (SIGCONT, from a timer thread).
        Returns the timer; `resume()` ends the pause early."""
        assert self.proc is not None and self.running, "pause() needs a running server"
        self.proc.send_signal(signal.SIGSTOP)
        timer = threading.Timer(seconds, self.resume)
        timer.daemon = True
        self._timers.append(timer)
        timer.start()
        return timer

    def resume(self) -> None:
        proc = self.proc
        if proc is not None and proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                proc.send_signal(signal.SIGCONT)

    def _cancel_timers(self) -> None:
        for timer in self._timers:
            timer.cancel()
        self._timers.clear()


@pytest.fixture
def redis_factory(tmp_path: Path) -> Iterator[Callable[..., RedisServer]]:
    """`make(password=None)`: a started RedisServer; every one made is stopped after the test."""
    binary = require_redis()
    made: list[RedisServer] = []

    def make(password: str | None = None) -> RedisServer:
        workdir = tmp_path / f"redis-{len(made)}"
        workdir.mkdir()
        for attempt in range(3):  # the free port may be taken between finding it and binding it
            server = RedisServer(binary, workdir, password)
            made.append(server)
            try:
                return server.start()
            except RuntimeError:
                if attempt == 2:
                    raise
        raise AssertionError("unreachable")

    yield make
    for server in made:
        server.stop()


@pytest.fixture
def redis_server(redis_factory: Callable[..., RedisServer]) -> RedisServer:
    """A started redis-server on a free port of 127.0.0.1, stopped after the test."""
    return redis_factory()
