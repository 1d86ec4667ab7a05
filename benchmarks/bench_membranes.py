#!/usr/bin/env python
"""Membrane network: accuracy on held-out simulated synapses, and the time it adds.

Two parts, each optional:

``--accuracy``: simulates ``--n`` held-out tomograms (v2 world draws from seeds
``[20261222, i]`` on 240 x 240 x (120-170) nm, disjoint from every training recipe; cleft and
organelles switched on and off in turn: i % 2 == 0 has a cleft, i % 4 < 2 has organelles), runs
``synapseg.segment(..., outputs=["membrane_probabilities"])`` and scores the map against the
simulator's ``membrane_labels`` (every class except 2, vesicles) with
``synapseg.evaluate.membranes.score_membranes``: Dice, symmetric surface distance (median,
95th percentile, nm); with ``--budget`` also where the voxel errors lie
(``synapseg.evaluate.membrane_budget``: wedge-facing / near / missed false negatives,
near / vesicle-membrane / far false positives). These tomograms come from the simulator
family the model was trained on: the numbers are in-distribution. Each case is scored twice:
the raw map at 0.5 (``dice``, ``sd_*``: comparable with earlier runs) and ``segment``'s
membrane segmentation, the class volume ``membranes`` (the map cleaned by
``synapseg.context.membrane_mask`` with the model card's parameters, then classified; every
class but 2): ``seg_dice``, ``seg_sd_*`` (and ``seg_budget``). ``--data DIR --names sim_028
...`` scores folders in ``synapseg simulate``'s layout instead (e.g. the membrane recipe's
validation draws), to choose parameters away from the benchmark. ``--ceiling`` adds the
metric's ceilings per case (``synapseg.train.membrane_ceiling``): the truth after the 2.4 and
4.8 nm grid round trips, one-voxel shifts, dilation and erosion; the raw map and the
segmentation with oracles (far false positives removed, the score local to the membrane both
found, other thresholds there), and the thickness ratio. ``--segmentation high=0.8 ...``
overrides single keys of the card's membrane segmentation (``segment(...,
membrane_segmentation={...})``), to compare settings on validation draws.

``--timing``: a random float32 volume of ``--shape`` (default the reference size
261x1024x1024) at ``--voxel-size`` (1.469 nm); in one process, one after the other: the
vesicle network (stage ``predict``) and the membrane network (stage ``membrane_net``), both
through ``synapseg.segment`` with the same specimen mask and polarity (``invert="no"``: a
random volume has no contrast to decide), wall and process CPU seconds each; and, unless
``--no-whole``, the whole ``segment`` (every registered stage) with the membrane network on
and off.

    python benchmarks/bench_membranes.py --accuracy --n 8 --json membranes.json
    python benchmarks/bench_membranes.py --accuracy --n 6 --budget --model sim-membrane-v3
    python benchmarks/bench_membranes.py --accuracy --budget --model sim-membrane-v3 \
        --data ~/.cache/synapseg/train_membranes --names sim_028 sim_029 sim_030 sim_031
    python benchmarks/bench_membranes.py --accuracy --ceiling --model sim-membrane-v3 \
        --data ~/.cache/synapseg/train_membranes --names sim_028 sim_029 sim_030 sim_031
    python benchmarks/bench_membranes.py --timing --shape 261 1024 1024
"""

from __future__ import annotations

import argparse
import json
import sys
import time

import numpy as np

from _machine import cpu_s, machine

SEED = 20261222
ARTIFACT = "membrane_probabilities"


def case_params(i: int):
    from synapseg.simulate.draws import draw_world

    p = draw_world(np.random.default_rng([SEED, i]), xy_extent_nm=240.0, z_extent_nm=(120, 170))
    return p.replace(cleft=i % 2 == 0, distractors=i % 4 < 2)


