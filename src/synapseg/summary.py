"""Quick facts and sanity checks about a tomogram, from a sample of its data.

Reads a bounded sample (a few sections, strided in y and x), so it is fast on any size.
Also the plain-language warnings that ``info``, ``segment`` and ``predict`` share: geometry
(unrotated, anisotropic, thin slab), voxel size against the model's training range, and a
sanity check of the vesicles found (sizes that betray a wrong voxel size).
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from synapseg.errors import InputError, VoxelSizeError
from synapseg.io.volume import Volume

log = logging.getLogger(__name__)

_MAX_SAMPLE_VOXELS = 4_000_000
SV_RADIUS_NM = (12.0, 35.0)
"""Range of plausible median synaptic-vesicle radii (outer diameter 25-70 nm)."""
MIN_SLAB_NM = 70.0
"""Thinner volumes (fewer sections than about two vesicle diameters) get a warning."""
ANISOTROPY_TOLERANCE = 1.05
"""Voxel sizes differing by more than this ratio between axes get a warning."""
NM_AS_ANGSTROM_BELOW_NM = 0.3
"""Header voxel sizes below this are probably nm written into the Å field."""
MODEL_RANGE_TOLERANCE = 1.25
"""Inputs this factor outside the model's training voxel-size range get a warning."""
MIN_RADIUS_PX = 4.0
"""Vesicles smaller than this (median radius, px) mean the voxel size is too large."""


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


def geometry_warnings(volume: Volume) -> list[str]:
    """Warnings about a volume's voxel size and shape (no data is read)."""
    out = []
    vs = volume.voxel_size_nm
    suspect = nm_as_angstrom_suspect(volume)
    if suspect:
        out.append(suspect)
    elif min(vs) < 0.2 or max(vs) > 5:
        out.append(
            f"voxel size {min(vs):.4g}-{max(vs):.4g} nm is unusual for a tomogram (0.2-5 nm); "
            "check the header or --voxel-size"
        )
    if max(vs) / min(vs) > ANISOTROPY_TOLERANCE:
        out.append(
            f"voxels are anisotropic (z, y, x = {_fmt(vs)} nm); tomograms normally have cubic "
            "voxels: check the header (a scalar --voxel-size sets all three axes)"
        )
    shape = volume.shape
    if shape[0] < 2:
        out.append("the data is 2D (a single section); segmentation needs a 3D tomogram")
        return out
    if int(np.argmin(shape)) != 0:
        axis = "zyx"[int(np.argmin(shape))]
        out.append(
            f"the thinnest axis is {axis}, not z: the tomogram may not be rotated after IMOD "
            "reconstruction (beam axis along y); rotate it, e.g. with 'clip rotx'"
        )
    thickness_nm = shape[0] * vs[0]
    if thickness_nm < MIN_SLAB_NM:
        out.append(
            f"the volume is only {thickness_nm:.0f} nm thick ({shape[0]} sections), less than "
            f"about two vesicle diameters ({MIN_SLAB_NM:g} nm): vesicles cut by the top and "
            "bottom faces are found and fitted less reliably; segment the full-thickness "
            "tomogram if you have it"
        )
    return out


def _fmt(values: Sequence[float]) -> str:
    return ", ".join(f"{v:.4g}" for v in values)


def nm_as_angstrom_suspect(volume: Volume) -> str | None:
    """A warning when the header voxel size looks like nm written into the Å field."""
    vs = volume.voxel_size_nm
    if volume.voxel_size_source != "header" or min(vs) >= NM_AS_ANGSTROM_BELOW_NM:
        return None
    a = min(vs) * 10
    return (
        f"the header voxel size {a:.4g} Å ({a / 10:.4g} nm) is plausible only for unbinned "
        f"data; the header probably holds nm written as Å ({a:.4g} nm per voxel)"
    )


def check_voxel_size(volume: Volume) -> None:
    """Refuse a header voxel size that is probably nm written as Å (unless ``--voxel-size``).

    Raises
    ------
    VoxelSizeError
        The header's voxel size is below :data:`NM_AS_ANGSTROM_BELOW_NM` nm.
    """
    suspect = nm_as_angstrom_suspect(volume)
    if suspect:
        a = min(volume.voxel_size_nm) * 10
        raise VoxelSizeError(
            volume.path,
            suspect,
            f"pass --voxel-size {a:.4g} if it holds nm, or --voxel-size {a / 10:.4g} to "
            "confirm the header",
        )


def training_voxel_range_nm(card: Any) -> tuple[float, float]:
    """The input voxel sizes (nm) a model was trained on, from its card."""
    data = getattr(card, "training_data", None)
    if isinstance(data, dict):
        for rng in (
            data.get("voxel_size_nm"),
            (data.get("train") or {}).get("source_voxel_size_nm_range"),
        ):
            if isinstance(rng, (list, tuple)) and len(rng) == 2 and all(rng):
                return float(min(rng)), float(max(rng))
    vs = float(card.voxel_size_nm)
    return vs, vs


