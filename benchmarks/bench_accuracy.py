#!/usr/bin/env python
"""Accuracy of a model through the full ``segment`` pipeline on held-out simulated tomograms.

The cases are a fixed, listed table (seeds 7001-7006, none of them drawn by the training
recipe, which uses ``numpy.random.default_rng([20261125, i])``): the calibrated noise level,
half of it, a ±45° tilt range, voxel sizes away from the centre of the training range
(1.0 and 2.2 nm), and crowded clusters (the fraction of vesicles with a neighbour within
4 nm is measured and printed). Each tomogram goes through
``synapseg.pipeline.segment_tomogram`` (predict -> instances -> sphere fit -> filters) and
is scored with ``synapseg.evaluate.metrics.compute_metrics`` (match when the center
distance < 0.5 x the true radius).

    python benchmarks/bench_accuracy.py --model default --json acc.json
    python benchmarks/bench_accuracy.py --cases calibrated,tilt45 --model my_model/
"""

from __future__ import annotations

import argparse
import json
import platform
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

DEFAULT_SNR = 0.09  # synapseg.simulate.params.DEFAULT_SNR (calibrated on Pyto's real data)

# name -> SimulationParams overrides (everything else: SimulationParams defaults)
CASES: dict[str, dict] = {
    "calibrated": {"seed": 7001, "shape": (80, 224, 224), "voxel_size_nm": 1.68},
    "low_snr": {"seed": 7002, "shape": (80, 224, 224), "voxel_size_nm": 1.68,
                "snr": DEFAULT_SNR / 2},
    "tilt45": {"seed": 7003, "shape": (80, 224, 224), "voxel_size_nm": 1.68,
               "tilt_range_deg": 45.0},
    "voxel_1.0nm": {"seed": 7004, "shape": (128, 352, 352), "voxel_size_nm": 1.0},
    "voxel_2.2nm": {"seed": 7005, "shape": (60, 170, 170), "voxel_size_nm": 2.2},
    "crowded": {"seed": 7006, "shape": (80, 224, 224), "voxel_size_nm": 1.68,
                "crowding": 1.0, "vesicle_density_per_um3": 9000.0},
}  # fmt: skip


def neighbour_fraction(table, within_nm: float = 4.0) -> float:
    """Fraction of vesicles whose outer surface is within ``within_nm`` of another's."""
    if "min_gap_nm" in table.columns:
        return float((table["min_gap_nm"] < within_nm).mean())
    c = table[["center_z_nm", "center_y_nm", "center_x_nm"]].to_numpy()
    r = table["outer_radius_nm"].to_numpy()
    d = np.linalg.norm(c[:, None] - c[None], axis=2) - r[:, None] - r[None]
    np.fill_diagonal(d, np.inf)
    return float((d.min(axis=1) < within_nm).mean())


def run_case(name: str, overrides: dict, model: str, workdir: Path, device: str) -> dict:
    from synapseg.evaluate.metrics import compute_metrics
    from synapseg.io.tables import read_table_csv
    from synapseg.io.volume_writer import write_volume
    from synapseg.pipeline import SegmentOptions, segment_tomogram
    from synapseg.simulate import SimulationParams, simulate_tomogram

    params = SimulationParams(**overrides)
    t0 = time.perf_counter()
    sim = simulate_tomogram(params)
    t_sim = time.perf_counter() - t0
    folder = workdir / name
    folder.mkdir(parents=True, exist_ok=True)
    tomo = write_volume(folder / f"{name}.mrc", sim.tomogram, params.voxel_size_nm,
                        overwrite=True)  # fmt: skip
    options = SegmentOptions(
        model=model, device=device, formats=("csv",), tilt_range_deg=params.tilt_range_deg,
        overwrite=True,
    )  # fmt: skip
    t0 = time.perf_counter()
    segment_tomogram(tomo, folder / "out", options)
    t_seg = time.perf_counter() - t0
    pred = read_table_csv(folder / "out" / f"{name}_vesicles.csv")
    m = compute_metrics(sim.vesicles, pred, match_fraction=0.5)
    return {
        "case": name,
        "params": {k: (list(v) if isinstance(v, tuple) else v) for k, v in overrides.items()},
        "n_gt": int(m["n_gt"]),
        "n_pred": int(m["n_pred"]),
        "neighbour_within_4nm": round(neighbour_fraction(sim.vesicles), 3),
        "precision": m["precision"],
        "recall": m["recall"],
        "f1": m["f1"],
        "center_error_nm_median": m["center_error_nm"]["median"],
        "radius_error_nm_median_abs": m["radius_error_nm"]["median_abs"],
        "simulate_s": round(t_sim, 1),
        "segment_s": round(t_seg, 1),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default="default", help="model name or folder")
    parser.add_argument("--cases", default=",".join(CASES), help="comma-separated case names")
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--json", default=None, help="write the results here")
    parser.add_argument("--workdir", default=None, help="keep tomograms and outputs here")
    args = parser.parse_args(argv)
    names = [c for c in args.cases.split(",") if c]
    unknown = sorted(set(names) - set(CASES))
    if unknown:
        parser.error(f"unknown cases {unknown}; choose from {list(CASES)}")
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(args.workdir or tmp)
        for name in names:
            row = run_case(name, CASES[name], args.model, work, args.device)
            rows.append(row)
            print(json.dumps(row), file=sys.stderr)
    header = f"{'case':<14}{'n_gt':>6}{'n_pred':>7}{'nb<4nm':>8}{'P':>7}{'R':>7}{'F1':>7}"
    header += f"{'ctr_err':>9}{'rad_err':>9}{'seg_s':>7}"
    print(header)
    for r in rows:

        def fmt(v):
            return "   n/a" if v is None else f"{v:.3f}"

        print(
            f"{r['case']:<14}{r['n_gt']:>6}{r['n_pred']:>7}{r['neighbour_within_4nm']:>8.2f}"
            f"{r['precision']:>7.3f}{r['recall']:>7.3f}{r['f1']:>7.3f}"
            f"{fmt(r['center_error_nm_median']):>9}{fmt(r['radius_error_nm_median_abs']):>9}"
            f"{r['segment_s']:>7.1f}"
        )
    result = {
        "benchmark": "accuracy",
        "model": args.model,
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.machine()}, {__import__('os').cpu_count()} cores",
        "match": "center distance < 0.5 x true midline radius",
        "cases": rows,
        "mean_f1": float(np.mean([r["f1"] for r in rows])) if rows else None,
    }
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    sys.exit(main())
