"""Vesicles block by block, and the one table they merge into.

:func:`fit_block` runs the local steps of :func:`synapseg.post.vesicles.find_vesicles` on a
block grown by a halo of at least one vesicle diameter: candidates from the probability map
(with the whole volume's threshold), then the wedge-aware sphere fit of the candidates the
block *owns* (center in its core), with the whole volume's polarity, background and
specimen mask. :func:`merge_fits` then takes the steps that compare vesicles with each other
on the merged candidates of all blocks, as the single-process run does on its own: the
"no confident vesicle" gate, the QC filter (calibrated confidence relative to the
tomogram's population, overlaps between neighbours) and the table with ids numbered by
position (z, y, x).
"""

from __future__ import annotations

import contextlib
import logging
import math
import tempfile
from collections.abc import Iterator
from dataclasses import asdict
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from synapseg.distributed.blocks import Block
from synapseg.distributed.decisions import Decisions
from synapseg.specimen.mask import SpecimenMask

log = logging.getLogger(__name__)

__all__ = [
    "crop_specimen",
    "fit_block",
    "measure_thickness",
    "merge_fits",
    "merged_fits",
    "post_params",
]

CENTERS = ["center_z_px", "center_y_px", "center_x_px"]


def post_params(decisions: Decisions) -> Any:
    """The :class:`~synapseg.post.vesicles.PostParams` the single-process ``vesicles`` stage
    builds (the same :func:`synapseg.core.builtin.vesicle_params`: the model card's
    calibrated gate, threshold and seed separation, the network's confidence model), with
    the decided threshold."""
    from synapseg.core.builtin import vesicle_params
    from synapseg.post.vesicles import PostParams

    params = {**decisions.params, "model": decisions.model}
    kw = vesicle_params(params, decisions.wedge, "yes" if decisions.invert else "no")
    kw["threshold"] = decisions.threshold
    return PostParams(**kw)


