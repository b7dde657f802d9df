"""numba's ``njit`` for the batch kernels, with an on-disk cache that cannot go stale.

numba invalidates a cached kernel only when the kernel's own file changes, not when a
helper it inlines from another file does. The cache folder is therefore keyed on a
hash of the engine's source: any edit here starts a fresh cache. Set
NUMBA_CACHE_DIR to choose the folder yourself.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numba

__all__ = ["kernel", "helper", "cache_folder", "cold"]

_PACKAGE = Path(__file__).resolve().parent

if "NUMBA_CACHE_DIR" not in os.environ:
    _source = hashlib.sha256(b"".join(path.read_bytes() for path in sorted(_PACKAGE.rglob("*.py"))))
    numba.config.CACHE_DIR = str(_PACKAGE / "__pycache__" / f"numba-{_source.hexdigest()[:16]}")


def kernel(function):
    """Compile a batch kernel (cached on disk)."""
    return numba.njit(cache=True)(function)


def helper(function):
    """Compile a small helper that is inlined into every kernel that calls it."""
    return numba.njit(cache=True, inline="always")(function)


def cache_folder() -> Path:
    """Where the compiled kernels are kept."""
    return Path(numba.config.CACHE_DIR)


def cold() -> bool:
    """True when no kernel of this engine's source has been compiled and cached yet (the first run after an install)."""
    folder = cache_folder()
    return not folder.is_dir() or not any(folder.rglob("*.nbi"))
