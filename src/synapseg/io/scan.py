"""A streaming finiteness and range scan over a whole tomogram, and a lazy fill.

:func:`summary.sample_voxels` reads a sample of 16 sections, so one bad section or one
``inf`` voxel escapes it. :func:`scan_volume` reads every voxel, a z-chunk at a time
(memory bounded by ``chunk_voxels``), counts NaN / +inf / -inf and records the finite
range. :func:`check_finite` turns a bad scan into a clear :class:`InputError`; with the
explicit ``--fill-nonfinite`` opt-in it wraps ``volume.data`` in a
:class:`synapseg.io.lazy.BlockView` so that non-finite voxels read as a fill value, block by
block, without copying the volume.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import asdict, dataclass, replace
from typing import Any

import numpy as np

from synapseg._cores import available_cores
from synapseg.errors import InputError
from synapseg.io.lazy import BlockView
from synapseg.io.volume import Volume

log = logging.getLogger(__name__)

CHUNK_VOXELS = 16_000_000
"""Voxels read per z-chunk by :func:`scan_volume` (64 MB as float32)."""
FILL_METHODS = ("median",)
"""Values accepted by ``--fill-nonfinite``."""
_OUTLIER_FACTOR = 1000.0
TRAIN_NONFINITE_FIX = (
    "replace them (e.g. numpy.nan_to_num or IMOD 'clip'), or leave this tomogram out of the "
    "training data: training on NaN/inf gives a broken model"
)


@dataclass
class ScanResult:
    """What :func:`scan_volume` found.

    Attributes
    ----------
    n_voxels
        Voxels read (the whole volume).
    n_nonfinite, n_nan, n_posinf, n_neginf
        Non-finite voxels, in total and by kind.
    first_nonfinite_z, last_nonfinite_z
        First and last z-section holding a non-finite voxel (``None`` when there is none).
    n_nonfinite_sections
        z-sections holding at least one non-finite voxel.
    min, max
        Range of the finite values (``None`` when there is no finite value).
    seconds
        Time the scan took.
    """

    n_voxels: int = 0
    n_nonfinite: int = 0
    n_nan: int = 0
    n_posinf: int = 0
    n_neginf: int = 0
    first_nonfinite_z: int | None = None
    last_nonfinite_z: int | None = None
    n_nonfinite_sections: int = 0
    min: float | None = None
    max: float | None = None
    seconds: float = 0.0

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    def describe_nonfinite(self) -> str:
        """``"3 NaN and 1 +inf voxels (in 2 z-sections, first at z=5)"``."""
        kinds = [
            f"{n} {name}"
            for n, name in ((self.n_nan, "NaN"), (self.n_posinf, "+inf"), (self.n_neginf, "-inf"))
            if n
        ]
        where = f"in {self.n_nonfinite_sections} z-section(s), first at z={self.first_nonfinite_z}"
        return f"{' and '.join(kinds)} voxel(s) of {self.n_voxels} ({where})"


@dataclass
class _Block:
    """One z-chunk's finite range and, when it holds any, its non-finite voxels."""

    lo: float
    hi: float
    n_nan: int = 0
    n_posinf: int = 0
    n_neginf: int = 0
    bad_z: np.ndarray | None = None


