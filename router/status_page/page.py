"""A Statuspage v2 `summary.json` read into frozen dataclasses: what the page says, tolerant of unknown fields."""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

#: Incident statuses that mean "still going on" (resolved and postmortem mean it is over).
ACTIVE = ("investigating", "identified", "monitoring")
#: Component statuses that count as an outage (degraded performance and maintenance do not).
OUTAGE = ("partial_outage", "major_outage")


class PageError(ValueError):
    """The body is not a Statuspage v2 summary (HTML, truncated JSON, the wrong shape): a failed poll."""


@dataclass(frozen=True, slots=True)
class Component:
    """A product on the page (API, claude.ai, ...); `status` is "" when an incident's entry leaves it out."""

    id: str
    name: str
    status: str = ""


@dataclass(frozen=True, slots=True)
class Incident:
    """An unresolved (or just resolved) incident: `name` is its title, where model names appear."""

    id: str
    name: str
    status: str  # investigating | identified | monitoring | resolved | postmortem (or a newer word)
    impact: str = ""
    components: tuple[Component, ...] = ()
    shortlink: str = ""

    @property
    def active(self) -> bool:
        return self.status not in ("resolved", "postmortem", "completed")


@dataclass(frozen=True, slots=True)
class Summary:
    """The page as read: the overall indicator (none | minor | major | critical), components, incidents."""

    indicator: str
    description: str
    components: tuple[Component, ...]
    incidents: tuple[Incident, ...]
    maintenances: tuple[Incident, ...] = ()
    updated_at: str = ""


def _text(value: Any, where: str, required: bool = True) -> str:
    if isinstance(value, str):
        return value
    if value is None and not required:
        return ""
    raise PageError(f"{where}: expected a string, got {type(value).__name__}")


def _object(value: Any, where: str) -> Mapping[str, Any]:
    if not isinstance(value, Mapping):
        raise PageError(f"{where}: expected an object, got {type(value).__name__}")
    return value


def _list(value: Any, where: str) -> list[Any]:
    if value is None:
        return []
    if not isinstance(value, list):
        raise PageError(f"{where}: expected a list, got {type(value).__name__}")
    return value


def _component(raw: Any, where: str) -> Component:
    item = _object(raw, where)
    return Component(_text(item.get("id"), f"{where}.id"), _text(item.get("name"), f"{where}.name", False),
                     _text(item.get("status"), f"{where}.status", False))


def _incident(raw: Any, where: str) -> Incident:
    item = _object(raw, where)
    components = tuple(_component(c, f"{where}.components[{i}]")
                       for i, c in enumerate(_list(item.get("components"), f"{where}.components")))
    return Incident(
        _text(item.get("id"), f"{where}.id"), _text(item.get("name"), f"{where}.name", False),
        _text(item.get("status"), f"{where}.status", False).lower(), _text(item.get("impact"), f"{where}.impact",
                                                                           False).lower(),
        components, _text(item.get("shortlink"), f"{where}.shortlink", False),
    )


def parse_summary(body: bytes | str) -> Summary:
    """The Summary in a summary.json body; PageError if it is not one. Fields not read here are ignored."""
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError) as exc:
        raise PageError(f"not JSON ({type(exc).__name__})") from None
    top = _object(data, "summary")
    status = _object(top.get("status"), "status")
    components = tuple(_component(c, f"components[{i}]")
                       for i, c in enumerate(_list(top.get("components"), "components")))
    incidents = tuple(_incident(c, f"incidents[{i}]") for i, c in enumerate(_list(top.get("incidents"), "incidents")))
    maintenances = tuple(_incident(c, f"scheduled_maintenances[{i}]")
                         for i, c in enumerate(_list(top.get("scheduled_maintenances"), "scheduled_maintenances")))
    page = top.get("page")
    updated = _text(page.get("updated_at"), "page.updated_at", False) if isinstance(page, Mapping) else ""
    return Summary(_text(status.get("indicator"), "status.indicator").lower(),
                   _text(status.get("description"), "status.description", False), components, incidents,
                   maintenances, updated)
