#!/usr/bin/env python
"""The documented, seeded recipe that trains synapseg's default model on simulated data.

Sub-commands (run them in this order; each is idempotent):

    python scripts/train_default.py --version v2 generate   # simulate the training set
    python scripts/train_default.py --version v2 verify     # regenerate a subset, compare hashes
    python scripts/train_default.py --version v2 train      # train (resumes from the checkpoint)
    python scripts/train_default.py --version v2 export -o src/synapseg/model/weights/sim-unet-v2
    python scripts/train_default.py --version v2 gate --model src/synapseg/model/weights/sim-unet-v2

``train`` always continues from ``<cache>/run/checkpoint.pt`` when it exists, so the same
command resumes an interrupted run exactly; ``--steps`` is the total to reach.
The cache (default ``$SYNAPSEG_CACHE/train_default[_v2]`` or
``~/.cache/synapseg/train_default[_v2]``) holds one folder per simulated tomogram in
``synapseg simulate``'s layout.

Versions
--------
v1 (``sim-unet-v1``, seed 20261125) is **not reproducible**: it draws
``SimulationParams.random``, whose ranges changed after the shipped model's data were
generated (its card lists SNR 0.015-0.141 and 70 % distractors; today's draw gives
SNR 0.024-0.220 and 87 %). It is kept so the history stays readable.

v2 (``sim-unet-v2``, seeds ``[20261205, i]``) draws every parameter with
``synapseg.simulate.draws.draw_world`` (ranges in ``WORLD_V2``, fixed in that module, not in
the simulator's defaults). ``generate`` records per tomogram the simulator version
(``SIMULATOR_VERSION``), the synapseg version and the sha256 of ``tomogram.mrc``,
``vesicle_labels.mrc`` and ``vesicles.csv`` in ``<cache>/data_hashes.json``; ``export`` copies
that list and the draw's ranges into the card's ``training_data``; ``verify`` regenerates
tomograms from their seeds into a temporary folder and compares the hashes byte for byte
(against the cache's list, a model card's with ``--card``, or the committed
``scripts/train_default_v2_hashes.json`` with ``--hashes``). The v2 draw keeps the
domain-shift benchmark's shifts outside its ranges (or at their edge): see the table in
``synapseg/simulate/draws.py``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import logging
import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SEED = 20261125
SEED_V2 = 20261205
N_TRAIN = 40
MODEL_VOXEL_NM = 1.8
XY_EXTENT_NM = 300.0
Z_EXTENT_NM = (100.0, 150.0)
UNET = {"stem": 2, "base_channels": 8, "depth": 3}
MODEL_NAME = "sim-unet-v1"
VERSIONS = {
    "v1": {"seed": SEED, "cache": "train_default", "name": "sim-unet-v1", "n_val": 6, "n_neg": 0},
    # world v2.1 (draws.WORLD_VERSION): 8 validation tomograms (3 lamellae) + 4 vesicle-free
    # draws that only calibrate the vesicle-free gate (``gate``), never train
    "v2": {"seed": SEED_V2, "cache": "train_default_v2", "name": "sim-unet-v2", "n_val": 8,
           "n_neg": 4},
}  # fmt: skip
NEG_OFFSET = 1000  # vesicle-free draws use seeds [SEED_V2, 1000 + j]
NEG_DIR = "gate_negatives"
HASHED_FILES = ("tomogram.mrc", "vesicle_labels.mrc", "vesicles.csv")

log = logging.getLogger("train_default")


def n_total(version: str) -> int:
    """Training + validation tomograms of a version."""
    return N_TRAIN + VERSIONS[version]["n_val"]


def cache_dir(version: str = "v1") -> Path:
    root = os.environ.get("SYNAPSEG_CACHE") or Path.home() / ".cache" / "synapseg"
    return Path(root) / VERSIONS[version]["cache"]


def draw_params(index: int, version: str = "v1"):
    """The simulation parameters of tomogram ``index`` (fixed by the version's seed).

    v2: ``draw_world(default_rng([20261205, index]))`` (ranges in ``WORLD_V2``), on a
    ≈ 300 x 300 x (100-150) nm volume. v1 (not reproducible, see the module docstring):

    Everything else (voxel size 0.8-2.2 nm, tilt ±40..±70°, tilt step, defocus, dose, SNR
    0.3-3x the calibrated default, crowding, radius, distractors, filaments, cleft) comes
    from ``SimulationParams.random``.
    """
    from synapseg.train.rehearsal import world_params  # the same draw adapt rehearses on

    if version == "v2":
        # vesicle-free gate negatives: the same world without synaptic vesicles
        params = world_params("v2", index, seed=SEED_V2)
        return params.replace(n_vesicles=0) if index >= NEG_OFFSET else params
    return world_params("v1", index, seed=SEED)


def item_index(name: str) -> int:
    """Draw index of a recipe tomogram: ``sim_012`` -> 12, ``neg_001`` -> 1001."""
    kind, num = name.split("_")
    return int(num) + (NEG_OFFSET if kind == "neg" else 0)


def item_folders(root: Path, version: str = "v1") -> dict[str, Path]:
    """Every simulated folder of a version: ``sim_XXX`` (train + validation) and, for v2,
    the vesicle-free gate negatives ``gate_negatives/neg_XXX``."""
    folders = {f"sim_{i:03d}": root / f"sim_{i:03d}" for i in range(n_total(version))}
    for j in range(VERSIONS[version]["n_neg"]):
        folders[f"neg_{j:03d}"] = root / NEG_DIR / f"neg_{j:03d}"
    return folders


def generate(root: Path, version: str = "v1") -> list[Path]:
    """Simulate the version's tomograms into ``root/sim_XXX`` (and v2's gate negatives into
    ``root/gate_negatives/neg_XXX``), skipping finished ones.

    v2 refuses a cached folder whose ``params.json`` differs from today's draw (the data
    would no longer be the recipe's) and writes ``root/data_hashes.json``.
    """
    from synapseg.simulate import simulate_tomogram

    folders = []
    for name, folder in item_folders(root, version).items():
        folders.append(folder)
        params = draw_params(item_index(name), version)
        if (folder / "params.json").exists():
            if version == "v2":
                # fields the simulator gained later (off by default) count as their default
                defaults = type(params)().to_dict()
                stored = {**defaults, **json.loads((folder / "params.json").read_text())}
                if stored != {**defaults, **json.loads(json.dumps(params.to_dict()))}:
                    raise SystemExit(
                        f"{folder} was simulated with other parameters than today's v2 draw: "
                        "delete the cache folder (or use another --cache) and generate again"
                    )
            continue
        t0 = time.time()
        result = simulate_tomogram(params, keep_phantom=False)
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
    if version == "v2":
        hashes = data_hashes(root, version)
        _write_json(root / "data_hashes.json", hashes)
        log.info(
            "wrote %s (%d tomograms, digest %s)",
            root / "data_hashes.json",
            len(hashes["tomograms"]),
            hashes["digest"],
        )
    return folders


def folder_hashes(folder: Path) -> dict[str, str]:
    """sha256 of the tomogram and its ground truth in one simulated folder.

    ``draws.data_sha256``: every byte except mrcfile's creation time stamp in the first
    MRC header label.
    """
    from synapseg.simulate.draws import data_sha256

    return {name: data_sha256(folder / name) for name in HASHED_FILES}


def data_hashes(root: Path, version: str = "v2") -> dict:
    """The hash list of the version's tomograms (with the simulator and synapseg versions)."""
    from synapseg import __version__
    from synapseg.simulate.draws import SIMULATOR_VERSION, WORLD_VERSION

    tomograms = {
        name: {"simulator_version": SIMULATOR_VERSION, **folder_hashes(folder)}
        for name, folder in item_folders(root, version).items()
    }
    return {
        "seed": [SEED_V2, "i"],
        "world": WORLD_VERSION,
        "simulator_version": SIMULATOR_VERSION,
        "synapseg_version": __version__,
        "digest": hashes_digest(tomograms),
        "tomograms": tomograms,
    }


