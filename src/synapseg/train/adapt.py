"""Unlabeled domain adaptation (``synapseg adapt``): self-training on confident detections.

Each round (default 2):

1. **Pseudo-labels.** The normal pipeline (:func:`synapseg.pipeline.segment_tomogram`) runs
   on every tomogram with the current model. Vesicles whose calibrated ``confidence`` is at
   least ``high_confidence`` become positive targets; candidates between ``low_confidence``
   and ``high_confidence`` (and candidates rejected for another reason: fit failed, size,
   overlap; by default every candidate that is not confident) are *ignored*: a sphere of
   their outer radius + ``margin_nm`` gets loss weight 0, and so does every voxel within
   ``margin_nm`` of a probability ≥ ``ignore_probability`` that no confident vesicle
   explains (a vesicle the model half-sees teaches nothing, in either direction). Candidates
   below ``low_confidence`` and all other voxels are background. The labels are a vesicle
   table + loss mask per tomogram (``pseudo_labels/round<r>/<name>/vesicles.csv`` +
   ``mask.mrc``), read by the ordinary training data path
   (:class:`synapseg.train.data.DataItem`).
2. **Fine-tuning** with :func:`synapseg.train.run.train_model` (masked Dice + BCE, wedge-safe
   augmentation), low learning rate and few steps, plus a **flip-consistency** term: the
   prediction on a randomly flipped patch (flipped back, no gradient) is a target for the
   prediction on the patch itself, everywhere including the ignored regions
   (:class:`ConsistencyTrainer`).

Round ``r + 1`` re-labels with the model of round ``r`` and continues from it. No ground
truth is read at any point. Everything random is seeded (``seed``), so a run is reproducible
on CPU.
"""

from __future__ import annotations

import functools
import json
import logging
import shutil
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from synapseg.errors import InputError, OutputExistsError
from synapseg.train.adapt_guard import use_base_weights, weights_decision
from synapseg.train.consistency import ConsistencyTrainer
from synapseg.train.pseudo_labels import (  # noqa: F401 - candidate_confidence, pseudo_labels: API
    candidate_confidence,
    label_tomogram,
    pseudo_labels,
)
from synapseg.train.trainer import TrainConfig

log = logging.getLogger(__name__)

PSEUDO_DIR = "pseudo_labels"
ROUNDS_DIR = "rounds"
STATEMENT = "unlabeled adaptation: no ground truth was used"


@dataclass
class AdaptConfig:
    """Parameters of :func:`adapt_model` (all recorded in the model card).

    Attributes
    ----------
    rounds
        Pseudo-label / fine-tune rounds.
    steps
        Optimiser steps per round.
    high_confidence
        Vesicles with calibrated confidence ≥ this are positive targets (``--min-confidence``).
    low_confidence
        Candidates below this are trained as background; between the two cut-offs they are
        ignored. Default 0 (no candidate is a negative): on the ``thick_membrane`` shift
        11 of the 12 candidates with confidence < 0.2 were true vesicles (the confidence
        model, not the network, rejected them), so teaching them as background would
        teach the network to miss vesicles.
    ignore_probability
        Probability above which voxels no confident vesicle explains are ignored.
    margin_nm
        Width of the ignored shell around uncertain candidates.
    blob_margin_nm
        Width of the ignored shell around probability blobs no confident vesicle explains
        (None: ``margin_nm``). A faint vesicle often lights up as a partial arc, so a shell
        of about a vesicle radius keeps the rest of it out of the background.
    lr, batch_size, patch_size
        Fine-tuning hyper-parameters (low rate: the base model is already good).
    consistency_weight
        Weight of the flip-consistency term (0 disables it).
    tta
        Pseudo-label with test-time augmentation (flip-averaged maps; 8-16x slower).
    adapt_postprocessing
        After the last round, re-estimate the radius floor from the confident vesicles'
        sizes (:mod:`synapseg.train.adapt_post`); the card changes only when the sizes are
        truncated at the floor.
    check_gain
        Keep the fine-tuned weights only when the last pseudo-label pass finds at least as
        many confident vesicles as the first (:mod:`synapseg.train.adapt_guard`).
    seed
        Seed of every random choice.
    """

    rounds: int = 2
    steps: int = 40
    high_confidence: float = 0.8
    low_confidence: float = 0.0
    ignore_probability: float = 0.25
    margin_nm: float = 4.0
    blob_margin_nm: float | None = None
    lr: float = 2e-4
    batch_size: int = 2
    patch_size: tuple[int, int, int] = (48, 64, 64)
    consistency_weight: float = 1.0
    tta: bool = False
    adapt_postprocessing: bool = True
    check_gain: bool = True
    seed: int = 0

    def __post_init__(self) -> None:
        if not 0 <= self.low_confidence <= self.high_confidence <= 1:
            raise InputError(
                "--min-confidence",
                f"cut-offs low {self.low_confidence:g} / high {self.high_confidence:g} are not "
                "ordered probabilities",
                "give 0 <= --low-confidence <= --min-confidence <= 1",
            )
        if not 0 < self.ignore_probability <= 1 or (self.blob_margin_nm or 0) < 0:
            raise InputError(
                "--ignore-probability",
                f"ignore probability {self.ignore_probability:g} / blob margin "
                f"{self.blob_margin_nm} nm are out of range",
                "give 0 < --ignore-probability <= 1 and --blob-margin >= 0",
            )
        if self.rounds < 1 or self.steps < 1:
            raise InputError("--steps", "rounds and steps must be at least 1", "give e.g. 40")

    def to_dict(self) -> dict[str, Any]:
        d = asdict(self)
        d["patch_size"] = list(self.patch_size)
        return d


