"""Checks of command-line option values, shared by ``segment`` and ``predict``.

Every check raises :class:`~synapseg.errors.InputError` naming the option, so a bad value
is a one-line error (exit 2) before any work starts or any file is written.
"""

from __future__ import annotations

import math
import re
from pathlib import Path

from synapseg.errors import InputError

_DEVICE = re.compile(r"^(auto|cpu|cuda(:\d+)?)$", re.IGNORECASE)


def _finite(option: str, value: float) -> float:
    if not isinstance(value, (int, float)) or not math.isfinite(float(value)):
        raise InputError(option, f"{value!r} is not a finite number", "give a number")
    return float(value)


def check_positive(option: str, value: float | None, fix: str = "give a positive number") -> None:
    """``value`` is ``None`` or a finite number > 0."""
    if value is not None and _finite(option, value) <= 0:
        raise InputError(option, f"must be positive (got {value:g})", fix)


def check_open_interval(option: str, value: float | None, lo: float, hi: float, fix: str) -> None:
    """``value`` is ``None`` or a finite number with ``lo < value < hi``."""
    if value is not None and not lo < _finite(option, value) < hi:
        raise InputError(option, f"{value:g} is outside ({lo:g}, {hi:g})", fix)


def check_int_at_least(option: str, value: int | None, minimum: int, fix: str) -> None:
    """``value`` is ``None`` or an integer >= ``minimum``."""
    if value is not None and int(value) < minimum:
        raise InputError(option, f"{value} is below {minimum}", fix)


def check_device(value: str) -> None:
    """``auto``, ``cpu``, ``cuda`` or ``cuda:N`` (availability is checked when used)."""
    if not _DEVICE.match(str(value)):
        raise InputError("--device", f"unknown device '{value}'", "use auto, cpu or cuda")


def check_radius_range(min_radius_nm: float | None, max_radius_nm: float | None) -> None:
    """Both radii positive and ``min <= max`` (each against the other's default if unset)."""
    from synapseg.post.filters import FilterParams

    check_positive("--min-radius", min_radius_nm, "give the smallest radius in nm, e.g. 10")
    check_positive("--max-radius", max_radius_nm, "give the largest radius in nm, e.g. 40")
    lo = FilterParams.min_radius_nm if min_radius_nm is None else min_radius_nm
    hi = FilterParams.max_radius_nm if max_radius_nm is None else max_radius_nm
    if lo > hi:
        raise InputError(
            "--min-radius",
            f"the smallest radius {lo:g} nm is larger than the largest {hi:g} nm",
            "give --min-radius below --max-radius",
        )


def check_tile_size(tile_size: int | None) -> None:
    """A positive tile edge; the model-specific multiple is checked once the model is known."""
    check_int_at_least("--tile-size", tile_size, 1, "give a tile edge in model voxels, e.g. 128")


def check_file(option: str, path: str | Path | None) -> None:
    """An input file given with an option exists."""
    if path is not None and not Path(path).exists():
        raise InputError(path, f"file given with {option} does not exist", "check the path")
