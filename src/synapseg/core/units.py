"""Unit helpers with no dependencies beyond numpy (importable from every layer, io included)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

__all__ = ["voxel_size_zyx"]


def voxel_size_zyx(voxel_size_nm: float | Sequence[float] | np.ndarray) -> np.ndarray:
    """A scalar or (z, y, x) voxel size as a new, writable float64 array of 3 values.

    The one spelling of ``np.broadcast_to(np.asarray(v, float).reshape(-1), (3,))``; it does
    not validate the values (see :func:`synapseg.io.volume.as_voxel_size` for user input).

    Parameters
    ----------
    voxel_size_nm
        One value for cubic voxels, or three values in (z, y, x) order.

    Returns
    -------
    numpy.ndarray
        Shape (3,), float64, a copy the caller may modify.

    Raises
    ------
    ValueError
        The value holds neither 1 nor 3 numbers.

    Examples
    --------
    >>> voxel_size_zyx(1.5)
    array([1.5, 1.5, 1.5])
    >>> voxel_size_zyx((2, 1, 1)).tolist()
    [2.0, 1.0, 1.0]
    """
    flat = np.asarray(voxel_size_nm, dtype=np.float64).reshape(-1)
    if flat.size not in (1, 3):
        raise ValueError(f"a voxel size needs 1 or 3 values (z, y, x), got {flat.size}")
    return np.broadcast_to(flat, (3,)).copy()
