#!/usr/bin/env python
"""Synapse context: AZ identification, az_distance_nm, pools, membrane classes; stage time.

``--accuracy``: ``--n`` held-out simulated synapses with a cleft (seeds ``[20261402, i]``)
and ``--n-without`` without one (plasma membrane only, or none), ``--shape`` at the
simulator's default voxel size (1.68 nm). For each, :func:`synapseg.context.analyse_context`
runs on the ground-truth vesicle table and

* ``truth``: a perfect membrane map (255 on the simulator's membrane classes 1, 3, 4);
* ``degraded``: that map minus the membranes whose normal lies within 30° of z (the
  missing wedge of ±60°), minus 15 % in patches, plus false specks, blurred (σ 1 voxel):
  a stand-in for an imperfect network;
* ``predicted`` (when the default membrane model (``sim-membrane-v1``) is installed, or
  ``--membrane-model``): the ``membrane_net`` stage's map of the noisy simulated tomogram,
  cleaned as the ``context`` stage cleans it (``synapseg.context.membrane_mask`` with the
  model card's parameters; ``--no-membrane-segmentation``: the raw map, as before);
  ``predicted_raw`` is the raw map as well, for comparison.

With ``--predicted-vesicles`` the vesicles also come from ``synapseg.segment`` (the
default vesicle model) on the noisy tomogram, matched to the truth (Hungarian,
``synapseg.evaluate.matching``), so their center/radius errors are included.

Scores: AZ found where there is one / claimed where there is none, ``az_distance_nm``
median absolute error for vesicles within 100 nm of the AZ, pool accuracy (docked < 5 nm,
proximal ≤ 45 nm), Dice of the membrane classes (presynaptic, organelle, postsynaptic).
These synapses come from the simulator family everything here was developed on:
the numbers are in-distribution.

``--timing``: a synthetic membrane map of ``--timing-shape`` (default the reference size
261×1024×1024) at 1.469 nm (a tilted plasma membrane, its partner 24 nm across, a
mitochondrion-like double shell, 600 vesicles in a table) through the ``context`` stage,
with the runner's file writes; the baseline, timed in the same run, is one threshold pass
over the map (``prob >= 128``). Peak memory (ru_maxrss) is reported.

    python benchmarks/bench_context.py --accuracy --n 8 --n-without 4 --json context.json
    python benchmarks/bench_context.py --accuracy --predicted-vesicles --n 6 --n-without 0
    python benchmarks/bench_context.py --timing
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import sys
import tempfile
import time

import numpy as np

from _machine import cpu_s, machine

SEED = 20261402


def _dice(a: np.ndarray, b: np.ndarray) -> float | None:
    s = float(a.sum() + b.sum())
    return None if s == 0 else 2 * float((a & b).sum()) / s


def score(ctx, truth) -> dict:
    from synapseg.context import assign_pools
    from synapseg.simulate.context import active_zone_truth

    t = active_zone_truth(truth.vesicles, truth.info)
    has = bool(t["az_distance_nm"].notna().any())
    out = {"az_in_truth": has, "az_found": ctx.az is not None, "n_vesicles": len(t)}
    if has and ctx.az is not None:
        g = t["az_distance_nm"].to_numpy()
        p = ctx.vesicles["az_distance_nm"].to_numpy()
        near = g <= 100
        err = np.abs(p - g)[near]
        out["n_within_100nm"] = int(near.sum())
        out["az_abs_err_median_nm"] = float(np.median(err)) if len(err) else None
        out["az_abs_err_p90_nm"] = float(np.percentile(err, 90)) if len(err) else None
        out["pool_accuracy"] = float(np.mean(assign_pools(g) == ctx.vesicles["pool"].to_numpy()))
        out["n_pool"] = len(g)
    labels = truth.membrane_labels
    out["dice"] = {
        str(c): _dice(labels == c, ctx.membranes == c) for c in (1, 3, 4) if (labels == c).any()
    }
    out.update(seconds=ctx.facts["timings_s"])
    return out


def degrade(labels: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """A membrane map as a ±60° tomogram and an imperfect network would give it: the
    truth's membranes minus those whose normal lies within 30° of z (the missing wedge),
    minus 15 % in patches, plus false specks, blurred (σ 1 voxel) to soft values."""
    from scipy import ndimage

    m = np.isin(labels, [1, 3, 4]).astype(np.float32)
    g = np.gradient(ndimage.gaussian_filter(m, 1.5))
    norm = np.sqrt(g[0] ** 2 + g[1] ** 2 + g[2] ** 2) + 1e-9
    keep = m > 0
    keep &= np.abs(g[0]) / norm < np.cos(np.radians(30))
    patches = ndimage.gaussian_filter(rng.normal(size=m.shape).astype(np.float32), 4)
    keep &= patches > np.quantile(patches, 0.15)
    specks = ndimage.binary_dilation(rng.random(m.shape) < 2e-4, iterations=1)
    soft = ndimage.gaussian_filter((keep | specks).astype(np.float32), 1.0) * 1.6
    return np.round(np.clip(soft, 0, 1) * 255).astype(np.uint8)


def analyse(membranes: np.ndarray, table, vs, segmentation: dict | None = None):
    """``analyse_context`` on a map, cleaned first as the ``context`` stage does when
    ``segmentation`` (its parameters) is given and enabled."""
    from synapseg.context import analyse_context
    from synapseg.context.membrane_mask import clean_membrane_map

    if segmentation is None or not segmentation["enabled"]:
        return analyse_context(membranes, table, vs)
    cleaned, _ = clean_membrane_map(membranes, vs, segmentation)
    return analyse_context(cleaned, table, vs, level=int(round(segmentation["low"] * 255)))


def predicted_vesicles(
    sim,
    prob: np.ndarray,
    bad: np.ndarray,
    pred: np.ndarray | None = None,
    table=None,
    segmentation: dict | None = None,
) -> dict:
    """az_distance_nm and pools from the vesicles ``segment`` finds (default model) with the
    perfect, the degraded and (when given) the predicted membrane maps, scored on the
    matched vesicles. ``table``: the vesicles already found (else ``segment`` runs)."""
    import synapseg
    from synapseg.evaluate.context import context_metrics
    from synapseg.evaluate.matching import match_vesicles
    from synapseg.simulate.context import active_zone_truth

    vs = sim.voxel_size_nm
    truth = active_zone_truth(sim.vesicles, sim.info)
    if table is None:
        table = synapseg.segment(sim.tomogram, voxel_size_nm=vs, outputs=["vesicles"]).vesicles
    out = {"n_found": len(table), "n_truth": len(sim.vesicles)}
    maps = [("truth", prob), ("degraded", bad)] + (
        [("predicted", pred)] if pred is not None else []
    )
    for name, membranes in maps:
        ctx = analyse(membranes, table, vs, segmentation if name == "predicted" else None)
        match = match_vesicles(sim.vesicles, ctx.vesicles)
        m = context_metrics(truth, ctx.vesicles, match.gt_index, match.pred_index)
        out[name] = {"n_matched": int(match.tp), "az_found": ctx.az is not None, **m}
    return out


def accuracy(args) -> dict:
    from synapseg.context import analyse_context
    from synapseg.context.membrane_mask import card_segmentation_params
    from synapseg.context.membrane_net import default_membrane_model
    from synapseg.simulate import simulate_tomogram

    model = args.membrane_model or default_membrane_model()
    segmentation = None
    if model is not None:
        segmentation = card_segmentation_params(model)
        segmentation["enabled"] = segmentation["enabled"] and not args.no_membrane_segmentation
    cases = [(i, {}) for i in range(args.n)]
    cases += [
        (args.n + j, {"cleft": False} if j % 2 == 0 else {"plasma_membrane": False})
        for j in range(args.n_without)
    ]
    rows = []
    for i, overrides in cases:
        seed = int(np.random.SeedSequence([SEED, i]).generate_state(1)[0])
        t0 = time.perf_counter()
        sim = simulate_tomogram(shape=tuple(args.shape), seed=seed, **overrides)
        vs = sim.voxel_size_nm
        prob = np.where(np.isin(sim.membrane_labels, [1, 3, 4]), 255, 0).astype(np.uint8)
        row = {"case": i, "seed": seed, **{k: v for k, v in overrides.items()}}
        row["truth"] = score(analyse_context(prob, sim.vesicles, vs), sim)
        bad = degrade(sim.membrane_labels, np.random.default_rng(seed))
        row["degraded"] = score(analyse_context(bad, sim.vesicles, vs), sim)
        pred = table = None
        if model is not None:
            import synapseg

            seg = synapseg.segment(
                sim.tomogram,
                voxel_size_nm=vs,
                outputs=["membrane_probabilities", "vesicles"],
                membrane_model=str(model),
            )
            pred, table = np.asarray(seg["membrane_probabilities"]), seg.vesicles
            row["predicted"] = score(analyse(pred, sim.vesicles, vs, segmentation), sim)
            row["predicted_raw"] = score(analyse_context(pred, sim.vesicles, vs), sim)
        if args.predicted_vesicles:
            row["predicted_vesicles"] = predicted_vesicles(
                sim, prob, bad, pred, table, segmentation
            )
        row["seconds_total"] = time.perf_counter() - t0
        rows.append(row)
        print(json.dumps(row), flush=True)
    summary = {}
    for kind in ("truth", "degraded", "predicted", "predicted_raw"):
        got = [r[kind] for r in rows if kind in r]
        if not got:
            continue
        with_az = [g for g in got if g["az_in_truth"]]
        without = [g for g in got if not g["az_in_truth"]]
        errs = [
            g["az_abs_err_median_nm"] for g in with_az if g.get("az_abs_err_median_nm") is not None
        ]
        pools = [(g["pool_accuracy"], g["n_pool"]) for g in with_az if "pool_accuracy" in g]
        summary[kind] = {
            "az_found": f"{sum(g['az_found'] for g in with_az)} / {len(with_az)}",
            "az_claimed_without": f"{sum(g['az_found'] for g in without)} / {len(without)}",
            "az_abs_err_median_of_medians_nm": float(np.median(errs)) if errs else None,
            "az_abs_err_worst_median_nm": float(max(errs)) if errs else None,
            "pool_accuracy_pooled": (
                sum(a * n for a, n in pools) / sum(n for _, n in pools) if pools else None
            ),
            "dice_median": {
                c: float(np.median([g["dice"][c] for g in got if g["dice"].get(c) is not None]))
                for c in ("1", "3", "4")
                if any(g["dice"].get(c) is not None for g in got)
            },
        }
    pv = [r["predicted_vesicles"] for r in rows if "predicted_vesicles" in r]
    for name in ("truth", "degraded", "predicted"):
        got = [p[name] for p in pv if name in p and p[name].get("az_distance", {}).get("n")]
        if got:
            summary[f"predicted_vesicles_{name}_membranes"] = {
                "az_abs_err_median_of_medians_nm": float(
                    np.median([g["az_distance"]["median_abs_error_nm"] for g in got])
                ),
                "az_abs_err_worst_median_nm": float(
                    max(g["az_distance"]["median_abs_error_nm"] for g in got)
                ),
                "pool_accuracy_pooled": sum(g["pool"]["accuracy"] * g["pool"]["n"] for g in got)
                / sum(g["pool"]["n"] for g in got),
                "n_matched": sum(g["n_matched"] for g in got),
            }
    return {
        "membrane_model": None if model is None else str(model),
        "membrane_segmentation": segmentation,
        "cases": rows,
        "summary": summary,
    }


def synthetic_map(shape, vs, n_vesicles=600, seed=0):
    """A membrane map and vesicle table of a reference-size synapse (no simulation)."""
    from synapseg.io.schema import make_table

    rng = np.random.default_rng(seed)
    ext = np.array(shape) * vs
    n = np.array([0.05, np.sin(0.3), np.cos(0.3)])
    n /= np.linalg.norm(n)
    p0 = np.array([ext[0] / 2, ext[1] / 2, ext[2] * 0.8])
    mito_c, mito_r = np.array([ext[0] / 2, ext[1] * 0.3, ext[2] * 0.15]), 110.0
    prob = np.zeros(shape, np.uint8)
    yy, xx = np.meshgrid(np.arange(shape[1]) * vs, np.arange(shape[2]) * vs, indexing="ij")
    for z in range(shape[0]):
        d = (z * vs - p0[0]) * n[0] + (yy - p0[1]) * n[1] + (xx - p0[2]) * n[2]
        r = np.sqrt((z * vs - mito_c[0]) ** 2 + (yy - mito_c[1]) ** 2 + (xx - mito_c[2]) ** 2)
        m = (np.abs(d) <= 2.25) | (np.abs(d - 24.0) <= 2.25)
        m |= (np.abs(r - mito_r) <= 2.25) | (np.abs(r - mito_r + 9) <= 2.25)
        prob[z][m] = 255
    centers = []
    while len(centers) < n_vesicles:
        c = rng.uniform(0, 1, 3) * ext
        gap = -((c - p0) @ n)
        if 25 < gap < 400 and np.linalg.norm(c - mito_c) > mito_r + 30 and np.all(c > 25):
            if np.all(c < ext - 25):
                centers.append(c)
    table = make_table(np.array(centers) / vs, np.full(n_vesicles, 19.0), vs)
    return prob, table


def timing(args) -> dict:
    from synapseg.context.stage import CONTEXT_STAGE
    from synapseg.core.grid import Grid
    from synapseg.core.runner import Runner
    from synapseg.core.stages import Stage

    vs = args.voxel_size
    shape = tuple(args.timing_shape)
    t0 = time.perf_counter()
    prob, table = synthetic_map(shape, vs)
    build_s = time.perf_counter() - t0
    t0, c0 = time.perf_counter(), cpu_s()
    base = int((prob >= 128).sum())
    baseline_s, baseline_cpu = time.perf_counter() - t0, cpu_s() - c0
    # the membrane segmentation alone (the stage runs it first), default parameters
    from synapseg.context.membrane_mask import clean_membrane_map

    t0, c0 = time.perf_counter(), cpu_s()
    _, seg_facts = clean_membrane_map(prob, vs)
    seg_s, seg_cpu = time.perf_counter() - t0, cpu_s() - c0
    stages = {
        "membrane_net": Stage(
            "membrane_net",
            (),
            ("membrane_probabilities",),
            lambda c: {"membrane_probabilities": prob},
        ),
        "vesicles": Stage("vesicles", (), ("vesicles",), lambda c: {"vesicles": table}),
        "context": CONTEXT_STAGE,
    }
    with tempfile.TemporaryDirectory(dir=args.scratch) as tmp:
        state: dict = {}
        runner = Runner(None, Grid(shape, vs), tmp, "ref", state=state, stages=stages)
        t0, c0 = time.perf_counter(), cpu_s()
        runner.run()
        stage_s, stage_cpu = time.perf_counter() - t0, cpu_s() - c0
        facts = state["stages"]["context"]
        sizes = {f: os.path.getsize(os.path.join(tmp, f)) for f in sorted(os.listdir(tmp))}
    mvox = float(np.prod(shape)) / 1e6
    return {
        "shape": list(shape),
        "voxel_size_nm": vs,
        "synthetic_build_s": build_s,
        "baseline_threshold_pass_s": baseline_s,
        "baseline_voxels": base,
        "context_stage_with_writes_s": stage_s,
        "context_compute_s": facts["seconds"],
        "ratio_stage_to_baseline": stage_s / baseline_s,
        "context_stage_cpu_s": stage_cpu,
        "baseline_cpu_s": baseline_cpu,
        "ratio_cpu_stage_to_baseline": stage_cpu / max(baseline_cpu, 1e-9),
        "membrane_segmentation_s": seg_s,
        "membrane_segmentation_cpu_s": seg_cpu,
        "membrane_segmentation_over_threshold_pass_cpu": seg_cpu / max(baseline_cpu, 1e-9),
        "membrane_segmentation_facts": seg_facts,
        "mvoxel_per_s": mvox / stage_s,
        "timings_s": facts["timings_s"],
        "active_zone_found": facts["active_zone"]["found"],
        "files_bytes": sizes,
        "peak_rss_gb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1e6,
    }


def figure(path: str, shape=(64, 256, 256)) -> None:
    """A central z-section of held-out case 0: classes, AZ, compartment, vesicles by pool."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.patches import Circle

    from synapseg.context import analyse_context
    from synapseg.simulate import simulate_tomogram

    seed = int(np.random.SeedSequence([SEED, 0]).generate_state(1)[0])
    sim = simulate_tomogram(shape=tuple(shape), seed=seed)
    vs = sim.voxel_size_nm
    prob = np.where(np.isin(sim.membrane_labels, [1, 3, 4]), 255, 0).astype(np.uint8)
    ctx = analyse_context(prob, sim.vesicles, vs)
    z = shape[0] // 2
    fig, axes = plt.subplots(1, 2, figsize=(11, 5.6))
    img = sim.tomogram[z]
    lo, hi = np.percentile(img, [1, 99])
    for ax in axes:
        ax.imshow(img, cmap="gray", vmin=lo, vmax=hi)
        ax.set_axis_off()
    axes[0].set_title(f"simulated tomogram, z = {z} (1.68 nm voxels)")
    over = np.zeros((*img.shape, 4))
    colors = {1: (0.9, 0.1, 0.1), 3: (0.6, 0.6, 0.6), 4: (0.1, 0.3, 0.9)}
    if ctx.compartment is not None:
        over[ctx.compartment[z]] = (1.0, 1.0, 0.6, 0.25)
    for cls, rgb in colors.items():
        over[ctx.membranes[z] == cls] = (*rgb, 0.9)
    axes[1].imshow(over)
    if ctx.az is not None:
        pts = ctx.az.points_nm[np.abs(ctx.az.points_nm[:, 0] - z * vs) < 3] / vs
        axes[1].plot(pts[:, 2], pts[:, 1], ".", color="yellow", ms=3, label="AZ midplane")
    pool_color = {"docked": "orange", "proximal": "lime", "distal": "violet", "": "white"}
    t = ctx.vesicles
    for _, v in t.iterrows():
        dz = (v["center_z_px"] - z) * vs
        if abs(dz) < v["radius_nm"]:
            r = np.sqrt(v["radius_nm"] ** 2 - dz**2) / vs
            axes[1].add_patch(
                Circle(
                    (v["center_x_px"], v["center_y_px"]),
                    r,
                    fill=False,
                    lw=1.5,
                    color=pool_color[v["pool"]],
                )
            )
    axes[1].set_title("classes, AZ, compartment; vesicles by pool")
    handles = [plt.Line2D([], [], color=c, lw=2, label=k) for k, c in pool_color.items() if k]
    axes[1].legend(handles=handles, loc="lower left", fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--accuracy", action="store_true")
    ap.add_argument("--timing", action="store_true")
    ap.add_argument("--n", type=int, default=8, help="held-out synapses with a cleft")
    ap.add_argument("--n-without", type=int, default=4, help="synapses without an AZ")
    ap.add_argument("--shape", type=int, nargs=3, default=(64, 256, 256))
    ap.add_argument("--membrane-model", default=None)
    ap.add_argument(
        "--no-membrane-segmentation",
        action="store_true",
        help="predicted: analyse the raw map (as before the membrane segmentation)",
    )
    ap.add_argument(
        "--predicted-vesicles",
        action="store_true",
        help="also score with the vesicles segment finds (default vesicle model)",
    )
    ap.add_argument("--timing-shape", type=int, nargs=3, default=(261, 1024, 1024))
    ap.add_argument("--voxel-size", type=float, default=1.469)
    ap.add_argument("--scratch", default=None, help="folder for the timing run's files")
    ap.add_argument("--json", default=None)
    ap.add_argument("--figure", default=None, help="write the docs figure (PNG) here")
    args = ap.parse_args(argv)
    if args.figure:
        figure(args.figure)
    if not (args.accuracy or args.timing):
        if args.figure:
            return 0
        ap.error("give --accuracy, --timing or --figure")
    out = {"machine": machine(), "argv": sys.argv[1:]}
    if args.accuracy:
        out["accuracy"] = accuracy(args)
        print(json.dumps(out["accuracy"]["summary"], indent=1))
    if args.timing:
        out["timing"] = timing(args)
        print(json.dumps(out["timing"], indent=1))
    out["machine"]["load_average_end"] = os.getloadavg()[0]
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=1, default=str)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
