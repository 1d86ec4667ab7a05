"""Calibrate the instance step's parameters for one network on its own probability maps.

The instance step (:func:`synapseg.post.instances.candidate_instances`: threshold, watershed
seed separation) was tuned on ``sim-unet-v1``'s maps. A network whose maps are softer or
sharper loses recall there first (docs/benchmarks.md, "Default model v2 (world v2.1) vs
v1"). This module runs the pipeline's ``vesicles`` stage with a small grid of settings on
the maps the network produced for annotated tomograms (the recipe's validation draws), scores
each setting against the ground truth, and picks the best: the values go into the model card
(``postprocessing``, read by :func:`synapseg.model.registry.card_post_params`).

:func:`instance_settings` and :func:`choose_instance_settings` are pure;
:func:`evaluate_instance_settings` runs the pipeline (network once per tomogram, then only
the ``vesicles`` stage per setting).
"""

from __future__ import annotations

import itertools
import json
import logging
import shutil
import tempfile
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger(__name__)

#: The default grid: automatic threshold (Otsu, 0.3-0.7) or fixed; seed separation default
#: (``min_radius_nm``, 10 nm) or closer / farther.
THRESHOLDS: tuple[float | None, ...] = (None, 0.35, 0.5)
SEPARATIONS_NM: tuple[float | None, ...] = (None, 7.0, 13.0)
#: The keys a setting may hold (all are ``PostParams`` fields and card-calibratable).
INSTANCE_KEYS = ("threshold", "min_separation_nm")


def instance_settings(
    thresholds: Iterable[float | None] = THRESHOLDS,
    separations_nm: Iterable[float | None] = SEPARATIONS_NM,
) -> list[dict[str, float]]:
    """Every combination as a card ``postprocessing`` dict (``None`` = the pipeline default,
    left out); the first is ``{}`` when both grids start with ``None``."""
    out = []
    for thr, sep in itertools.product(thresholds, separations_nm):
        setting = {}
        if thr is not None:
            setting["threshold"] = float(thr)
        if sep is not None:
            setting["min_separation_nm"] = float(sep)
        out.append(setting)
    return out


def _f1(tp: int, fp: int, fn: int) -> float:
    return 1.0 if tp + fp + fn == 0 else 2 * tp / (2 * tp + fp + fn)


def choose_instance_settings(
    results: Sequence[Mapping[str, Any]], min_gain: float = 0.0
) -> dict[str, Any]:
    """The setting with the highest mean per-tomogram F1.

    Parameters
    ----------
    results
        One entry per setting: ``{"settings": dict, "per_tomogram": {name: {"tp", "fp",
        "fn"}}}`` (every setting scored on the same tomograms). The entry whose settings are
        ``{}`` (the pipeline's defaults) is the reference.
    min_gain
        A non-default setting must beat the defaults' mean F1 by more than this; ties go
        to the setting with fewer non-default keys, then to the earlier entry.

    Returns
    -------
    dict
        ``postprocessing`` (the chosen settings), ``mean_f1``, ``default_mean_f1``,
        ``pooled_f1`` and ``table`` (mean and pooled F1 of every setting), for the card.
    """
    if not results:
        raise ValueError("no settings were evaluated")
    names = sorted(results[0]["per_tomogram"])
    table = []
    for r in results:
        rows = r["per_tomogram"]
        if sorted(rows) != names:
            raise ValueError("every setting must be scored on the same tomograms")
        f1s = [_f1(rows[n]["tp"], rows[n]["fp"], rows[n]["fn"]) for n in names]
        tp, fp, fn = (sum(int(rows[n][k]) for n in names) for k in ("tp", "fp", "fn"))
        table.append(
            {
                "settings": dict(r["settings"]),
                "mean_f1": round(float(np.mean(f1s)), 4),
                "pooled_f1": round(_f1(tp, fp, fn), 4),
                "tp": tp,
                "fp": fp,
                "fn": fn,
            }
        )
    default = next((row for row in table if not row["settings"]), None)
    base = default["mean_f1"] if default else -np.inf
    best = default
    for row in table:
        if not row["settings"]:
            continue
        if row["mean_f1"] <= base + min_gain:
            continue
        key = (row["mean_f1"], -len(row["settings"]))
        if best is None or key > (best["mean_f1"], -len(best["settings"])):
            best = row
    return {
        "postprocessing": dict(best["settings"]),
        "mean_f1": best["mean_f1"],
        "pooled_f1": best["pooled_f1"],
        "default_mean_f1": None if default is None else default["mean_f1"],
        "tomograms": names,
        "table": table,
    }


