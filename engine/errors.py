"""The errors Sigma raises on bad input: each names the field, what was wrong and the fix."""

from __future__ import annotations

import re

__all__ = ["SigmaError", "ConfigError", "DecodeError", "NotFoundError", "IntegrityError", "printable", "redacted"]


class SigmaError(Exception):
    """Base of every error that Sigma reports to a user as one line."""


class ConfigError(SigmaError, ValueError):
    """A pack, model, parameter or CLI argument that cannot be used as given.

    Parameters
    ----------
    field
        Where the problem is, as a dotted path (``strategies[0].indicators``).
    problem
        What is wrong, with the value that was given.
    fix
        What to do instead.
    """

    def __init__(self, field: str, problem: str, fix: str = "") -> None:
        self.field = field
        self.problem = problem
        self.fix = fix
        message = f"{field}: {problem}"
        if fix:
            message += f"; {fix}"
        super().__init__(message)


class DecodeError(SigmaError, ValueError):
    """A message (tick, bar, alert) that does not match its schema."""


class NotFoundError(SigmaError, LookupError):
    """A named thing (pack, indicator, model) that does not exist."""


class IntegrityError(SigmaError):
    """A stored artifact or manifest that no longer matches the SHA-256 recorded for it."""


def printable(text: str, limit: int | None = None) -> str:
    """``text`` as one safe line: characters that are not printable escaped (a newline in a ticker forges no line,
    a right-to-left override reverses none), cut to ``limit``."""
    if not text.isprintable():
        text = "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in text)
    return text if limit is None or len(text) <= limit else text[: limit - 3] + "..."


_CREDENTIALS = re.compile(r"(?P<scheme>[a-z][a-z0-9+.\-]*://)(?P<user>[^:@/\s]*):(?P<password>[^@/\s]*)@", re.IGNORECASE)


def redacted(text: str) -> str:
    """``text`` with the password of every URL in it (``redis://user:secret@host``) replaced by ``***``."""
    return _CREDENTIALS.sub(lambda m: f"{m['scheme']}{m['user']}:***@", text)
