"""The names a user gives (tickers, models, packs, sweeps, trained models, runs, accounts), checked once.

Every such name becomes part of a path inside the workspace, so a name is one path
component that cannot climb out of it: no separators, no leading dot, no control
characters, a bounded length. The CLI checks each name as it parses its arguments
(`cli._common`), and the functions that turn a name into a path check it again with
the same function, so no caller can write outside ``SIGMA_HOME`` by forgetting to.
"""

from __future__ import annotations

import re

from engine.errors import ConfigError, printable

__all__ = ["TICKER_PATTERN", "NAME_PATTERN", "ticker", "name"]

TICKER_PATTERN = r"^[A-Z0-9][A-Z0-9.\-_]{0,15}\Z"
"""A stored ticker: upper-case letters, digits and . - _ (BRK.B, BF-B, ES_F), at most 16 characters."""
NAME_PATTERN = r"^[A-Za-z0-9][A-Za-z0-9_.@\-]{0,127}\Z"
"""A model, pack, sweep, trained model, run or account name: letters, digits and _ . @ -, at most 128 characters."""

_TICKER, _NAME = re.compile(TICKER_PATTERN), re.compile(NAME_PATTERN)


def ticker(value: str, field: str = "ticker") -> str:
    """``value`` if it is a ticker a workspace may store, else a `ConfigError` naming ``field``."""
    if not _TICKER.match(value):
        raise ConfigError(field, f"{printable(value, 40)!r} is not a ticker", "use 1 to 16 upper-case letters, digits, . - _ (BRK.B)")
    return value


def name(value: str, field: str = "name") -> str:
    """``value`` if it is a name a workspace may keep as a file or folder, else a `ConfigError` naming ``field``."""
    if not _NAME.match(value):
        raise ConfigError(field, f"{printable(value, 40)!r} is not a name",
                          "use 1 to 128 letters, digits, _ . @ -, starting with a letter or digit")  # fmt: skip
    return value
