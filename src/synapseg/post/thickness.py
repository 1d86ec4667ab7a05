"""The bilayer thickness in force for one tomogram: measured on its confident vesicles
(:func:`synapseg.post.bilayer.estimate_membrane_thickness`) and used when it differs from the
default; every candidate is then refitted with it. Called by
:func:`synapseg.post.vesicles.find_vesicles` (see docs/postprocessing.md, "Membrane thickness
from the tomogram").
"""

from __future__ import annotations

import logging
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from synapseg.post.bilayer import estimate_membrane_thickness
from synapseg.post.confidence import reference_mask
from synapseg.post.filters import FilterParams
from synapseg.post.instances import Candidates
from synapseg.post.spheres import SphereParams, refine_spheres
from synapseg.specimen.mask import SpecimenMask

if TYPE_CHECKING:
    from synapseg.post.vesicles import PostParams

log = logging.getLogger(__name__)

DEFAULT_THICKNESS_NM = FilterParams.membrane_thickness_nm
"""Bilayer thickness assumed unless the tomogram's own vesicles say otherwise (4.5 nm)."""
THICKNESS_MAX_VESICLES = 64
"""At most this many confident vesicles (the best-scoring) measure the thickness."""
THICKNESS_TOLERANCE_NM = 1.0
"""The measured thickness replaces the default only when they differ by more than this: on
4.5 nm membranes the estimate spreads over 3.7-5.0 nm across reconstructions and voxel
sizes (the two leaflets are barely resolved; thickness trades against blur)."""


def thickness_reference(fits: pd.DataFrame, p: PostParams) -> np.ndarray:
    """The vesicles that measure the bilayer thickness: the confident population
    (:func:`synapseg.post.confidence.reference_mask`) of the fits inside the hard limits
    (radius range, drift), at most the ``THICKNESS_MAX_VESICLES`` best-scoring ones."""
    r = fits["radius_nm"].to_numpy(float)
    ok = np.isfinite(r) & (r >= p.min_radius_nm) & (r <= p.max_radius_nm)
    ok &= fits["shift_nm"].to_numpy(float) <= p.max_shift_fraction * r
    ref = reference_mask(fits, ok) & ok
    if ref.sum() > THICKNESS_MAX_VESICLES:  # the best-scoring ones suffice (and bound the time)
        score = np.where(ref, fits["score"].to_numpy(float), -np.inf)
        ref = np.zeros(len(fits), bool)
        ref[np.argsort(-score, kind="stable")[:THICKNESS_MAX_VESICLES]] = True
    return ref


def measured_thickness(
    fits: pd.DataFrame,
    sp: SphereParams,
    tomogram: np.ndarray,
    cand: Candidates,
    vs: np.ndarray,
    p: PostParams,
    polarity: int,
    background: tuple[float, float],
    specimen: SpecimenMask | None,
) -> tuple[pd.DataFrame, float, dict[str, Any]]:
    """Measure the bilayer thickness on the confident fits (the top-scoring half, at least 5,
    of those inside the radius limits); refit every candidate with it when it differs from
    the default by more than ``THICKNESS_TOLERANCE_NM``. Returns (fits, thickness, record)."""
    ref = thickness_reference(fits, p)
    r = fits["radius_nm"].to_numpy(float)
    est = estimate_membrane_thickness(
        tomogram,
        fits.loc[ref, ["center_z_px", "center_y_px", "center_x_px"]].to_numpy(),
        r[ref],
        vs,
        norm=(background[0], background[1], float(polarity)),
        tilt_range_deg=sp.tilt_range_deg,
        tilt_axis=sp.tilt_axis,
        specimen=specimen,
    )
    t = DEFAULT_THICKNESS_NM
    record = {"nm": t, "source": "default", "estimate_nm": est["thickness_nm"],
              "n_vesicles": est["n_vesicles"], "misfit": est.get("misfit")}  # fmt: skip
    if est["thickness_nm"] is None or abs(est["thickness_nm"] - t) <= THICKNESS_TOLERANCE_NM:
        return fits, t, record
    t = round(float(est["thickness_nm"]), 2)
    record.update(nm=t, source="estimated")
    log.info("membrane thickness %.1f nm measured on %d vesicles", t, est["n_vesicles"])
    init_r = np.clip(cand.inscribed_radius_nm - t / 2, p.min_radius_nm, p.max_radius_nm)
    sp = replace(sp, membrane_thickness_nm=t)
    refit = refine_spheres(tomogram, cand.centers_px, init_r, vs, params=sp, polarity=polarity,
                           background=background, specimen=specimen)  # fmt: skip
    refit["score"] = cand.score
    return refit, t, record