# --------------------------------------------------------------------------- inputs


def find_tomograms(paths: Sequence[str | Path]) -> list[Path]:
    """Tomogram files from files and folders (a folder's own tomograms, else one
    ``tomogram.*`` per subfolder, ``synapseg simulate``'s layout)."""
    from synapseg.io.volume import find_first
    from synapseg.pipeline import list_tomograms
    from synapseg.train.data import VOLUME_SUFFIXES

    found: list[Path] = []
    for raw in paths:
        path = Path(raw)
        if not path.exists():
            raise InputError(path, "not found", "give a tomogram file or a folder of tomograms")
        if not path.is_dir() or path.suffix.lower() == ".zarr":
            found.append(path)
            continue
        try:
            found.extend(list_tomograms(path))
        except InputError:
            subs = [
                find_first(s, ["tomogram", "tomo"], VOLUME_SUFFIXES)
                for s in sorted(path.iterdir())
                if s.is_dir()
            ]
            subs = [s for s in subs if s is not None]
            if not subs:
                raise
            found.extend(subs)
    return found


def _unique_names(tomograms: Sequence[Path]) -> list[str]:
    names = []
    for k, t in enumerate(tomograms):
        stem = t.name.split(".", 1)[0]
        names.append(
            f"{k:02d}_{t.parent.name}_{stem}" if stem in ("tomogram", "tomo") else f"{k:02d}_{stem}"
        )
    return names


def _check_output(model_dir: Path, overwrite: bool) -> None:
    if (model_dir / "model.json").exists() or (model_dir / PSEUDO_DIR).exists():
        if not overwrite:
            raise OutputExistsError(
                model_dir, "already holds a model", "pass --overwrite or another folder"
            )
        for sub in (PSEUDO_DIR, ROUNDS_DIR, "checkpoints"):
            shutil.rmtree(model_dir / sub, ignore_errors=True)