def _cases(n: int, data: str | None, names: list[str] | None):
    """(name, seed or folder, params, simulation) of each case: benchmark draws, or folders."""
    import synapseg

    if data is None:
        for i in range(n):
            params = case_params(i)
            t0 = time.perf_counter()
            sim = synapseg.simulate(params)
            yield f"sim_{i:03d}", [SEED, i], params, sim, time.perf_counter() - t0
        return
    from types import SimpleNamespace

    from synapseg.io.volume import read_volume
    from synapseg.simulate import SimulationParams

    for name in names or []:
        folder = f"{data}/{name}"
        with open(f"{folder}/params.json", encoding="utf-8") as fh:
            raw = json.load(fh)
        known = set(SimulationParams.__dataclass_fields__)
        params = SimulationParams(**{k: v for k, v in raw.items() if k in known})
        vs = params.voxel_size_nm
        sim = SimpleNamespace(
            tomogram=np.asarray(read_volume(f"{folder}/tomogram.mrc", vs).data),
            membrane_labels=np.asarray(read_volume(f"{folder}/membrane_labels.mrc", vs).data),
        )
        yield name, folder, params, sim, 0.0


def accuracy(
    n: int,
    model: str,
    budget: bool = False,
    data: str | None = None,
    names: list[str] | None = None,
    ceiling: bool = False,
    segmentation: dict | None = None,
) -> list[dict]:
    import synapseg
    from synapseg.evaluate.membrane_budget import membrane_error_budget
    from synapseg.evaluate.membranes import score_membranes, segmentation_mask

    rows = []
    for case, seed, params, sim, t_sim in _cases(n, data, names):
        t0 = time.perf_counter()
        seg = synapseg.segment(
            sim.tomogram,
            voxel_size_nm=params.voxel_size_nm,
            outputs=[ARTIFACT, "membranes"],
            invert="no",
            membrane_model=model,
            membrane_segmentation=segmentation or True,
        )
        t_seg = time.perf_counter() - t0
        score = score_membranes(seg[ARTIFACT], sim.membrane_labels, params.voxel_size_nm)
        sd = score["surface_distance_nm"]
        mask = segmentation_mask(seg["membranes"])
        seg_score = score_membranes(mask, sim.membrane_labels, params.voxel_size_nm)
        seg_sd = seg_score["surface_distance_nm"]
        rows.append(
            {
                "case": case,
                "seed": seed,
                "shape": list(params.shape),
                "voxel_size_nm": params.voxel_size_nm,
                "cleft": params.cleft,
                "organelles": params.distractors,
                "lamella": params.lamella_thickness_nm is not None,
                "snr": params.snr,
                "tilt_range_deg": params.tilt_range_deg,
                "dice": score["dice"],
                "precision": score["precision"],
                "recall": score["recall"],
                "sd_median_nm": sd["median"],
                "sd_p95_nm": sd["p95"],
                "n_truth_voxels": score["n_truth_voxels"],
                "inter": score["dice"] * (score["n_pred_voxels"] + score["n_truth_voxels"]) / 2,
                "n_pred_voxels": score["n_pred_voxels"],
                "seg_dice": seg_score["dice"],
                "seg_precision": seg_score["precision"],
                "seg_recall": seg_score["recall"],
                "seg_sd_median_nm": seg_sd["median"],
                "seg_sd_p95_nm": seg_sd["p95"],
                "seg_inter": seg_score["dice"]
                * (seg_score["n_pred_voxels"] + seg_score["n_truth_voxels"])
                / 2,
                "seg_n_pred_voxels": seg_score["n_pred_voxels"],
                "segmentation": seg.facts["context"].get("membrane_segmentation"),
                "context_level": seg.facts["context"].get("level"),
                "simulate_s": round(t_sim, 1),
                "membrane_stage_s": round(seg.facts["membrane_net"]["seconds"], 2),
                "segment_s": round(t_seg, 1),
            }
        )
        if budget:
            rows[-1]["budget"] = membrane_error_budget(
                seg[ARTIFACT], sim.membrane_labels, params.voxel_size_nm
            )
            rows[-1]["seg_budget"] = membrane_error_budget(
                mask, sim.membrane_labels, params.voxel_size_nm
            )
        if ceiling:
            rows[-1]["ceiling"] = case_ceiling(
                seg[ARTIFACT], mask, sim.membrane_labels, params.voxel_size_nm
            )
        r = rows[-1]
        print(
            f"{r['case']} {params.voxel_size_nm:.2f} nm cleft={r['cleft']!s:5} "
            f"organelles={r['organelles']!s:5} lamella={r['lamella']!s:5} "
            f"Dice {r['dice']:.3f} SD median {r['sd_median_nm']} p95 {r['sd_p95_nm']} | "
            f"segmentation Dice {r['seg_dice']:.3f} SD median {r['seg_sd_median_nm']} "
            f"p95 {r['seg_sd_p95_nm']}",
            flush=True,
        )
    return rows


