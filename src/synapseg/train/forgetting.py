"""The forgetting guard of ``synapseg adapt``: does the adapted model still work elsewhere?

The weights guard (:mod:`synapseg.train.adapt_guard`) only sees the user's tomograms, so it
cannot see damage on other data. This guard scores the adapted model against the base
model on a few **held-in** tomograms simulated from the base model's own training world
(:func:`synapseg.train.rehearsal.base_world`), seeds ``default_rng([20261312, i])``
(:data:`HELD_IN_SEED`, disjoint from the rehearsal draws, every training recipe and every
benchmark). They are labeled, so precision, recall and F1 are exact (the benchmark's
match: center distance < 0.5 × the true midline radius). Both models segment them with the
whole pipeline (calibration, confidence, vesicle-free gate), as a user would.

Rule (:data:`RULE`): the fine-tuned weights are dropped, and the base model's written,
when the adapted model's pooled F1 on the held-in set is lower than the base model's by
more than :data:`F1_TOLERANCE`, or its recall by more than :data:`RECALL_TOLERANCE`.
"""

from __future__ import annotations

import logging
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from synapseg.train.rehearsal import simulate_set

log = logging.getLogger(__name__)

HELD_IN_SEED = 20261312
F1_TOLERANCE = 0.01
RECALL_TOLERANCE = 0.02
PREFIX = "held_in_"
RULE = (
    f"forgetting: the fine-tuned weights are dropped when, on the held-in simulated "
    f"tomograms of the base model's world, their pooled F1 is below the base model's by more "
    f"than {F1_TOLERANCE:g} or their recall by more than {RECALL_TOLERANCE:g}"
)


def score_model(
    model: str, folders: Sequence[Path], out: Path, device: str = "cpu"
) -> dict[str, Any]:
    """Segment each labeled ``folder/tomogram.mrc`` with ``model`` (whole pipeline, no
    context) into ``out`` and pool the matches against ``folder/vesicles.csv``.

    Returns
    -------
    dict
        ``n_gt``, ``n_pred``, ``tp``, ``precision``, ``recall``, ``f1``.
    """
    from synapseg.core.options import SegmentOptions
    from synapseg.evaluate.batch import pool_matches
    from synapseg.evaluate.matching import match_vesicles
    from synapseg.evaluate.metrics import metrics_from_match
    from synapseg.io.tables import read_table_csv
    from synapseg.io.volume import read_volume
    from synapseg.pipeline import OutputPaths, segment_tomogram

    options = SegmentOptions(
        model=model, device=device, formats=("csv",), overwrite=True, context=False
    )
    matches = []
    for folder in folders:
        tomo = Path(folder) / "tomogram.mrc"
        seg = Path(out) / Path(folder).name
        segment_tomogram(tomo, seg, options)
        pred = read_table_csv(OutputPaths(seg, read_volume(tomo).name)["csv"])
        matches.append(match_vesicles(read_table_csv(Path(folder) / "vesicles.csv"), pred, 0.5))
    m = metrics_from_match(pool_matches(matches))
    return {k: m[k] for k in ("n_gt", "n_pred", "tp", "precision", "recall", "f1")}


def forgetting_decision(base: dict[str, Any], adapted: dict[str, Any]) -> dict[str, Any]:
    """Whether the fine-tuned weights pass the guard (pure; :data:`RULE`).

    Parameters
    ----------
    base, adapted
        :func:`score_model` results of the base and the adapted model on the held-in set.

    Returns
    -------
    dict
        ``kept`` (bool), ``rule``, both scores, the differences and a ``decision`` sentence.
    """
    d_f1 = float(adapted["f1"]) - float(base["f1"])
    d_rec = float(adapted["recall"]) - float(base["recall"])
    kept = d_f1 >= -F1_TOLERANCE and d_rec >= -RECALL_TOLERANCE
    numbers = (
        f"held-in F1 {adapted['f1']:.3f} vs the base model's {base['f1']:.3f}, recall "
        f"{adapted['recall']:.3f} vs {base['recall']:.3f}"
    )
    decision = (
        f"Fine-tuned weights pass the forgetting guard: {numbers}"
        if kept
        else f"Base model's weights kept, the fine-tuned ones dropped (they forgot): {numbers}"
    )
    return {
        "rule": RULE,
        "kept": kept,
        "base": base,
        "adapted": adapted,
        "delta_f1": round(d_f1, 4),
        "delta_recall": round(d_rec, 4),
        "decision": decision,
    }


def check_forgetting(
    base_model: str,
    adapted_model: str,
    work: Path,
    world: str,
    n: int,
    device: str = "cpu",
    seed: int = HELD_IN_SEED,
    data: Path | None = None,
) -> dict[str, Any]:
    """Simulate the held-in set into ``data`` (default ``work/data``; cached), segment it
    with both models into ``work``, decide.

    Returns :func:`forgetting_decision`'s record plus ``held_in`` (the tomograms: seeds,
    shapes, voxel sizes, SNR, vesicle counts) and ``world``.
    """
    work = Path(work)
    held_in = simulate_set(Path(data or work / "data"), world, n, seed=seed, prefix=PREFIX)
    folders = [Path(r["folder"]) for r in held_in]
    base = score_model(base_model, folders, work / "base", device)
    adapted = score_model(adapted_model, folders, work / "adapted", device)
    record = forgetting_decision(base, adapted)
    log.info("%s", record["decision"])
    return {**record, "world": world, "held_in": held_in}