def hashes_digest(tomograms: dict) -> str:
    """One sha256 over the whole hash list (canonical JSON), quoted in docs/training.md."""
    text = json.dumps(tomograms, sort_keys=True, separators=(",", ":"))
    return hashlib.sha256(text.encode()).hexdigest()


def _write_json(path: Path, value) -> None:
    from synapseg.io.atomic import write_text_atomic

    write_text_atomic(path, json.dumps(value, indent=1), overwrite=True)


def cmd_verify(args) -> int:
    """Regenerate some v2 tomograms from their seeds and compare their hashes byte for byte."""
    from synapseg.simulate import simulate_tomogram

    if args.card:
        card = json.loads(Path(args.card).read_text())
        expected = card["training_data"]["data_hashes"]
    elif args.hashes:
        expected = json.loads(Path(args.hashes).read_text())
    else:
        expected = json.loads((Path(args.cache) / "data_hashes.json").read_text())
    names = args.names.split(",") if args.names else sorted(expected["tomograms"])[: args.n]
    failures = 0
    with tempfile.TemporaryDirectory(prefix="synapseg-verify-") as tmp:
        for name in names:
            folder = Path(tmp) / name
            params = draw_params(item_index(name), "v2")
            _write(folder, simulate_tomogram(params, keep_phantom=False))
            got = folder_hashes(folder)
            want = {k: expected["tomograms"][name][k] for k in HASHED_FILES}
            same = got == want
            failures += not same
            print(f"{name}: {'identical' if same else 'DIFFERENT'}")
            for key in HASHED_FILES:
                if got[key] != want[key]:
                    print(f"  {key}: expected {want[key]}, got {got[key]}")
    print(f"{len(names) - failures}/{len(names)} tomograms byte-identical")
    return 1 if failures else 0


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


