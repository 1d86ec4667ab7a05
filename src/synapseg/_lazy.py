"""Lazy attributes for package ``__init__`` modules: importing a package stays cheap."""

from __future__ import annotations

import importlib
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
