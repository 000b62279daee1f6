"""A fake Anthropic / OpenAI HTTP server that plays scripted per-model faults, for tests."""

from router.testing.events import anthropic_events
from router.testing.faults import Fault
from router.testing.server import FakeServer
from router.testing.state import ReceivedRequest

__all__ = ["FakeServer", "Fault", "ReceivedRequest", "anthropic_events"]