def data_summary(root: Path, version: str = "v1") -> dict:
    """Ranges of the simulation parameters actually used (for the model card).

    v2 adds the draw's documented ranges (``WORLD_V2``), the fractions of each new feature
    and the hash list of the data (``data_hashes``).
    """
    n, n_val = n_total(version), VERSIONS[version]["n_val"]
    params = [json.loads((root / f"sim_{i:03d}" / "params.json").read_text()) for i in range(n)]

    def rng_of(key: str):
        vals = [p[key] for p in params if p.get(key) is not None]
        return [min(vals), max(vals)] if vals else None

    summary = {
        "kind": "simulated (synapseg.simulate), no real tomograms",
        "recipe": f"scripts/train_default.py (seed {SEED}, {N_TRAIN} train + {n_val} validation "
        "tomograms)",
        "seed": SEED,
        "voxel_size_nm": rng_of("voxel_size_nm"),
        "tilt_range_deg": rng_of("tilt_range_deg"),
        "defocus_um": rng_of("defocus_um"),
        "snr": rng_of("snr"),
        "crowding": rng_of("crowding"),
        "distractors_fraction": float(np.mean([bool(p.get("distractors")) for p in params])),
    }
    if version == "v2":
        from synapseg.simulate.draws import SIMULATOR_VERSION, WORLD_V2, WORLD_VERSION

        def frac(test) -> float:
            return round(float(np.mean([bool(test(p)) for p in params])), 3)

        summary.update(
            recipe=f"scripts/train_default.py --version v2 (seeds [{SEED_V2}, i], {N_TRAIN} "
            f"train + {n_val} validation tomograms, synapseg.simulate.draws.draw_world, world "
            f"{WORLD_VERSION}; {VERSIONS[version]['n_neg']} vesicle-free draws, seeds "
            f"[{SEED_V2}, {NEG_OFFSET} + j], only calibrate the vesicle-free gate)",
            seed=[SEED_V2, "i"],
            simulator_version=SIMULATOR_VERSION,
            membrane_thickness_nm=rng_of("membrane_thickness_nm"),
            radius_mean_nm=rng_of("radius_mean_nm"),
            protein_crowding=rng_of("protein_crowding"),
            fractions={
                "lamella": frac(lambda p: p.get("lamella_thickness_nm") is not None),
                "lamella_cuts_vesicles": frac(lambda p: p.get("lamella_cuts_vesicles")),
                "ice_blobs": frac(lambda p: p.get("n_ice_blobs", 0) > 0),
                "gold": frac(lambda p: p.get("n_gold", 0) > 0),
                "microtubules": frac(lambda p: p.get("n_microtubules", 0) > 0),
                "er_tubules": frac(lambda p: p.get("n_er_tubules", 0) > 0),
                "coated_vesicles": frac(lambda p: p.get("n_coated_vesicles", 0) > 0),
                "ribosomes": frac(lambda p: p.get("ribosome_density_per_um3", 0) > 0),
                "denoised": frac(lambda p: p.get("denoise_sigma_nm", 0) > 0),
                "wedge_fill": frac(lambda p: p.get("wedge_fill")),
                "dual_axis": frac(lambda p: p.get("dual_axis")),
                "defocus_gradient": frac(lambda p: p.get("defocus_gradient")),
                "sirt": frac(lambda p: p.get("recon_filter") == "sirt"),
            },
            world_v2_draw=WORLD_V2,
            out_of_distribution=(
                "domain-shift benchmark shifts kept outside the draw: sirt_filtered, denoised, "
                "dense_protein, vacuum30, lamella_cut (thickness/tilt), thick_membrane, "
                "voxel2.4; at the edge: tilt40, tilt70; inside: voxel0.9 (see "
                "synapseg/simulate/draws.py)"
            ),
            data_hashes=json.loads((root / "data_hashes.json").read_text()),
        )
    return summary


