#!/usr/bin/env python
"""The documented, seeded recipe that trains synapseg's membrane networks (``sim-membrane-v2``;
``--version v1`` rebuilds ``sim-membrane-v1``).

Sub-commands (run them in this order; each is idempotent):

    python scripts/train_membranes.py generate   # simulate the training set (skips finished)
    python scripts/train_membranes.py train      # train (resumes from the checkpoint)
    python scripts/train_membranes.py export -o src/synapseg/model/weights/sim-membrane-v2

``--version v3`` fine-tunes ``sim-membrane-v2``'s shipped weights with patches centred on
non-vesicle membranes only (same data, same network). ``--version v4`` fine-tunes
``sim-membrane-v3`` with a signed-distance head: channel 0's target is
``sigmoid(-d / 1 nm)``, ``d`` the signed distance to the bilayer surface clipped to ±6 nm,
and the loss adds a clipped L1 on ``d`` (``synapseg.train.membrane_trainer.DistanceLoss``).

Data: tomogram ``i`` is ``synapseg.simulate.draws.draw_world(default_rng([20261221, i]))``
on a 300 x 300 x (120-170) nm volume (disjoint from the vesicle recipes' seeds
``[20261125, i]``, ``[20261205, i]``, the confidence model's ``[20261203, i]``, the
domain-shift benchmark's ``[20261202, ...]`` and the membrane benchmark's
``[20261222, i]``). Tomograms ``0..N_TRAIN-1`` train, the next ``N_VAL`` validate.

Network (v2): ``UNetConfig(stem=1, base_channels=8, depth=3, out_channels=2)`` at 2.4 nm
model voxels (v1: ``stem=2``, so its output came in 4.8 nm blocks); channel 0: every
membrane except synaptic vesicles, channel 1: vesicle membranes; trained on soft targets
(``synapseg.train.membrane_targets``) with the vesicle model's preprocessing
(``synapseg.infer.preprocess.prepare_image``) and augmentation.

The cache (default ``$SYNAPSEG_CACHE/train_membranes`` or
``~/.cache/synapseg/train_membranes``) holds one ``sim_NNN`` folder per tomogram in
``synapseg simulate``'s layout, ``data_hashes.json`` and the run folder ``run/``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import sys
import time
from pathlib import Path

import numpy as np

SEED = 20261221
N_TRAIN = 28
N_VAL = 4
MODEL_VOXEL_NM = 2.4
XY_EXTENT_NM = 300.0
Z_EXTENT_NM = (120.0, 170.0)
RECIPES = {
    "v1": {
        "name": "sim-membrane-v1",
        "unet": {"stem": 2, "base_channels": 8, "depth": 3, "out_channels": 2},
        "run": "run",
        "history": "train --steps 3000 --decay-from 1500 --batch-size 2 --threads 1 (lr 2e-3), "
        "then train --steps 4500 --decay-from 3000 --lr 1e-3 --batch-size 2 --threads 1 (a warm "
        "restart from the step-3000 checkpoint); export --weights last",
    },
    # v2: a plain first level (stem 1), so features and output are at 2.4 nm instead of
    # v1's 4.8 nm blocks (v1's 2x2x2 output blocks cost most of its Dice on 4-7 nm membranes)
    "v2": {
        "name": "sim-membrane-v2",
        "unet": {"stem": 1, "base_channels": 8, "depth": 3, "out_channels": 2},
        "run": "run-v2",
        "history": "train --steps 1900 --decay-from 800 --batch-size 2 --patch-size 32 48 48 "
        "--val-every 300 --threads 1 --lr 2e-3 at nice 10 beside other jobs (first started "
        "with --steps 3300 --decay-from 1100, stopped at the step-578 checkpoint and resumed "
        "with the final --steps: the rate was constant until step 800 in both, so it is the "
        "same run); export --weights last",
    },
    # v3: v2 fine-tuned with patches centred on non-vesicle membranes only (v2's error
    # budget: most missed voxels are organelle membranes, outnumbered in v2's patch centres
    # by the hundreds of vesicle membranes)
    "v3": {
        "name": "sim-membrane-v3",
        "unet": {"stem": 1, "base_channels": 8, "depth": 3, "out_channels": 2},
        "run": "run-v3",
        "init": "sim-membrane-v2",
        "fg_channels": (0,),
        # the stage's map from the membrane channel alone (context.membrane_net): chosen on
        # the training draws sim_000-014 (pooled Dice 0.473 against 0.416 with channel 1)
        "postprocessing": {"vesicle_membrane_weight": 0.0},
        "history": "fine-tune of sim-membrane-v2's shipped weights: train --steps 900 "
        "--decay-from 150 --batch-size 2 --patch-size 32 48 48 --val-every 300 --threads 1 "
        "--lr 1e-3 at nice 10 beside other jobs; export --weights last",
    },
    # v4: v3 fine-tuned to regress the signed distance to the bilayer surface (in nm,
    # clipped) through its membrane logit: sigmoid(logit) keeps 0.5 on the surface, so the
    # stage reads it unchanged (the ceilings: v3 is about one voxel off where it finds the
    # membrane; a distance target supervises the surface position from every voxel within
    # 6 nm, where an area fraction saturates one voxel away)
    "v4": {
        "name": "sim-membrane-v4",
        "unet": {"stem": 1, "base_channels": 8, "depth": 3, "out_channels": 2},
        "run": "run-v4",
        "init": "sim-membrane-v3",
        "fg_channels": (0,),
        "signed_distance": {"tau_nm": 1.0, "clip_nm": 6.0},
        "distance_weight": 0.25,
        "target": "channel 0 'membrane': sigmoid(-d / 1 nm), d the signed distance (nm, "
        "negative inside) to the surface of every membrane of membrane_labels except class 2 "
        "(synaptic vesicles), computed on the label grid, clipped to +-6 nm and resampled like "
        "the image; channel 1 'vesicle_membrane': class 2 as area fraction. Loss: Dice + BCE "
        "+ 0.25/nm x clipped L1 of the signed distance read from channel 0's logit.",
        "postprocessing": {"vesicle_membrane_weight": 0.0},
        "history": "fine-tune of sim-membrane-v3's shipped weights (see RECIPES['v4'] and "
        "the card's train_config); export --weights last",
    },
    # v4-fast: the same signed-distance head on v1's network (stem 2, a third of v2/v3's
    # stage CPU), fine-tuned from sim-membrane-v1: the candidate that could keep the
    # context stage's time
    "v4-fast": {
        "name": "sim-membrane-v4-fast",
        "unet": {"stem": 2, "base_channels": 8, "depth": 3, "out_channels": 2},
        "run": "run-v4-fast",
        "init": "sim-membrane-v1",
        "fg_channels": (0,),
        "signed_distance": {"tau_nm": 1.0, "clip_nm": 6.0},
        "distance_weight": 0.25,
        "postprocessing": {"vesicle_membrane_weight": 0.0},
        "history": "fine-tune of sim-membrane-v1's shipped weights with v4's targets and loss "
        "(see the card's train_config); export --weights last",
    },
    # v3-small: v3's sampling on a network with half the channels (base 4), from scratch:
    # its bare network is 2.3x faster than v2's (still 4.4x slower than v1's). Not shipped:
    # validation Dice 0.20 at step 600, 0.13 at step 1200 (v2 0.338, v3 0.413)
    "v3-small": {
        "name": "sim-membrane-v3-small",
        "unet": {"stem": 1, "base_channels": 4, "depth": 3, "out_channels": 2},
        "run": "run-v3-small",
        "fg_channels": (0,),
        "history": "train --steps 1200 --decay-from 600 --batch-size 2 --patch-size 32 48 48 "
        "--val-every 300 --threads 1 --lr 2e-3 at nice 10 beside other jobs (from scratch; "
        "first started with --steps 2400 --decay-from 1000, stopped at the step-450 checkpoint "
        "and resumed with the final --steps: the rate was constant until step 600 in both); "
        "export --weights last",
    },
}
RECIPES["v4-fast"]["target"] = RECIPES["v4"]["target"]
RECIPE = RECIPES["v2"]
HASHED_FILES = ("tomogram.mrc", "membrane_labels.mrc")

log = logging.getLogger("train_membranes")


def cache_dir() -> Path:
    root = os.environ.get("SYNAPSEG_CACHE") or Path.home() / ".cache" / "synapseg"
    return Path(root) / "train_membranes"


def draw_params(index: int, seed: int = SEED):
    """Simulation parameters of tomogram ``index``: the v2 world drawn from ``[seed, index]``."""
    from synapseg.simulate.draws import draw_world

    rng = np.random.default_rng([seed, index])
    return draw_world(rng, xy_extent_nm=XY_EXTENT_NM, z_extent_nm=Z_EXTENT_NM)


def generate(root: Path, n: int, seed: int = SEED) -> list[Path]:
    """Simulate tomograms ``0..n-1`` into ``root/sim_NNN`` (finished folders are kept)."""
    from synapseg.simulate import simulate_tomogram, write_simulation

    folders = []
    for i in range(n):
        folder = root / f"sim_{i:03d}"
        folders.append(folder)
        if (folder / "params.json").exists():
            continue
        params = draw_params(i, seed)
        t0 = time.time()
        result = simulate_tomogram(params, keep_phantom=False)
        write_simulation(folder, result, overwrite=True)
        log.info(
            "simulated %s: %s at %.2f nm, cleft %s, distractors %s, lamella %s (%.1f s)",
            folder.name,
            params.shape,
            params.voxel_size_nm,
            params.cleft,
            params.distractors,
            params.lamella_thickness_nm,
            time.time() - t0,
        )
    hashes = data_hashes(root, n)
    (root / "data_hashes.json").write_text(json.dumps(hashes, indent=1))
    log.info("data digest %s (%d tomograms)", hashes["digest"], n)
    return folders


def data_hashes(root: Path, n: int) -> dict:
    """sha256 (without mrcfile's time stamp) of each tomogram and its membrane labels."""
    from synapseg import __version__
    from synapseg.simulate.draws import SIMULATOR_VERSION, WORLD_VERSION, data_sha256

    tomograms = {
        f"sim_{i:03d}": {k: data_sha256(root / f"sim_{i:03d}" / k) for k in HASHED_FILES}
        for i in range(n)
    }
    text = json.dumps(tomograms, sort_keys=True, separators=(",", ":"))
    return {
        "seed": [SEED, "i"],
        "world": WORLD_VERSION,
        "simulator_version": SIMULATOR_VERSION,
        "synapseg_version": __version__,
        "digest": hashlib.sha256(text.encode()).hexdigest(),
        "tomograms": tomograms,
    }


def _volumes(root: Path, names: list[str], fg_channels=None, signed_distance=None):
    from synapseg.train.membrane_targets import MembraneItem
    from synapseg.train.membrane_trainer import prepare_membrane_item

    out = []
    for name in names:
        item = MembraneItem(root / name / "tomogram.mrc", root / name / "membrane_labels.mrc")
        out.append(
            prepare_membrane_item(
                item, MODEL_VOXEL_NM, fg_channels=fg_channels, signed_distance=signed_distance
            )
        )
    return out


def _trainer(args, with_train: bool = True):
    """The recipe's trainer; ``with_train=False`` (export) skips preparing the training
    volumes (the sampler then draws from the validation volumes, and is never used)."""
    import torch

    from synapseg.model.unet import UNetConfig, build_unet
    from synapseg.train.augment import AugmentParams
    from synapseg.train.membrane_trainer import DistanceLoss, MembraneTrainer
    from synapseg.train.trainer import TrainConfig

    root = Path(args.cache)
    names = [f"sim_{i:03d}" for i in range(N_TRAIN + N_VAL)]
    missing = [n for n in names if not (root / n / "params.json").exists()]
    if missing:
        raise SystemExit(f"missing simulated data ({missing[:3]}...): run `generate` first")
    t0 = time.time()
    sd = RECIPE.get("signed_distance")
    val = _volumes(root, names[N_TRAIN:], None, sd)
    train = _volumes(root, names[:N_TRAIN], RECIPE.get("fg_channels"), sd) if with_train else val
    log.info("prepared %d + %d volumes in %.0f s", len(train), len(val), time.time() - t0)
    config = TrainConfig(
        steps=args.steps,
        batch_size=args.batch_size,
        patch_size=tuple(args.patch_size),
        lr=args.lr,
        schedule="cosine",
        decay_start=args.decay_from,
        fg_fraction=0.7,
        pos_weight=1.0,
        val_every=args.val_every,
        checkpoint_every_s=120.0,
        seed=SEED,
        augment=AugmentParams(),
    )
    torch.manual_seed(SEED)
    net = build_unet(UNetConfig(**RECIPE["unet"]), seed=SEED)
    if RECIPE.get("init") and not (root / RECIPE["run"] / "checkpoint.pt").exists():
        from synapseg.model.registry import load_model

        init, _ = load_model(RECIPE["init"], device="cpu")
        net.load_state_dict(init.state_dict())
        log.info("initialised from %s", RECIPE["init"])
    distance = DistanceLoss(weight=RECIPE["distance_weight"], **sd) if sd is not None else None
    trainer = MembraneTrainer(
        net,
        config,
        train,
        val,
        (MODEL_VOXEL_NM,) * 3,
        root / RECIPE["run"],
        device="cpu",
        distance=distance,
    )
    return trainer, train, val


def cmd_generate(args) -> int:
    generate(Path(args.cache), N_TRAIN + N_VAL)
    return 0


def cmd_train(args) -> int:
    import torch

    torch.set_num_threads(args.threads)
    trainer, _, _ = _trainer(args)
    if trainer.checkpoint_path.exists():
        trainer.resume()
    t_last = [time.time()]

    def callback(step: int, logs: dict) -> None:
        if step % 10 == 0 or "val" in logs:
            now = time.time()
            line = (
                f"step {step} loss {logs['loss_avg']:.4f} lr {logs['lr']:.2e} "
                f"{(now - t_last[0]) / 10:.2f} s/step"
            )
            if "val" in logs:
                val = logs["val"]
                line += f" val dice {val['dice']:.4f} ves {val['dice_vesicle_membrane']:.4f}"
            if "distance" in logs:
                line += f" dist {logs['distance']:.3f}"
            print(line, flush=True)
            t_last[0] = now

    trainer.run(args.steps, callback=callback)
    print(json.dumps({"best": trainer.best}, default=str))
    return 0


def cmd_export(args) -> int:
    from synapseg.train.export import export_model
    from synapseg.train.membrane_targets import MEMBRANE_CHANNELS

    root = Path(args.cache)
    args.steps = args.steps or 0
    trainer, _, _ = _trainer(args, with_train=False)
    if args.weights == "best":
        best = trainer.load_best()
    else:  # the last checkpoint, validated again
        trainer.resume()
        best = {**trainer.validate(), "step": trainer.step}
    params = [
        json.loads((root / f"sim_{i:03d}" / "params.json").read_text())
        for i in range(N_TRAIN + N_VAL)
    ]
    hashes = json.loads((root / "data_hashes.json").read_text())

    def rng_of(key: str):
        vals = [p[key] for p in params if p.get(key) is not None]
        return [min(vals), max(vals)] if vals else None

    training_data = {
        "kind": "simulated (synapseg.simulate, world draw synapseg.simulate.draws.draw_world), "
        "no real tomograms",
        "recipe": f"scripts/train_membranes.py (seeds [{SEED}, i], {N_TRAIN} train + {N_VAL} "
        "validation tomograms)",
        "target": RECIPE.get(
            "target",
            "channel 0 'membrane': every membrane class of membrane_labels except 2 "
            "(synaptic vesicles): plasma, postsynaptic, mitochondria, endosomes, ER, dense-core "
            "and coated vesicles; channel 1 'vesicle_membrane': class 2. Soft targets: the label "
            "masks resampled like the image (area fraction per model voxel).",
        ),
        "voxel_size_nm": rng_of("voxel_size_nm"),
        "tilt_range_deg": rng_of("tilt_range_deg"),
        "membrane_thickness_nm": rng_of("membrane_thickness_nm"),
        "cleft_fraction": float(np.mean([bool(p.get("cleft")) for p in params])),
        "distractors_fraction": float(np.mean([bool(p.get("distractors")) for p in params])),
        "lamella_fraction": float(
            np.mean([p.get("lamella_thickness_nm") is not None for p in params])
        ),
        "data_digest": hashes["digest"],
        "world": hashes["world"],
        "simulator_version": hashes["simulator_version"],
        "train_config": trainer.config.to_dict(),
        "run_history": RECIPE["history"],
    }
    metrics = {
        "validation": {k: v for k, v in best.items() if k != "volumes"},
        "exported_weights": args.weights,
        "validation_method": f"{N_VAL} held-out simulated tomograms of the recipe, on the model "
        "grid (2.4 nm): voxel Dice of p > 0.5 against soft target > 0.5 (in-distribution)",
    }
    export_model(
        args.output,
        trainer.net,
        name=RECIPE["name"],
        voxel_size_nm=MODEL_VOXEL_NM,
        patch_size=trainer.config.patch_size,
        training_data=training_data,
        metrics=metrics,
        output_channels=MEMBRANE_CHANNELS,
        description=f"synapseg membrane network: compact 3D U-Net (stem {RECIPE['unet']['stem']}) "
        "at 2.4 nm, trained on CPU on simulated tomograms only. Channel 0 = every membrane "
        "except synaptic vesicles, channel 1 = vesicle membranes; segment's "
        "'membrane_probabilities' is any membrane minus the vesicle network's vesicles.",
        tta_rot90=True,
        overwrite=args.overwrite,
        postprocessing=RECIPE.get("postprocessing"),
    )
    print(f"exported {RECIPE['name']} (best step {best.get('step')}) to {args.output}")
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--cache", default=str(cache_dir()), help="data + run folder")
    parser.add_argument("--version", choices=sorted(RECIPES), default="v2", help="which recipe")
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("generate", help="simulate the training and validation tomograms")
    for name in ("train", "export"):
        p = sub.add_parser(name)
        p.add_argument("--steps", type=int, default=2500, help="total steps to reach")
        p.add_argument("--decay-from", type=int, default=1200)
        p.add_argument("--lr", type=float, default=2e-3)
        p.add_argument("--batch-size", type=int, default=4)
        p.add_argument("--patch-size", type=int, nargs=3, default=[32, 64, 64])
        p.add_argument("--val-every", type=int, default=150)
        p.add_argument("--threads", type=int, default=2)
        if name == "export":
            p.add_argument("-o", "--output", required=True)
            p.add_argument("--overwrite", action="store_true")
            p.add_argument(
                "--weights",
                choices=("last", "best"),
                default="last",
                help="last checkpoint (default) or best validation Dice of channel 0",
            )
    args = parser.parse_args(argv)
    global RECIPE
    RECIPE = RECIPES[args.version]
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    return {"generate": cmd_generate, "train": cmd_train, "export": cmd_export}[args.cmd](args)


if __name__ == "__main__":
    sys.exit(main())
