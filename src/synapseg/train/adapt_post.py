"""Post-processing adapted to the user's tomograms (``synapseg adapt``, after the weights).

Self-training can only teach the network; a vesicle the network finds but a *post-processing*
limit rejects stays lost. The limit that unlabeled data can re-estimate safely is the radius
floor of the size check (bilayer midline, ``min_radius_nm``, default 10 nm): on a specimen
with small vesicles the size check, not the network, rejects them (development tomograms
of the hard set's ``small_vesicles`` shift: 11 of 12 misses were "radius below min").

The rule (:func:`estimate_min_radius`, recorded verbatim in the card's adapt record):

1. **Probe.** The last round's pseudo-label pass is post-processed again, from its saved
   probability map (no network pass), with the size check's floor lowered to the physical
   floor :data:`PHYSICAL_MIN_RADIUS_NM` and everything else as in that pass. Kept are the
   vesicles whose calibrated confidence is at least the pseudo-label cut
   (``--min-confidence``).
2. **Truncated?** The size distribution is truncated at the floor when at least
   :data:`MIN_COUNT` of those confident vesicles, and at least :data:`MIN_FRACTION` of them,
   have a radius below the current floor.
3. **New floor.** Only then: the :data:`QUANTILE` quantile of the confident radii minus
   :data:`MARGIN_NM`, rounded down to 0.5 nm, bounded below by the physical floor and above
   by the current floor. It goes into the adapted card's ``postprocessing`` as
   ``qc_min_radius_nm``: the floor of the size check only. The instance step and the sphere
   fit's starting radius keep ``min_radius_nm`` (lowering those too lost 2 of 58 vesicles on
   the development ``snr0.1`` tomograms: fits started smaller locked onto a vesicle's inner
   side). Otherwise the card's post-processing is left unchanged.

Why 7.5 nm (``PHYSICAL_MIN_RADIUS_NM``): the smallest stable lipid vesicles (sonicated
small unilamellar vesicles, the bilayer's bending limit) are about 20 nm in outer diameter;
with a 4–5 nm bilayer (docs: DOMAIN) that is a midline radius of 10 − 2.25 ≈ 7.75 nm.
Synaptic vesicles are larger (outer diameter 35–50 nm, tails down to 25 nm, i.e. midline
≈ 10 nm: today's floor), so the floor never goes below what a lipid bilayer can close to.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Sequence
from dataclasses import replace
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

PHYSICAL_MIN_RADIUS_NM = 7.5
"""Bilayer-midline radius of the smallest lipid vesicle (≈ 20 nm outer diameter)."""
MIN_COUNT = 3
"""Confident vesicles below the current floor needed to call the sizes truncated."""
MIN_FRACTION = 0.05
"""Share of the confident vesicles below the current floor needed to call it truncated."""
QUANTILE = 0.02
"""Low quantile of the confident radii the new floor is taken from."""
MARGIN_NM = 1.0
"""Room below that quantile (the fit's radius error is ≈ 0.2–0.6 nm)."""

RULE = (
    "qc_min_radius_nm: re-post-process the last pseudo-label pass's probability maps with "
    f"the size check's floor at {PHYSICAL_MIN_RADIUS_NM:g} nm (the smallest lipid vesicle's "
    "midline radius); if at least "
    f"{MIN_COUNT} and at least {MIN_FRACTION:.0%} of the vesicles with confidence >= the "
    "pseudo-label cut have a radius below the current floor, the sizes are truncated: new "
    f"floor = {QUANTILE:g} quantile of their radii - {MARGIN_NM:g} nm, rounded down to 0.5 nm, "
    f"within [{PHYSICAL_MIN_RADIUS_NM:g}, current floor]; else unchanged"
)


def estimate_min_radius(
    radii_nm: Sequence[float] | np.ndarray,
    current_min_nm: float,
    *,
    physical_min_nm: float = PHYSICAL_MIN_RADIUS_NM,
    min_count: int = MIN_COUNT,
    min_fraction: float = MIN_FRACTION,
    quantile: float = QUANTILE,
    margin_nm: float = MARGIN_NM,
) -> tuple[float | None, dict[str, Any]]:
    """A lower radius floor when the confident sizes are truncated at ``current_min_nm``.

    Parameters
    ----------
    radii_nm
        Bilayer-midline radii (nm) of the confident vesicles found with the floor at
        ``physical_min_nm`` (pooled over the user's tomograms).
    current_min_nm
        The floor the model's post-processing uses now.
    physical_min_nm, min_count, min_fraction, quantile, margin_nm
        The rule's constants (module docstring).

    Returns
    -------
    (min_radius_nm, record)
        The new floor, or ``None`` when the sizes are not truncated (the card stays as it
        is); ``record``: what was measured and decided, for the card.
    """
    r = np.asarray(radii_nm, dtype=float)
    r = r[np.isfinite(r)]
    below = int(np.sum(r < current_min_nm))
    fraction = below / len(r) if len(r) else 0.0
    record: dict[str, Any] = {
        "confident_vesicles": int(len(r)),
        "below_current_floor": below,
        "fraction_below": round(fraction, 4),
        "current_min_radius_nm": float(current_min_nm),
        "radius_nm_quantiles": {
            f"{q:g}": round(float(np.quantile(r, q)), 3) for q in (quantile, 0.5, 0.98)
        }
        if len(r)
        else {},
    }
    truncated = below >= min_count and fraction >= min_fraction
    if not truncated or current_min_nm <= physical_min_nm:
        record["truncated"] = bool(truncated)
        record["decision"] = (
            "unchanged: sizes not truncated at the floor"
            if not truncated
            else "unchanged: the floor is already at the physical floor"
        )
        return None, record
    low = float(np.quantile(r, quantile)) - margin_nm
    new = min(float(current_min_nm), max(physical_min_nm, math.floor(low * 2) / 2))
    record["truncated"] = True
    if new >= current_min_nm:
        record["decision"] = "unchanged: the quantile rule gives no lower floor"
        return None, record
    record["decision"] = f"size-check floor (qc_min_radius_nm) {current_min_nm:g} -> {new:g} nm"
    return new, record


def probe_radii(tomogram: Path, segment_dir: Path, min_confidence: float) -> dict[str, Any]:
    """Radii of the confident vesicles of one finished pseudo-label pass, re-post-processed
    from its saved probability map with the radius floor at :data:`PHYSICAL_MIN_RADIUS_NM`.

    Parameters
    ----------
    tomogram
        The tomogram the pass segmented.
    segment_dir
        Its ``segment`` output folder (report + probabilities).
    min_confidence
        Confidence a vesicle needs to count (the pseudo-label cut).

    Returns
    -------
    dict
        ``radii_nm`` (list) and ``current_min_radius_nm`` (the pass's size-check floor).
    """
    import json

    from synapseg.core.options import OutputPaths
    from synapseg.io.volume import read_volume
    from synapseg.post.vesicles import PostParams, find_vesicles
    from synapseg.specimen.mask import specimen_mask

    volume = read_volume(tomogram)
    paths = OutputPaths(segment_dir, volume.name)
    report = json.loads(Path(paths["report"]).read_text(encoding="utf-8"))
    params = dict(report["stages"]["vesicles"]["params"])
    qc = params.get("qc_min_radius_nm")
    current = float(params["min_radius_nm"] if qc is None else qc)
    p = replace(
        PostParams(**params),
        qc_min_radius_nm=min(PHYSICAL_MIN_RADIUS_NM, current),
        min_confidence=min_confidence,
    )
    image = np.asarray(volume.data)
    prob = np.asarray(read_volume(paths["probabilities"], volume.voxel_size_nm).data)
    specimen = specimen_mask(image, volume.voxel_size_nm)
    table, _, _ = find_vesicles(image, prob, volume.voxel_size_nm, params=p, specimen=specimen)
    return {
        "radii_nm": [round(float(x), 3) for x in table["radius_nm"]],
        "current_min_radius_nm": current,
    }


def adapt_postprocessing(
    probes: Sequence[dict[str, Any]], postprocessing: dict[str, Any]
) -> tuple[dict[str, Any], dict[str, Any]]:
    """The adapted card's ``postprocessing`` from the probes of :func:`probe_radii`.

    Parameters
    ----------
    probes
        One :func:`probe_radii` result per tomogram.
    postprocessing
        The card's ``postprocessing`` now (not modified).

    Returns
    -------
    (postprocessing, record)
        The new dict (equal to the old one when nothing changed) and the adapt record's
        ``postprocessing_adapted`` entry (rule, measurements, decision, changed keys).
    """
    radii = np.concatenate([np.asarray(p["radii_nm"], float) for p in probes] or [np.zeros(0)])
    current = min((p["current_min_radius_nm"] for p in probes), default=10.0)
    new, measured = estimate_min_radius(radii, current)
    out = dict(postprocessing)
    changed: dict[str, Any] = {}
    if new is not None:
        changed["qc_min_radius_nm"] = new
        out.update(changed)
    record = {
        "rule": RULE,
        "per_tomogram_confident": [len(p["radii_nm"]) for p in probes],
        "per_tomogram_below_floor": [
            int(np.sum(np.asarray(p["radii_nm"], float) < p["current_min_radius_nm"]))
            for p in probes
        ],
        **measured,
        "changed": changed,
    }
    log.info("adapt post-processing: %s", measured["decision"])
    return out, record
