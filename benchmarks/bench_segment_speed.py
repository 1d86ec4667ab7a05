#!/usr/bin/env python
"""Whole ``synapseg segment`` side by side: a baseline source tree against this one (issue 17).

Runs ``synapseg -q segment TOMO -o OUT --no-context --no-filaments --overwrite`` (the
vesicle path; ``--context`` adds the synapse context) in a fresh subprocess per run, once
with ``PYTHONPATH=<baseline src>`` and once with this checkout's ``src`` (or ``--after-src``),
alternating (baseline, after, after, baseline, ... so neither side always runs first). Each
run's wall time, CPU seconds (user + system of the child, all threads), peak anonymous
memory (RssAnon from /proc/PID/status every 50 ms: memory-mapped input/output pages are
not counted) and the stage timings of its report are recorded, and the two sides' vesicle
tables are compared (count, centers matched within 1 voxel, radius differences).

    python benchmarks/bench_segment_speed.py TOMO --baseline-src /tmp/h2/base/src \\
        --pairs 2 --json segment_speed.json
    python benchmarks/bench_segment_speed.py --random 261x1024x1024 --voxel-size 1.469 \\
        --baseline-src /tmp/synapseg-before/src --after-src SNAPSHOT/src --pairs 1

``--random ZxYxX`` runs on a random float32 tomogram (standard normal, seed 0, the one
``bench_inference.py --e2e`` writes) at ``--voxel-size``, written once into ``--workdir``:
issue 17's "65-69 s" baseline was measured on such a volume.

Speed is reported as the ratio baseline / after of the mean wall and CPU times (> 1: the
checkout is faster). Load average (1 min) is recorded before each run: on a shared machine
wall times are meaningless above ~1 per core.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from _machine import machine, run_monitored  # noqa: E402

# what the console script runs: ``synapseg.cli.run`` (imports only the command it runs) where
# the tree has it, else the whole app (older trees, e.g. the baseline)
CLI = "import synapseg.cli as c; (c.run if hasattr(c, 'run') else c.app)()"


def supported_flags(env: dict, flags: list[str]) -> list[str]:
    """The ``flags`` that this side's ``segment --help`` knows: a baseline from before the
    synapse context (e.g. bd1045b) has no --no-context/--no-filaments and runs the vesicle
    path anyway."""
    help_text = subprocess.run(
        [sys.executable, "-c", CLI, "segment", "--help"],
        env=dict(env, COLUMNS="200"),
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    return [f for f in flags if f in help_text]


def compare_tables(a: Path, b: Path) -> dict:
    """Vesicle tables of two runs: counts, centers matched within 1 voxel, radius change."""
    import pandas as pd
    from scipy.spatial import cKDTree

    ta, tb = pd.read_csv(a, comment="#"), pd.read_csv(b, comment="#")
    cols = ["center_z_px", "center_y_px", "center_x_px"]
    out = {"n_baseline": len(ta), "n_after": len(tb)}
    if len(ta) and len(tb):
        dist, idx = cKDTree(tb[cols].to_numpy()).query(ta[cols].to_numpy())
        hit = dist <= 1.0
        out["matched_within_1px"] = int(hit.sum())
        out["center_shift_px_median"] = round(float(np.median(dist[hit])), 4) if hit.any() else None
        dr = np.abs(ta["radius_nm"].to_numpy()[hit] - tb["radius_nm"].to_numpy()[idx[hit]])
        out["radius_abs_diff_nm_median"] = round(float(np.median(dr)), 4) if hit.any() else None
        out["radius_abs_diff_nm_max"] = round(float(dr.max()), 4) if hit.any() else None
    return out


def random_tomogram(shape: str, voxel_size_nm: float, workdir: Path) -> Path:
    """``workdir/random_ZxYxX_<voxel>nm.mrc`` (written once): the random volume of
    ``bench_inference.py --e2e``."""
    from bench_inference import write_random_mrc

    zyx = tuple(int(v) for v in shape.lower().split("x"))
    if len(zyx) != 3:
        raise SystemExit(f"--random wants ZxYxX, not {shape!r}")
    path = workdir / f"random_{'x'.join(map(str, zyx))}_{voxel_size_nm:g}nm.mrc"
    if not path.exists():
        workdir.mkdir(parents=True, exist_ok=True)
        write_random_mrc(path, zyx, voxel_size_nm)  # type: ignore[arg-type]
    return path


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument(
        "tomogram", type=Path, nargs="?", help="input tomogram (e.g. the reference volume)"
    )
    ap.add_argument("--random", metavar="ZxYxX", help="instead: a random float32 volume")
    ap.add_argument("--voxel-size", type=float, default=1.469, help="nm, for --random")
    ap.add_argument("--baseline-src", type=Path, required=True, help="baseline 'src' folder")
    ap.add_argument("--after-src", type=Path, default=HERE.parent / "src", help="default: ours")
    ap.add_argument("--pairs", type=int, default=2, help="baseline/after pairs (default 2)")
    ap.add_argument("--context", action="store_true", help="synapse context on (default off)")
    ap.add_argument("--workdir", type=Path, default=Path("/tmp/synapseg-segment-speed"))
    ap.add_argument("--json", type=Path, help="write the results here")
    args = ap.parse_args(argv)
    if (args.tomogram is None) == (args.random is None):
        ap.error("give a tomogram or --random ZxYxX")
    if args.random:
        args.tomogram = random_tomogram(args.random, args.voxel_size, args.workdir)
    result: dict = {"machine": machine(), "tomogram": str(args.tomogram), "runs": []}
    sides = {"baseline": args.baseline_src.resolve(), "after": args.after_src.resolve()}
    result["src"] = {k: str(v) for k, v in sides.items()}
    order = []
    for i in range(args.pairs):
        order += ["baseline", "after"] if i % 2 == 0 else ["after", "baseline"]
    wanted = ["--context" if args.context else "--no-context", "--no-filaments"]
    env = {s: dict(os.environ, PYTHONPATH=str(src)) for s, src in sides.items()}
    flags = {s: supported_flags(env[s], wanted) for s in sides}
    for i, side in enumerate(order):
        out = args.workdir / f"{side}"
        shutil.rmtree(out, ignore_errors=True)
        cmd = [sys.executable, "-c", CLI, "-q", "segment", str(args.tomogram), "-o", str(out)]
        load = os.getloadavg()[0]
        run = run_monitored(cmd + flags[side] + ["--overwrite"], env[side])
        if run["code"] != 0:
            raise SystemExit(f"{side} run failed ({run['code']}):\n{run['output_tail']}")
        report = json.loads(next(out.glob("*_report.json")).read_text())
        run.update(side=side, load_1min_before=load, n_vesicles=report.get("n_vesicles"))
        run["flags"] = flags[side]
        run["stage_s"] = report.get("timings_s")
        run["predict_s"] = report["stages"]["predict"].get("details", {}).get("timings")
        run.pop("output_tail")
        result["runs"].append(run)
        print(
            f"{i + 1}. {side:8s} wall {run['wall_s']:6.1f} s  cpu {run['cpu_s']:6.1f} s  "
            f"peak RssAnon {run['peak_rss_anon_mb']} MB  vesicles {run['n_vesicles']}  "
            f"(load {load:.1f})",
            flush=True,
        )
    csv = {s: next((args.workdir / s).glob("*_vesicles.csv")) for s in sides}
    result["tables"] = compare_tables(csv["baseline"], csv["after"])
    mean = {
        s: {
            k: float(np.mean([r[k] for r in result["runs"] if r["side"] == s]))
            for k in ("wall_s", "cpu_s")
        }
        for s in sides
    }
    result["mean"] = mean
    result["ratio_baseline_over_after"] = {
        k: round(mean["baseline"][k] / mean["after"][k], 3) for k in ("wall_s", "cpu_s")
    }
    result["peak_rss_anon_mb_after"] = max(
        r["peak_rss_anon_mb"] for r in result["runs"] if r["side"] == "after"
    )
    result["load_average_end"] = os.getloadavg()[0]
    print(json.dumps({k: result[k] for k in ("ratio_baseline_over_after", "tables", "mean")}))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2) + "\n")
    return result


if __name__ == "__main__":
    main()