def model_warnings(volume: Volume, card: Any) -> list[str]:
    """Compare the voxel size with the model's training range; stop when rescaling is absurd.

    Raises
    ------
    VoxelSizeError
        The input is too much coarser than the model (see
        :func:`synapseg.infer.preprocess.check_rescale`).
    """
    from synapseg.infer.preprocess import check_rescale

    check_rescale(volume.voxel_size_nm, card.voxel_size_nm, volume.path)
    lo, hi = training_voxel_range_nm(card)
    vs = volume.voxel_size_nm
    if min(vs) >= lo / MODEL_RANGE_TOLERANCE and max(vs) <= hi * MODEL_RANGE_TOLERANCE:
        return []
    return [
        f"voxel size {_fmt(vs)} nm ({volume.voxel_size_source}) is outside the range model "
        f"'{card.name}' was trained on ({lo:.3g}-{hi:.3g} nm): expect fewer and less accurate "
        "vesicles; check the voxel size (synapseg info, --voxel-size) or bin/fine-tune "
        "for this voxel size"
    ]


def mask_warnings(mask: Volume) -> list[str]:
    """A warning for an all-zero ``--mask`` (every vesicle would be rejected)."""
    from synapseg.io.scan import scan_volume

    scan = scan_volume(mask.data)
    if scan.min == 0 and scan.max == 0:
        return [
            f"--mask {mask.path} is all zero, so every vesicle is rejected as outside it; "
            "give a mask whose nonzero voxels mark the region to keep"
        ]
    return []


def vesicle_warnings(
    radius_nm: np.ndarray, voxel_size_nm: Sequence[float], min_radius_nm: float
) -> list[str]:
    """What the vesicles found say about the voxel size: radii that betray a wrong one.

    Parameters
    ----------
    radius_nm
        Fitted radii of the vesicles kept.
    voxel_size_nm
        Voxel size (z, y, x) in use.
    min_radius_nm
        The smallest radius the post-processing accepts.
    """
    r = np.asarray(radius_nm, dtype=float)
    r = r[np.isfinite(r)]
    if r.size < 5:
        return []
    out = []
    med = float(np.median(r))
    med_px = med / float(np.mean(voxel_size_nm[1:]))
    hint = (
        f"the voxel size ({_fmt(voxel_size_nm)} nm) is probably wrong: check it "
        "(synapseg info) and pass --voxel-size"
    )
    lo, hi = SV_RADIUS_NM
    if not lo <= med <= hi:
        out.append(
            f"the median vesicle radius is {med:.1f} nm, outside the synaptic-vesicle range "
            f"{lo:g}-{hi:g} nm: {hint}"
        )
    if med_px < MIN_RADIUS_PX:
        out.append(f"the vesicles found are only {med_px:.1f} px in radius (median): {hint}")
    at_min = int((r <= min_radius_nm * 1.15).sum())
    if r.size >= 20 and at_min > r.size / 2:
        out.append(
            f"{at_min} of {r.size} vesicles have about the smallest allowed radius "
            f"({min_radius_nm:g} nm): {hint}"
        )
    return out


def centers_outside_warning(
    centers_nm: np.ndarray, shape: Sequence[int], voxel_size_nm: Sequence[float], what: str
) -> str | None:
    """A warning when (z, y, x) centers in nm lie outside a volume of ``shape`` voxels.

    Voxel ``i`` covers ``[(i - 0.5) * v, (i + 0.5) * v]`` nm along each axis.
    """
    c = np.asarray(centers_nm, dtype=float).reshape(-1, 3)
    if len(c) == 0:
        return None
    v = np.asarray(voxel_size_nm, dtype=float)
    lo, hi = -0.5 * v, (np.asarray(shape[-3:], dtype=float) - 0.5) * v
    n_out = int((((c < lo) | (c > hi)).any(axis=1)).sum())
    if n_out == 0:
        return None
    return (
        f"{n_out} of {len(c)} {what} centers lie outside the tomogram "
        f"({_fmt(hi - lo)} nm in z, y, x): they cannot be matched, so the scores are wrong; "
        "check the voxel size or binning of the ground truth (--gt-voxel-size, "
        "--star-binning) and that it belongs to this tomogram"
    )


def segment_warnings(
    volume: Volume, model: str | Any = "default", mask: Volume | None = None
) -> list[str]:
    """Everything ``segment``/``predict`` check before work starts; logged and returned.

    Raises
    ------
    VoxelSizeError
        nm written as Å in the header; an input far coarser than the model.
    """
    from synapseg.model.registry import read_card, resolve_model

    check_voxel_size(volume)
    card = model if hasattr(model, "voxel_size_nm") else read_card(resolve_model(model))
    out = geometry_warnings(volume) + model_warnings(volume, card)
    if mask is not None:
        out += mask_warnings(mask)
    for message in out:
        log.warning("%s: %s", volume.path or "volume", message)
    return out


def volume_warnings(volume: Volume, stats: dict[str, Any]) -> list[str]:
    """Plain-language warnings about a volume's geometry and values."""
    out = geometry_warnings(volume)
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
            "replace them, e.g. with IMOD's 'clip' or numpy.nan_to_num (synapseg segment and "
            "predict: --fill-nonfinite median), and try again",
        )
    if stats["std"] == 0:
        raise InputError(
            path, f"volume is constant ({stats['mean']:g} everywhere sampled)", "check the file"
        )
    return stats
