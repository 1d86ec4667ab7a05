"""One call from (tomogram, probability map) to the vesicle table: :func:`find_vesicles`.

Stages: candidates from the map (:mod:`~synapseg.post.instances`) → contrast polarity
(:mod:`~synapseg.post.polarity`) → sphere refinement on the tomogram
(:mod:`~synapseg.post.spheres`) → QC filters and overlaps (:mod:`~synapseg.post.filters`).
All pure: arrays in, tables out; nothing is written.

Counts (``info["counts"]``) add up: ``candidates = vesicles + rejected_total``, where
``candidates`` are all instances after watershed splitting (noise specks below half the
minimum radius are counted apart in ``specks_removed``), ``fitted`` those that passed the
size check and were sphere-fitted, and ``rejected`` the removals per reason (size,
QC, ``overlaps a better vesicle`` for duplicates merged into a better fit).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, fields, replace
from typing import Any, TypeVar

import numpy as np
import pandas as pd

from synapseg.core.units import voxel_size_zyx
from synapseg.io.tables import make_table
from synapseg.post.filters import FilterParams, qc_filter, reason_category
from synapseg.post.instances import REJECT_COLUMNS, Candidates, candidate_instances
from synapseg.post.polarity import detect_polarity
from synapseg.post.spheres import (
    FIT_QC_COLUMNS,
    SphereParams,
    estimate_background,
    refine_spheres,
)
from synapseg.post.thickness import (  # re-exported: the distributed path reads them here
    DEFAULT_THICKNESS_NM,
    THICKNESS_MAX_VESICLES,
    THICKNESS_TOLERANCE_NM,
    measured_thickness,
    thickness_reference,
)
from synapseg.post.tubes import with_tube_scores
from synapseg.specimen.mask import SpecimenMask

__all__ = [
    "DEFAULT_THICKNESS_NM",
    "QC_COLUMNS",
    "THICKNESS_MAX_VESICLES",
    "THICKNESS_TOLERANCE_NM",
    "PostParams",
    "count_outcomes",
    "find_vesicles",
    "thickness_reference",
]

log = logging.getLogger(__name__)

_Stage = TypeVar("_Stage", SphereParams, FilterParams)

QC_COLUMNS = [*FIT_QC_COLUMNS, "outer_shrunk_nm", "confidence"]


@dataclass(frozen=True)
class PostParams:
    """Parameters of :func:`find_vesicles` (nm, degrees, noise σ per voxel).

    Attributes
    ----------
    threshold
        Probability threshold (0..1); ``None`` = automatic (Otsu of the map, clipped to 0.3-0.7).
    min_radius_nm, max_radius_nm
        Accepted bilayer-midline radius range (synaptic vesicles: ≈ 12-25 nm; defaults leave
        room for tails).
    qc_min_radius_nm
        Radius floor of the QC size check only (``None``: ``min_radius_nm``); the instance
        step and the sphere fit's starting radius keep ``min_radius_nm``. Written into a
        model card by ``synapseg adapt`` when the confident sizes are truncated at the floor
        (:mod:`synapseg.train.adapt_post`).
    tilt_range_deg, tilt_axis
        Missing-wedge geometry of the tilt series (±degrees; ``"y"``, ``"x"`` or ``"dual"``
        for a dual-axis series); ``segment`` estimates both from the tomogram
        (:func:`synapseg.specimen.wedge.resolve_wedge`).
    invert
        ``"auto"`` (detect from the candidates' membranes), ``"yes"`` (densities are bright)
        or ``"no"`` (densities are dark).
    membrane_thickness_nm
        Bilayer thickness (nm); ``outer_radius_nm = radius_nm + thickness / 2``. ``None``
        (default): measured from the tomogram's confident vesicles
        (:func:`synapseg.post.bilayer.estimate_membrane_thickness`) and used when it differs
        from ``DEFAULT_THICKNESS_NM`` by more than ``THICKNESS_TOLERANCE_NM``; the
        decision is in ``info["membrane_thickness"]``.
    min_confidence
        Calibrated confidence cut-off (0..1, default 0.5; see :mod:`synapseg.post.confidence`);
        ``None``: legacy absolute thresholds below.
    confidence_model
        Path of a confidence model JSON (default: the shipped one).
    min_membrane_contrast, min_profile_correlation, max_fit_residual_nm, max_lumen_ratio,
    min_inner_fraction, max_shift_fraction, max_overlap_nm
        QC thresholds, see :mod:`synapseg.post.filters` (only ``max_shift_fraction`` and
        ``max_overlap_nm`` apply when ``min_confidence`` is set).
    min_separation_nm
        Minimum distance of watershed seeds; ``None`` = ``min_radius_nm``.
    n_directions, n_iter
        Sphere refinement: number of ray directions and of sample/fit iterations.
    polarity_candidates
        How many of the highest-scoring candidates judge the polarity.
    min_best_score
        A tomogram whose best candidate's mean probability is below this holds no vesicles:
        every candidate is rejected and the table is empty ("no vesicles found"), instead
        of a few forced detections. ``None`` disables the test.
    max_tube_score
        Opt-in: reject tube sections (:func:`synapseg.post.tubes.with_tube_scores`).
    """

    # fields shared with FilterParams / SphereParams take their defaults from there (one source);
    # _stage_params passes them on by name
    threshold: float | None = None
    min_radius_nm: float = FilterParams.min_radius_nm
    max_radius_nm: float = FilterParams.max_radius_nm
    qc_min_radius_nm: float | None = None
    tilt_range_deg: float | None = SphereParams.tilt_range_deg
    tilt_axis: str = SphereParams.tilt_axis
    invert: str = "auto"
    membrane_thickness_nm: float | None = None
    min_membrane_contrast: float = FilterParams.min_membrane_contrast
    min_profile_correlation: float = FilterParams.min_profile_correlation
    max_fit_residual_nm: float = FilterParams.max_fit_residual_nm
    max_lumen_ratio: float = FilterParams.max_lumen_ratio
    min_inner_fraction: float = FilterParams.min_inner_fraction
    max_shift_fraction: float = FilterParams.max_shift_fraction
    max_overlap_nm: float | None = FilterParams.max_overlap_nm
    min_confidence: float | None = FilterParams.min_confidence
    confidence_model: str | None = FilterParams.confidence_model
    min_separation_nm: float | None = None
    n_directions: int = SphereParams.n_directions
    n_iter: int = SphereParams.n_iter
    polarity_candidates: int = 300
    min_best_score: float | None = 0.9
    max_tube_score: float | None = None

    def __post_init__(self) -> None:
        if self.invert not in ("auto", "yes", "no"):
            raise ValueError(f"invert must be 'auto', 'yes' or 'no', not {self.invert!r}")
        if not 0 < self.min_radius_nm < self.max_radius_nm:
            raise ValueError("need 0 < min_radius_nm < max_radius_nm")
        if self.qc_min_radius_nm is not None and not 0 < self.qc_min_radius_nm < self.max_radius_nm:
            raise ValueError("need 0 < qc_min_radius_nm < max_radius_nm")
        if self.threshold is not None and not 0 < self.threshold < 1:
            raise ValueError("threshold must lie strictly between 0 and 1")


def _stage_params(cls: type[_Stage], p: PostParams) -> _Stage:
    """``cls`` (:class:`SphereParams` or :class:`FilterParams`) with the fields it shares with
    ``p`` taken from ``p``; the others keep ``cls``'s defaults."""
    given = {f.name: getattr(p, f.name) for f in fields(cls) if hasattr(p, f.name)}
    if given.get("membrane_thickness_nm", 0) is None:  # measured later: the default for now
        given["membrane_thickness_nm"] = DEFAULT_THICKNESS_NM
    return cls(**given)


def _empty_rejected() -> pd.DataFrame:
    return pd.DataFrame(
        {c: pd.Series(dtype=object if c == "reason" else float) for c in REJECT_COLUMNS}
    )


def count_outcomes(counts: dict[str, Any], table: pd.DataFrame, rejected: pd.DataFrame) -> None:
    """Set ``vesicles``, ``rejected`` (per reason) and ``rejected_total`` in ``counts``
    from the final table and rejected candidates (call again after removing more)."""
    counts["vesicles"] = int(len(table))
    reasons = (
        rejected["reason"].map(reason_category).value_counts()
        if len(rejected)
        else pd.Series(dtype=int)
    )
    counts["rejected"] = {str(k): int(v) for k, v in reasons.items()}
    counts["rejected_total"] = int(len(rejected))


def post_candidates(
    probability: np.ndarray, voxel_size_nm: Any, p: PostParams, thickness_nm: float
) -> Candidates:
    """The vesicle candidates of ``probability`` with the instance settings of ``p`` (one
    mapping of PostParams onto :func:`candidate_instances`, for every caller)."""
    return candidate_instances(
        probability,
        voxel_size_nm,
        threshold=p.threshold,
        min_radius_nm=p.min_radius_nm,
        max_radius_nm=p.max_radius_nm,
        min_separation_nm=p.min_separation_nm,
        membrane_thickness_nm=thickness_nm,
    )


def tabulate(
    fits: pd.DataFrame,
    rejected: list[pd.DataFrame],
    voxel_size_nm: Any,
    p: PostParams,
    thickness_nm: float,
    shape: Sequence[int],
    counts: dict[str, Any],
) -> tuple[pd.DataFrame, pd.DataFrame]:
    """The vesicle table (ordered along z, y, x for stable ids) and every rejection, from
    the sphere fits through the QC filters; ``counts`` gets the outcomes. One definition
    for the single-process and the block-wise (distributed) runs."""
    if len(fits):
        fp = replace(_stage_params(FilterParams, p), membrane_thickness_nm=thickness_nm)
        if p.qc_min_radius_nm is not None:
            fp = replace(fp, min_radius_nm=p.qc_min_radius_nm)
        kept, rej = qc_filter(fits, voxel_size_nm, fp, shape=tuple(shape))
        if len(rej):
            rejected.append(rej)
    else:
        kept = fits.assign(**{c: np.zeros(0) for c in ("outer_radius_nm", *QC_COLUMNS)})
    rejected_df = pd.concat(rejected, ignore_index=True) if rejected else _empty_rejected()
    centers = ["center_z_px", "center_y_px", "center_x_px"]
    kept = kept.sort_values(centers, kind="stable")
    table = make_table(
        kept[centers].to_numpy(),
        kept["radius_nm"].to_numpy(),
        voxel_size_nm,
        score=kept["score"].to_numpy(),
        outer_radius_nm=kept["outer_radius_nm"].to_numpy(),
        membrane_thickness_nm=thickness_nm,
        **{c: kept[c].to_numpy() for c in QC_COLUMNS},
    )
    count_outcomes(counts, table, rejected_df)
    return table, rejected_df


def _without_vesicles(
    cand: Candidates, min_best_score: float | None, rejected: list[pd.DataFrame]
) -> tuple[Candidates, str | None]:
    """No candidate reaches ``min_best_score``: the tomogram holds no vesicles. Then every
    candidate joins ``rejected`` (with the reason) and no candidates are left."""
    if min_best_score is None or len(cand) == 0:
        return cand, None
    best = float(np.max(cand.score))
    if best >= min_best_score:
        return cand, None
    msg = f"no confident vesicle (best candidate score {best:.2f} < {min_best_score:g})"
    c = cand.centers_px
    rejected.append(
        pd.DataFrame(
            {
                "center_z_px": c[:, 0],
                "center_y_px": c[:, 1],
                "center_x_px": c[:, 2],
                "radius_nm": cand.inscribed_radius_nm,
                "score": cand.score,
                "reason": msg,
            }
        )
    )
    empty = replace(
        cand, centers_px=np.zeros((0, 3)), inscribed_radius_nm=np.zeros(0), score=np.zeros(0)
    )
    return empty, msg


def find_vesicles(
    tomogram: np.ndarray,
    probability: np.ndarray,
    voxel_size_nm: Sequence[float] | float,
    params: PostParams | None = None,
    specimen: SpecimenMask | None = None,
) -> tuple[pd.DataFrame, pd.DataFrame, dict[str, Any]]:
    """Vesicles (centers, bilayer radii, QC) from a tomogram and its vesicle probability map.

    Parameters
    ----------
    tomogram
        (z, y, x) array, any real dtype; may be a read-only memmap (never copied whole).
    probability
        (z, y, x) probability on the same grid, float in [0, 1] or uint8 0..255.
    voxel_size_nm
        Voxel size, scalar or zyx triple.
    params
        :class:`PostParams`.
    specimen
        Where the specimen is (:func:`synapseg.specimen.mask.specimen_mask`): the QC
        background and the polarity check use only voxels inside it, and rays leaving it
        (vesicles cut by the lamella surface) are ignored like rays leaving the volume.

    Returns
    -------
    (table, rejected, info)
        ``table``: :func:`synapseg.io.tables.make_table` layout with ids 1..n and the QC columns
        ``QC_COLUMNS``; ``rejected``: removed candidates (center px, ``radius_nm``, ``score``,
        QC where measured, ``reason``); ``info``: threshold, counts per stage and per reason,
        polarity decision, timings (s) and ``warnings``.
    """
    p = params or PostParams()
    if tuple(tomogram.shape) != tuple(probability.shape):
        raise ValueError(
            f"tomogram {tuple(tomogram.shape)} and probability {tuple(probability.shape)} "
            "must share one grid"
        )
    vs = voxel_size_zyx(voxel_size_nm)
    t = DEFAULT_THICKNESS_NM if p.membrane_thickness_nm is None else p.membrane_thickness_nm
    info: dict[str, Any] = {"params": asdict(p), "timings_s": {}, "warnings": []}
    t0 = time.perf_counter()
    cand = post_candidates(probability, vs, p, t)
    info["timings_s"]["instances"] = time.perf_counter() - t0
    info["threshold"] = cand.threshold
    info["counts"] = {
        "components": cand.n_components,
        "components_split": cand.n_split,
        "specks_removed": cand.n_specks,
        "candidates": len(cand) + len(cand.rejected),  # = vesicles + rejected_total
        "fitted": len(cand),  # passed the size check; sphere-fitted
    }
    rejected = [cand.rejected] if len(cand.rejected) else []
    cand, none_found = _without_vesicles(cand, p.min_best_score, rejected)
    polarity = {"auto": 0, "yes": -1, "no": 1}[p.invert]
    info["polarity"] = {"mode": p.invert, "sign": polarity or 1, "confidence": None}
    info["membrane_thickness"] = {
        "nm": t,
        "source": "default" if p.membrane_thickness_nm is None else "given",
    }
    if len(cand) == 0:
        msg = none_found or (
            f"no vesicle candidates above threshold {cand.threshold:.3f} in the probability map"
        )
        info["statement"] = f"no vesicles found: {msg}"
        log.warning(msg)
        info["warnings"].append(msg)
        table = make_table(np.zeros((0, 3)), np.zeros(0), vs, membrane_thickness_nm=t)
        for c in QC_COLUMNS:
            table[c] = np.zeros(0)
        rej = pd.concat(rejected, ignore_index=True) if rejected else _empty_rejected()
        count_outcomes(info["counts"], table, rej)
        return table, rej, info

    t0 = time.perf_counter()
    background = estimate_background(tomogram, specimen=specimen)
    info["background"] = {"median": background[0], "sigma": background[1]}
    init_r = np.clip(cand.inscribed_radius_nm - t / 2, p.min_radius_nm, p.max_radius_nm)
    if polarity == 0:
        order = np.argsort(-cand.score, kind="stable")
        sign, conf = detect_polarity(
            tomogram,
            cand.centers_px[order],
            init_r[order],
            vs,
            tilt_range_deg=p.tilt_range_deg,
            tilt_axis=p.tilt_axis,
            background=background,
            max_candidates=p.polarity_candidates,
            specimen=specimen,
        )
        polarity = sign
        info["polarity"].update(sign=sign, confidence=conf)
        if sign < 0:
            info["warnings"].append(
                f"inverted contrast detected (confidence {conf:.2f}); the tomogram was "
                "processed as inverted (use --invert no to override)"
            )
        elif conf < 0.6:
            info["warnings"].append(f"contrast polarity uncertain (confidence {conf:.2f})")
    info["timings_s"]["polarity"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    sp = _stage_params(SphereParams, p)
    fits = refine_spheres(
        tomogram,
        cand.centers_px,
        init_r,
        vs,
        params=sp,
        polarity=polarity,
        background=background,
        specimen=specimen,
    )
    fits["score"] = cand.score  # mean probability inside the candidate
    if p.membrane_thickness_nm is None:
        args = (tomogram, cand, vs, p, polarity, background, specimen)
        fits, t, info["membrane_thickness"] = measured_thickness(fits, sp, *args)
    else:
        info["membrane_thickness"] = {"nm": t, "source": "given"}
    fits = with_tube_scores(fits, tomogram, vs, p, t, polarity, background, specimen)  # opt-in
    info["timings_s"]["spheres"] = time.perf_counter() - t0

    t0 = time.perf_counter()
    table, rejected_df = tabulate(fits, rejected, vs, p, t, tomogram.shape, info["counts"])
    info["timings_s"]["filters"] = time.perf_counter() - t0
    if len(table) == 0:
        msg = "no vesicles passed the QC filters"
        info["statement"] = f"no vesicles found: {msg}"
        log.warning(msg)
        info["warnings"].append(msg)
    info["timings_s"]["total"] = float(sum(info["timings_s"].values()))
    return table, rejected_df, info
