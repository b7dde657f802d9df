"""The errors Sigma raises on bad input: each names the field, what was wrong and the fix."""

from __future__ import annotations

__all__ = ["SigmaError", "ConfigError", "DecodeError", "NotFoundError", "IntegrityError", "printable"]


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
    """``text`` as one safe line: control and non-ASCII characters escaped (a newline in a ticker forges no line), cut to ``limit``."""
    if not text.isascii() or not text.isprintable():
        text = text.encode("unicode_escape").decode("ascii")
    return text if limit is None or len(text) <= limit else text[: limit - 3] + "..."