def build_trainer(
    root: Path,
    steps: int,
    decay_from: int | None = None,
    version: str = "v1",
    init: str = "scratch",
    lr: float = 2e-3,
    run: str = "run",
    threads: int | None = None,
    val_method: str = "post",
):
    """The recipe's Trainer; ``init`` is ``scratch`` or a model (name or folder) to start from.

    ``threads``: torch CPU threads (default min(4, cores)); 1 is faster on a machine whose
    cores are busy with other work (threads wait for each other at every operation)."""
    import torch

    from synapseg.model.unet import UNetConfig, build_unet
    from synapseg.train.data import load_data_config, prepare_item
    from synapseg.train.trainer import TrainConfig, Trainer

    n = n_total(version)
    items = load_data_config(root)[:n]
    if len(items) < n:
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
        lr=lr,
        warmup_steps=50,
        val_every=150,
        val_method=val_method,  # "post-nogate": validation F1 without the vesicle-free gate
        checkpoint_every_s=180.0,
        seed=VERSIONS[version]["seed"],
        schedule="constant" if decay_from is None else "cosine",
        decay_start=decay_from,
    )
    net = build_unet(UNetConfig(**UNET), seed=VERSIONS[version]["seed"])
    if init != "scratch":
        from synapseg.model.registry import load_model

        start, card = load_model(init)
        net.load_state_dict(start.state_dict())
        log.info("initialised from %s (%s)", card.name, init)
    torch.set_num_threads(threads or max(1, min(4, os.cpu_count() or 1)))
    trainer = Trainer(net, config, vols[:N_TRAIN], vols[N_TRAIN:], vs3, root / run)
    return trainer, vols


def _init_record(init: str, lr: float) -> dict:
    """What the run started from (written to ``run/init.json``, copied into the card)."""
    if init == "scratch":
        return {"init": "scratch", "lr": lr}
    from synapseg.model.registry import read_card, resolve_model

    card_path = resolve_model(init)
    card = read_card(card_path)
    return {"init": card.name, "path": str(card_path.parent), "sha256": card.sha256, "lr": lr}