def crop_specimen(mask: SpecimenMask, outer: tuple[slice, ...]) -> SpecimenMask:
    """The specimen mask of the region ``outer`` (whose starts are multiples of the mask's
    cells, see ``iter_blocks(align=...)``), in the region's own coordinates."""
    shape = tuple(s.stop - s.start for s in outer)
    if mask.coarse.all():
        return SpecimenMask(np.ones((1, 1, 1), bool), shape, shape, mask.voxel_size_nm, mask.facts)  # type: ignore[arg-type]
    cells = [s.start // c for s, c in zip(outer, mask.cell_px)]
    if any(s.start % c for s, c in zip(outer, mask.cell_px)):
        raise ValueError(f"region {outer} does not start on the mask's cells {mask.cell_px}")
    ends = [math.ceil(s.stop / c) for s, c in zip(outer, mask.cell_px)]
    coarse = mask.coarse[tuple(slice(a, b) for a, b in zip(cells, ends))]
    return SpecimenMask(coarse, mask.cell_px, shape, mask.voxel_size_nm, mask.facts)  # type: ignore[arg-type]


def fit_block(
    data: Any,
    probability: Any,
    block: Block,
    decisions: Decisions,
    thickness_nm: float | None = None,
) -> dict[str, Any]:
    """Candidates and sphere fits of the vesicles ``block`` owns, in whole-volume voxels.

    Parameters
    ----------
    data, probability
        The whole tomogram and its uint8 probability map (memmap or zarr; only
        ``block.outer`` is read).
    block
        A block whose halo is at least one vesicle diameter
        (:func:`~synapseg.distributed.blocks.vesicle_halo_px`).
    decisions
        The whole volume's decisions, with the threshold set.
    thickness_nm
        Bilayer thickness of the fit (default: the given one, else the default one; the
        measured one for the refit, see :func:`measure_thickness`).

    Returns
    -------
    dict
        ``fits`` (one row per owned candidate that passed the size check: center, radius,
        fit QC, ``score``), ``rejected`` (owned candidates rejected by size) and
        ``n_candidates``.
    """
    from dataclasses import replace

    from synapseg.post.spheres import SphereParams, refine_spheres
    from synapseg.post.vesicles import _stage_params, post_candidates

    p = post_params(decisions)
    vs = decisions.grid.voxel_size_nm
    t0 = _default_thickness(p)
    t = t0 if thickness_nm is None else float(thickness_nm)
    image = np.asarray(data[block.outer])
    prob = np.asarray(probability[block.outer])
    cand = post_candidates(prob, vs, p, t0)
    offset = block.offset
    rejected = cand.rejected.copy()
    if len(rejected):
        rejected[CENTERS] = rejected[CENTERS].to_numpy(float) + offset
        rejected = rejected[block.owns(rejected[CENTERS].to_numpy())].reset_index(drop=True)
    owned = block.owns(cand.centers_px + offset) if len(cand) else np.zeros(0, bool)
    centers = cand.centers_px[owned]
    init_r = np.clip(cand.inscribed_radius_nm[owned] - t / 2, p.min_radius_nm, p.max_radius_nm)
    sp = _stage_params(SphereParams, p)
    if thickness_nm is not None:
        sp = replace(sp, membrane_thickness_nm=t)
    fits = refine_spheres(
        image,
        centers,
        init_r,
        vs,
        params=sp,
        polarity=-1 if decisions.invert else 1,
        background=decisions.background,
        specimen=crop_specimen(decisions.specimen, block.outer),
    )
    fits["score"] = cand.score[owned]
    fits[CENTERS] = fits[CENTERS].to_numpy(float) + offset
    return {"fits": fits, "rejected": rejected, "n_candidates": int(owned.sum() + len(rejected))}


def _default_thickness(p: Any) -> float:
    from synapseg.post.filters import FilterParams

    return float(
        FilterParams.membrane_thickness_nm
        if p.membrane_thickness_nm is None
        else p.membrane_thickness_nm
    )


def merged_fits(parts: list[dict[str, Any]]) -> pd.DataFrame:
    """Every block's fits in one table, ordered by center (z, y, x)."""
    fits = pd.concat([q["fits"] for q in parts], ignore_index=True)
    return fits.sort_values(CENTERS, kind="stable").reset_index(drop=True)


def measure_thickness(
    data: Any, parts: list[dict[str, Any]], decisions: Decisions
) -> tuple[float, dict[str, Any]]:
    """The bilayer thickness for the fit, decided on the whole volume's confident vesicles
    as the single-process run decides it (the given one; else measured, and used when it
    differs from the default by more than the tolerance). Returns (thickness, record)."""
    from synapseg.post import vesicles as V

    p = post_params(decisions)
    t = _default_thickness(p)
    if p.membrane_thickness_nm is not None:
        return t, {"nm": t, "source": "given"}
    fits = merged_fits(parts)
    if len(fits) == 0 or (p.min_best_score is not None and fits["score"].max() < p.min_best_score):
        return t, {"nm": t, "source": "default"}
    from synapseg.post.bilayer import estimate_membrane_thickness
    from synapseg.post.confidence import reference_mask
    from synapseg.post.spheres import SphereParams

    sp = V._stage_params(SphereParams, p)
    r = fits["radius_nm"].to_numpy(float)
    ok = np.isfinite(r) & (r >= p.min_radius_nm) & (r <= p.max_radius_nm)
    ok &= fits["shift_nm"].to_numpy(float) <= p.max_shift_fraction * r
    ref = reference_mask(fits, ok) & ok
    sign = -1.0 if decisions.invert else 1.0
    centers, vs = fits.loc[ref, CENTERS].to_numpy(), decisions.grid.voxel_size_nm
    with _around(data, centers, r[ref], vs) as tomogram:
        est = estimate_membrane_thickness(
            tomogram,
            centers,
            r[ref],
            vs,
            norm=(decisions.background[0], decisions.background[1], sign),
            tilt_range_deg=sp.tilt_range_deg,
            tilt_axis=sp.tilt_axis,
            specimen=decisions.specimen,
        )
    record = {"nm": t, "source": "default", "estimate_nm": est["thickness_nm"],
              "n_vesicles": est["n_vesicles"], "misfit": est.get("misfit")}  # fmt: skip
    if est["thickness_nm"] is None or abs(est["thickness_nm"] - t) <= V.THICKNESS_TOLERANCE_NM:
        return t, record
    t = round(float(est["thickness_nm"]), 2)
    record.update(nm=t, source="estimated")
    return t, record


@contextlib.contextmanager
def _around(
    data: Any,
    centers_px: np.ndarray,
    radius_nm: np.ndarray,
    voxel_size_nm: Any,
    margin_nm: float = 15.0,
) -> Iterator[Any]:
    """``data`` as an array the profile sampler reads in place: itself when it is one (a
    memmap reads only the pages it touches), else a sparse temporary memmap of the whole
    grid holding only the boxes around the vesicles (a zarr store is never read whole)."""
    if isinstance(data, np.ndarray):
        yield data
        return
    with tempfile.TemporaryDirectory(prefix="synapseg-thickness-") as folder:
        out = np.memmap(Path(folder) / "sparse.raw", dtype=data.dtype, mode="w+", shape=data.shape)
        vs = np.asarray(voxel_size_nm, dtype=float)
        for c, r in zip(np.asarray(centers_px, float), np.asarray(radius_nm, float)):
            reach = np.ceil((r + margin_nm) / vs) + 2
            box = tuple(
                slice(int(max(ci - h, 0)), int(min(ci + h + 1, n)))
                for ci, h, n in zip(c, reach, data.shape)
            )
            out[box] = np.asarray(data[box])
        yield out
        del out


def merge_fits(
    parts: list[dict[str, Any]],
    decisions: Decisions,
    thickness: tuple[float, dict[str, Any]] | None = None,
    data: Any = None,
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """The vesicle table from every block's fits: ``(table, rejected, info)`` as
    :func:`synapseg.post.vesicles.find_vesicles` returns them. ``thickness`` is
    :func:`measure_thickness`'s answer (default: the default thickness). ``data`` (the
    whole tomogram) is read around the fits when the card asks for the tube-section test
    (``max_tube_score``): its scores are relative to all of the volume's fits, so they are
    taken here, on the merged table, as one process takes them."""
    from synapseg.post.tubes import with_tube_scores
    from synapseg.post.vesicles import tabulate

    p = post_params(decisions)
    vs = decisions.grid.voxel_size_nm
    t, record = thickness or (
        _default_thickness(p),
        {"nm": _default_thickness(p), "source": "default"},
    )
    fits = merged_fits(parts)
    if data is not None and p.max_tube_score is not None and len(fits):
        c, r = fits[CENTERS].to_numpy(float), fits["radius_nm"].to_numpy(float)
        ok = np.isfinite(r) & np.isfinite(c).all(axis=1)  # failed fits are not scored
        with _around(data, c[ok], r[ok], vs) as tomogram:
            sign = -1 if decisions.invert else 1
            fits = with_tube_scores(
                fits, tomogram, vs, p, t, sign, decisions.background, decisions.specimen
            )
    rejected = [q["rejected"] for q in parts if len(q["rejected"])]
    info: dict[str, Any] = {"params": asdict(p), "threshold": p.threshold, "warnings": []}
    info["counts"] = {
        "candidates": int(sum(q["n_candidates"] for q in parts)),
        "fitted": int(len(fits)),
    }
    info["polarity"] = {"mode": p.invert, "sign": -1 if decisions.invert else 1, "confidence": None}
    info["membrane_thickness"] = record
    best = float(fits["score"].max()) if len(fits) else float("nan")
    gate = p.min_best_score
    if len(fits) and gate is not None and best < gate:
        msg = f"no confident vesicle (best candidate score {best:.2f} < {gate:g})"
        rejected.append(fits[CENTERS + ["radius_nm", "score"]].assign(reason=msg))
        fits = fits.iloc[:0]
        info["statement"] = f"no vesicles found: {msg}"
    table, rejected_df = tabulate(fits, rejected, vs, p, t, decisions.grid.shape, info["counts"])
    if len(table) == 0:
        info.setdefault("statement", "no vesicles found")
    return table, rejected_df, info
