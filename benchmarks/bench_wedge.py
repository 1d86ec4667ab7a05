"""Missing-wedge estimation against the simulator's truth: tilt range, tilt axis, dual axis.

For every tilt range, reconstruction condition and seed, one tomogram is simulated with its
tilt axis along y (``synapseg.simulate``); the same volume with y and x swapped (a 90°
rotation about z, exact) is the tilt-axis-x case; a dual-axis tomogram (the simulator's
``dual_axis=True``: a second series about x, reconstructed and averaged with the first) is
the dual case. The true range is the last tilt angle of the series (e.g. 34° for ±35° in 2°
steps). The simulator is the one the estimator was developed on: these numbers are
in-distribution.

    python benchmarks/bench_wedge.py --out wedge.json
"""

from __future__ import annotations

import argparse
import json
import platform
import time
import tracemalloc

import numpy as np

from synapseg.simulate import SimulationParams, simulate_tomogram
from synapseg.specimen.wedge import estimate_wedge

CONDITIONS = {
    "wbp": {},
    "sirt": {"recon_filter": "sirt"},
    "low-dose": {"snr": 0.03, "defocus_um": 6.0},
    "denoised": {"denoise_sigma_nm": 2.0},
    "wedge-fill": {"wedge_fill": True},
    "lamella+gold": {
        "lamella_thickness_nm": 70.0,
        "n_gold": 4,
        "n_microtubules": 1,
        "ribosome_density_per_um3": 3000.0,
    },
}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument(
        "--ranges", type=float, nargs="+", default=[35, 40, 45, 50, 55, 60, 65, 70],
        help="Tilt ranges ± degrees (default 35..70 in 5° steps).",
    )  # fmt: skip
    p.add_argument("--tilt-step", type=float, default=2.0, help="Tilt step in degrees.")
    p.add_argument(
        "--conditions", nargs="+", default=list(CONDITIONS), choices=list(CONDITIONS),
        help="Reconstruction/imaging conditions.",
    )  # fmt: skip
    p.add_argument("--shape", type=int, nargs=3, default=[64, 128, 128], help="z y x voxels.")
    p.add_argument("--voxel-size", type=float, default=1.68, help="Voxel size in nm.")
    p.add_argument("--seeds", type=int, nargs="+", default=[0], help="Simulation seeds.")
    p.add_argument("--no-dual", action="store_true", help="Skip the dual-axis cases.")
    p.add_argument("--tolerance", type=float, default=5.0, help="Pass if |error| <= this (deg).")
    p.add_argument(
        "--fit-ranges", type=float, nargs="*", default=[],
        help="Also run the sphere fit + QC (truth-map probabilities) on these ranges, with the\n"
        "assumed ±60°/y, the estimated and the true wedge, and compare recall and errors.",
    )  # fmt: skip
    p.add_argument("--fit-shape", type=int, nargs=3, default=[64, 192, 192], help="z y x.")
    p.add_argument("--out", default="bench_wedge.json", help="JSON output path.")
    return p.parse_args(argv)


def _estimate(volume: np.ndarray, voxel_size_nm: float) -> tuple[object, float, float]:
    tracemalloc.start()
    t0 = time.perf_counter()
    est = estimate_wedge(volume, voxel_size_nm)
    seconds = time.perf_counter() - t0
    peak = tracemalloc.get_traced_memory()[1] / 2**20
    tracemalloc.stop()
    return est, seconds, peak


def run(args: argparse.Namespace) -> list[dict]:
    rows = []
    for seed in args.seeds:
        for cond in args.conditions:
            for tilt_range in args.ranges:
                params = SimulationParams(
                    shape=tuple(args.shape),
                    voxel_size_nm=args.voxel_size,
                    seed=seed,
                    tilt_range_deg=tilt_range,
                    tilt_step_deg=args.tilt_step,
                    **CONDITIONS[cond],
                )
                truth = float(params.tilt_angles_deg[-1])
                single = simulate_tomogram(params, keep_phantom=False).tomogram
                cases = [("y", False, single), ("x", False, np.swapaxes(single, 1, 2))]
                if not args.no_dual:
                    dual = simulate_tomogram(params.replace(dual_axis=True), keep_phantom=False)
                    cases.append(("y", True, dual.tomogram))
                for axis, is_dual, vol in cases:
                    est, seconds, peak = _estimate(vol, args.voxel_size)
                    err = est.tilt_range_deg - truth
                    ok = (
                        abs(err) <= args.tolerance
                        and est.dual_axis == is_dual
                        and (is_dual or est.tilt_axis == axis)
                    )
                    rows.append(
                        {
                            "seed": seed,
                            "condition": cond,
                            "nominal_range_deg": tilt_range,
                            "true_range_deg": truth,
                            "true_axis": "dual" if is_dual else axis,
                            "est_range_deg": round(est.tilt_range_deg, 2),
                            "est_axis": est.wedge_axis,
                            "error_deg": round(err, 2),
                            "quality": round(est.quality, 3),
                            "seconds": round(seconds, 3),
                            "peak_mib": round(peak, 1),
                            "pass": bool(ok),
                        }
                    )
    return rows


def _swap_yx(table):
    out = table.copy()
    for unit in ("px", "nm"):
        out[f"center_y_{unit}"], out[f"center_x_{unit}"] = (
            table[f"center_x_{unit}"],
            table[f"center_y_{unit}"],
        )
    return out


