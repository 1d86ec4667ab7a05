"""Benchmark: post-processing (probability map + tomogram -> vesicle table) speed and accuracy.

Builds a synthetic volume (default 261 x 1024 x 1024 at 1.68 nm/px) holding ``--n-vesicles``
non-overlapping bilayer vesicles (midline radius 14-24 nm) in Gaussian noise, with the membrane
``--contrast`` noise σ darker than the background per voxel, and a uint8 probability map of
slightly blurred filled balls (what a network gives). Times :func:`find_vesicles` per stage and
compares with a baseline measured in the same run: ``scipy.ndimage.label`` + per-component
center of mass (no splitting, no fitting: the classical threshold-and-centroid approach).
Prints a table and writes JSON.

    python benchmarks/bench_postprocess.py --help
    python benchmarks/bench_postprocess.py --shape 261 1024 1024 --n-vesicles 1000 --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import time

import numpy as np
from scipy import ndimage
from scipy.spatial import cKDTree

from synapseg.post.vesicles import PostParams, find_vesicles


def place_vesicles(shape, n, voxel_nm, rng, margin_px=4):
    """Random non-overlapping vesicle centers (px) and midline radii (nm)."""
    shape = np.asarray(shape, float)
    centers, radii = [], []
    tree_pts = np.zeros((0, 3))
    tries = 0
    while len(centers) < n and tries < 200 * n:
        tries += 1
        r = rng.uniform(14.0, 24.0)
        r_px = (r + 2.25) / voxel_nm
        c = rng.uniform(r_px + margin_px, shape - r_px - margin_px)
        if len(tree_pts):
            d = np.linalg.norm(tree_pts - c, axis=1) * voxel_nm
            if np.any(d < np.asarray(radii) + r + 4.5 + 1.0):
                continue
        centers.append(c)
        radii.append(r)
        tree_pts = np.asarray(centers)
    return np.asarray(centers), np.asarray(radii)


def paint(tomo, prob, centers, radii_nm, voxel_nm, contrast, thickness_nm=4.5):
    """Paint bilayer shells into ``tomo`` and blurred filled balls (uint8) into ``prob``."""
    s = thickness_nm / 2.355 / voxel_nm
    for c, r_nm in zip(centers, radii_nm):
        r = r_nm / voxel_nm
        ro = (r_nm + thickness_nm / 2) / voxel_nm
        h = int(np.ceil(ro + 4))
        lo = np.maximum(np.floor(c).astype(int) - h, 0)
        hi = np.minimum(np.floor(c).astype(int) + h + 1, tomo.shape)
        zz, yy, xx = np.ogrid[lo[0] : hi[0], lo[1] : hi[1], lo[2] : hi[2]]
        d = np.sqrt((zz - c[0]) ** 2 + (yy - c[1]) ** 2 + (xx - c[2]) ** 2)
        sl = (slice(lo[0], hi[0]), slice(lo[1], hi[1]), slice(lo[2], hi[2]))
        tomo[sl] -= (1.25 * contrast * np.exp(-0.5 * ((d - r) / s) ** 2)).astype(np.float32)
        p = 255.0 / (1.0 + np.exp((d - ro) / 1.2))
        np.maximum(prob[sl], p.astype(np.uint8), out=prob[sl])


def baseline(prob, threshold=0.5):
    labels, n = ndimage.label(prob >= threshold * 255)
    return np.asarray(ndimage.center_of_mass(labels > 0, labels, np.arange(1, n + 1)))


def _recall(found, centers, tol_px=2.0):
    if len(found) == 0:
        return 0.0
    dist, idx = cKDTree(found).query(centers)
    return len(set(idx[dist < tol_px])) / len(centers)


def sim_accuracy(n_sims: int, shape=(64, 192, 192), voxel_nm=1.68) -> dict:
    """Refinement accuracy on the simulator (default noise, ±60° about y) from centers perturbed
    by 2-3 voxels and radii by ±2 voxels; wedge-weighted (default floor 0.3, and floor 0) vs
    unweighted directions."""
    from synapseg.post.spheres import SphereParams, refine_spheres
    from synapseg.simulate import SimulationParams, simulate_tomogram

    cols = ["center_z_px", "center_y_px", "center_x_px"]
    out = {}
    variants = {
        "wedge": SphereParams(tilt_range_deg=60.0),
        "wedge_f0": SphereParams(tilt_range_deg=60.0, wedge_floor=0.0),
        "no_wedge": SphereParams(tilt_range_deg=None),
    }
    errs = {name: ([], []) for name in [*variants, "start"]}
    for seed in range(n_sims):
        sim = simulate_tomogram(SimulationParams(shape=shape, voxel_size_nm=voxel_nm, seed=seed))
        gt = sim.vesicles
        c, r = gt[cols].to_numpy(), gt["radius_nm"].to_numpy()
        rng = np.random.default_rng(1000 + seed)
        v = rng.standard_normal(c.shape)
        v /= np.linalg.norm(v, axis=1, keepdims=True)
        start = c + v * rng.uniform(2.0, 3.0, (len(c), 1))
        r0 = r + rng.uniform(-2.0, 2.0, len(c)) * voxel_nm
        errs["start"][0].append(np.linalg.norm(start - c, axis=1))
        errs["start"][1].append(np.abs(r0 - r) / voxel_nm)
        for name, params in variants.items():
            fit = refine_spheres(sim.tomogram, start, r0, voxel_nm, params=params)
            errs[name][0].append(np.linalg.norm(fit[cols].to_numpy() - c, axis=1))
            errs[name][1].append(np.abs(fit["radius_nm"].to_numpy() - r) / voxel_nm)
    for name, (ce, re) in errs.items():
        ce, re = np.concatenate(ce), np.concatenate(re)
        out[name] = {
            "n": int(len(ce)),
            "median_center_error_px": float(np.median(ce)),
            "p90_center_error_px": float(np.percentile(ce, 90)),
            "median_radius_error_px": float(np.median(re)),
            "p90_radius_error_px": float(np.percentile(re, 90)),
        }
    return out


def main(argv=None):
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument(
        "--shape", type=int, nargs=3, default=[261, 1024, 1024], metavar=("Z", "Y", "X")
    )
    ap.add_argument("--n-vesicles", type=int, default=1000)
    ap.add_argument("--voxel-size", type=float, default=1.68, help="nm")
    ap.add_argument("--contrast", type=float, default=0.5, help="membrane contrast, noise σ")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--repeat", type=int, default=1, help="timed runs (best is reported)")
    ap.add_argument("--json", default=None, help="write results to this JSON file")
    ap.add_argument(
        "--sim",
        type=int,
        default=0,
        metavar="N",
        help="instead: refinement accuracy on N simulated 64x192x192 tomograms",
    )
    args = ap.parse_args(argv)
    if args.sim:
        acc = sim_accuracy(args.sim, voxel_nm=args.voxel_size)
        head = ("start/fit", "n", "center med", "p90", "radius med", "p90")
        print("{:<10} {:>5} {:>10} {:>6} {:>10} {:>6}".format(*head))
        for name, a in acc.items():
            print(
                f"{name:<10} {a['n']:>5} {a['median_center_error_px']:>10.3f} "
                f"{a['p90_center_error_px']:>6.2f} {a['median_radius_error_px']:>10.3f} "
                f"{a['p90_radius_error_px']:>6.2f}"
            )
        if args.json:
            with open(args.json, "w", encoding="utf-8") as fh:
                json.dump(acc, fh, indent=2)
        return acc

    rng = np.random.default_rng(args.seed)
    shape = tuple(args.shape)
    t0 = time.perf_counter()
    tomo = rng.standard_normal(shape, dtype=np.float32)
    prob = np.zeros(shape, np.uint8)
    centers, radii = place_vesicles(shape, args.n_vesicles, args.voxel_size, rng)
    paint(tomo, prob, centers, radii, args.voxel_size, args.contrast)
    t_make = time.perf_counter() - t0

    best = None
    for _ in range(args.repeat):
        t0, c0 = time.perf_counter(), time.process_time()
        table, rejected, info = find_vesicles(tomo, prob, args.voxel_size, PostParams())
        wall, cpu = time.perf_counter() - t0, time.process_time() - c0
        if best is None or wall < best[0]:
            best = (wall, cpu, table, info)
    wall, cpu, table, info = best
    rss_post = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    t0 = time.perf_counter()
    base_centers = baseline(prob)
    t_base = time.perf_counter() - t0

    got = table[["center_z_px", "center_y_px", "center_x_px"]].to_numpy()
    dist, idx = cKDTree(got).query(centers) if len(got) else (np.full(len(centers), np.inf), None)
    hit = dist < 2.0
    radius_err = (
        np.abs(table["radius_nm"].to_numpy()[idx[hit]] - radii[hit]) / args.voxel_size
        if hit.any()
        else np.array([np.nan])
    )
    mvox = float(np.prod(shape)) / 1e6
    result = {
        "date": time.strftime("%Y-%m-%d %H:%M:%S", time.gmtime()),
        "machine": {
            "cpus": os.cpu_count(),
            "affinity": len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else None,
            "platform": platform.platform(),
        },
        "shape": list(shape),
        "voxel_size_nm": args.voxel_size,
        "n_vesicles": int(len(centers)),
        "make_s": t_make,
        "postprocess_s": wall,
        "postprocess_cpu_s": cpu,
        "load_average_1min": os.getloadavg()[0],
        "stages_s": info["timings_s"],
        "mvoxel_per_s": mvox / wall,
        "baseline_label_centroid_s": t_base,
        "ratio_vs_baseline": wall / t_base,
        "baseline_recall": _recall(base_centers, centers),
        "found": int(len(table)),
        "recall": float(hit.mean()),
        "median_center_error_px": float(np.median(dist[hit])) if hit.any() else None,
        "median_radius_error_px": float(np.median(radius_err)),
        "peak_rss_mib_postprocess": rss_post,
        "peak_rss_mib_with_baseline": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
    }
    rows = [
        ("volume", f"{shape} ({mvox:.0f} Mvoxel), {len(centers)} vesicles"),
        ("post-processing", f"{wall:.2f} s ({result['mvoxel_per_s']:.1f} Mvoxel/s)"),
        ("  CPU time (all threads)", f"{cpu:.2f} s"),
        *[(f"  {k}", f"{v:.2f} s") for k, v in info["timings_s"].items() if k != "total"],
        ("baseline label+centroid", f"{t_base:.2f} s (ratio {result['ratio_vs_baseline']:.2f}x)"),
        ("baseline recall", f"{result['baseline_recall']:.3f}"),
        ("found / recall", f"{len(table)} / {result['recall']:.3f}"),
        ("median center error", f"{result['median_center_error_px']} px"),
        ("median radius error", f"{result['median_radius_error_px']:.3f} px"),
        ("peak RSS (data + post-processing)", f"{rss_post:.0f} MiB"),
        ("peak RSS (+ baseline)", f"{result['peak_rss_mib_with_baseline']:.0f} MiB"),
        ("load average (1 min)", f"{result['load_average_1min']:.1f}"),
    ]
    width = max(len(r[0]) for r in rows)
    for k, v in rows:
        print(f"{k:<{width}}  {v}")
    if args.json:
        with open(args.json, "w", encoding="utf-8") as fh:
            json.dump(result, fh, indent=2)
    return result


if __name__ == "__main__":
    main()
