#!/usr/bin/env python
"""Calibration of the vesicle ``confidence`` over *every* candidate of a domain-shift run.

``synapseg segment`` keeps candidates with confidence >= the cut-off in
``<name>_vesicles.csv`` and lists the others, with their confidence, under
``stages.vesicles.rejected`` in ``<name>_report.json``. This script pools both for each
tomogram of a ``benchmarks/bench_domain_shift.py run`` (its ``--out OUT/LABEL`` folder),
matches them to the ground truth (``synapseg.evaluate.matching``: center distance < 0.5 x the
true midline radius; a candidate is correct when matched) and reports the expected
calibration error (10 equal-width bins) per shift and pooled. Candidates rejected before the
confidence model (size limits, failed fits) carry no confidence and are not counted.

    python benchmarks/bench_calibration.py --data ~/.cache/synapseg-domain-shift \\
        --run /tmp/ds_out/after --json calibration.json
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pandas as pd

from synapseg.evaluate.calibration import expected_calibration_error, reliability_bins
from synapseg.evaluate.matching import match_vesicles
from synapseg.io.schema import make_table
from synapseg.io.tables import read_table_csv

PX = ["center_z_px", "center_y_px", "center_x_px"]


def candidates(run_folder: Path) -> pd.DataFrame | None:
    """Kept and rejected candidates of one segmented tomogram, with their confidence."""
    reports = sorted(run_folder.glob("*_report.json"))
    if not reports:
        return None
    report = json.loads(reports[0].read_text())
    vs = report["voxel_size_nm_zyx"]
    kept = read_table_csv(next(run_folder.glob("*_vesicles.csv")))
    rejected = pd.DataFrame(report["stages"]["vesicles"].get("rejected", []))
    parts = [kept[[*PX, "radius_nm", "confidence"]]]
    if len(rejected) and "confidence" in rejected:
        parts.append(rejected[[*PX, "radius_nm", "confidence"]])
    both = pd.concat(parts, ignore_index=True)
    both = both[np.isfinite(both["confidence"].to_numpy(float))].reset_index(drop=True)
    table = make_table(both[PX].to_numpy(float), both["radius_nm"].to_numpy(float), vs)
    table["confidence"] = both["confidence"].to_numpy(float)
    return table


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--data", type=Path, required=True, help="bench_domain_shift.py --data")
    ap.add_argument("--run", type=Path, required=True, help="its --out folder / the run label")
    ap.add_argument("--bins", type=int, default=10)
    ap.add_argument("--json", type=Path, default=None)
    args = ap.parse_args(argv)

    per_shift: dict[str, dict] = {}
    pooled_conf: list[np.ndarray] = []
    pooled_ok: list[np.ndarray] = []
    for shift_dir in sorted(p for p in args.run.iterdir() if p.is_dir()):
        conf, ok = [], []
        for tomo_dir in sorted(p for p in shift_dir.iterdir() if p.is_dir()):
            cand = candidates(tomo_dir)
            gt_csv = args.data / shift_dir.name / tomo_dir.name / "vesicles.csv"
            if cand is None or not gt_csv.exists():
                continue
            match = match_vesicles(read_table_csv(gt_csv), cand)
            _, correct = match.matched_masks()
            conf.append(cand["confidence"].to_numpy(float))
            ok.append(np.asarray(correct, bool))
        if not conf:
            continue
        c, o = np.concatenate(conf), np.concatenate(ok)
        pooled_conf.append(c)
        pooled_ok.append(o)
        per_shift[shift_dir.name] = {
            "n": int(len(c)),
            "n_correct": int(o.sum()),
            "ece": expected_calibration_error(c, o, args.bins),
        }
    c, o = np.concatenate(pooled_conf), np.concatenate(pooled_ok)
    result = {
        "run": str(args.run),
        "per_shift": per_shift,
        "pooled": {
            "n": int(len(c)),
            "n_correct": int(o.sum()),
            "ece": expected_calibration_error(c, o, args.bins),
            "reliability": reliability_bins(c, o, args.bins),
        },
    }
    print(f"{'shift':<18}{'n':>6}{'correct':>9}{'ECE':>8}")
    for name, r in per_shift.items():
        ece = "n/a" if r["ece"] is None else f"{r['ece']:.3f}"
        print(f"{name:<18}{r['n']:>6}{r['n_correct']:>9}{ece:>8}")
    p = result["pooled"]
    print(f"{'pooled':<18}{p['n']:>6}{p['n_correct']:>9}{p['ece']:>8.3f}")
    if args.json:
        args.json.write_text(json.dumps(result, indent=1))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