def case_ceiling(raw: np.ndarray, mask: np.ndarray, labels: np.ndarray, vs: float) -> dict:
    """``synapseg.train.membrane_ceiling`` on one case: the truth's own ceilings, and the
    oracles on the raw map (with thresholds 0.3, 0.4, 0.6 locally) and on the segmentation."""
    from synapseg.train.membrane_ceiling import oracle_ceiling, truth_ceiling
    from synapseg.train.membrane_targets import non_vesicle_membrane

    t = non_vesicle_membrane(labels)
    out = {
        "truth": truth_ceiling(t, vs),
        "raw": oracle_ceiling(raw, t, vs, thresholds=(0.3, 0.4, 0.6)),
        "seg": oracle_ceiling(mask, t, vs),
    }
    flat = {f"truth.{k}": v for k, v in out["truth"].items()}
    for src in ("raw", "seg"):
        for k in ("as_is", "no_far", "no_far_pieces", "local"):
            flat[f"{src}.{k}"] = out[src][k]
        for k, v in out[src]["local_at"].items():
            flat[f"{src}.local_at_{k}"] = v

    def fmt(v: dict | None) -> str:
        if v is None:  # nothing predicted near the truth: no local score
            return "-"
        sd = v["sd_median_nm"]
        return f"{v['dice']:.3f}/{'-' if sd is None else round(sd, 2)}"

    print(
        "  ceiling (Dice/SD median nm):",
        "; ".join(f"{k} {fmt(v)}" for k, v in flat.items()),
        f"; thickness ratio raw {out['raw']['thickness_ratio']} "
        f"seg {out['seg']['thickness_ratio']}",
        flush=True,
    )
    out["flat"] = flat
    return out


def ceiling_summary(rows: list[dict]) -> dict:
    """Per ceiling key: mean and min Dice, median of the surface-distance medians (nm), over
    the cases where the key has a score (``n``; a local score is undefined where nothing was
    predicted near the truth)."""
    keys = {k for r in rows for k in r["ceiling"]["flat"]}
    out = {}
    for k in sorted(keys):
        vals = [v for r in rows if (v := r["ceiling"]["flat"].get(k)) is not None]
        med = [v["sd_median_nm"] for v in vals if v["sd_median_nm"] is not None]
        out[k] = {
            "n": len(vals),
            "dice_mean": float(np.mean([v["dice"] for v in vals])) if vals else None,
            "dice_min": float(np.min([v["dice"] for v in vals])) if vals else None,
            "sd_median_nm_median": float(np.median(med)) if med else None,
        }
    return out


def summary(rows: list[dict], prefix: str = "") -> dict:
    """Mean, worst and pooled Dice, medians of the surface distances; ``prefix="seg_"``
    for the segmentation's scores."""
    inter = sum(r[f"{prefix}inter"] for r in rows)
    total = sum(r[f"{prefix}n_pred_voxels"] + r["n_truth_voxels"] for r in rows)
    med = [r[f"{prefix}sd_median_nm"] for r in rows if r[f"{prefix}sd_median_nm"] is not None]
    p95 = [r[f"{prefix}sd_p95_nm"] for r in rows if r[f"{prefix}sd_p95_nm"] is not None]
    key = f"{prefix}budget"
    return {
        "n": len(rows),
        "dice_mean": float(np.mean([r[f"{prefix}dice"] for r in rows])),
        "dice_min": float(np.min([r[f"{prefix}dice"] for r in rows])),
        "dice_pooled": 2 * inter / total if total else None,
        "sd_median_nm_median": float(np.median(med)) if med else None,
        "sd_p95_nm_median": float(np.median(p95)) if p95 else None,
        **({"budget": pooled_budget(rows, prefix)} if all(key in r for r in rows) else {}),
    }


