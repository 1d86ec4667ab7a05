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
   augmentation), low learning rate and few steps, the base's batch-norm statistics, plus a
   **flip-consistency** term: the prediction on a flipped copy (flipped back, no gradient)
   is a target everywhere, the ignored regions included (:class:`ConsistencyTrainer`).

Round ``r + 1`` re-labels with the model of round ``r`` and continues from it. No ground
truth is read. Everything random is seeded (``seed``): a run is reproducible on CPU.
"""

from __future__ import annotations

import functools
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
FORGETTING_DIR = "forgetting"
STATEMENT = "unlabeled adaptation: no ground truth of the adapted tomograms was used"


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
        Keep the fine-tuned weights only when the last pseudo-label pass finds ≥ 10 % more
        confident vesicles than the first (:mod:`synapseg.train.adapt_guard`; off by default).
    rehearsal
        Share of the training patches drawn from labeled tomograms simulated from the base
        model's training world (:mod:`synapseg.train.rehearsal`; 0 disables it).
    rehearsal_tomograms
        How many rehearsal tomograms are simulated (small, seeds ``[20261311, i]``).
    anchor_weight
        α of the L2-SP term ``α · Σ (w − w_base)²`` (0 disables it).
    check_forgetting
        Drop the fine-tuned weights when they lose on held-in simulated tomograms of the
        base model's world (:mod:`synapseg.train.forgetting`).
    held_in_tomograms
        How many held-in tomograms the forgetting guard simulates (seeds ``[20261312, i]``).
    freeze_batch_norm
        Fine-tune with the base model's batch-norm statistics (:class:`ConsistencyTrainer`).
    interpolation
        λ of the written weights ``w_base + λ · (w_fine_tuned − w_base)``
        (:mod:`synapseg.train.adapt_blend`; 1: the fine-tuned weights as they are).
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
    check_gain: bool = False
    rehearsal: float = 0.5
    rehearsal_tomograms: int = 4
    anchor_weight: float = 1.0
    check_forgetting: bool = True
    held_in_tomograms: int = 3
    interpolation: float = 0.5
    freeze_batch_norm: bool = True
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
        if not 0 <= self.rehearsal < 1 or self.anchor_weight < 0 or not 0 < self.interpolation <= 1:
            raise InputError(
                "--rehearsal",
                f"rehearsal share {self.rehearsal:g} / anchor weight {self.anchor_weight:g} / "
                f"interpolation {self.interpolation:g} out of range",
                "give 0 <= --rehearsal < 1, --anchor >= 0 and 0 < --interpolate <= 1",
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
        for sub in (PSEUDO_DIR, ROUNDS_DIR, "checkpoints", FORGETTING_DIR):
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
    from synapseg.train import adapt_card
    from synapseg.train.adapt_blend import interpolate_model
    from synapseg.train.data import DataItem
    from synapseg.train.forgetting import check_forgetting
    from synapseg.train.rehearsal import (
        base_parameters,
        base_world,
        cache_dir,
        rehearsal_items,
        simulate_set,
    )

    config = config or AdaptConfig()
    on_event = on_event or (lambda text: None)
    model_dir = Path(model_dir)
    files = find_tomograms(tomograms)
    _check_output(model_dir, overwrite)
    base_card = resolve_model(from_model)
    base = read_card(base_card)
    world = base_world(base.training_data)
    names = _unique_names(files)
    record: dict[str, Any] = {
        "statement": STATEMENT,
        "base_model": {"name": base.name, "sha256": base.sha256, "from": str(from_model)},
        "tomograms": [str(f.resolve()) for f in files],
        "config": config.to_dict(),
        "rounds": [],
    }
    reh_items: list[DataItem] = []
    if config.rehearsal > 0 and config.rehearsal_tomograms > 0:
        on_event(f"rehearsal: simulating {config.rehearsal_tomograms} tomograms ({world} world)")
        sims = simulate_set(cache_dir(world), world, config.rehearsal_tomograms)
        reh_items = rehearsal_items(sims)
        record["rehearsal"] = {
            "fraction": config.rehearsal,
            "world": world,
            "labels": "exact (simulated vesicle_labels.mrc)",
            "tomograms": sims,
        }
    anchor = base_parameters(str(from_model)) if config.anchor_weight > 0 else None
    if anchor is not None:
        record["anchor"] = {"method": "L2-SP to the base weights", "alpha": config.anchor_weight}
    current = str(from_model)
    trained = False
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
                use_base_weights(base_card, model_dir)
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
            + (f" + rehearsal ({config.rehearsal:g} of the patches)" if reh_items else "")
        )
        _fine_tune(items, reh_items, anchor, target, current, model_dir.name, config, r, device)
        adapt_card.carry_calibration(base_card, target)
        current = str(target)
        trained = last
    if trained and config.interpolation < 1:
        on_event(
            f"interpolating the weights towards the base model (lambda {config.interpolation:g})"
        )
        record["interpolation"] = interpolate_model(
            str(from_model), model_dir, config.interpolation
        )
    if trained and config.check_forgetting and config.held_in_tomograms > 0:
        on_event(f"forgetting guard: {config.held_in_tomograms} held-in simulated tomograms")
        record["forgetting"] = check_forgetting(
            str(from_model), str(model_dir), model_dir / FORGETTING_DIR, world,
            config.held_in_tomograms, device, data=cache_dir(world),
        )  # fmt: skip
        on_event(record["forgetting"]["decision"])
        if not record["forgetting"]["kept"]:
            use_base_weights(base_card, model_dir)
            record["weights"] = {**record["weights"], "kept": False,
                                 "decision": record["forgetting"]["decision"]}  # fmt: skip
    record["calibration"] = adapt_card.calibration_note(base_card)
    if config.adapt_postprocessing:
        on_event("post-processing: radius floor from the confident vesicles' sizes")
        kept = record["weights"]["kept"]  # the pass of the model whose weights are written:
        pass_dir = model_dir / PSEUDO_DIR / f"round{config.rounds if kept else 1}"
        record["postprocessing_adapted"] = adapt_card.adapt_post(
            model_dir, files, names, pass_dir, config
        )
    adapt_card.write_card(model_dir, record, base)
    return record


def _fine_tune(
    items: list, rehearsal: list, anchor, target: Path, start: str, name: str,
    config: AdaptConfig, r: int, device: str,
) -> None:  # fmt: skip
    """One round of fine-tuning from ``start`` into ``target`` (pseudo-labels + rehearsal)."""
    from synapseg.train.run import train_model

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
        items + rehearsal,
        target,
        config=train_cfg,
        from_model=start,
        val_fraction=0.0,
        device=device,
        overwrite=True,
        name=name,
        trainer_cls=functools.partial(
            ConsistencyTrainer,
            consistency_weight=config.consistency_weight,
            rehearsal={it.name for it in rehearsal},
            rehearsal_fraction=config.rehearsal,
            anchor=anchor,
            anchor_weight=config.anchor_weight,
            freeze_batch_norm=config.freeze_batch_norm,
        ),
    )
