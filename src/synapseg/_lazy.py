"""Lazy attributes for package ``__init__`` modules: importing a package stays cheap."""

from __future__ import annotations

import contextlib
import importlib
import sys
import threading
from collections.abc import Callable


def lazy_getattr(package: str, where: dict[str, str]) -> Callable[[str], object]:
    """A module-level ``__getattr__`` that imports ``where[name]`` on first use of ``name``.

    Examples
    --------
    >>> getattr_ = lazy_getattr("pkg", {"sqrt": "math"})
    >>> getattr_("sqrt")(4.0)
    2.0
    """

    def __getattr__(name: str) -> object:
        if name in where:
            return getattr(importlib.import_module(where[name]), name)
        raise AttributeError(f"module {package!r} has no attribute {name!r}")

    return __getattr__


def import_in_background(name: str) -> threading.Thread | None:
    """Start importing module ``name`` in a daemon thread; ``None`` when already imported.

    For a heavy import that a run needs later (torch: ≈ 1.7 s on the dev VM) while the
    main thread first does numpy work that releases the GIL (reading, scanning the
    volume): the two overlap on a second core. A later ``import name`` in any thread
    waits for this one to finish (the import system's per-module lock) and gets the same
    module; if this one fails, the module is left unimported and the later import raises
    the error where it is needed.
    """
    if name in sys.modules:
        return None

    def run() -> None:
        with contextlib.suppress(Exception):  # the real import raises it, where it is used
            importlib.import_module(name)

    thread = threading.Thread(target=run, name=f"synapseg-import-{name}", daemon=True)
    thread.start()
    return thread
