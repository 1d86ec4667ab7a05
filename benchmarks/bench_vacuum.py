#!/usr/bin/env python
"""Vacuum slabs: the same simulated tomogram with and without 30 % vacuum above and below.

Each simulated tomogram (seeds 8101-8103, 64 x 192 x 192 at 1.68 nm, ``SimulationParams``
defaults otherwise: the training simulator's family, so the plain case is in-distribution) is
segmented as is and padded above and below with ``round(0.3 * nz)`` flat sections: ``bright``
(specimen median + 3 sigma, 5 % noise), ``dark`` (median - 3 sigma) and ``offset`` (median
+ 1.5 sigma with half the specimen's noise). Every volume goes through
``synapseg.pipeline.segment_tomogram`` (default options, contrast polarity ``auto``) and is
scored with ``synapseg.evaluate.metrics.compute_metrics`` (match: center distance < 0.5 x
true radius; ground-truth z shifted by the padding). The target: F1 within 0.02 of the
unpadded tomogram's.

The tomograms are written once to ``--data`` (by the running synapseg); a second run with
another synapseg on ``PYTHONPATH`` reads the same files, so two versions can be compared.
Vesicle-free tomograms (``NEGATIVES``: seeds 8201-8204, ``n_vesicles=0``; membranes,
filaments, distractors, protein crowding) and two overlapping 64 x 128 x 128 crops of each
are segmented too: false vesicles and the polarity decision are counted:

    python benchmarks/bench_vacuum.py --data /tmp/vac --json after.json
    git worktree add /tmp/synapseg-before bd1045b
    PYTHONPATH=/tmp/synapseg-before/src python benchmarks/bench_vacuum.py --data /tmp/vac \\
        --label before --json before.json
    python benchmarks/bench_vacuum.py --compare before.json after.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

SEEDS = (8101, 8102, 8103)
SHAPE = (64, 192, 192)
VOXEL_NM = 1.68
PAD_FRACTION = 0.3
# name -> (level in specimen sigmas from its median, noise in specimen sigmas)
VARIANTS = {"bright": (3.0, 0.05), "dark": (-3.0, 0.05), "offset": (1.5, 0.5)}
# vesicle-free tomograms: seed -> SimulationParams overrides (n_vesicles=0 for all)
NEGATIVES = {
    8201: {},  # plasma membrane, cleft, distractors (endosomes, mitochondrion, DCVs), filaments
    8202: {"distractors": False},  # membranes and filaments only
    8203: {"filaments": False},
    8204: {"protein_crowding": 2.0},
}


def make_data(folder: Path, seeds=SEEDS) -> None:
    """Simulate and write every tomogram and its ground truth (skips existing files)."""
    from synapseg.io.tables import write_table_csv
    from synapseg.io.volume_writer import write_volume
    from synapseg.simulate import SimulationParams, simulate_tomogram

    folder.mkdir(parents=True, exist_ok=True)
    for seed in seeds:
        if (folder / f"s{seed}_plain.mrc").exists():
            continue
        sim = simulate_tomogram(
            SimulationParams(shape=SHAPE, voxel_size_nm=VOXEL_NM, seed=seed), keep_phantom=False
        )
        t = sim.tomogram
        pad = int(round(PAD_FRACTION * t.shape[0]))
        med, sd = float(np.median(t)), float(t.std())
        write_volume(folder / f"s{seed}_plain.mrc", t, VOXEL_NM)
        write_table_csv(folder / f"s{seed}_gt.csv", sim.vesicles)
        rng = np.random.default_rng(seed)
        for name, (level, noise) in VARIANTS.items():
            shape = (pad, *t.shape[1:])
            above = med + level * sd + rng.normal(0, noise * sd, shape)
            below = med + level * sd + rng.normal(0, noise * sd, shape)
            padded = np.concatenate([above, t, below]).astype(np.float32)
            write_volume(folder / f"s{seed}_{name}.mrc", padded, VOXEL_NM)
        (folder / f"s{seed}_pad.txt").write_text(str(pad))
    for seed, overrides in NEGATIVES.items():
        if (folder / f"n{seed}_whole.mrc").exists():
            continue
        params = SimulationParams(shape=SHAPE, voxel_size_nm=VOXEL_NM, seed=seed, n_vesicles=0)
        t = simulate_tomogram(params.replace(**overrides), keep_phantom=False).tomogram
        write_volume(folder / f"n{seed}_whole.mrc", t, VOXEL_NM)
        write_volume(folder / f"n{seed}_cropA.mrc", t[:, :128, :128], VOXEL_NM)
        write_volume(folder / f"n{seed}_cropB.mrc", t[:, 64:, 64:], VOXEL_NM)


def run_negatives(folder: Path, work: Path, device: str) -> list[dict]:
    """Vesicle-free tomograms and two crops of each: false vesicles and the polarity."""
    from synapseg.io.tables import read_table_csv
    from synapseg.pipeline import SegmentOptions, segment_tomogram

    rows = []
    for tomo in sorted(folder.glob("n*_*.mrc")):
        out = work / tomo.stem
        options = SegmentOptions(device=device, formats=("csv",), overwrite=True)
        report = segment_tomogram(tomo, out, options)
        pred = read_table_csv(out / f"{tomo.stem}_vesicles.csv")
        polarity = report["stages"]["predict"].get("polarity", {})
        rows.append(
            {
                "tomogram": tomo.stem,
                "false_vesicles": int(len(pred)),
                "inverted": bool(polarity.get("invert")),
                "polarity_confidence": polarity.get("confidence"),
                "statement": report["stages"]["vesicles"].get("statement"),
            }
        )
        print(json.dumps(rows[-1]), file=sys.stderr)
    return rows


def run(folder: Path, work: Path, device: str) -> list[dict]:
    from synapseg.evaluate.metrics import compute_metrics
    from synapseg.io.tables import read_table_csv
    from synapseg.pipeline import SegmentOptions, segment_tomogram

    rows = []
    for gt_path in sorted(folder.glob("s*_gt.csv")):
        stem = gt_path.name[: -len("_gt.csv")]
        pad = int((folder / f"{stem}_pad.txt").read_text())
        gt = read_table_csv(gt_path)
        for variant in ("plain", *VARIANTS):
            tomo = folder / f"{stem}_{variant}.mrc"
            out = work / f"{stem}_{variant}"
            options = SegmentOptions(device=device, formats=("csv",), overwrite=True)
            t0 = time.perf_counter()
            report = segment_tomogram(tomo, out, options)
            seconds = time.perf_counter() - t0
            pred = read_table_csv(out / f"{tomo.stem}_vesicles.csv")
            shift = 0 if variant == "plain" else pad
            truth = gt.copy()
            truth["center_z_px"] = truth["center_z_px"] + shift
            truth["center_z_nm"] = truth["center_z_nm"] + shift * VOXEL_NM
            m = compute_metrics(truth, pred, match_fraction=0.5)
            polarity = report["stages"]["predict"].get("polarity", {})
            rows.append(
                {
                    "tomogram": stem,
                    "variant": variant,
                    "n_gt": int(m["n_gt"]),
                    "n_pred": int(m["n_pred"]),
                    "precision": m["precision"],
                    "recall": m["recall"],
                    "f1": m["f1"],
                    "center_error_nm_median": m["center_error_nm"]["median"],
                    "inverted": bool(polarity.get("invert")),
                    "specimen_z_range_px": report.get("specimen", {}).get("specimen_z_range_px"),
                    "segment_s": round(seconds, 1),
                }
            )
            print(json.dumps(rows[-1]), file=sys.stderr)
    return rows


def summarise(rows: list[dict]) -> dict:
    """Per variant: mean F1 and the largest |F1 - F1(plain)| over the tomograms."""
    plain = {r["tomogram"]: r["f1"] for r in rows if r["variant"] == "plain"}
    out = {}
    for variant in ("plain", *VARIANTS):
        sel = [r for r in rows if r["variant"] == variant]
        if sel:
            gaps = [abs(r["f1"] - plain[r["tomogram"]]) for r in sel]
            out[variant] = {"mean_f1": float(np.mean([r["f1"] for r in sel])),
                            "max_f1_gap": float(max(gaps))}  # fmt: skip
    return out


def print_table(rows: list[dict]) -> None:
    print(f"{'tomogram':<10}{'variant':<9}{'n_gt':>6}{'n_pred':>7}{'P':>7}{'R':>7}{'F1':>7}"
          f"{'inv':>5}{'z-range':>12}{'seg_s':>7}")  # fmt: skip
    for r in rows:
        zr = r["specimen_z_range_px"]
        zr = "-" if zr is None else f"{zr[0]}-{zr[1]}"
        print(f"{r['tomogram']:<10}{r['variant']:<9}{r['n_gt']:>6}{r['n_pred']:>7}"
              f"{r['precision']:>7.3f}{r['recall']:>7.3f}{r['f1']:>7.3f}"
              f"{'yes' if r['inverted'] else 'no':>5}{zr:>12}{r['segment_s']:>7.1f}")  # fmt: skip


def compare(paths: list[str]) -> int:
    results = [json.loads(Path(p).read_text()) for p in paths]
    labels = [r["label"] for r in results]
    print(f"{'variant':<9}" + "".join(f"{'F1 ' + lb:>14}{'max gap':>10}" for lb in labels))
    for variant in ("plain", *VARIANTS):
        line = f"{variant:<9}"
        for r in results:
            s = r["summary"].get(variant, {})
            line += (
                f"{s.get('mean_f1', float('nan')):>14.3f}{s.get('max_f1_gap', float('nan')):>10.3f}"  # noqa: E501
            )
        print(line)
    for r in results:
        if "negatives" in r:
            print(f"{r['label']}: {r['negatives_false_vesicles']} false vesicles in "
                  f"{len(r['negatives'])} vesicle-free volumes, {r['negatives_inverted']} "
                  "declared inverted")  # fmt: skip
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default="/tmp/synapseg-bench-vacuum", help="tomogram folder")
    parser.add_argument("--workdir", default=None, help="outputs (default: DATA/out-LABEL)")
    parser.add_argument("--label", default="after", help="name of this run (e.g. before)")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", default=None, help="write the results here")
    parser.add_argument("--compare", nargs="+", default=None, help="JSON files to tabulate")
    args = parser.parse_args(argv)
    if args.compare:
        return compare(args.compare)
    data = Path(args.data)
    if not any(data.glob("s*_gt.csv")) or not any(data.glob("n*_whole.mrc")):
        make_data(data)
    work = Path(args.workdir or data / f"out-{args.label}")
    rows = run(data, work, args.device)
    negatives = run_negatives(data, work, args.device)
    print_table(rows)
    for r in negatives:
        print(f"{r['tomogram']:<14} false vesicles {r['false_vesicles']:>3}   "
              f"inverted {'yes' if r['inverted'] else 'no'}")  # fmt: skip
    summary = summarise(rows)
    for variant, s in summary.items():
        print(
            f"{variant:<9} mean F1 {s['mean_f1']:.3f}   max |F1 - F1(plain)| {s['max_f1_gap']:.3f}"
        )
    result = {
        "benchmark": "vacuum",
        "label": args.label,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores",
        "pad_fraction": PAD_FRACTION,
        "variants": {k: {"level_sigma": v[0], "noise_sigma": v[1]} for k, v in VARIANTS.items()},
        "rows": rows,
        "summary": summary,
        "negatives": negatives,
        "negatives_false_vesicles": int(sum(r["false_vesicles"] for r in negatives)),
        "negatives_inverted": int(sum(r["inverted"] for r in negatives)),
    }
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
