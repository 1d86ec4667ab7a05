"""Calibrate the vesicle-free gate (``PostParams.min_best_score``) for one network model.

The pipeline declares a tomogram vesicle-free when none of its candidates reaches a mean
probability of ``min_best_score`` (:func:`synapseg.post.vesicles.find_vesicles`). The right
value depends on the network: a model that is less sure of every vesicle needs a lower
gate. This module measures, per tomogram, the score of the best candidate
(:func:`best_candidate_score`) and picks the gate that separates tomograms with vesicles from
vesicle-free ones with the widest margin (:func:`choose_min_best_score`). The result is
stored in the model card (``postprocessing.min_best_score``, read by
:func:`synapseg.model.registry.card_post_params`).

Pure numpy; the caller runs the network (``scripts/train_default.py gate``).
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from synapseg.post.filters import FilterParams
from synapseg.post.vesicles import PostParams, post_candidates


def best_candidate_score(
    probability: np.ndarray,
    voxel_size_nm: Sequence[float] | float,
    params: PostParams | None = None,
) -> float:
    """Mean probability of the best vesicle candidate of a probability map (0 when none).

    The candidates are those :func:`synapseg.post.vesicles.find_vesicles` gates (same
    threshold, radius range, seed separation and membrane thickness from ``params``).

    Parameters
    ----------
    probability
        (z, y, x) vesicle probability, float in [0, 1] or uint8 0..255.
    voxel_size_nm
        Voxel size of the map, scalar or zyx triple.
    params
        :class:`PostParams` (default: the pipeline's defaults).

    Returns
    -------
    float
        The best candidate's score in [0, 1]; 0.0 for a map without candidates.
    """
    p = params or PostParams()
    thickness_nm = getattr(p, "membrane_thickness_nm", None)
    if thickness_nm is None:  # measured from the data later in the pipeline
        thickness_nm = FilterParams.membrane_thickness_nm
    cand = post_candidates(probability, voxel_size_nm, p, thickness_nm)
    return float(np.max(cand.score)) if len(cand) else 0.0


def choose_min_best_score(
    with_vesicles: Sequence[float], vesicle_free: Sequence[float], digits: int = 3
) -> dict:
    """The gate that best separates two sets of best-candidate scores.

    Every midpoint between consecutive distinct scores is a possible gate; the chosen one
    misclassifies the fewest tomograms (a tomogram with vesicles below the gate, a
    vesicle-free one at or above it) and, among those, has the widest margin to the nearest
    score. With perfectly separated sets it is the midpoint between the lowest score with
    vesicles and the highest vesicle-free score (the max-margin threshold).

    Parameters
    ----------
    with_vesicles
        Best-candidate scores of tomograms that hold vesicles (at least one).
    vesicle_free
        Best-candidate scores of vesicle-free tomograms (at least one).
    digits
        Rounding of the returned gate.

    Returns
    -------
    dict
        ``min_best_score`` (the gate), ``errors`` (misclassified tomograms), ``margin``
        (distance to the nearest score) and both score lists, for the model card.
    """
    pos = np.asarray(with_vesicles, dtype=float)
    neg = np.asarray(vesicle_free, dtype=float)
    if pos.size == 0 or neg.size == 0:
        raise ValueError("need best-candidate scores of tomograms with and without vesicles")
    scores = np.unique(np.concatenate([pos, neg]))
    gates = (scores[:-1] + scores[1:]) / 2 if scores.size > 1 else scores
    best = None
    for gate in gates:
        errors = int(np.sum(pos < gate) + np.sum(neg >= gate))
        margin = float(np.min(np.abs(scores - gate)))
        key = (errors, -margin)
        if best is None or key < best[0]:
            best = (key, float(gate))
    (errors, neg_margin), gate = best
    return {
        "min_best_score": round(gate, digits),
        "errors": int(errors),
        "margin": round(-neg_margin, digits),
        "with_vesicles": [round(float(s), 4) for s in pos],
        "vesicle_free": [round(float(s), 4) for s in neg],
    }
