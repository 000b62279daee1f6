"""Routes: each route's chain expanded inline into model aliases, with cycles, repeats and typos reported."""

from __future__ import annotations

from collections.abc import Callable

from .model import Exhausted, Route
from .problems import Findings, Problem, suggest
from .schema import Given
from .yaml_nodes import MAX_DEPTH


def expand_routes(given: dict[str, Given], aliases: frozenset[str] | None, found: Findings) -> dict[str, Route]:
    """The routes, expanded; `aliases` None: the models are unreadable, so entries are not checked."""
    for name, g in given.items():
        if aliases is not None and name in aliases:
            found.add(Problem(f"'{name}' is both a model alias and a route name; rename one", g.line, g.key))
    done: dict[str, tuple[str, ...]] = {}

    def expand(name: str, stack: tuple[str, ...]) -> tuple[str, ...]:
        if name not in done:  # a route with a problem expands to what is known of it
            done[name] = _expand(name, stack, given, aliases, found, expand)
        return done[name]

    routes = {}
    for name, g in given.items():
        exhausted = g.value.on_exhausted if g.value is not None else Exhausted()
        routes[name] = Route(name, expand(name, ()), g.line, exhausted)
    return routes


Expand = Callable[[str, tuple[str, ...]], tuple[str, ...]]


def _expand(
    name: str, stack: tuple[str, ...], given: dict[str, Given], aliases: frozenset[str] | None, found: Findings,
    expand: Expand,
) -> tuple[str, ...]:
    route = given[name]
    if route.value is None:  # unreadable, reported already
        return ()
    if len(stack) >= MAX_DEPTH:
        found.add(Problem(f"routes nest more than {MAX_DEPTH} levels deep", route.line, route.key))
        return ()
    if not route.value.entries:
        found.add(Problem(f"route '{name}' is empty; list at least one model", route.line, route.key))
        return ()
    chain: list[str] = []
    seen: set[str] = set()  # a set beside the list: membership tests stay O(1) for long chains
    for entry in route.value.entries:
        if (aliases is not None and entry.name in aliases) or (aliases is None and entry.name not in given):
            names: tuple[str, ...] = (entry.name,)
        elif entry.name in given:
            path = (*stack, name)
            if entry.name in path:
                cycle = " -> ".join((*path[path.index(entry.name) :], entry.name))
                found.add(Problem(f"route cycle: {cycle}", entry.line, entry.key))
                continue
            names = expand(entry.name, path)
        else:
            hint = suggest(entry.name, [*aliases, *given] if aliases else given)
            found.add(Problem(f"unknown model or route '{entry.name}'", entry.line, entry.key, hint))
            continue
        for alias in names:
            if alias in seen:
                via = f" (via route '{entry.name}')" if entry.name != alias else ""
                found.add(Problem(f"model '{alias}' appears twice in route '{name}'{via}", entry.line, entry.key))
                continue
            chain.append(alias)
            seen.add(alias)
    return tuple(chain)
