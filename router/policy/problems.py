"""What reading one policy finds: the loader's internal Problem exceptions, their collector, did-you-mean."""

from __future__ import annotations

import difflib
from collections.abc import Iterable

MAX_PROBLEMS = 50  # a file with more is reported with its first 50


class Problem(Exception):
    """A policy problem found before the file name is attached; the loader turns it into a PolicyError."""

    def __init__(self, message: str, line: int | None, key: str | None = None, suggestion: str | None = None):
        super().__init__(message)
        self.message = message
        self.line = line
        self.key = key
        self.suggestion = suggestion


class Unset(Problem):
    """A ${NAME} reference to a variable that is not set."""

    def __init__(self, name: str, line: int | None, key: str | None):
        message = f"environment variable {name} is not set (write ${{{name}:-default}} for a fallback)"
        super().__init__(message, line, key)
        self.name = name


class Fatal(Problem):
    """A problem that makes the rest of the file meaningless (e.g. a newer version): reported alone."""


class TooMany(Exception):
    """Raised when MAX_PROBLEMS problems are found: the loader stops looking."""


class Findings:
    """What reading one policy found: its problems (deduplicated, capped) and the warnings to emit."""

    def __init__(self, file: str, limit: int | None = MAX_PROBLEMS):
        self.file = file
        self.limit = limit
        self.problems: list[Problem] = []
        self.notes: list[str] = []
        self._seen: set[tuple[int | None, str | None, str]] = set()

    def add(self, problem: Problem) -> None:
        mark = (problem.line, problem.key, problem.message)
        if mark in self._seen:  # e.g. a bad default, met again in every model that inherits it
            return
        self._seen.add(mark)
        self.problems.append(problem)
        if self.limit is not None and len(self.problems) >= self.limit:
            raise TooMany

    def warn(self, message: str, line: int | None, key: str) -> None:
        self.notes.append(f"{self.file}:{line}: {key}: {message}")


def suggest(word: str, candidates: Iterable[str]) -> str | None:
    """The closest candidate to a misspelt word (for "did you mean ...?"), or None when none is close."""
    matches = difflib.get_close_matches(word, list(candidates), n=1, cutoff=0.6)
    return matches[0] if matches else None