def adapt_model(
    tomograms: Sequence[str | Path],
    model_dir: str | Path,
    *,
    from_model: str = "default",
    config: AdaptConfig | None = None,
    device: str = "cpu",
    overwrite: bool = False,
    on_event: Callable[[str], None] | None = None,
) -> dict[str, Any]:
    """Adapt ``from_model`` to unlabeled ``tomograms``; write ``model_dir`` (usable as
    ``segment --model model_dir``).

    Returns the ``adaptation`` record also stored in the card's ``extra``.

    Raises
    ------
    InputError
        Missing inputs, existing output without ``overwrite``, or no confident vesicle in
        any tomogram (nothing to learn from).
    """
    from synapseg.model.registry import read_card, resolve_model
    from synapseg.train.data import DataItem
    from synapseg.train.run import train_model

    config = config or AdaptConfig()
    on_event = on_event or (lambda text: None)
    model_dir = Path(model_dir)
    files = find_tomograms(tomograms)
    _check_output(model_dir, overwrite)
    base = read_card(resolve_model(from_model))
    names = _unique_names(files)
    record: dict[str, Any] = {
        "statement": STATEMENT,
        "base_model": {"name": base.name, "sha256": base.sha256, "from": str(from_model)},
        "tomograms": [str(f.resolve()) for f in files],
        "config": config.to_dict(),
        "rounds": [],
    }
    current = str(from_model)
    for r in range(1, config.rounds + 1):
        labels = []
        for name, tomo in zip(names, files):
            on_event(f"round {r}/{config.rounds}: pseudo-labels for {tomo}")
            folder = model_dir / PSEUDO_DIR / f"round{r}" / name
            labels.append({"name": name, **label_tomogram(tomo, folder, current, config, device)})
        items = [
            DataItem(
                tomogram=Path(x["tomogram"]), annotation=Path(x["annotation"]), mask=Path(x["mask"])
            )
            for x in labels
            if x["annotation"] is not None
        ]
        n_pos = sum(x["positive"] for x in labels)
        record["rounds"].append(
            {
                "round": r,
                "model": base.name if r == 1 else f"round {r - 1}",
                "pseudo_labels": n_pos,
                "uncertain_ignored": sum(x["uncertain"] for x in labels),
                "negative_candidates": sum(x["negative_candidates"] for x in labels),
                "per_tomogram": labels,
                "steps": config.steps,
            }
        )
        if r == config.rounds:
            counts = [x["pseudo_labels"] for x in record["rounds"]]
            record["weights"] = weights_decision(counts, config.check_gain)
            if not record["weights"]["kept"]:
                on_event(record["weights"]["decision"])
                use_base_weights(resolve_model(from_model), model_dir)
                break
        if not items:
            raise InputError(
                files[0] if len(files) == 1 else None,
                f"round {r}: no vesicle reached confidence {config.high_confidence:g} in any "
                "tomogram, so there is nothing to learn from",
                "lower --min-confidence, or check the voxel size and contrast (synapseg segment)",
            )
        last = r == config.rounds
        target = model_dir if last else model_dir / ROUNDS_DIR / f"round{r}"
        on_event(
            f"round {r}/{config.rounds}: fine-tuning {config.steps} steps on {n_pos} pseudo-labels"
        )
        train_cfg = TrainConfig(
            steps=config.steps,
            batch_size=config.batch_size,
            patch_size=tuple(config.patch_size),
            lr=config.lr,
            warmup_steps=max(1, min(10, config.steps // 4)),
            val_every=10**9,
            seed=config.seed + r,
        )
        train_model(
            items,
            target,
            config=train_cfg,
            from_model=current,
            val_fraction=0.0,
            device=device,
            overwrite=True,
            name=model_dir.name,
            trainer_cls=functools.partial(
                ConsistencyTrainer, consistency_weight=config.consistency_weight
            ),
        )
        _carry_calibration(resolve_model(from_model), target)
        current = str(target)
    record["calibration"] = _calibration_note(resolve_model(from_model))
    if config.adapt_postprocessing:
        on_event("post-processing: radius floor from the confident vesicles' sizes")
        kept = record["weights"]["kept"]  # the pass of the model whose weights are written:
        pass_dir = model_dir / PSEUDO_DIR / f"round{config.rounds if kept else 1}"
        record["postprocessing_adapted"] = _adapt_post(model_dir, files, names, pass_dir, config)
    _write_card(model_dir, record, base)
    return record


def _carry_calibration(base_card: Path, target: Path) -> None:
    """Give the fine-tuned model in ``target`` the base model's post-processing calibration:
    its card's ``postprocessing`` (instance threshold, seed separation, vesicle-free gate) and
    its folder's ``confidence_model.json``. Without them a calibrated base (e.g. a v2
    candidate) would silently fall back to the pipeline defaults and the packaged confidence
    model, which were fitted to another network's outputs."""
    from synapseg.io.atomic import write_text_atomic
    from synapseg.model.registry import CONFIDENCE_NAME

    base = json.loads(base_card.read_text(encoding="utf-8"))
    if base.get("postprocessing"):
        path = target / "model.json"
        card = json.loads(path.read_text(encoding="utf-8"))
        card["postprocessing"] = base["postprocessing"]
        write_text_atomic(path, json.dumps(card, indent=2, default=str), overwrite=True)
    confidence = base_card.parent / CONFIDENCE_NAME
    if confidence.is_file():
        shutil.copyfile(confidence, target / CONFIDENCE_NAME)


def _adapt_post(
    model_dir: Path, files: Sequence[Path], names: Sequence[str], labels: Path, config: AdaptConfig
) -> dict[str, Any]:
    """Re-estimate the card's post-processing (:mod:`synapseg.train.adapt_post`) from the
    pseudo-label pass in ``labels`` and write it into ``model_dir/model.json``."""
    from synapseg.io.atomic import write_text_atomic
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
        write_text_atomic(path, json.dumps(card, indent=2, default=str), overwrite=True)
    return rec


def _calibration_note(base_card: Path) -> dict[str, Any]:
    """What :func:`_carry_calibration` carried over (for the card's adaptation record)."""
    from synapseg.model.registry import CONFIDENCE_NAME

    base = json.loads(base_card.read_text(encoding="utf-8"))
    return {
        "postprocessing": base.get("postprocessing") or {},
        "confidence_model": "base model's"
        if (base_card.parent / CONFIDENCE_NAME).is_file()
        else "packaged",
        "note": "carried over from the base model, not re-calibrated on the adapted network",
    }


def _write_card(model_dir: Path, record: dict[str, Any], base: Any) -> None:
    """Add the adaptation record to the card (model.pt and its sha256 are unchanged)."""
    from synapseg.io.atomic import write_text_atomic

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
    changed = (record.get("postprocessing_adapted") or {}).get("changed")
    if changed:
        card["description"] += (
            " Post-processing adapted to these tomograms (confident sizes truncated at the radius "
            f"floor): {', '.join(f'{k} = {v:g}' for k, v in changed.items())}."
        )
    card.setdefault("extra", {})["adaptation"] = record
    write_text_atomic(path, json.dumps(card, indent=2, default=str), overwrite=True)
