"""numba's ``njit`` for the batch kernels, loaded only when a kernel first runs, with an on-disk cache that cannot go stale.

Importing numba costs about a quarter of a second, and most commands (``sigma --help``,
``sigma packs list``) run no kernel. So `kernel` and `helper` hand back a stand-in, and
the first call of any of them imports numba, compiles-on-demand dispatchers for every
kernel declared so far, and puts each dispatcher in place of its stand-in in every
Sigma module that holds it: compiled code finds real dispatchers in its globals, as if
they had been decorated at import. A module that compiles kernels of its own calls
`load` first (`research.backtest`).

numba invalidates a cached kernel only when the kernel's own file changes, not when a
helper it inlines from another file does. The cache folder is therefore keyed on a
hash of the engine's source: any edit here starts a fresh cache. Set
NUMBA_CACHE_DIR to choose the folder yourself.
"""

from __future__ import annotations

import hashlib
import os
import sys
from collections.abc import Callable
from functools import cache
from pathlib import Path

__all__ = ["kernel", "helper", "load", "cache_folder", "cold"]

_PACKAGE = Path(__file__).resolve().parent
_OURS = ("engine", "research", "replay", "flows", "cli", "benchmarks", "tests")
_KERNEL = {"cache": True}
_HELPER = {"cache": True, "inline": "always"}


class _Deferred:
    """A kernel before numba is loaded: calling it loads numba (`load`) and runs the compiled kernel."""

    __slots__ = ("function", "options", "compiled")

    def __init__(self, function: Callable, options: dict) -> None:
        self.function, self.options, self.compiled = function, options, None

    def __call__(self, *args):
        if self.compiled is None:
            load()
        return self.compiled(*args)

    def __repr__(self) -> str:
        return f"<kernel {self.function.__qualname__}, compiled when first called>"


_deferred: list[_Deferred] = []
_numba = None


def kernel(function):
    """Compile a batch kernel (cached on disk), when one first runs."""
    return _declare(function, _KERNEL)


def helper(function):
    """Compile a small helper that is inlined into every kernel that calls it."""
    return _declare(function, _HELPER)


def _declare(function: Callable, options: dict):
    if _numba is not None:
        return _numba.njit(**options)(function)
    deferred = _Deferred(function, options)
    _deferred.append(deferred)
    return deferred


def load() -> None:
    """Import numba and put a dispatcher in place of every deferred kernel, in every Sigma module that holds one."""
    global _numba
    if _numba is not None:
        return
    import numba

    if "NUMBA_CACHE_DIR" not in os.environ:
        numba.config.CACHE_DIR = str(cache_folder())
    for deferred in _deferred:  # declaration order: helpers before the kernels that inline them
        deferred.compiled = numba.njit(**deferred.options)(deferred.function)
    for module in list(sys.modules.values()):
        name = getattr(module, "__name__", "") or ""
        namespace = getattr(module, "__dict__", None)
        if namespace is None or name.split(".")[0] not in _OURS:
            continue
        for key, value in list(namespace.items()):
            if type(value) is _Deferred:
                namespace[key] = value.compiled
    _numba = numba
    _deferred.clear()


@cache
def cache_folder() -> Path:
    """Where the compiled kernels are kept."""
    if "NUMBA_CACHE_DIR" in os.environ:
        return Path(os.environ["NUMBA_CACHE_DIR"])
    source = hashlib.sha256(b"".join(path.read_bytes() for path in sorted(_PACKAGE.rglob("*.py"))))
    return _PACKAGE / "__pycache__" / f"numba-{source.hexdigest()[:16]}"


def cold() -> bool:
    """True when no kernel of this engine's source has been compiled and cached yet (the first run after an install)."""
    folder = cache_folder()
    return not folder.is_dir() or not any(folder.rglob("*.nbi"))
