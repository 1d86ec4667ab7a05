"""Keep self-trained weights only when they find more on the user's own tomograms.

Fine-tuning on one kind of tomogram can make a network forget another (development
tomograms of the hard domain-shift set: adapted on small vesicles, the default model found
8 instead of 86 vesicles on a 300 nm low-dose lamella, and 52 instead of 58 true ones at a
tenth of the SNR).
The user's tomograms carry an unlabeled signal that it went wrong: each round's
pseudo-labelling pass counts the vesicles the current model finds with confidence ≥ the
pseudo-label cut. The rule (:data:`RULE`): when the last pass (the model after
``rounds - 1`` rounds of fine-tuning) finds **fewer** confident vesicles than the first
(the base model), the adapted weights are not kept and the output folder gets the base
model's weights (post-processing adaptation, :mod:`synapseg.train.adapt_post`, still
applies). Equal or more: the weights of the last round are kept.

Chosen on the development tomograms (``bench_domain_shift.py --set hard-dev``): the counts
rose where adaptation raised F1 (300 nm lamella 73 → 96, F1 0.500 → 0.598), stayed equal at a
tenth of the SNR (57 → 57, F1 0.913 → 0.938), and fell on small vesicles (57 → 54), where
the adapted weights emptied the lamella tomograms.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

RULE = (
    "weights: kept when the last pseudo-label pass finds at least as many vesicles with "
    "confidence >= the pseudo-label cut as the first (the base model's); fewer: the base "
    "model's weights are used"
)


def weights_decision(pseudo_labels_per_round: Sequence[int], check: bool = True) -> dict[str, Any]:
    """Whether the fine-tuned weights are kept (pure; :data:`RULE`).

    Parameters
    ----------
    pseudo_labels_per_round
        Confident vesicles found in each round's pseudo-labelling pass (round 1: base model).
    check
        Apply the rule (False: always keep, as ``--no-check-gain``).

    Returns
    -------
    dict
        ``kept`` (bool), ``checked``, ``rule``, the counts compared and a ``decision`` sentence.
    """
    counts = [int(n) for n in pseudo_labels_per_round]
    out: dict[str, Any] = {"rule": RULE, "pseudo_labels_per_round": counts}
    if not check or len(counts) < 2:
        why = "not checked (--no-check-gain)" if not check else "not checked (one round)"
        return {**out, "kept": True, "checked": False, "decision": f"Weights kept: {why}"}
    first, last = counts[0], counts[-1]
    kept = last >= first
    decision = (
        f"Weights kept: the last pass found {last} confident vesicles, the base model {first}"
        if kept
        else f"Base model's weights kept, the fine-tuned ones dropped: the last pass found "
        f"{last} confident vesicles, fewer than the base model's {first}"
    )
    return {**out, "kept": kept, "checked": True, "decision": decision}


def use_base_weights(base_card: Path, model_dir: Path) -> None:
    """Put the base model (weights, card, its confidence model) into ``model_dir``; the
    caller then writes the adaptation record into the card."""
    from synapseg.io.atomic import write_text_atomic
    from synapseg.model.registry import CONFIDENCE_NAME

    card = json.loads(base_card.read_text(encoding="utf-8"))
    weights = base_card.parent / str(card.get("weights_file") or "model.pt")
    model_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(weights, model_dir / weights.name)
    confidence = base_card.parent / CONFIDENCE_NAME
    if confidence.is_file():
        shutil.copyfile(confidence, model_dir / CONFIDENCE_NAME)
    card["name"] = model_dir.name
    write_text_atomic(
        model_dir / "model.json", json.dumps(card, indent=2, default=str), overwrite=True
    )
