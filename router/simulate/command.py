"""`failover-router simulate POLICY TIMELINE`: load both, play the timeline, print the report or the JSON."""

from __future__ import annotations

import json
import os
import re
import sys
import warnings
from collections.abc import Iterator, Mapping
from typing import TextIO

from rich.console import Console
from rich.text import Text

from ..clock import SYSTEM
from ..policy import Policy, PolicyError, PolicyWarning, load_policy
from .picture import picture
from .report import text_lines, to_json
from .run import simulate
from .summary import summarize
from .timeline import TimelineError
from .timeline_file import load_timeline

_DEFAULTED = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*):-")


class PlaceholderEnv(Mapping[str, str]):
    """os.environ for loading a policy to simulate: a variable that is not set reads as a placeholder of its
    own (a URL-shaped value, distinct per variable, so models keep their credential groups), except those
    the file gives a default (`${VAR:-default}`), which keep it. No fake model ever uses these values."""

    def __init__(self, defaulted: frozenset[str] = frozenset()) -> None:
        self.defaulted = defaulted

    def __contains__(self, name: object) -> bool:
        return isinstance(name, str) and (name in os.environ or name not in self.defaulted)

    def __getitem__(self, name: str) -> str:
        if name in os.environ:
            return os.environ[name]
        if name in self.defaulted:
            raise KeyError(name)
        return f"http://{name.lower().replace('_', '-')}.simulated.invalid"

    def __iter__(self) -> Iterator[str]:
        return iter(os.environ)

    def __len__(self) -> int:
        return len(os.environ)


def load_simulated_policy(path: str) -> tuple[Policy, list[str]]:
    """The policy at `path` (unset variables as placeholders), and its warnings."""
    try:
        with open(path, encoding="utf-8") as handle:
            defaulted = frozenset(_DEFAULTED.findall(handle.read()))
    except (OSError, ValueError):
        defaulted = frozenset()  # load_policy reports what is wrong with the file
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", PolicyWarning)
        policy = load_policy(path, env=PlaceholderEnv(defaulted))
    return policy, [str(w.message) for w in caught if issubclass(w.category, PolicyWarning)]


def run_simulate(
    policy_path: str, timeline_path: str, *, as_json: bool = False, requests: str = "changes",
    out: TextIO | None = None, err: TextIO | None = None, width: int | None = None,
) -> int:
    """The command: 0 once the timeline was played (whatever it did to the requests), 2 for a policy or a
    timeline that cannot be read (one line on `err` saying where and why)."""
    out = out or sys.stdout
    err = err or sys.stderr
    try:
        policy, notes = load_simulated_policy(policy_path)
        timeline = load_timeline(timeline_path, policy.models, policy.routes)
    except (PolicyError, TimelineError) as exc:
        print(f"simulate: {exc}", file=err)
        return 2
    for note in notes:
        print(f"warning: {note}", file=err)
    started = SYSTEM.now()
    sim = simulate(policy, timeline)
    summary = summarize(sim)
    played = SYSTEM.now() - started
    if as_json:
        json.dump(to_json(sim, summary, requests, played), out, indent=1, ensure_ascii=False)
        out.write("\n")
        return 0
    console = Console(file=out, highlight=False, width=width, soft_wrap=False)
    for line in text_lines(sim, summary, requests, played):
        console.print(Text(line), soft_wrap=True)
    console.print()
    console.print(picture(sim, console.width))
    return 0
