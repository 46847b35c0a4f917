"""User-facing errors: one printable line, naming the file, the field and the problem."""

from __future__ import annotations

import difflib
import re
from collections.abc import Iterable

# A user error is read on a terminal and in CI logs: one line, short enough to read at a glance.
MAX_MESSAGE_CHARS = 400
# Parts of a message that come from the user are shortened on their own first, so that a huge
# file name or value cannot push the field and the problem out of the line.
MAX_SOURCE_CHARS = 120
MAX_FIELD_CHARS = 80
MAX_TOKEN_CHARS = 80  # one run of non-space characters: a value, a path

ERROR_PREFIX = "error: "  # how the CLI prints a user error

_ESCAPES = {"\n": "\\n", "\r": "\\r", "\t": "\\t"}
_LONG_TOKEN = re.compile(rf"\S{{{MAX_TOKEN_CHARS + 1},}}")


class UserError(Exception):
    """A problem the user fixes (input, environment). The CLI prints it as one line and exits with status 2."""


class SpecError(UserError):
    """Bad input in a spec file, named by file and field."""

    def __init__(self, source: str, field: str | None, problem: str):
        self.source, self.field, self.problem = source, field, problem
        where = shorten(escape(str(source)), MAX_SOURCE_CHARS, keep_end=True)
        if field:
            where += f": {shorten(escape(str(field)), MAX_FIELD_CHARS)}"
        room = MAX_MESSAGE_CHARS - len(f"{ERROR_PREFIX}{where}: ")
        super().__init__(f"{where}: {one_line(str(problem), room)}")


def escape(text: str) -> str:
    """`text` with newlines, ANSI escapes and every other unprintable character shown the way
    Python's repr shows them (`\\n`, `\\x1b`, `\\u202e`), so it stays one harmless line."""
    return "".join(ch if ch.isprintable() else _escape_char(ch) for ch in text)


def _escape_char(ch: str) -> str:
    if ch in _ESCAPES:
        return _ESCAPES[ch]
    code = ord(ch)
    return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}" if code < 0x10000 else f"\\U{code:08x}"


def shorten(text: str, limit: int, *, keep_end: bool = False) -> str:
    """`text` cut to `limit` characters with `...` in the middle, keeping its start and its end
    (more of the end with `keep_end`, for paths, whose file name is last)."""
    if len(text) <= limit:
        return text
    room = limit - 3
    head = room // 3 if keep_end else (room * 2) // 3
    return f"{text[:head]}...{text[len(text) - (room - head) :]}"


def one_line(text: str, limit: int = MAX_MESSAGE_CHARS) -> str:
    """A message made safe to print: escaped, each overlong value shortened, the whole bounded."""
    text = _LONG_TOKEN.sub(lambda m: shorten(m.group(), MAX_TOKEN_CHARS), escape(text))
    return shorten(text, limit)


def error_line(exc: UserError) -> str:
    """The line the CLI prints for a user error: a last guard, whatever raised it."""
    limit = MAX_MESSAGE_CHARS - len(ERROR_PREFIX)
    text = str(exc)
    # A SpecError is shaped already (its file name may be longer than a value may be).
    return ERROR_PREFIX + (shorten(escape(text), limit) if isinstance(exc, SpecError) else one_line(text, limit))


def closest(name: str, candidates: Iterable[str]) -> str | None:
    matches = difflib.get_close_matches(str(name)[:MAX_TOKEN_CHARS], list(candidates), n=1, cutoff=0.6)
    return matches[0] if matches else None


def did_you_mean(name: str, candidates: Iterable[str]) -> str:
    match = closest(name, candidates)
    return f" (did you mean {match!r}?)" if match else ""
