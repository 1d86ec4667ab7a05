"""Accuracy of refining hand-placed vesicle points (issue 16, "fix the CLI loop").

For each simulated tomogram (``synapseg.simulate``, seeds given), every ground-truth vesicle
center is displaced in a random direction by a random 0..``--max-offset`` nm (a hand-placed
point, seeded), its radius is forgotten, and the point is refined by
:func:`synapseg.post.seeds.refine_points` (what ``synapseg export`` runs for rows without a
radius). The baseline is the previous behaviour: :func:`synapseg.post.spheres.refine_spheres`
started from the point with a 20 nm radius. Errors are against the exact ground truth
(bilayer-midline radius, center). The simulator is the family the default model was trained
on, but no model is involved here: the fit runs on the tomogram.

Usage::

    python benchmarks/bench_manual_refine.py --seeds 101,102 --json manual_refine.json
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import time

import numpy as np

PX = ["center_z_px", "center_y_px", "center_x_px"]


def errors(fits, gt, vs: float) -> tuple[np.ndarray, np.ndarray]:
    c = fits[PX].to_numpy(float)
    g = gt[PX].to_numpy(float)
    center = np.linalg.norm((c - g) * vs, axis=1)
    radius = np.abs(fits["radius_nm"].to_numpy(float) - gt["radius_nm"].to_numpy(float))
    return np.nan_to_num(radius, nan=np.inf), center


def summary(radius_err: np.ndarray, center_err: np.ndarray) -> dict:
    return {
        "n": int(len(radius_err)),
        "radius_err_nm_median": float(np.median(radius_err)),
        "radius_err_nm_p90": float(np.percentile(radius_err, 90)),
        "center_err_nm_median": float(np.median(center_err)),
        "center_err_nm_p90": float(np.percentile(center_err, 90)),
        "radius_err_gt_1nm_fraction": float(np.mean(radius_err > 1.0)),
    }


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", default="101,102", help="simulation seeds, comma-separated")
    ap.add_argument("--shape", default="64,256,256", help="z,y,x voxels")
    ap.add_argument("--voxel-size", type=float, default=1.68, help="nm")
    ap.add_argument("--max-offset", type=float, default=4.0, help="largest start offset, nm")
    ap.add_argument("--json", default="manual_refine.json", help="output JSON path")
    args = ap.parse_args(argv)

    from synapseg.post.profiles import estimate_background
    from synapseg.post.seeds import refine_points
    from synapseg.post.spheres import refine_spheres
    from synapseg.simulate import SimulationParams, simulate_tomogram

    shape = tuple(int(s) for s in args.shape.split(","))
    vs = args.voxel_size
    acc = {"new": ([], []), "baseline": ([], [])}
    t_new = t_base = 0.0
    per_seed = []
    for seed in (int(s) for s in args.seeds.split(",")):
        sim = simulate_tomogram(SimulationParams(shape=shape, voxel_size_nm=vs, seed=seed))
        gt = sim.vesicles
        rng = np.random.default_rng(1000 + seed)
        d = rng.normal(size=(len(gt), 3))
        d /= np.linalg.norm(d, axis=1, keepdims=True)
        offset = rng.uniform(0.0, args.max_offset, len(gt))
        start = gt[PX].to_numpy(float) + d * offset[:, None] / vs
        bg = estimate_background(sim.tomogram)
        t0 = time.perf_counter()
        new = refine_points(sim.tomogram, start, vs, background=bg)
        t_new += time.perf_counter() - t0
        t0 = time.perf_counter()
        base = refine_spheres(sim.tomogram, start, np.full(len(gt), 20.0), vs, background=bg)
        t_base += time.perf_counter() - t0
        for name, fits in (("new", new), ("baseline", base)):
            r, c = errors(fits, gt, vs)
            acc[name][0].append(r)
            acc[name][1].append(c)
        per_seed.append({"seed": seed, "n_vesicles": int(len(gt))})
    result = {
        "benchmark": "manual_refine",
        "date": time.strftime("%Y-%m-%d"),
        "machine": {"cpus": __import__("os").cpu_count(), "python": platform.python_version()},
        "args": vars(args),
        "tomograms": per_seed,
        "in_distribution": "simulated tomograms (synapseg.simulate defaults)",
        "seconds": {"new": round(t_new, 1), "baseline": round(t_base, 1)},
        "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    for name, (r, c) in acc.items():
        result[name] = summary(np.concatenate(r), np.concatenate(c))
    print(f"{'method':10s} {'n':>4s} {'r med':>7s} {'r p90':>7s} {'c med':>7s} {'c p90':>7s} "
          f"{'r>1nm':>6s} {'s':>6s}")  # fmt: skip
    for name in ("baseline", "new"):
        s = result[name]
        print(
            f"{name:10s} {s['n']:4d} {s['radius_err_nm_median']:7.2f} "
            f"{s['radius_err_nm_p90']:7.2f} {s['center_err_nm_median']:7.2f} "
            f"{s['center_err_nm_p90']:7.2f} {s['radius_err_gt_1nm_fraction']:6.2f} "
            f"{result['seconds'][name]:6.1f}"
        )
    with open(args.json, "w", encoding="utf-8") as fh:
        json.dump(result, fh, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
