"""Physical numbers for people: rounded to a sane precision where they are printed or stored.

Voxel sizes read from MRC headers (float32 Å) become floats such as ``1.6800000000000002``
nm after conversion; reports, JSON sidecars and messages show them rounded to
``SIGNIFICANT_DIGITS`` significant digits (far below any physical precision that matters,
above float32's ≈ 7 digits of the header itself).
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from typing import Any

import numpy as np

SIGNIFICANT_DIGITS = 6


def round_sig(value: float, digits: int = SIGNIFICANT_DIGITS) -> float:
    """``value`` rounded to ``digits`` significant digits (non-finite values unchanged).

    Parameters
    ----------
    value
        Any real number.
    digits
        Significant digits to keep (>= 1).

    Returns
    -------
    float
    """
    value = float(value)
    if value == 0 or not math.isfinite(value):
        return value
    return round(value, digits - 1 - int(math.floor(math.log10(abs(value)))))


def round_floats(obj: Any, digits: int = SIGNIFICANT_DIGITS) -> Any:
    """A copy of a JSON-like structure (dicts, lists, tuples) with every float rounded by
    :func:`round_sig`; ints, strings, bools and ``None`` pass unchanged."""
    if isinstance(obj, bool | int | str) or obj is None:
        return obj
    if isinstance(obj, float | np.floating):
        return round_sig(float(obj), digits)
    if isinstance(obj, dict):
        return {k: round_floats(v, digits) for k, v in obj.items()}
    if isinstance(obj, list | tuple):
        return [round_floats(v, digits) for v in obj]
    return obj


def format_sizes_nm(values: float | Iterable[float], digits: int = SIGNIFICANT_DIGITS) -> str:
    """``"1.68 nm"`` for one value or three equal ones, else ``"1.68 × 1.7 × 1.7 nm"`` (z, y, x)."""
    vals = [float(values)] if np.isscalar(values) else [float(v) for v in values]  # type: ignore[arg-type]
    texts = [f"{v:.{digits}g}" for v in vals]
    if len(set(texts)) == 1:
        texts = texts[:1]
    return " × ".join(texts) + " nm"