def pooled_budget(rows: list[dict], prefix: str = "") -> dict:
    """The error categories of ``membrane_error_budget`` summed over the cases: voxels,
    share of all voxel errors, pooled Dice without the category."""
    inter = sum(r[f"{prefix}inter"] for r in rows)
    total = sum(r[f"{prefix}n_pred_voxels"] + r["n_truth_voxels"] for r in rows)
    cats: dict[str, int] = {}
    for r in rows:
        for k, v in r[f"{prefix}budget"]["categories"].items():
            cats[k] = cats.get(k, 0) + v["voxels"]
    errors = max(1, sum(cats.values()))
    return {
        k: {"voxels": v, "share": v / errors, "dice_without": 2 * inter / (total - v)}
        for k, v in cats.items()
    }


def timing(
    shape: tuple[int, int, int],
    voxel_size_nm: float,
    whole: bool,
    model: str,
    side: bool = True,
    others: tuple[str, ...] = (),
) -> dict:
    import synapseg

    rng = np.random.default_rng(0)
    image = rng.standard_normal(shape, dtype=np.float32)
    out: dict = {"shape": list(shape), "voxel_size_nm": voxel_size_nm}
    common = {"voxel_size_nm": voxel_size_nm, "invert": "no"}
    # side by side in one process: the vesicle network (with the specimen mask and the
    # polarity it needs), then the membrane stage alone on the same artifacts
    if side:
        _side_by_side(image, common, (model, *others), out)
    if whole:
        for name, m in (("segment_with_membranes", model), ("segment_without", "none")):
            t0, c0 = time.perf_counter(), cpu_s()
            seg = synapseg.segment(image, membrane_model=m, **common)
            out[name] = {
                "wall_s": time.perf_counter() - t0,
                "cpu_s": cpu_s() - c0,
                "stages": sorted(seg.facts),
            }
            print(name, round(out[name]["wall_s"], 1), "s", flush=True)
            del seg
    return out


