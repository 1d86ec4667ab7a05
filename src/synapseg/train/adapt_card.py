"""The adapted model's card: calibration carried from the base model, post-processing
adaptation, and the adaptation record (helpers of :mod:`synapseg.train.adapt`)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from synapseg.train.adapt import STATEMENT


def save_card_json(path: Path, card: dict[str, Any]) -> None:
    """Write a model card dict as ``model.json`` is written throughout adapt (atomically,
    indented, non-JSON values as strings)."""
    from synapseg.io.atomic import write_text_atomic

    write_text_atomic(path, json.dumps(card, indent=2, default=str), overwrite=True)


def carry_calibration(base_card: Path, target: Path) -> None:
    """Give the fine-tuned model in ``target`` the base model's post-processing calibration:
    its card's ``postprocessing`` (instance threshold, seed separation, vesicle-free gate) and
    its folder's ``confidence_model.json``. Without them a calibrated base (e.g. a v2
    candidate) would silently fall back to the pipeline defaults and the packaged confidence
    model, which were fitted to another network's outputs."""
    from synapseg.model.registry import CONFIDENCE_NAME

    base = json.loads(base_card.read_text(encoding="utf-8"))
    if base.get("postprocessing"):
        path = target / "model.json"
        card = json.loads(path.read_text(encoding="utf-8"))
        card["postprocessing"] = base["postprocessing"]
        save_card_json(path, card)
    confidence = base_card.parent / CONFIDENCE_NAME
    if confidence.is_file():
        shutil.copyfile(confidence, target / CONFIDENCE_NAME)


def adapt_post(
    model_dir: Path, files: Sequence[Path], names: Sequence[str], labels: Path, config: Any
) -> dict[str, Any]:
    """Re-estimate the card's post-processing (:mod:`synapseg.train.adapt_post`) from the
    pseudo-label pass in ``labels`` and write it into ``model_dir/model.json``."""
    from synapseg.train.adapt_post import adapt_postprocessing, probe_radii

    probes = [
        probe_radii(f, labels / n / "segment", config.high_confidence) for f, n in zip(files, names)
    ]
    path = model_dir / "model.json"
    card = json.loads(path.read_text(encoding="utf-8"))
    post, rec = adapt_postprocessing(probes, card.get("postprocessing") or {})
    rec["from"] = (
        f"the {labels.name} pseudo-label pass (maps of the model whose weights are written)"
    )
    if rec["changed"]:
        card["postprocessing"] = post
        save_card_json(path, card)
    return rec


def calibration_note(base_card: Path) -> dict[str, Any]:
    """What :func:`carry_calibration` carried over (for the card's adaptation record)."""
    from synapseg.model.registry import CONFIDENCE_NAME

    base = json.loads(base_card.read_text(encoding="utf-8"))
    return {
        "postprocessing": base.get("postprocessing") or {},
        "confidence_model": "base model's"
        if (base_card.parent / CONFIDENCE_NAME).is_file()
        else "packaged",
        "note": "carried over from the base model, not re-calibrated on the adapted network",
    }


def write_card(model_dir: Path, record: dict[str, Any], base: Any) -> None:
    """Add the adaptation record to the card (model.pt and its sha256 are unchanged)."""

    path = model_dir / "model.json"
    card = json.loads(path.read_text(encoding="utf-8"))
    per_round = ", ".join(f"round {x['round']}: {x['pseudo_labels']}" for x in record["rounds"])
    c = record["config"]
    card["description"] = (
        f"{STATEMENT}. Adapted from {base.name} (sha256 {base.sha256[:12]}…) by synapseg adapt on "
        f"{len(record['tomograms'])} tomogram(s): {c['rounds']} round(s) of {c['steps']} steps "
        f"(lr {c['lr']:g}, flip consistency {c['consistency_weight']:g}); pseudo-labels = "
        f"vesicles with confidence >= {c['high_confidence']:g} ({per_round}); candidates "
        f"between {c['low_confidence']:g} and {c['high_confidence']:g} were ignored (loss mask)."
    )
    cal = record.get("calibration") or {}
    if cal.get("postprocessing") or cal.get("confidence_model") == "base model's":
        card["description"] += (
            " Post-processing calibration (card postprocessing, confidence model) carried over "
            "from the base model, not re-calibrated."
        )
    if not record.get("weights", {}).get("kept", True):
        card["description"] += f" {record['weights']['decision']}."
    reh = record.get("rehearsal")
    if reh:
        card["description"] += (
            f" Rehearsal: {reh['fraction']:g} of the patches from {len(reh['tomograms'])} "
            f"labeled tomograms simulated from the base model's {reh['world']} world (seeds "
            f"[{reh['tomograms'][0]['seed'][0]}, i])."
        )
    if record.get("anchor"):
        card["description"] += f" L2-SP anchoring, alpha {record['anchor']['alpha']:g}."
    blend = record.get("interpolation")
    if blend and record.get("weights", {}).get("kept", True):
        card["description"] += (
            f" Weights interpolated towards the base model's: w_base + {blend['lambda']:g} x "
            "(w_fine_tuned - w_base)."
        )
    forgetting = record.get("forgetting")
    if forgetting and forgetting["kept"]:
        card["description"] += f" {forgetting['decision']}."
    changed = (record.get("postprocessing_adapted") or {}).get("changed")
    if changed:
        card["description"] += (
            " Post-processing adapted to these tomograms (confident sizes truncated at the radius "
            f"floor): {', '.join(f'{k} = {v:g}' for k, v in changed.items())}."
        )
    card.setdefault("extra", {})["adaptation"] = record
    save_card_json(path, card)