def scan_volume(
    data: Any,
    chunk_voxels: int = CHUNK_VOXELS,
    progress: Callable[[int], None] | None = None,
) -> ScanResult:
    """Count non-finite voxels and find the finite range of a (z, y, x) array-like.

    Parameters
    ----------
    data
        Anything indexable by z-slices (``numpy.memmap``, ``zarr`` array, ndarray).
    chunk_voxels
        Voxels read at a time; memory stays bounded by a few times this.
    progress
        Called with the number of z-sections done after each chunk.

    Returns
    -------
    ScanResult
    """
    t0 = time.perf_counter()
    shape = tuple(int(s) for s in data.shape)
    nz = shape[0]
    per_section = max(1, int(np.prod(shape[1:])))
    step = max(1, chunk_voxels // per_section)
    res = ScanResult(n_voxels=int(np.prod(shape)))
    is_float = np.dtype(data.dtype).kind == "f"
    lo, hi = np.inf, -np.inf
    spans = [(z0, min(nz, z0 + step)) for z0 in range(0, nz, step)]

    def scan(span: tuple[int, int]) -> _Block | None:
        z0, z1 = span
        block = np.asarray(data[z0:z1])
        if block.size == 0:
            return None
        b_lo, b_hi = block.min(), block.max()  # NaN and inf propagate into these
        if not is_float or (np.isfinite(b_lo) and np.isfinite(b_hi)):
            return _Block(float(b_lo), float(b_hi))
        # a block with NaN/inf: count them by kind and section
        finite = np.isfinite(block)
        values = block[finite]
        return _Block(
            float(values.min()) if values.size else np.inf,
            float(values.max()) if values.size else -np.inf,
            int(np.isnan(block).sum()),
            int(np.isposinf(block).sum()),
            int(np.isneginf(block).sum()),
            np.flatnonzero(~finite.reshape(z1 - z0, -1).all(axis=1)) + z0,
        )

    # two blocks at a time: numpy's reductions release the GIL (memory: two chunks)
    with ThreadPoolExecutor(min(2, available_cores(), len(spans)) or 1) as pool:
        for (z0, z1), b in zip(spans, pool.map(scan, spans)):
            if b is not None:
                lo, hi = min(lo, b.lo), max(hi, b.hi)
                if b.bad_z is not None:
                    res.n_nan += b.n_nan
                    res.n_posinf += b.n_posinf
                    res.n_neginf += b.n_neginf
                    res.n_nonfinite_sections += len(b.bad_z)
                    if res.first_nonfinite_z is None:
                        res.first_nonfinite_z = int(b.bad_z[0])
                    res.last_nonfinite_z = int(b.bad_z[-1])
            if progress is not None:
                progress(z1 - z0)
    res.n_nonfinite = res.n_nan + res.n_posinf + res.n_neginf
    if lo <= hi:
        res.min, res.max = lo, hi
    res.seconds = time.perf_counter() - t0
    return res


def fill_value(volume: Volume, method: str = "median") -> float:
    """The value non-finite voxels are replaced by: the median of a sample's finite voxels.

    Raises
    ------
    InputError
        Unknown method, or no finite voxel in the sample.
    """
    from synapseg.summary import sample_voxels

    if method not in FILL_METHODS:
        raise InputError(
            "--fill-nonfinite", f"unknown method '{method}'", f"use {', '.join(FILL_METHODS)}"
        )
    sample = sample_voxels(volume)
    finite = sample[np.isfinite(sample)]
    if finite.size == 0:
        raise InputError(
            volume.path or "volume",
            "no finite voxel in the sampled sections, so there is nothing to fill from",
            "check the reconstruction",
        )
    return float(np.median(finite))


def check_finite(
    volume: Volume,
    fill: str | None = None,
    *,
    fix: str | None = None,
    progress: Callable[[int], None] | None = None,
) -> tuple[Volume, dict[str, Any]]:
    """Scan the whole volume; refuse non-finite values unless ``fill`` says how to replace them.

    Parameters
    ----------
    volume
        The input tomogram.
    fill
        ``None`` (refuse) or a method of :data:`FILL_METHODS` (``"median"``).
    fix
        The fix the error names (default: suggest ``--fill-nonfinite median``).
    progress
        Passed to :func:`scan_volume`.

    Returns
    -------
    (Volume, dict)
        The volume, wrapped in a :class:`synapseg.io.lazy.BlockView` when voxels were
        filled or the data is float16 (read as float32), and facts for the report: the
        scan, the fill method and value, warnings.

    Raises
    ------
    InputError
        Non-finite voxels without ``fill``; no finite voxel at all.
    """
    path = volume.path or "volume"
    if fill is not None and fill not in FILL_METHODS:
        raise InputError(
            "--fill-nonfinite", f"unknown method '{fill}'", f"use {', '.join(FILL_METHODS)}"
        )
    scan = scan_volume(volume.data, progress=progress)
    facts: dict[str, Any] = {"scan": scan.to_dict(), "fill_nonfinite": None, "warnings": []}
    if scan.min is None:
        raise InputError(path, "every voxel is NaN or inf", "check the reconstruction")
    if scan.n_nonfinite:
        if fill is None:
            raise InputError(
                path,
                f"contains {scan.describe_nonfinite()}",
                fix
                or "pass --fill-nonfinite median to replace them with the median intensity, or "
                "fix the reconstruction (e.g. numpy.nan_to_num, IMOD 'clip')",
            )
        value = fill_value(volume, fill)
        message = f"{scan.describe_nonfinite()} replaced by the {fill} ({value:.6g})"
        log.warning("%s: %s (--fill-nonfinite %s)", path, message, fill)
        facts["fill_nonfinite"] = {"method": fill, "value": value, "n_filled": scan.n_nonfinite}
        facts["warnings"].append(message)
    if facts["fill_nonfinite"] is not None or volume.dtype == np.float16:
        # float16 (MRC mode 12) is processed as float32: scipy has no float16 kernels
        volume = replace(
            volume,
            data=BlockView(
                volume.data,
                dtype=np.float32 if volume.dtype == np.float16 else None,
                fill_value=(facts["fill_nonfinite"] or {}).get("value"),
            ),
        )
    outlier = _outlier_warning(volume, scan)
    if outlier:
        log.warning("%s: %s", path, outlier)
        facts["warnings"].append(outlier)
    return volume, facts


def _outlier_warning(volume: Volume, scan: ScanResult) -> str | None:
    """A warning when the finite range is far wider than the bulk of the values."""
    from synapseg.summary import sample_voxels

    sample = sample_voxels(volume, max_voxels=1_000_000)
    sample = sample[np.isfinite(sample)]
    if sample.size == 0 or scan.min is None or scan.max is None:
        return None
    p1, p99 = np.percentile(sample, [1, 99])
    spread = float(p99 - p1)
    if spread <= 0:
        return None
    far = max(float(p1) - scan.min, scan.max - float(p99)) / spread
    if far <= _OUTLIER_FACTOR:
        return None
    return (
        f"values range from {scan.min:.6g} to {scan.max:.6g}, more than {_OUTLIER_FACTOR:g}x "
        f"the 1-99% spread ({p1:.6g} to {p99:.6g}) away from it: a few extreme voxels "
        "(hot pixels, overflow?) can distort the results near them; check the reconstruction"
    )