def _side_by_side(image: np.ndarray, common: dict, models: tuple[str, ...], out: dict) -> None:
    """Vesicle path, then the membrane stage alone on its artifacts (wall and CPU each), once
    per membrane model (``membrane_network`` for the first, ``membrane_network_<model>`` for
    the others)."""
    import synapseg
    from synapseg.context.membrane_net import run_membrane_net
    from synapseg.core.segment import stage_params
    from synapseg.core.stages import StageContext, registered_stages

    t0, c0 = time.perf_counter(), cpu_s()
    seg = synapseg.segment(image, outputs=["probabilities"], **common)
    out["vesicle_network"] = {
        "wall_s": time.perf_counter() - t0,
        "cpu_s": cpu_s() - c0,
        "stage_s": seg.facts["predict"]["seconds"],
    }
    names = ("image", "grid", "specimen", "polarity", "probabilities")
    inputs = {"image": image, "grid": seg.grid, **{k: seg[k] for k in names[2:]}}
    keys = []
    for k, model in enumerate(models):
        params = {**stage_params(registered_stages()), **common, "membrane_model": model}
        ctx = StageContext("membrane_net", inputs, params)
        t0, c0 = time.perf_counter(), cpu_s()
        run_membrane_net(ctx)
        key = "membrane_network" if k == 0 else f"membrane_network_{model}"
        keys.append(key)
        out[key] = {
            "model": ctx.facts["model"]["name"],
            "wall_s": time.perf_counter() - t0,
            "cpu_s": cpu_s() - c0,
            "stage_s": ctx.facts["seconds"],
            "details": ctx.facts["details"],
        }
        out[f"{key}_over_vesicle_cpu"] = out[key]["cpu_s"] / out["vesicle_network"]["cpu_s"]
        del ctx
    for name in ("vesicle_network", *keys):
        print(
            name,
            {
                k: v if isinstance(v, str) else round(v, 1)
                for k, v in out[name].items()
                if k != "details"
            },
        )
    del seg
    out["membrane_over_vesicle_cpu"] = out["membrane_network_over_vesicle_cpu"]


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    ap.add_argument("--accuracy", action="store_true", help="score held-out simulated synapses")
    ap.add_argument("--n", type=int, default=8, help="held-out tomograms (accuracy)")
    ap.add_argument("--timing", action="store_true", help="time the stage on a large volume")
    ap.add_argument("--shape", type=int, nargs=3, default=[261, 1024, 1024])
    ap.add_argument("--voxel-size", type=float, default=1.469)
    ap.add_argument("--no-whole", action="store_true", help="skip the whole-segment timing")
    ap.add_argument("--no-side", action="store_true", help="skip the side-by-side timing")
    ap.add_argument("--model", default="default", help="membrane model (name or folder)")
    ap.add_argument(
        "--also",
        nargs="*",
        default=[],
        help="--timing: more membrane models timed on the same vesicle run",
    )
    ap.add_argument(
        "--budget",
        action="store_true",
        help="--accuracy: also split each case's voxel errors (evaluate.membrane_budget)",
    )
    ap.add_argument(
        "--data",
        help="--accuracy: score these simulate-layout folders instead of the benchmark draws",
    )
    ap.add_argument("--names", nargs="*", help="--data: the folder names (e.g. sim_028)")
    ap.add_argument(
        "--ceiling",
        action="store_true",
        help="--accuracy: also the metric's ceilings (train.membrane_ceiling: the truth "
        "round-tripped, shifted, thickened; the map with oracles)",
    )
    ap.add_argument(
        "--segmentation",
        nargs="*",
        default=[],
        metavar="KEY=VALUE",
        help="--accuracy: override keys of the card's membrane segmentation (e.g. high=0.8)",
    )
    ap.add_argument("--json", help="write the results here")
    a = ap.parse_args(argv)
    seg_over = {k: float(v) for k, v in (kv.split("=", 1) for kv in a.segmentation)}
    if not (a.accuracy or a.timing):
        ap.error("give --accuracy and/or --timing")
    result: dict = {"benchmark": "membranes", **machine(), "command": " ".join(sys.argv)}
    if a.accuracy:
        rows = accuracy(a.n, a.model, a.budget, a.data, a.names, a.ceiling, seg_over or None)
        result["accuracy"] = {
            "cases": rows,
            "summary": summary(rows),
            "segmentation_summary": summary(rows, "seg_"),
        }
        print(
            f"\n{'case':8} {'vs nm':>6} {'cleft':>6} {'organ.':>6} {'Dice':>6} "
            f"{'SD med':>7} {'SD p95':>7} {'segDice':>7} {'SD med':>7} {'SD p95':>7}"
        )
        for r in rows:
            print(
                f"{r['case']:8} {r['voxel_size_nm']:6.2f} {r['cleft']!s:>6} "
                f"{r['organelles']!s:>6} {r['dice']:6.3f} {r['sd_median_nm'] or 0:7.2f} "
                f"{r['sd_p95_nm'] or 0:7.2f} {r['seg_dice']:7.3f} "
                f"{r['seg_sd_median_nm'] or 0:7.2f} {r['seg_sd_p95_nm'] or 0:7.2f}"
            )
        print("raw map at 0.5:", json.dumps(result["accuracy"]["summary"], indent=1))
        print("segmentation:", json.dumps(result["accuracy"]["segmentation_summary"], indent=1))
        if a.ceiling:
            result["accuracy"]["ceiling_summary"] = ceiling_summary(rows)
            print("ceilings:", json.dumps(result["accuracy"]["ceiling_summary"], indent=1))
    if a.timing:
        result["timing"] = timing(
            tuple(a.shape), a.voxel_size, not a.no_whole, a.model, not a.no_side, tuple(a.also)
        )
        print(json.dumps(result["timing"], indent=1, default=str))
    if a.json:
        with open(a.json, "w", encoding="utf-8") as fh:
            json.dump(result, fh, indent=1, default=str)
    return 0


if __name__ == "__main__":
    sys.exit(main())
