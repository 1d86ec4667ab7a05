"""Lazy, read-only views over (z, y, x) array-likes that transform each block as it is read.

Used for inputs that the rest of synapseg should not see as stored: float16 data is read
as float32 (scipy's interpolation does not accept float16), and with the explicit
``--fill-nonfinite`` opt-in NaN/inf voxels read as a fill value. Nothing volume-sized is
copied: indexing reads only the requested block from the underlying memmap/zarr array.
"""

from __future__ import annotations

from typing import Any

import numpy as np


class BlockView:
    """A read-only view of ``data`` whose blocks are cast and/or have non-finite voxels filled.

    Parameters
    ----------
    data
        The underlying (z, y, x) array-like (``numpy.memmap``, ``zarr`` array, ndarray).
    dtype
        Type blocks are cast to (``None``: keep the stored type).
    fill_value
        Value that replaces NaN/inf voxels (``None``: leave them).
    """

    def __init__(self, data: Any, dtype: Any = None, fill_value: float | None = None) -> None:
        self.data = data
        self._dtype = np.dtype(data.dtype if dtype is None else dtype)
        self.fill_value = None if fill_value is None else float(fill_value)

    @property
    def shape(self) -> tuple[int, ...]:
        return tuple(int(s) for s in self.data.shape)

    @property
    def dtype(self) -> np.dtype:
        return self._dtype

    @property
    def ndim(self) -> int:
        return len(self.shape)

    @property
    def size(self) -> int:
        return int(np.prod(self.shape))

    def __len__(self) -> int:
        return self.shape[0]

    def __getitem__(self, key: Any) -> np.ndarray:
        block = np.asarray(self.data[key]).astype(self._dtype, copy=False)
        if self.fill_value is not None and block.dtype.kind == "f":
            bad = ~np.isfinite(block)
            if bad.any():
                block = np.where(bad, block.dtype.type(self.fill_value), block)
        return block

    def __array__(self, dtype: Any = None, copy: Any = None) -> np.ndarray:
        out = self[...]
        return out if dtype is None else out.astype(dtype, copy=False)