def cmd_train(args) -> None:
    root = Path(args.cache)
    generate(root, args.version)
    trainer, _ = build_trainer(
        root,
        args.steps,
        args.decay_from,
        args.version,
        args.init,
        args.lr,
        args.run,
        args.threads,
        getattr(args, "val_method", "post"),
    )
    init_file = root / args.run / "init.json"
    if trainer.checkpoint_path.exists():
        trainer.resume()
    else:
        _write_json(init_file, _init_record(args.init, args.lr))
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
    best = torch.load(root / args.run / "best.pt", map_location="cpu", weights_only=False)
    ckpt = torch.load(root / args.run / "checkpoint.pt", map_location="cpu", weights_only=False)
    net = build_unet(UNetConfig(**UNET))
    # "best": the recipe's best validation checkpoint; "last": the final (decayed) weights
    last = getattr(args, "checkpoint", "best") == "last"
    net.load_state_dict((ckpt if last else best)["model"])
    summary = data_summary(root, args.version)
    init_file = root / args.run / "init.json"
    if init_file.is_file():
        summary["initialised_from"] = json.loads(init_file.read_text())
    summary["steps_trained_at_export"] = int(ckpt["step"])
    if args.version == "v2":
        summary["rebuild_reference"] = rebuild_reference(root / args.run / "history.jsonl")
        summary["rebuild_tolerance"] = CHECK_TOLERANCE
    summary["best_checkpoint_step"] = int(best["best"].get("step", -1))
    summary["exported_checkpoint"] = "last" if last else "best"
    summary["exported_step"] = int(ckpt["step"]) if last else summary["best_checkpoint_step"]
    summary["train_config"] = ckpt["extra"].get("config")
    metrics = {
        "validation": best["best"] if not last else _history_val(root / args.run, ckpt["step"]),
        "validation_method": (
            f"{VERSIONS[args.version]['n_val']} held-out simulated tomograms of the recipe "
            "(not used for training), on "
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
        name=args.name or VERSIONS[args.version]["name"],
        voxel_size_nm=MODEL_VOXEL_NM,
        patch_size=(48, 64, 64),
        training_data=summary,
        metrics=metrics,
        tta_rot90=True,
        overwrite=True,
        description=(
            "Default synapseg vesicle model: compact 3D U-Net trained on CPU on simulated "
            f"tomograms only ({summary['steps_trained_at_export']} steps seen, exported "
            f"{summary['exported_checkpoint']} checkpoint at step {summary['exported_step']}). "
            "Fine-tune it on your "
            "own annotated data with `synapseg train --from default`."
        ),
    )
    print(f"exported step {summary['exported_step']} to {args.output}")


def _history_val(run: Path, step: int) -> dict:
    """The validation row of ``step`` in a run's history (``{}`` when it has none)."""
    rows = [json.loads(line) for line in (run / "history.jsonl").read_text().splitlines() if line]
    return next(
        (dict(r["val"], step=r["step"]) for r in rows if r["step"] == step and "val" in r), {}
    )


CHECK_STEPS = 300  # the short rebuild check trains this many steps (two validations)
CHECK_TOLERANCE = {"f1": 0.05, "dice": 0.05, "loss_avg_relative": 0.10}


def rebuild_reference(history_file: Path, upto: int = CHECK_STEPS) -> list[dict]:
    """The validation rows of a run's first ``upto`` steps (copied into the card by
    ``export``; ``check`` compares a short rebuild with them)."""
    rows = [json.loads(line) for line in history_file.read_text().splitlines() if line]
    keep = ("step", "loss_avg", "val")
    return [{k: r[k] for k in keep if k in r} for r in rows if "val" in r and r["step"] <= upto]


def cmd_check(args) -> int:
    """Short rebuild check: retrain the first ``--steps`` of the recipe's run (same seed,
    data, config and schedule) into a fresh run folder and compare its validation rows with
    the card's ``training_data.rebuild_reference`` within ``CHECK_TOLERANCE``."""
    from synapseg.model.registry import available_models, read_card, resolve_model

    card = read_card(resolve_model(args.model))
    data = card.training_data if isinstance(card.training_data, dict) else {}
    reference = data.get("rebuild_reference")
    if not reference:
        raise SystemExit(f"{args.model}: the card has no rebuild_reference (export it with v2)")
    cfg = data["train_config"]
    start = data.get("initialised_from") or {"init": "scratch"}
    # a shipped model by name (its committed weights, sha256 in the card), else the folder
    init = start["init"] if start["init"] in ("scratch", *available_models()) else start["path"]
    root = Path(args.cache)
    generate(root, args.version)
    decay = cfg.get("decay_start") if cfg.get("schedule") == "cosine" else None
    trainer, _ = build_trainer(
        root,
        int(cfg["steps"]),
        decay,
        args.version,
        init,
        float(cfg["lr"]),
        args.check_run,
        args.threads,
        cfg.get("val_method", "post"),  # the card's run's validation (F1 is compared)
    )
    if trainer.checkpoint_path.exists():
        trainer.resume()
    trainer.run(steps=args.steps)
    history = root / args.check_run / "history.jsonl"
    got = {r["step"]: r for r in rebuild_reference(history, args.steps)}
    failures = 0
    print("step | key | reference | rebuild | within tolerance")
    for ref in reference:
        if ref["step"] > args.steps:
            continue
        new = got.get(ref["step"])
        pairs = [
            ("f1", ref["val"].get("f1"), new and new["val"].get("f1")),
            ("dice", ref["val"].get("dice"), new and new["val"].get("dice")),
            ("loss_avg", ref.get("loss_avg"), new and new.get("loss_avg")),
        ]
        for key, a, b in pairs:
            if key == "loss_avg":
                ok = b is not None and abs(b - a) <= CHECK_TOLERANCE["loss_avg_relative"] * a
            else:
                ok = b is not None and abs(b - a) <= CHECK_TOLERANCE[key]
            failures += not ok
            b_text = "missing" if b is None else f"{b:.4f}"
            print(f"{ref['step']} | {key} | {a:.4f} | {b_text} | {'yes' if ok else 'NO'}")
    print("rebuild check:", "within tolerance" if not failures else f"{failures} values outside")
    return 1 if failures else 0


def gate_scores(model: str, folders: dict[str, Path], device: str = "cpu") -> dict[str, float]:
    """Best-candidate score per tomogram: the pipeline's probability map (``segment``,
    outputs=probabilities) scored by :func:`synapseg.train.gate.best_candidate_score` with
    the instance settings the model's card calibrates (``calibrate``), as the pipeline does."""
    import synapseg
    from synapseg.model.registry import card_post_params, read_card, resolve_model
    from synapseg.post.vesicles import PostParams
    from synapseg.train.gate import best_candidate_score
    from synapseg.train.post_calibration import INSTANCE_KEYS

    card = card_post_params(read_card(resolve_model(model)))
    params = PostParams(**{k: v for k, v in card.items() if k in INSTANCE_KEYS})
    scores = {}
    for name, folder in folders.items():
        t0 = time.time()
        seg = synapseg.segment(
            synapseg.read_volume(folder / "tomogram.mrc"),
            model=model,
            outputs=["probabilities"],
            device=device,
            progress=False,
        )
        scores[name] = best_candidate_score(
            np.asarray(seg.probabilities), seg.grid.voxel_size_nm, params
        )
        log.info("%s: best candidate %.3f (%.0f s)", name, scores[name], time.time() - t0)
    return scores


def cmd_gate(args) -> None:
    """Calibrate the vesicle-free gate of an exported model on the recipe's own data.

    Tomograms with vesicles: the validation tomograms (never the training ones, never a
    benchmark); vesicle-free: the gate negatives. Writes ``postprocessing.min_best_score``
    and ``metrics.vesicle_free_gate`` into the model's card (weights untouched), unless
    ``--dry-run``.
    """
    from synapseg.model.registry import load_model, read_card, resolve_model, save_model
    from synapseg.train.gate import choose_min_best_score

    root = Path(args.cache)
    folders = item_folders(root, args.version)
    val = {k: v for k, v in folders.items() if k.startswith("sim_") and int(k[4:]) >= N_TRAIN}
    neg = {k: v for k, v in folders.items() if k.startswith("neg_")}
    if not neg:
        raise SystemExit(f"--version {args.version} has no vesicle-free draws to calibrate on")
    pos_scores = gate_scores(args.model, val, args.device)
    neg_scores = gate_scores(args.model, neg, args.device)
    result = choose_min_best_score(list(pos_scores.values()), list(neg_scores.values()))
    result.update(
        with_vesicles=pos_scores,
        vesicle_free=neg_scores,
        method=(
            "max-margin threshold between the best-candidate scores (mean probability) of the "
            f"recipe's {len(val)} validation tomograms and {len(neg)} vesicle-free draws "
            "(synapseg.train.gate.choose_min_best_score)"
        ),
    )
    print(json.dumps(result, indent=1))
    if args.dry_run:
        return
    card_path = resolve_model(args.model)
    net, _ = load_model(card_path)
    card = read_card(card_path)
    card.postprocessing = {**card.postprocessing, "min_best_score": result["min_best_score"]}
    card.metrics = {**card.metrics, "vesicle_free_gate": result}
    save_model(card_path.parent, net, card, overwrite=True)
    print(f"min_best_score {result['min_best_score']} written to {card_path}")


def validation_tomograms(root: Path, version: str, names: list[str] | None = None) -> dict:
    """The recipe's validation tomograms as ``evaluate_instance_settings`` takes them: name →
    (volume, true vesicle table, ``{"tilt_range_deg": …}`` from the draw)."""
    import synapseg
    from synapseg.io.tables import read_table_csv

    folders = item_folders(root, version)
    val = [f"sim_{i:03d}" for i in range(N_TRAIN, n_total(version))]
    out = {}
    for name in names or val:
        if name not in val:
            raise SystemExit(f"{name} is not a validation tomogram of --version {version}")
        folder = folders[name]
        tilt = json.loads((folder / "params.json").read_text())["tilt_range_deg"]
        out[name] = (
            synapseg.read_volume(folder / "tomogram.mrc"),
            read_table_csv(folder / "vesicles.csv"),
            {"tilt_range_deg": float(tilt)},
        )
    return out


def cmd_calibrate(args) -> None:
    """Calibrate an exported model's post-processing on the recipe's own data, in order:

    1. the confidence model (``scripts/train_confidence.py --model DIR -o
       DIR/confidence_model.json``, its own seeded draws, ``--confidence-n``/``--confidence-wide``
       tomograms; skipped with ``--skip-confidence`` or when the file exists);
    2. the instance step (threshold, seed separation) on the validation tomograms
       (:mod:`synapseg.train.post_calibration`), into ``postprocessing`` and
       ``metrics.instance_calibration``;
    3. the vesicle-free gate (``gate``) with those instance settings.

    Never on a benchmark's data. ``--dry-run`` prints step 2's table and writes nothing.
    """
    import subprocess

    import torch

    from synapseg.model.registry import load_model, read_card, resolve_model, save_model
    from synapseg.train.post_calibration import (
        INSTANCE_KEYS,
        choose_instance_settings,
        evaluate_instance_settings,
        instance_settings,
    )

    torch.set_num_threads(args.threads or 1)
    card_path = resolve_model(args.model)
    model_dir = card_path.parent
    conf = model_dir / "confidence_model.json"
    if not args.skip_confidence and not args.dry_run and not conf.exists():
        t0 = time.time()
        cmd = [sys.executable, str(Path(__file__).with_name("train_confidence.py")),
               "--model", str(model_dir), "-o", str(conf),
               "--n-tomograms", str(args.confidence_n), "--n-wide", str(args.confidence_wide),
               "--device", args.device]  # fmt: skip
        log.info("confidence model: %s", " ".join(cmd))
        subprocess.run(cmd, check=True)
        log.info("confidence model written (%.0f s)", time.time() - t0)

    def grid(text: str) -> list[float | None]:
        return [None if v == "auto" else float(v) for v in text.split(",")]

    settings = instance_settings(grid(args.thresholds), grid(args.separations))
    if settings[0]:
        settings.insert(0, {})  # the pipeline's defaults are always the reference
    t0 = time.time()
    tomos = validation_tomograms(Path(args.cache), args.version, args.names)
    results = evaluate_instance_settings(model_dir, tomos, settings)
    choice = choose_instance_settings(results, args.min_gain)
    choice.update(
        seconds=round(time.time() - t0),
        method=(
            "mean per-tomogram F1 of the full vesicles stage (the card's confidence model, no "
            f"gate; gate calibrated afterwards) on the recipe's {len(tomos)} validation "
            "tomograms, every setting of the "
            f"grid threshold {args.thresholds} x min_separation_nm {args.separations}; the "
            f"defaults unless a setting beats them by more than {args.min_gain} "
            "(synapseg.train.post_calibration)"
        ),
    )
    print("settings | mean F1 | pooled F1 | tp | fp | fn")
    for row in choice["table"]:
        print(f"{row['settings'] or 'defaults'} | {row['mean_f1']:.4f} | {row['pooled_f1']:.4f} "
              f"| {row['tp']} | {row['fp']} | {row['fn']}")  # fmt: skip
    print(f"chosen: {choice['postprocessing'] or 'defaults'} (mean F1 {choice['mean_f1']:.4f})")
    if args.dry_run:
        return
    net, _ = load_model(card_path)
    card = read_card(card_path)
    post = {k: v for k, v in card.postprocessing.items() if k not in INSTANCE_KEYS}
    card.postprocessing = {**post, **choice["postprocessing"]}
    card.metrics = {**card.metrics, "instance_calibration": choice}
    save_model(model_dir, net, card, overwrite=True)
    if not args.skip_gate:
        cmd_gate(args)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument(
        "--version",
        choices=sorted(VERSIONS),
        default="v1",
        help="recipe version (v1 is not reproducible: see the module docstring)",
    )
    parser.add_argument("--cache", default=None, help="data + run folder")
    parser.add_argument("--run", default="run", help="run folder inside the cache (train/export)")
    sub = parser.add_subparsers(dest="cmd", required=True)
    sub.add_parser("generate", help="simulate the training set")
    p_ver = sub.add_parser("verify", help="(v2) regenerate tomograms, compare their sha256")
    p_ver.add_argument("--n", type=int, default=3, help="how many (the first N)")
    p_ver.add_argument("--names", default=None, help="comma-separated, e.g. sim_000,sim_045")
    p_ver.add_argument("--card", default=None, help="compare with this model.json's hash list")
    p_ver.add_argument(
        "--hashes",
        default=None,
        help="compare with this hash list (committed: scripts/train_default_v2_hashes.json)",
    )
    p_train = sub.add_parser("train", help="train / resume")
    p_train.add_argument("--steps", type=int, default=20000, help="total steps to reach")
    p_train.add_argument(
        "--decay-from",
        type=int,
        default=None,
        help="cosine-decay the learning rate from this step to 5%% at --steps (default: constant)",
    )
    p_train.add_argument(
        "--init",
        default="scratch",
        help="'scratch' (seeded random weights) or a model name/folder to fine-tune from",
    )
    p_train.add_argument("--lr", type=float, default=2e-3, help="peak learning rate")
    p_train.add_argument(
        "--val-method",
        choices=["post", "post-nogate"],
        default="post",
        help="validation F1 through find_vesicles with the default vesicle-free gate (post, "
        "as every card so far) or without it (post-nogate: no whole-tomogram swings)",
    )
    p_train.add_argument("--threads", type=int, default=None, help="torch threads (default ≤ 4)")
    p_gate = sub.add_parser("gate", help="(v2) calibrate the vesicle-free gate of a model")
    p_gate.add_argument(
        "--model", required=True, help="exported model folder (its card is updated)"
    )
    p_gate.add_argument("--device", default="cpu")
    p_gate.add_argument("--dry-run", action="store_true", help="print, do not write the card")
    p_cal = sub.add_parser(
        "calibrate",
        help="(v2) confidence model, instance step and gate of an exported model, on the "
        "recipe's data",
    )
    p_cal.add_argument("--model", required=True, help="exported model folder (updated)")
    p_cal.add_argument("--device", default="cpu")
    p_cal.add_argument("--threads", type=int, default=None, help="torch threads (default 1)")
    p_cal.add_argument("--thresholds", default="auto,0.35,0.5", help="'auto' or 0..1 values")
    p_cal.add_argument("--separations", default="auto,7,13", help="'auto' or seed spacing, nm")
    p_cal.add_argument("--names", default=None, help="validation tomograms (default: all 8)")
    p_cal.add_argument("--min-gain", type=float, default=0.0, help="mean F1 over defaults")
    p_cal.add_argument("--skip-confidence", action="store_true")
    p_cal.add_argument("--skip-gate", action="store_true")
    p_cal.add_argument("--confidence-n", type=int, default=80, help="train_confidence set 1")
    p_cal.add_argument("--confidence-wide", type=int, default=32, help="train_confidence set 2")
    p_cal.add_argument("--dry-run", action="store_true", help="print, do not write")
    p_chk = sub.add_parser("check", help="(v2) short rebuild run compared with a model's card")
    p_chk.add_argument("--model", default="sim-unet-v2", help="model whose card is the reference")
    p_chk.add_argument("--steps", type=int, default=CHECK_STEPS, help="steps to retrain")
    p_chk.add_argument("--check-run", default="rebuild_check", help="run folder of the check")
    p_chk.add_argument("--threads", type=int, default=None, help="torch threads (default ≤ 4)")
    p_exp = sub.add_parser("export", help="write the best checkpoint as a model folder")
    p_exp.add_argument("-o", "--output", required=True)
    p_exp.add_argument("--name", default=None, help="model name (default: the version's)")
    p_exp.add_argument(
        "--checkpoint",
        choices=["best", "last"],
        default="best",
        help="best validation checkpoint (default) or the final weights",
    )
    p_exp.add_argument("--benchmark-json", default=None, help="bench_accuracy JSON to add")
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(message)s", stream=sys.stdout)
    args.cache = args.cache or str(cache_dir(args.version))
    if args.cmd in ("verify", "gate", "check", "calibrate") and args.version != "v2":
        parser.error("verify needs --version v2 (v1 recorded no hashes)")
    if args.cmd == "generate":
        generate(Path(args.cache), args.version)
    elif args.cmd == "verify":
        sys.exit(cmd_verify(args))
    elif args.cmd == "train":
        cmd_train(args)
    elif args.cmd == "gate":
        cmd_gate(args)
    elif args.cmd == "calibrate":
        if args.names:
            args.names = args.names.split(",")
        cmd_calibrate(args)
    elif args.cmd == "check":
        sys.exit(cmd_check(args))
    else:
        cmd_export(args)


if __name__ == "__main__":
    main()
