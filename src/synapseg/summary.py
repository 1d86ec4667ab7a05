"""Quick facts and sanity checks about a tomogram, from a sample of its data.

Reads a bounded sample (a few sections, strided in y and x), so it is fast on any size.
"""

from __future__ import annotations

import math
from typing import Any

import numpy as np

from synapseg.errors import InputError
from synapseg.io.volume import Volume

_MAX_SAMPLE_VOXELS = 4_000_000


def sample_voxels(volume: Volume, max_voxels: int = _MAX_SAMPLE_VOXELS) -> np.ndarray:
    """Return a float32 sample of the volume: evenly spaced sections, strided in y and x."""
    nz, ny, nx = volume.shape
    n_sections = min(nz, 16)
    zs = np.unique(np.linspace(0, nz - 1, n_sections).round().astype(int))
    per_section = max(max_voxels // len(zs), 1)
    stride = max(1, math.ceil(math.sqrt(ny * nx / per_section)))
    parts = [np.asarray(volume.data[int(z), ::stride, ::stride], dtype=np.float32) for z in zs]
    return np.stack(parts)


def intensity_stats(sample: np.ndarray) -> dict[str, Any]:
    """Mean, std, min, max and 1/50/99 percentiles of the finite values, plus a non-finite count."""
    finite = np.isfinite(sample)
    n_bad = int(sample.size - finite.sum())
    values = sample[finite]
    if values.size == 0:
        return {"n_sampled": int(sample.size), "n_nonfinite": n_bad}
    p1, p50, p99 = np.percentile(values, [1, 50, 99])
    return {
        "n_sampled": int(sample.size),
        "n_nonfinite": n_bad,
        "mean": float(values.mean()),
        "std": float(values.std()),
        "min": float(values.min()),
        "max": float(values.max()),
        "p1": float(p1),
        "median": float(p50),
        "p99": float(p99),
    }


def describe(volume: Volume) -> dict[str, Any]:
    """Everything ``synapseg info`` reports, as JSON-serialisable values, including warnings."""
    shape = volume.shape
    vs = volume.voxel_size_nm
    stats = intensity_stats(sample_voxels(volume))
    warnings = volume_warnings(volume, stats)
    return {
        "path": str(volume.path) if volume.path else None,
        "format": volume.header.get("format"),
        "shape_zyx": list(shape),
        "dtype": str(volume.dtype),
        "voxel_size_nm_zyx": [round(v, 6) for v in vs],
        "voxel_size_angstrom_zyx": [round(v * 10, 5) for v in vs],
        "voxel_size_source": volume.voxel_size_source,
        "origin_nm_zyx": [round(v, 4) for v in volume.origin_nm],
        "extent_nm_zyx": [round(v, 2) for v in volume.extent_nm],
        "float32_memory_gb": round(int(np.prod(shape)) * 4 / 1e9, 3),
        "intensity_sample": stats,
        "warnings": warnings,
        "header": volume.header,
    }


def volume_warnings(volume: Volume, stats: dict[str, Any]) -> list[str]:
    """Plain-language warnings about a volume's geometry and values."""
    out = []
    vs = volume.voxel_size_nm
    if min(vs) < 0.2 or max(vs) > 5:
        out.append(
            f"voxel size {min(vs):.4g}-{max(vs):.4g} nm is unusual for a tomogram (0.2-5 nm); "
            "check the header or --voxel-size"
        )
    shape = volume.shape
    if shape[0] < 2:
        out.append("the data is 2D (a single section); segmentation needs a 3D tomogram")
    elif int(np.argmin(shape)) != 0:
        axis = "zyx"[int(np.argmin(shape))]
        out.append(
            f"the thinnest axis is {axis}, not z: the tomogram may not be rotated after IMOD "
            "reconstruction (beam axis along y); rotate it, e.g. with 'clip rotx'"
        )
    if stats.get("n_nonfinite"):
        out.append(f"{stats['n_nonfinite']} of {stats['n_sampled']} sampled voxels are NaN or inf")
    if "std" in stats and stats["std"] == 0:
        out.append(f"the sampled data is constant ({stats['mean']:g})")
    return out


def check_usable(volume: Volume) -> dict[str, Any]:
    """Raise a clear ``InputError`` when a volume cannot be segmented; return the sample stats.

    Checks a sample for all-NaN/inf data, NaN/inf values and constant data.
    """
    stats = intensity_stats(sample_voxels(volume))
    path = volume.path or "volume"
    if "mean" not in stats:
        raise InputError(path, "all sampled voxels are NaN or inf", "check the reconstruction")
    if stats["n_nonfinite"]:
        raise InputError(
            path,
            f"contains NaN or inf values ({stats['n_nonfinite']} in a sample of "
            f"{stats['n_sampled']})",
            "replace them, e.g. with IMOD's 'clip' or numpy.nan_to_num, and try again",
        )
    if stats["std"] == 0:
        raise InputError(
            path, f"volume is constant ({stats['mean']:g} everywhere sampled)", "check the file"
        )
    return stats
