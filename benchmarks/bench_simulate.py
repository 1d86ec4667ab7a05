"""Benchmark the simulator: speed of one tomogram, and the membrane-contrast sweep over SNR.

Speed: simulate a Z×Y×X tomogram (default 128×512×512 at 1.4 nm/px, ±60° in 2° steps)
and report seconds per stage, throughput (Mvoxel/s) and peak memory. Baseline, measured
in the same run: projection + reconstruction of a few xz slices with scikit-image's
``radon``/``iradon`` (the per-slice route), extrapolated to all Y slices.

Sweep: membrane and lumen contrast (Pyto's measure, background σ) at several SNR values
on a 64×256×256 tomogram at 1.68 nm/px, next to the real reference (0.51 σ / 0.16 σ).

    python benchmarks/bench_simulate.py --json bench_simulate.json
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import sys
import time

import numpy as np


def _peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024**2


def speed(
    shape: tuple[int, int, int],
    voxel_size_nm: float,
    baseline_slices: int,
    overrides: dict | None = None,
) -> dict:
    from skimage.transform import iradon, radon

    from synapseg.simulate import SimulationParams, simulate_tomogram

    params = SimulationParams(shape=shape, voxel_size_nm=voxel_size_nm, seed=0, **(overrides or {}))
    t0, c0 = time.perf_counter(), time.process_time()
    res = simulate_tomogram(params, keep_phantom=True)
    total = time.perf_counter() - t0
    cpu = time.process_time() - c0
    nvox = float(np.prod(shape))
    out = {
        "shape": list(shape),
        "voxel_size_nm": voxel_size_nm,
        "n_tilts": len(params.tilt_angles_deg),
        "n_vesicles": len(res.vesicles),
        "overrides": overrides or {},
        "total_s": total,
        "cpu_s": cpu,
        "load_average_1min": __import__("os").getloadavg()[0],
        **res.info["timings"],
        "mvoxel_per_s": nvox / total / 1e6,
        "peak_rss_gb": _peak_rss_gb(),
    }
    # Baseline: scikit-image radon + iradon per xz slice (project + reconstruct only).
    angles = params.tilt_angles_deg
    t0 = time.perf_counter()
    for y in np.linspace(0, shape[1] - 1, baseline_slices).astype(int):
        sino = radon(res.phantom[:, y, :], theta=angles, circle=False)
        iradon(sino, theta=angles, circle=False, filter_name="ramp")
    per_slice = (time.perf_counter() - t0) / baseline_slices
    ours = out["tilt_series_s"] + out["reconstruction_s"]
    out["baseline_skimage_project_reconstruct_s"] = per_slice * shape[1]
    out["speedup_vs_skimage"] = per_slice * shape[1] / ours
    return out


def sweep(snrs: list[float]) -> list[dict]:
    from synapseg.simulate import simulate_tomogram, vesicle_contrast

    rows = []
    for snr in snrs:
        res = simulate_tomogram(shape=(64, 256, 256), voxel_size_nm=1.68, seed=1, snr=snr or None)
        sph = res.vesicles[res.vesicles["elongation"] == 1.0]
        m = vesicle_contrast(res.tomogram, sph, 1.68, res.vesicle_labels, res.membrane_labels == 0)
        rows.append({"snr": snr, **{k: m[k] for k in ("membrane_sigma", "lumen_sigma")}})
    return rows


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--shape", type=int, nargs=3, default=(128, 512, 512), metavar=("Z", "Y", "X"))
    ap.add_argument("--voxel-size", type=float, default=1.4)
    ap.add_argument("--baseline-slices", type=int, default=4)
    ap.add_argument("--no-sweep", action="store_true", help="skip the SNR sweep")
    ap.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="NAME=JSON",
        help="a SimulationParams field for the speed run, e.g. --set n_gold=10",
    )
    ap.add_argument("--json", default="bench_simulate.json", help="where to write the results")
    args = ap.parse_args(argv)
    result = {
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": {
            "cpus": __import__("os").cpu_count(),
            "platform": platform.platform(),
            "python": sys.version.split()[0],
        },
        "speed": speed(
            tuple(args.shape),
            args.voxel_size,
            args.baseline_slices,
            {k: json.loads(v) for k, v in (item.split("=", 1) for item in args.set)},
        ),
    }
    s = result["speed"]
    print(
        f"{'shape':>16} {'tilts':>5} {'phantom s':>9} {'tilts s':>8} {'recon s':>8} "
        f"{'total s':>8} {'CPU s':>6} {'load':>5} {'Mvox/s':>7} "
        f"{'skimage s':>9} {'speed-up':>8} {'peak GB':>7}"
    )
    print(
        f"{'x'.join(map(str, s['shape'])):>16} {s['n_tilts']:>5} {s['phantom_s']:>9.1f} "
        f"{s['tilt_series_s']:>8.1f} {s['reconstruction_s']:>8.1f} {s['total_s']:>8.1f} "
        f"{s['cpu_s']:>6.1f} {s['load_average_1min']:>5.1f} {s['mvoxel_per_s']:>7.2f} "
        f"{s['baseline_skimage_project_reconstruct_s']:>9.0f} "
        f"{s['speedup_vs_skimage']:>8.0f} {s['peak_rss_gb']:>7.2f}"
    )
    if not args.no_sweep:
        result["sweep"] = sweep([0.03, 0.05, 0.075, 0.2, 0.5, 1.0, 0.0])
        print(f"\n{'snr':>6} {'membrane σ':>10} {'lumen σ':>8}   (real: 0.51 / 0.16)")
        for row in result["sweep"]:
            label = f"{row['snr']:.3f}" if row["snr"] else "none"
            print(f"{label:>6} {row['membrane_sigma']:>10.2f} {row['lumen_sigma']:>8.2f}")
    with open(args.json, "w", encoding="utf-8") as fh:
        json.dump(result, fh, indent=2)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
