"""User-facing errors: one line, naming the file, the field and the problem."""

from __future__ import annotations

import difflib
from collections.abc import Iterable


class UserError(Exception):
    """A problem the user fixes (input, environment). The CLI prints it as one line and exits with status 2."""


class SpecError(UserError):
    """Bad input in a spec file, named by file and field."""

    def __init__(self, source: str, field: str | None, problem: str):
        self.source, self.field, self.problem = source, field, problem
        where = f"{source}: {field}" if field else source
        super().__init__(f"{where}: {problem}")


def closest(name: str, candidates: Iterable[str]) -> str | None:
    matches = difflib.get_close_matches(str(name), list(candidates), n=1, cutoff=0.6)
    return matches[0] if matches else None


def did_you_mean(name: str, candidates: Iterable[str]) -> str:
    match = closest(name, candidates)
    return f" (did you mean {match!r}?)" if match else ""
