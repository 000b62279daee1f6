"""Pytest plugin: the function-scoped ``fake_server`` fixture (a started FakeServer on 127.0.0.1)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from router.testing.server import FakeServer

__all__ = ["fake_server"]


@pytest.fixture
def fake_server() -> Iterator[FakeServer]:
    """A started :class:`FakeServer` on 127.0.0.1 and a free port, stopped after the test."""
    server = FakeServer(host="127.0.0.1", port=0).start()
    try:
        yield server
    finally:
        server.stop()