def run_fit(args: argparse.Namespace) -> list[dict]:
    """Sphere fit + QC with the assumed, estimated and true wedge (probabilities: the ground
    truth balls, blurred; so only the post-processing differs)."""
    from scipy import ndimage

    from synapseg.evaluate.metrics import compute_metrics
    from synapseg.post.vesicles import PostParams, find_vesicles

    rows = []
    for tilt_range in args.fit_ranges:
        params = SimulationParams(
            shape=tuple(args.fit_shape),
            voxel_size_nm=args.voxel_size,
            seed=args.seeds[0],
            tilt_range_deg=tilt_range,
            tilt_step_deg=args.tilt_step,
        )
        sim = simulate_tomogram(params, keep_phantom=False)
        prob = np.clip(ndimage.gaussian_filter((sim.vesicle_labels > 0) * 1.0, 1.2) * 1.1, 0, 1)
        truth = float(params.tilt_angles_deg[-1])
        for axis in ("y", "x"):
            tomo, pmap, gt = sim.tomogram, prob, sim.vesicles
            if axis == "x":
                tomo, pmap, gt = np.swapaxes(tomo, 1, 2), np.swapaxes(pmap, 1, 2), _swap_yx(gt)
            est = estimate_wedge(tomo, args.voxel_size)
            for name, (rng, ax) in {
                "assumed ±60/y": (60.0, "y"),
                "estimated": (est.tilt_range_deg, est.wedge_axis),
                "true": (truth, axis),
            }.items():
                table, rejected, _ = find_vesicles(
                    tomo, pmap, args.voxel_size, PostParams(tilt_range_deg=rng, tilt_axis=ax)
                )
                m = compute_metrics(gt, table)
                rows.append(
                    {
                        "true_range_deg": truth,
                        "true_axis": axis,
                        "wedge": name,
                        "range_deg": round(rng, 1),
                        "axis": ax,
                        "n_gt": m["n_gt"],
                        "recall": round(m["recall"], 3),
                        "precision": round(m["precision"], 3),
                        "center_err_median_nm": round(m["center_error_nm"]["median"], 3),
                        "center_err_z_nm": round(m["center_error_axis_nm"]["z"], 3),
                        "radius_err_median_nm": round(m["radius_error_nm"]["median_abs"], 3),
                        "n_rejected": int(len(rejected)),
                    }
                )
    return rows


def summarise(rows: list[dict]) -> dict:
    err = np.array([r["error_deg"] for r in rows])
    return {
        "n_cases": len(rows),
        "n_pass": int(sum(r["pass"] for r in rows)),
        "axis_correct": int(sum(r["est_axis"] == r["true_axis"] for r in rows)),
        "max_abs_error_deg": float(np.abs(err).max()),
        "mean_error_deg": float(err.mean()),
        "median_abs_error_deg": float(np.median(np.abs(err))),
        "min_quality": float(min(r["quality"] for r in rows)),
        "median_seconds": float(np.median([r["seconds"] for r in rows])),
        "max_peak_mib": float(max(r["peak_mib"] for r in rows)),
    }


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    t0 = time.perf_counter()
    rows = run(args)
    summary = summarise(rows)
    header = f"{'cond':9s} {'±nom':>5s} {'true':>5s} {'axis':>5s} | {'est':>6s} {'axis':>5s} "
    header += f"{'err':>6s} {'qual':>5s} {'s':>5s}  ok"
    print(header)
    print("-" * len(header))
    for r in rows:
        print(
            f"{r['condition']:9s} {r['nominal_range_deg']:5.0f} {r['true_range_deg']:5.0f} "
            f"{r['true_axis']:>5s} | {r['est_range_deg']:6.1f} {r['est_axis']:>5s} "
            f"{r['error_deg']:+6.1f} {r['quality']:5.2f} {r['seconds']:5.2f}  "
            f"{'yes' if r['pass'] else 'NO'}"
        )
    print(
        f"\n{summary['n_pass']}/{summary['n_cases']} within ±{args.tolerance:g}° with the axis "
        f"right; axis right {summary['axis_correct']}/{summary['n_cases']}; "
        f"max |error| {summary['max_abs_error_deg']:.1f}°, mean error "
        f"{summary['mean_error_deg']:+.2f}°, median |error| "
        f"{summary['median_abs_error_deg']:.2f}°; "
        f"min quality {summary['min_quality']:.2f}; estimate {summary['median_seconds']:.2f} s "
        f"(median), peak {summary['max_peak_mib']:.0f} MiB"
    )
    fit_rows = run_fit(args) if args.fit_ranges else []
    if fit_rows:
        print(f"\n{'true':>5s} {'axis':>4s} {'wedge':14s} {'used':>9s} {'n_gt':>4s} {'recall':>6s} "
              f"{'prec':>5s} {'ctr nm':>6s} {'z nm':>5s} {'rad nm':>6s} {'rej':>4s}")  # fmt: skip
        for r in fit_rows:
            print(
                f"{r['true_range_deg']:5.0f} {r['true_axis']:>4s} {r['wedge']:14s} "
                f"{r['range_deg']:5.1f}/{r['axis']:<4s}"
                f"{r['n_gt']:4d} {r['recall']:6.3f} {r['precision']:5.3f} "
                f"{r['center_err_median_nm']:6.3f} {r['center_err_z_nm']:5.3f} "
                f"{r['radius_err_median_nm']:6.3f} "
                f"{r['n_rejected']:4d}"
            )
    out = {
        "benchmark": "wedge",
        "fit": fit_rows,
        "date": time.strftime("%Y-%m-%d"),
        "machine": {"platform": platform.platform(), "python": platform.python_version()},
        "args": vars(args),
        "summary": summary,
        "rows": rows,
        "total_seconds": round(time.perf_counter() - t0, 1),
    }
    with open(args.out, "w") as fh:
        json.dump(out, fh, indent=2)
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
