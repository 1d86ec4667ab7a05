#!/usr/bin/env python
"""The documented, seeded recipe that trains synapseg's default model on simulated data.

Three sub-commands (run them in this order; each is idempotent):

    python scripts/train_default.py generate   # simulate the fixed training set into the cache
    python scripts/train_default.py train      # train (resumes from the last checkpoint)
    python scripts/train_default.py export -o src/synapseg/model/weights/sim-unet-v1

``train`` always continues from ``<cache>/run/checkpoint.pt`` when it exists, so the same
command resumes an interrupted run exactly; ``--steps`` is the total to reach.
The cache (default ``$SYNAPSEG_CACHE/train_default`` or ``~/.cache/synapseg/train_default``)
holds one folder per simulated tomogram in ``synapseg simulate``'s layout.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from pathlib import Path

import numpy as np

SEED = 20261125
N_TRAIN = 40
N_VAL = 6
MODEL_VOXEL_NM = 1.8
XY_EXTENT_NM = 300.0
Z_EXTENT_NM = (100.0, 150.0)
UNET = {"stem": 2, "base_channels": 8, "depth": 3}
MODEL_NAME = "sim-unet-v1"

log = logging.getLogger("train_default")


def cache_dir() -> Path:
    root = os.environ.get("SYNAPSEG_CACHE") or Path.home() / ".cache" / "synapseg"
    return Path(root) / "train_default"


def draw_params(index: int):
    """The simulation parameters of tomogram ``index`` (fixed by SEED and the index).

    Everything else (voxel size 0.8-2.2 nm, tilt ±40..±70°, tilt step, defocus, dose, SNR
    0.3-3x the calibrated default, crowding, radius, distractors, filaments, cleft) comes
    from ``SimulationParams.random``.
    """
    from synapseg.simulate import SimulationParams

    rng = np.random.default_rng([SEED, index])
    params = SimulationParams.random(rng)
    vs = params.voxel_size_nm
    z_nm = float(rng.uniform(*Z_EXTENT_NM))

    def even(nm: float) -> int:
        return max(16, int(round(nm / vs / 2)) * 2)

    return params.replace(shape=(even(z_nm), even(XY_EXTENT_NM), even(XY_EXTENT_NM)))


def generate(root: Path, n: int) -> list[Path]:
    """Simulate tomograms 0..n-1 into ``root/sim_XXX`` (skipping finished ones)."""
    from synapseg.simulate import simulate_tomogram

    folders = []
    for i in range(n):
        folder = root / f"sim_{i:03d}"
        folders.append(folder)
        if (folder / "params.json").exists():
            continue
        params = draw_params(i)
        t0 = time.time()
        result = simulate_tomogram(params)
        _write(folder, result)
        log.info(
            "simulated %s: %s at %.2f nm, ±%g°, snr %.3g, %d vesicles (%.1f s)",
            folder.name,
            params.shape,
            params.voxel_size_nm,
            params.tilt_range_deg,
            params.snr,
            len(result.vesicles),
            time.time() - t0,
        )
    return folders


def _write(folder: Path, result) -> None:
    try:
        from synapseg.simulate import write_simulation
    except ImportError:
        write_simulation = None
    if write_simulation is not None:
        write_simulation(folder, result, overwrite=True)
        return
    from synapseg.io.tables import write_table_csv
    from synapseg.io.volume_writer import write_volume

    folder.mkdir(parents=True, exist_ok=True)
    vs = result.params["voxel_size_nm"]
    write_volume(folder / "tomogram.mrc", result.tomogram, vs, overwrite=True)
    write_volume(folder / "vesicle_labels.mrc", result.vesicle_labels, vs, overwrite=True)
    write_table_csv(folder / "vesicles.csv", result.vesicles, overwrite=True)
    (folder / "params.json").write_text(json.dumps(result.params, indent=2, default=str))


def data_summary(root: Path, n: int) -> dict:
    """Ranges of the simulation parameters actually used (for the model card)."""
    params = [json.loads((root / f"sim_{i:03d}" / "params.json").read_text()) for i in range(n)]

    def rng_of(key: str):
        vals = [p[key] for p in params if p.get(key) is not None]
        return [min(vals), max(vals)] if vals else None

    return {
        "kind": "simulated (synapseg.simulate), no real tomograms",
        "recipe": f"scripts/train_default.py (seed {SEED}, {N_TRAIN} train + {N_VAL} validation "
        "tomograms)",
        "seed": SEED,
        "voxel_size_nm": rng_of("voxel_size_nm"),
        "tilt_range_deg": rng_of("tilt_range_deg"),
        "defocus_um": rng_of("defocus_um"),
        "snr": rng_of("snr"),
        "crowding": rng_of("crowding"),
        "distractors_fraction": float(np.mean([bool(p.get("distractors")) for p in params])),
    }


def build_trainer(root: Path, steps: int, decay_from: int | None = None):
    import torch

    from synapseg.model.unet import UNetConfig, build_unet
    from synapseg.train.data import load_data_config, prepare_item
    from synapseg.train.trainer import TrainConfig, Trainer

    items = load_data_config(root)[: N_TRAIN + N_VAL]
    if len(items) < N_TRAIN + N_VAL:
        raise SystemExit(f"only {len(items)} tomograms in {root}: run `generate` first")
    vs3 = (MODEL_VOXEL_NM,) * 3
    t0 = time.time()
    vols = [prepare_item(it, vs3) for it in items]
    log.info(
        "prepared %d volumes on the %.2f nm grid (%.0f s)",
        len(vols),
        MODEL_VOXEL_NM,
        time.time() - t0,
    )
    config = TrainConfig(
        steps=steps,
        batch_size=2,
        patch_size=(48, 64, 64),
        lr=2e-3,
        warmup_steps=50,
        val_every=150,
        val_method="post",
        checkpoint_every_s=180.0,
        seed=SEED,
        schedule="constant" if decay_from is None else "cosine",
        decay_start=decay_from,
    )
    net = build_unet(UNetConfig(**UNET), seed=SEED)
    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    trainer = Trainer(net, config, vols[:N_TRAIN], vols[N_TRAIN:], vs3, root / "run")
    return trainer, vols


def cmd_train(args) -> None:
    root = Path(args.cache)
    generate(root, N_TRAIN + N_VAL)
    trainer, _ = build_trainer(root, args.steps, args.decay_from)
    if trainer.checkpoint_path.exists():
        trainer.resume()
    t0 = time.time()

    def callback(step: int, logs: dict) -> None:
        if step % 10 == 0 or "val" in logs:
            val = logs.get("val")
            log.info(
                "step %d loss %.4f (avg %.4f) lr %.2g %.2f s/step%s",
                step,
                logs["loss"],
                logs["loss_avg"],
                logs["lr"],
                (time.time() - t0) / max(1, step - start),
                f" val {json.dumps(val)}" if val else "",
            )

    start = trainer.step
    trainer.run(callback=callback)
    log.info("finished %d steps; best %s", trainer.step, trainer.best)


def cmd_export(args) -> None:
    import torch

    from synapseg.model.unet import UNetConfig, build_unet
    from synapseg.train.export import export_model

    root = Path(args.cache)
    best = torch.load(root / "run" / "best.pt", map_location="cpu", weights_only=False)
    ckpt = torch.load(root / "run" / "checkpoint.pt", map_location="cpu", weights_only=False)
    net = build_unet(UNetConfig(**UNET))
    net.load_state_dict(best["model"])
    summary = data_summary(root, N_TRAIN + N_VAL)
    summary["steps_trained_at_export"] = int(ckpt["step"])
    summary["best_checkpoint_step"] = int(best["best"].get("step", -1))
    summary["train_config"] = ckpt["extra"].get("config")
    metrics = {
        "validation": best["best"],
        "validation_method": (
            f"{N_VAL} held-out simulated tomograms of the recipe (not used for training), on "
            "the model grid (1.8 nm): F1 of synapseg.post.vesicles.find_vesicles detections "
            "('method': 'find_vesicles'; 'components' = centroids of connected components of "
            "p > 0.5) matched to true centers (distance < 0.5 x radius); Dice on p > 0.5"
        ),
    }
    if args.benchmark_json and Path(args.benchmark_json).exists():
        metrics["benchmark_accuracy"] = json.loads(Path(args.benchmark_json).read_text())
    export_model(
        args.output,
        net,
        name=args.name,
        voxel_size_nm=MODEL_VOXEL_NM,
        patch_size=(48, 64, 64),
        training_data=summary,
        metrics=metrics,
        tta_rot90=True,
        overwrite=True,
        description=(
            "Default synapseg vesicle model: compact 3D U-Net trained on CPU on simulated "
            f"tomograms only ({summary['steps_trained_at_export']} steps seen, best "
            f"checkpoint at step {summary['best_checkpoint_step']}). Fine-tune it on your "
            "own annotated data with `synapseg train --from default`."
        ),
    )
    print(f"exported step {summary['best_checkpoint_step']} to {args.output}")


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--cache", default=str(cache_dir()), help="data + run folder")
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("generate", help="simulate the training set")
    p_train = sub.add_parser("train", help="train / resume")
    p_train.add_argument("--steps", type=int, default=20000, help="total steps to reach")
    p_train.add_argument(
        "--decay-from",
        type=int,
        default=None,
        help="cosine-decay the learning rate from this step to 5%% at --steps (default: constant)",
    )
    p_exp = sub.add_parser("export", help="write the best checkpoint as a model folder")
    p_exp.add_argument("-o", "--output", required=True)
    p_exp.add_argument("--name", default=MODEL_NAME)
    p_exp.add_argument("--benchmark-json", default=None, help="bench_accuracy JSON to add")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stdout)
    if args.cmd == "generate":
        generate(Path(args.cache), N_TRAIN + N_VAL)
    elif args.cmd == "train":
        cmd_train(args)
    else:
        cmd_export(args)


if __name__ == "__main__":
    main()
