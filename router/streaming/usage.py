"""Token usage of a stitched stream: each attempt's as the wire reports it, summed over every attempt."""

from __future__ import annotations

from typing import Any

FIELDS = ("input_tokens", "output_tokens", "cache_creation_input_tokens", "cache_read_input_tokens")


class Tokens:
    """Usage counts over attempts: a broken attempt's tokens are billed too, so they count."""

    __slots__ = ("attempt", "counting", "ended")

    def __init__(self) -> None:
        self.ended: dict[str, int] = {}  # summed over the attempts that ended
        self.attempt: dict[str, int] = {}  # the current attempt's
        self.counting = False  # the current attempt's counts are not in `ended` yet

    def begin(self) -> None:
        self.end()
        self.attempt, self.counting = {}, True

    def count(self, usage: Any) -> None:
        """message_start's usage, then message_delta's. The wire's counts are cumulative, and either event
        may carry the input tokens (litellm's adapter sends them in message_delta only), so per field the
        larger one stands: nothing is counted twice."""
        attempt = self.attempt
        for field in FIELDS:
            value = getattr(usage, field, None)
            if type(value) is int and value > attempt.get(field, -1):
                attempt[field] = value

    def end(self) -> None:
        if self.counting:
            for field, value in self.attempt.items():
                self.ended[field] = self.ended.get(field, 0) + value
            self.counting = False

    def totals(self) -> dict[str, int]:
        totals = dict(self.ended)
        if self.counting:
            for field, value in self.attempt.items():
                totals[field] = totals.get(field, 0) + value
        return totals

    def usage_update(self) -> dict[str, int]:
        """The fields to set on a Usage: input and output tokens always, cache counts if any were reported."""
        totals = self.totals()
        update = {"input_tokens": totals.get("input_tokens", 0), "output_tokens": totals.get("output_tokens", 0)}
        update.update((f, totals[f]) for f in FIELDS[2:] if f in totals)
        return update

    def restated(self, event: Any, usage: Any) -> Any:
        """A message_delta with the totals, once an earlier attempt counted: the caller's accumulated usage
        then equals the final message's. Unchanged (the same object) on a stream of one attempt."""
        if not any(self.ended.values()):
            return event
        totals = self.totals()
        update = {f: totals[f] for f in FIELDS if f in totals and getattr(usage, f, None) != totals[f]}
        return event.model_copy(update={"usage": usage.model_copy(update=update)}) if update else event
