"""The errors a caller sees for a policy: PolicyError (every problem of one file) and PolicyWarning."""

from __future__ import annotations

from collections.abc import Sequence


class PolicyError(ValueError):
    """A bad policy; str() is one line: "file:line: key: what to fix (did you mean 'x'?)".

    Its own fields describe the first problem of the file; `problems` holds every problem found, in file
    order, this error first; `report()` gives them one per line.
    """

    def __init__(
        self,
        message: str,
        file: str = "<string>",
        line: int | None = None,
        key: str | None = None,
        suggestion: str | None = None,
    ):
        super().__init__(message, file, line, key, suggestion)
        self.message = message
        self.file = file
        self.line = line
        self.key = key
        self.suggestion = suggestion
        self.truncated = False  # the loader stopped looking after MAX_PROBLEMS problems
        self._more: tuple[PolicyError, ...] = ()

    @classmethod
    def of(cls, errors: Sequence[PolicyError], *, truncated: bool = False) -> PolicyError:
        """One error for several problems: the first one's fields, all of them in `problems`."""
        if not errors:
            raise ValueError("PolicyError.of needs at least one error")
        first = errors[0]
        error = cls(first.message, first.file, first.line, first.key, first.suggestion)
        error._more = tuple(errors[1:])
        error.truncated = truncated
        return error

    @property
    def problems(self) -> tuple[PolicyError, ...]:
        """Every problem found, in file order; the first is this error itself."""
        return (self, *self._more)

    def report(self) -> str:
        """All problems, one per line (the last line says so when the loader stopped early)."""
        lines = [str(problem) for problem in self.problems]
        if self.truncated:
            lines.append(f"{self.file}: stopped after {len(lines)} problems; fix these and load it again")
        return "\n".join(lines)

    def __str__(self) -> str:
        text = self.file + (f":{self.line}" if self.line is not None else "") + ": "
        text += (f"{self.key}: " if self.key else "") + self.message
        if self.suggestion:
            text += f" (did you mean '{self.suggestion}'?)"
        return text.replace("\r", "\\r").replace("\n", "\\n")


class PolicyWarning(UserWarning):
    """Something in a policy that works but should be fixed (e.g. a literal API key)."""
