"""Keep self-trained weights only when they find more on the user's own tomograms.

Fine-tuning on one kind of tomogram can make a network forget another (development
tomograms of the hard domain-shift set: adapted on small vesicles, the default model found
8 instead of 86 vesicles on a 300 nm low-dose lamella, and 52 instead of 58 true ones at a
tenth of the SNR).
The user's tomograms carry an unlabeled signal that it went wrong, or did not pay: each
round's pseudo-labelling pass counts the vesicles the current model finds with confidence
≥ the pseudo-label cut. The rule (:data:`RULE`): the weights of the last round are kept
only when the last pass (the model after ``rounds - 1`` rounds of fine-tuning) finds
clearly **more** confident vesicles than the first (the base model): at least
:data:`MIN_GAIN` (10 %) more, and at least one more. Otherwise the output folder gets the
base model's weights (post-processing adaptation, :mod:`synapseg.train.adapt_post`, still
applies): fine-tuned weights that find no more on the user's own data only carry the risk
of forgetting elsewhere.

Chosen on the development tomograms (``bench_domain_shift.py --set hard-dev``). Counts
fell or stood still where the weights did not pay: small vesicles 57 → 54 (v1) and 55 → 56
(``sim-unet-v2``: the adapted weights added nothing to the size rule's +0.058 F1 there, and
cost the 300 nm low-dose lamella −0.102 even interpolated halfway back), a tenth of the SNR
57 → 57 (v1, +0.025 F1). They rose clearly where they paid: the 300 nm lamella 73 → 96 (v1,
F1 0.500 → 0.598) and 15 → 99 (v2, +0.366; +0.128 interpolated halfway). Any cut between
+2 % and +31 % separates these; 10 % is the round number in between.

**Off by default since 2026-12-04** (``--check-gain`` turns it on). Those counts and losses
were measured with the batch-norm statistics re-estimated during fine-tuning. With them
frozen (``--freeze-bn``, :class:`synapseg.train.consistency.ConsistencyTrainer`) the weights
the rule drops cost no other data set on the same development tomograms. ``sim-unet-v2``
adapted on small vesicles (55 → 57) gave the lamella +0.165 and a tenth of the SNR +0.031,
its worst control −0.007. Adapted at a tenth of the SNR (46 → 50) it gave +0.023 there and
the lamella +0.142. v1 adapted on the lamella (73 → 70) gave +0.003 there and +0.018 at a
tenth of the SNR. The counts no longer separate harm from gain.
"""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

MIN_GAIN = 0.10
RULE = (
    f"weights: kept when the last pseudo-label pass finds at least {MIN_GAIN * 100:g} % more "
    "(and at least one more) vesicles with confidence >= the pseudo-label cut than the first "
    "(the base model's); otherwise the base model's weights are used"
)


def weights_decision(
    pseudo_labels_per_round: Sequence[int], check: bool = True, min_gain: float = MIN_GAIN
) -> dict[str, Any]:
    """Whether the fine-tuned weights are kept (pure; :data:`RULE`).

    Parameters
    ----------
    pseudo_labels_per_round
        Confident vesicles found in each round's pseudo-labelling pass (round 1: base model).
    check
        Apply the rule (False: always keep, as ``--no-check-gain``).
    min_gain
        Relative gain the last pass must reach (:data:`MIN_GAIN`).

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
    kept = last > first and last >= (1.0 + float(min_gain)) * first
    decision = (
        f"Weights kept: the last pass found {last} confident vesicles, the base model {first}"
        if kept
        else f"Base model's weights kept, the fine-tuned ones dropped: the last pass found "
        f"{last} confident vesicles, not {min_gain:.0%} more than the base model's {first}"
    )
    return {**out, "kept": kept, "checked": True, "decision": decision}


def use_base_weights(base_card: Path, model_dir: Path) -> None:
    """Put the base model (weights, card, its confidence model) into ``model_dir``; the
    caller then writes the adaptation record into the card."""
    from synapseg.model.registry import CONFIDENCE_NAME
    from synapseg.train.adapt_card import save_card_json

    card = json.loads(base_card.read_text(encoding="utf-8"))
    weights = base_card.parent / str(card.get("weights_file") or "model.pt")
    model_dir.mkdir(parents=True, exist_ok=True)
    shutil.copyfile(weights, model_dir / weights.name)
    confidence = base_card.parent / CONFIDENCE_NAME
    if confidence.is_file():
        shutil.copyfile(confidence, model_dir / CONFIDENCE_NAME)
    card["name"] = model_dir.name
    save_card_json(model_dir / "model.json", card)
