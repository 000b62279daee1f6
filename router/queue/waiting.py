"""Waiting for a ticket: polling its store on the router's clock until it is final or the caller's time is up."""

from __future__ import annotations

import asyncio

from ..clock import Clock
from ..routing import RoutedMessage
from .results import POLL_FIRST, POLL_MAX, known, not_ready, outcome
from .store import QueueStore


def wait(store: QueueStore, ticket_id: str, timeout: float | None, clock: Clock) -> RoutedMessage:
    """The ticket's message, or raise what it ended with; NotReady once `timeout` has passed."""
    end = None if timeout is None else clock.now() + timeout
    pause = POLL_FIRST
    while True:
        ticket = known(store.get(ticket_id), ticket_id)
        if ticket.final:
            return outcome(ticket)
        left = None if end is None else end - clock.now()
        if left is not None and left <= 0:
            raise not_ready(ticket, timeout or 0.0)
        clock.sleep(pause if left is None else min(pause, left))
        pause = min(POLL_MAX, pause * 2)


async def await_(store: QueueStore, ticket_id: str, timeout: float | None, clock: Clock) -> RoutedMessage:
    """`wait()` for asyncio: each read of the store runs in a worker thread, never on the event loop."""
    end = None if timeout is None else clock.now() + timeout
    pause = POLL_FIRST
    while True:
        ticket = known(await asyncio.to_thread(store.get, ticket_id), ticket_id)
        if ticket.final:
            return outcome(ticket)
        left = None if end is None else end - clock.now()
        if left is not None and left <= 0:
            raise not_ready(ticket, timeout or 0.0)
        await clock.asleep(pause if left is None else min(pause, left))
        pause = min(POLL_MAX, pause * 2)
