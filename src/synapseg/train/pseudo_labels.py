"""Pseudo-labels for ``synapseg adapt``: confident vesicles as targets, a loss mask that
ignores uncertain candidates (see :mod:`synapseg.train.adapt`)."""

from __future__ import annotations

import logging
import re
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd
from scipy import ndimage

from synapseg.core.units import voxel_size_zyx

if TYPE_CHECKING:
    from synapseg.train.adapt import AdaptConfig

log = logging.getLogger(__name__)

_CONF_REASON = re.compile(r"^confidence ([0-9.]+) <")


def candidate_confidence(rejected: pd.DataFrame) -> np.ndarray:
    """Confidence of rejected candidates parsed from their reason (NaN: rejected for
    another reason, e.g. fit failed, size, overlap, so its confidence is unknown)."""
    out = np.full(len(rejected), np.nan)
    if "reason" not in rejected:
        return out
    for i, reason in enumerate(rejected["reason"].astype(str)):
        m = _CONF_REASON.match(reason)
        if m:
            out[i] = float(m.group(1))
    return out


def _spheres(table: pd.DataFrame, radius_nm: np.ndarray, shape, vs: np.ndarray) -> np.ndarray:
    from synapseg.post.render import render_labels

    if len(table) == 0:
        return np.zeros(shape, dtype=bool)
    t = pd.DataFrame(
        {
            "id": np.arange(1, len(table) + 1),
            "center_z_px": table["center_z_px"].to_numpy(float),
            "center_y_px": table["center_y_px"].to_numpy(float),
            "center_x_px": table["center_x_px"].to_numpy(float),
            "r_nm": np.asarray(radius_nm, float),
        }
    )
    return render_labels(t, shape, vs, radius_column="r_nm") != 0


def pseudo_labels(
    table: pd.DataFrame,
    rejected: pd.DataFrame,
    probability: np.ndarray,
    voxel_size_nm: float | Sequence[float],
    config: AdaptConfig,
    membrane_thickness_nm: float = 4.5,
) -> tuple[pd.DataFrame, np.ndarray, dict[str, int]]:
    """Positive targets and the loss mask of one tomogram (pure numpy/pandas).

    Parameters
    ----------
    table
        Vesicles found with ``min_confidence = config.low_confidence`` (``confidence`` column).
    rejected
        Rejected candidates (center px, ``radius_nm``, ``reason``).
    probability
        Vesicle probability on the tomogram grid (float 0..1 or uint8 0..255).
    voxel_size_nm
        Voxel size (scalar or zyx).

    Returns
    -------
    positives, weight, counts
        Confident vesicles (a ``table`` subset), the uint8 loss mask (1 counts, 0 ignored)
        and counts: ``positive``, ``uncertain``, ``negative_candidates``,
        ``ignored_voxels``.
    """
    shape = probability.shape
    vs = voxel_size_zyx(voxel_size_nm)
    prob = probability.astype(np.float32) / (255.0 if probability.dtype == np.uint8 else 1.0)
    conf = table["confidence"].to_numpy(float) if len(table) else np.zeros(0)
    pos_sel = conf >= config.high_confidence
    positives = table[pos_sel].reset_index(drop=True)
    uncertain = table[~pos_sel & (conf >= config.low_confidence)]
    rej_conf = candidate_confidence(rejected)
    neg_sel = rej_conf < config.low_confidence  # NaN (rejected for another reason) is False
    negative = pd.concat(
        [table[conf < config.low_confidence], rejected[neg_sel]], ignore_index=True
    )
    unknown = rejected[~neg_sel]

    def outer(t: pd.DataFrame) -> np.ndarray:
        if "outer_radius_nm" in t and len(t):
            r = t["outer_radius_nm"].to_numpy(float)
        else:
            r = (
                t["radius_nm"].to_numpy(float) + membrane_thickness_nm / 2
                if len(t)
                else np.zeros(0)
            )
        return np.where(np.isfinite(r), r, 20.0)

    pos_mask = _spheres(positives, outer(positives), shape, vs)
    neg_mask = _spheres(negative, outer(negative), shape, vs)
    unsure = pd.concat([uncertain, unknown], ignore_index=True)
    ignore = _spheres(unsure, outer(unsure) + config.margin_nm, shape, vs)
    blob = (prob >= config.ignore_probability) & ~pos_mask & ~neg_mask
    if blob.any():
        dist = ndimage.distance_transform_edt(~blob, sampling=vs)
        blob_margin = config.margin_nm if config.blob_margin_nm is None else config.blob_margin_nm
        ignore |= dist <= blob_margin
    ignore &= ~pos_mask
    weight = (~ignore).astype(np.uint8)
    counts = {
        "positive": int(len(positives)),
        "uncertain": int(len(unsure)),
        "negative_candidates": int(len(negative)),
        "ignored_voxels": int(ignore.sum()),
    }
    return positives, weight, counts


def label_tomogram(
    tomogram: Path,
    folder: Path,
    model: str,
    config: AdaptConfig,
    device: str = "cpu",
) -> dict[str, Any]:
    """Segment ``tomogram`` with ``model`` and write ``folder/vesicles.csv`` + ``mask.mrc``.

    Returns the counts (see :func:`pseudo_labels`) with ``tomogram``, ``annotation`` and
    ``mask`` paths (``annotation`` is ``None`` when no vesicle is confident).
    """
    from synapseg.io.tables import read_table_csv, write_table_csv
    from synapseg.io.volume import read_volume
    from synapseg.io.volume_writer import write_volume
    from synapseg.pipeline import OutputPaths, SegmentOptions, segment_tomogram

    seg_dir = folder / "segment"
    options = SegmentOptions(
        model=model,
        device=device,
        tta=config.tta,
        min_confidence=config.low_confidence,
        formats=("csv",),
        overwrite=True,
        context=False,  # membranes/AZ add columns, never change a vesicle: not needed here
    )
    state = segment_tomogram(tomogram, seg_dir, options)
    volume = read_volume(tomogram)
    paths = OutputPaths(seg_dir, volume.name)
    table = read_table_csv(paths["csv"])
    rejected = pd.DataFrame(state["stages"]["vesicles"].get("rejected", []))
    for col in ("center_z_px", "center_y_px", "center_x_px", "radius_nm", "reason"):
        if col not in rejected:
            rejected[col] = pd.Series(dtype=object if col == "reason" else float)
    prob = np.asarray(read_volume(paths["probabilities"], volume.voxel_size_nm).data)
    positives, weight, counts = pseudo_labels(table, rejected, prob, volume.voxel_size_nm, config)
    inverted = bool(state["stages"]["predict"].get("polarity", {}).get("invert"))
    if inverted:
        log.warning(
            "%s: contrast is inverted; fine-tuning reads it as dark densities (invert it first)",
            tomogram,
        )
    csv = folder / "vesicles.csv"
    mask = folder / "mask.mrc"
    write_table_csv(csv, positives, overwrite=True)
    write_volume(mask, weight, volume.voxel_size_nm, overwrite=True, label="synapseg adapt mask")
    return {
        "tomogram": str(tomogram),
        "annotation": str(csv) if len(positives) else None,
        "mask": str(mask),
        "inverted": inverted,
        **counts,
    }