def _model_copy(model_dir: Path, settings: Mapping[str, float], dest: Path) -> Path:
    """A copy of ``model_dir`` (weights byte-identical, so the card's sha256 holds) whose
    card's ``postprocessing`` carries ``settings`` instead of any instance keys it had, and
    no vesicle-free gate (``min_best_score`` None): the gate scores candidates made with the
    instance settings, so it is calibrated after them (``train_default.py calibrate``)."""
    dest.mkdir(parents=True, exist_ok=True)
    for f in model_dir.iterdir():
        if f.is_file():
            shutil.copy2(f, dest / f.name)
    card_file = dest / "model.json"
    card = json.loads(card_file.read_text())
    post = {k: v for k, v in (card.get("postprocessing") or {}).items() if k not in INSTANCE_KEYS}
    card["postprocessing"] = {**post, **settings, "min_best_score": None}
    card_file.write_text(json.dumps(card, indent=2) + "\n")
    return dest


def evaluate_instance_settings(
    model: str | Path,
    tomograms: Mapping[str, tuple[Any, Any, Mapping[str, Any]]],
    settings: Sequence[Mapping[str, float]],
    match_fraction: float = 0.5,
) -> list[dict[str, Any]]:
    """Score each setting of the instance step on annotated tomograms through the pipeline.

    Parameters
    ----------
    model
        Model folder (its ``confidence_model.json`` stays in force; the gate is off).
    tomograms
        Name → (``Volume``, ground-truth vesicle table, extra ``segment`` parameters such as
        ``{"tilt_range_deg": 60}``).
    settings
        Card ``postprocessing`` dicts (:func:`instance_settings`).
    match_fraction
        Match when the center distance is below this fraction of the true radius.

    Returns
    -------
    list of dict
        ``{"settings", "per_tomogram": {name: {"tp", "fp", "fn", "n_gt", "threshold"}}}``
        per setting (``threshold``: the one the stage used), the input of
        :func:`choose_instance_settings`.
    """
    import synapseg
    from synapseg.core.segment import run_stages, stage_params
    from synapseg.core.stages import registered_stages
    from synapseg.evaluate.metrics import compute_metrics
    from synapseg.model.registry import resolve_model

    model_dir = resolve_model(model).parent
    stages = registered_stages()
    vesicle_stage = stages["vesicles"]
    results = [{"settings": dict(s), "per_tomogram": {}} for s in settings]
    with tempfile.TemporaryDirectory(prefix="synapseg-calib-") as tmp:
        copies = [_model_copy(model_dir, s, Path(tmp) / f"m{i}") for i, s in enumerate(settings)]
        for name, (volume, truth, extra) in tomograms.items():
            inputs = [s for s in vesicle_stage.inputs if s not in ("image", "grid")]
            seg = synapseg.segment(volume, model=model_dir, outputs=inputs, **dict(extra))
            params = {**stage_params(stages), "model": model_dir, **dict(extra)}
            for result, copy in zip(results, copies):
                artifacts = dict(seg.artifacts)
                facts = run_stages([vesicle_stage], artifacts, {**params, "model": copy})
                m = compute_metrics(truth, artifacts["vesicles"], match_fraction=match_fraction)
                row = {k: int(m[k]) for k in ("tp", "fp", "fn", "n_gt")}
                row["threshold"] = round(float(facts["vesicles"]["threshold"]), 3)
                result["per_tomogram"][name] = row
            for r in results:
                row = r["per_tomogram"][name]
                f1 = _f1(row["tp"], row["fp"], row["fn"])
                log.info("%s: %s F1 %.3f", name, r["settings"] or "defaults", f1)
    return results
