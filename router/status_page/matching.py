"""Which models of the policy a status page concerns: model families read from model ids and incident titles.

The rule (also in the README):

- A model's family is the first of `opus`, `sonnet`, `haiku` in its `model` id, and its version the numbers
  next to it: `claude-opus-4-1` is opus 4.1, `claude-sonnet-4-5-20250929` and
  `bedrock/us.anthropic.claude-sonnet-4-5-20250929-v1:0` are sonnet 4.5, `claude-3-5-haiku-20241022` is
  haiku 3.5, `claude-opus-4-20250514` is opus 4 (a date is never a version). No family: never named.
- An incident's title names a family, optionally with versions: "Elevated errors on Claude Opus 4.6",
  "Claude 3.5 Sonnet", "Opus 4.5 and 4.6", "errors on Sonnet models". A title with a version names the
  models of that family and that exact version (4 is 4.0, not 4.1); a title without one names every model
  of the family, and a model whose id has no version is named by any title naming its family.
- An unresolved incident that lists the API component (a component whose name has the word "API") in
  partial or major outage, or that component itself in such an outage on the page, concerns every model
  served by Anthropic's API: provider `anthropic`, and litellm models named `anthropic/...`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass

from ..policy import ModelConfig
from .page import OUTAGE, Component, Incident, Summary

_FAMILY = re.compile(r"(?<![a-z])(opus|sonnet|haiku)(?![a-z])")
_ID_AFTER = re.compile(r"[-_.@ ]?(\d{1,2})(?!\d)(?:[-_.](\d{1,2})(?!\d))?")
_ID_BEFORE = re.compile(r"claude[-_. ](\d{1,2})(?:[-_.](\d{1,2}))?[-_. ]$")
_TITLE_NUMBER = r"\d{1,2}(?:\.\d{1,2})?(?!\d)"
_TITLE_AFTER = re.compile(rf"\s*{_TITLE_NUMBER}(?:\s*(?:,|&|/|\band\b|\bor\b)\s*{_TITLE_NUMBER})*")
_NUMBER = re.compile(r"\d{1,2}(?:\.\d{1,2})?")
_API = re.compile(r"\bapi\b", re.IGNORECASE)

Version = tuple[int, ...]


@dataclass(frozen=True, slots=True)
class Family:
    """A model family with its version when known: ("opus", (4, 1)) is Opus 4.1."""

    name: str
    version: Version | None = None

    def __str__(self) -> str:
        return self.name if self.version is None else f"{self.name} {'.'.join(map(str, self.version))}"

    def names(self, model: Family) -> bool:
        """Does this mention (from a title) name `model` (from a model id)?"""
        if self.name != model.name:
            return False
        return self.version is None or model.version is None or self.version == model.version


@dataclass(frozen=True, slots=True)
class Finding:
    """One thing on the page that concerns models of the policy, and why."""

    key: str  # the incident id, or "component:<id>" for an API outage that no incident lists
    title: str  # the incident's title, or the component's name
    status: str  # the incident's status, or the component's
    models: tuple[str, ...]  # aliases of the policy it concerns
    why: str  # e.g. "names opus 4.6", "Claude API: major_outage"
    acting: bool  # new enough to act on (investigating, identified): not while monitoring, nor once resolved
    ongoing: bool = True  # not resolved yet (monitoring is ongoing): a threshold lowered for it stays lowered


def _version(*parts: str | None) -> Version | None:
    numbers = [int(p) for p in parts if p]
    while len(numbers) > 1 and numbers[-1] == 0:
        numbers.pop()  # 4.0 is 4
    return tuple(numbers) or None


def _dotted(text: str) -> Version | None:
    return _version(*text.split("."))


def model_family(model_id: str) -> Family | None:
    """The family of a model id (`claude-opus-4-1` -> opus 4.1); None for a model of no Claude family."""
    text = model_id.lower()
    found = _FAMILY.search(text)
    if found is None:
        return None
    after = _ID_AFTER.match(text, found.end())
    if after is not None:
        return Family(found.group(1), _version(after.group(1), after.group(2)))
    before = _ID_BEFORE.search(text[: found.start()])
    return Family(found.group(1), _version(before.group(1), before.group(2)) if before else None)


def mentions(title: str) -> tuple[Family, ...]:
    """Every family (with version where given) an incident title names."""
    text = title.lower()
    out: list[Family] = []
    for found in _FAMILY.finditer(text):
        name = found.group(1)
        listed = _TITLE_AFTER.match(text, found.end())
        if listed is not None:
            out += [Family(name, _dotted(n)) for n in _NUMBER.findall(listed.group(0))]
            continue
        model_id = _ID_AFTER.match(text, found.end()) if text[found.end(): found.end() + 1] in "-_" else None
        before = _ID_BEFORE.search(text[: found.start()].replace("claude ", "claude-"))
        if model_id is not None:
            out.append(Family(name, _version(model_id.group(1), model_id.group(2))))
        elif before is not None:
            out.append(Family(name, _version(before.group(1), before.group(2))))
        else:
            out.append(Family(name))
    return tuple(dict.fromkeys(out))


def served_by_anthropic_api(config: ModelConfig) -> bool:
    return config.provider == "anthropic" or (config.provider == "litellm" and config.model.startswith("anthropic/"))


def is_api(component: Component) -> bool:
    return bool(_API.search(component.name))


def _api_outage(incident: Incident, page: Mapping[str, Component]) -> Component | None:
    for listed in incident.components:
        status = listed.status or (page[listed.id].status if listed.id in page else "")
        if is_api(listed) and status in OUTAGE:
            return Component(listed.id, listed.name, status)
    return None


def _acting(status: str) -> bool:
    return status not in ("monitoring", "resolved", "postmortem", "completed")


def findings(summary: Summary, models: Mapping[str, ModelConfig]) -> tuple[Finding, ...]:
    """What on the page concerns which models: one Finding per incident or API outage that names any."""
    families = {alias: model_family(config.model) for alias, config in models.items()}
    api_models = tuple(alias for alias, config in models.items() if served_by_anthropic_api(config))
    page = {c.id: c for c in summary.components}
    out: list[Finding] = []
    covered: set[str] = set()
    for incident in summary.incidents:
        named = [m for m in mentions(incident.name)
                 if any(f is not None and m.names(f) for f in families.values())]
        aliases = [a for a, f in families.items() if f is not None and any(m.names(f) for m in named)]
        whys = [f"names {', '.join(map(str, named))}"] if named else []
        outage = _api_outage(incident, page) if incident.active else None
        if outage is not None:
            covered.add(outage.id)
            aliases += [a for a in api_models if a not in aliases]
            whys.append(f"{outage.name}: {outage.status}")
        if aliases:
            out.append(Finding(incident.id, incident.name, incident.status, tuple(aliases), "; ".join(whys),
                               incident.active and _acting(incident.status), incident.active))
    for component in summary.components:
        if is_api(component) and component.status in OUTAGE and component.id not in covered and api_models:
            out.append(Finding(f"component:{component.id}", component.name, component.status, api_models,
                               f"{component.name}: {component.status}", True))
    return tuple(out)
