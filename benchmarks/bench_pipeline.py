"""End-to-end accuracy benchmark: simulate → segment → evaluate on fixed simulated tomograms.

Each tomogram is simulated with ``SimulationParams(seed=SEED + i, shape=SHAPE)`` (all other
parameters at their defaults, listed in the JSON), segmented with ``synapseg segment``'s
pipeline and evaluated against the exact ground truth with ``synapseg evaluate``. Every
stage runs in a fresh subprocess, so its wall time and peak memory (``ru_maxrss``) are its
own. Segmentation speed is reported in Mvoxel/s and as a ratio to a yardstick measured in
the same run: one 3D Gaussian filter pass (σ = 2 voxels, scipy) over the same tomogram.

    python benchmarks/bench_pipeline.py                       # 3 tomograms, 64×256×256
    python benchmarks/bench_pipeline.py --n 5 --json out.json --update-docs
    python benchmarks/bench_pipeline.py --pred-dir seg/       # evaluate existing predictions

``--update-docs`` rewrites the "## Pipeline accuracy" section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import json
import platform
import re
import subprocess
import sys
import tempfile
from datetime import date
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import _machine  # noqa: E402

DEFAULT_SEED = 1000
DEFAULT_SHAPE = (64, 256, 256)
DOCS = Path(__file__).resolve().parents[1] / "docs" / "benchmarks.md"
SECTION = "## Pipeline accuracy"

# Runs one stage in a fresh interpreter; prints {"seconds", "peak_rss_mb", ...} as JSON.
CHILD = r"""
import json, resource, sys, time
stage, args = sys.argv[1], json.loads(sys.argv[2])
t0 = time.perf_counter()
out = {}
if stage == "simulate":
    from synapseg.simulate import SimulationParams, simulate_tomogram, write_simulation
    t0 = time.perf_counter()  # imports are not the stage's work
    params = SimulationParams(seed=args["seed"], shape=tuple(args["shape"]))
    result = simulate_tomogram(params, keep_phantom=False)
    write_simulation(args["folder"], result, overwrite=True)
    out["n_vesicles"] = int(len(result.vesicles))
elif stage == "segment":
    from synapseg.pipeline import SegmentOptions, segment_tomogram
    import torch  # noqa: F401
    t0 = time.perf_counter()
    report = segment_tomogram(args["tomogram"], args["out"],
                              SegmentOptions(model=args["model"], device=args["device"],
                                             overwrite=True))
    out["stage_seconds"] = report.get("timings_s", {})
    out["n_vesicles"] = report.get("n_vesicles")
elif stage == "yardstick":
    import numpy as np
    from scipy import ndimage
    from synapseg.io.volume import read_volume
    data = np.asarray(read_volume(args["tomogram"]).data, dtype=np.float32)
    t0 = time.perf_counter()
    ndimage.gaussian_filter(data, 2.0)
elif stage == "evaluate":
    from typer.testing import CliRunner
    from synapseg.cli import app
    t0 = time.perf_counter()
    cmd = ["--quiet", "evaluate", "--gt", args["gt"], "--pred", args["pred"], "-o", args["out"]]
    res = CliRunner().invoke(app, cmd + ["--overwrite"])
    if res.exit_code != 0:
        raise SystemExit(res.output)
out["seconds"] = time.perf_counter() - t0
out["peak_rss_mb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
print(json.dumps(out))
"""


def run_stage(stage: str, **args: object) -> dict:
    """Run one stage in a subprocess and return its measurements."""
    proc = subprocess.run(
        [sys.executable, "-c", CHILD, stage, json.dumps(args, default=str)],
        capture_output=True,
        text=True,
    )
    if proc.returncode != 0:
        raise RuntimeError(f"stage {stage} failed:\n{proc.stderr[-3000:]}{proc.stdout[-2000:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def machine() -> str:
    """The machine line of ``_machine.machine()`` plus the Python version."""
    return f"{_machine.machine()['machine']}, Python {platform.python_version()}"


def fmt(value: object, digits: int = 3) -> str:
    if value is None:
        return "–"
    if isinstance(value, float):
        return f"{value:.{digits}f}"
    return str(value)


def _segment_cell(seg: dict, stage_s: dict) -> str:
    if not seg:
        return "–"
    parts = "/".join(f"{stage_s.get(k, 0):.1f}" for k in ("predict", "vesicles", "export"))
    return f"{seg['seconds']:.1f} ({parts})"


def table_rows(result: dict) -> tuple[list[str], list[list[str]]]:
    head = [
        "tomogram",
        "GT",
        "pred",
        "P",
        "R",
        "F1",
        "F4",
        "center err nm (median)",
        "radius bias nm",
        "Dice",
        "simulate s",
        "segment s (predict/vesicles/export)",
        "Mvox/s",
        "× yardstick",
        "peak MB (segment)",
    ]
    rows = []
    for stem, t in result["tomograms"].items():
        m = t["metrics"]
        seg = t.get("segment") or {}
        st = seg.get("stage_seconds", {})
        rows.append(
            [
                stem,
                fmt(m["n_gt"]),
                fmt(m["n_pred"]),
                fmt(m["precision"]),
                fmt(m["recall"]),
                fmt(m["f1"]),
                fmt(m["f_beta"].get("4")),
                fmt(m["center_error_nm"]["median"], 2),
                fmt(m["radius_error_nm"]["median_signed"], 2),
                fmt((m.get("voxel") or {}).get("dice")),
                fmt(t["simulate"]["seconds"], 1),
                _segment_cell(seg, st),
                fmt(t.get("mvoxel_per_s"), 2),
                fmt(t.get("vs_yardstick"), 2),
                fmt(seg.get("peak_rss_mb"), 0),
            ]
        )
    p = result["pooled"]
    rows.append(
        ["**pooled**", fmt(p["n_gt"]), fmt(p["n_pred"]), fmt(p["precision"]), fmt(p["recall"])]
        + [fmt(p["f1"]), fmt(p["f_beta"].get("4")), fmt(p["center_error_nm"]["median"], 2)]
        + [fmt(p["radius_error_nm"]["median_signed"], 2), fmt((p.get("voxel") or {}).get("dice"))]
        + ["", "", "", "", ""]
    )
    return head, rows


def markdown(result: dict) -> str:
    head, rows = table_rows(result)
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    lines += ["| " + " | ".join(r) + " |" for r in rows]
    cfg = result["config"]
    return "\n".join(
        [
            SECTION,
            "",
            f"`{cfg['command']}` ({cfg['date']}, {cfg['machine']}). {cfg['n']} simulated "
            f"tomograms {cfg['shape'][0]}×{cfg['shape'][1]}×{cfg['shape'][2]} at "
            f"{cfg['voxel_size_nm']} nm/voxel, seeds {cfg['seeds'][0]}–{cfg['seeds'][-1]}, "
            "every other simulation parameter at its default (listed in the JSON); "
            f"segmented with model `{cfg['model']}`; matched at "
            f"{cfg['match_fraction']} × true radius (docs/evaluation.md).",
            "",
            *lines,
            "",
            "P/R/F1/F4: precision, recall, F1, F-beta (β = 4). Center error: median over "
            "matched pairs. Radius bias: median (predicted − true) midline radius. Dice: "
            "foreground voxel Dice of `<name>_vesicles.mrc` against the simulated labels. "
            "Times are wall seconds of each stage in its own process (imports excluded); "
            "Mvox/s is segmentation throughput, and × yardstick the segmentation time over "
            "one 3D Gaussian filter pass (σ = 2 voxels) of the same tomogram measured in the "
            "same run. Peak memory is the segment process's maximum RSS. The shipped model "
            "is trained on tomograms from the same simulator (other seeds), so these are "
            "in-distribution figures, not a measure of accuracy on real tomograms. "
            "Regenerate with the command above plus `--update-docs`.",
            "",
        ]
    )


def update_docs(text: str) -> None:
    doc = DOCS.read_text() if DOCS.exists() else "# Benchmarks\n"
    pattern = re.compile(rf"^{re.escape(SECTION)}\n.*?(?=^## |\Z)", re.S | re.M)
    if pattern.search(doc):
        doc = pattern.sub(text + "\n", doc)
    else:
        doc = doc.rstrip("\n") + "\n\n" + text
    DOCS.write_text(doc)


def main(argv: list[str] | None = None) -> dict:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--n", type=int, default=3, help="number of tomograms (default 3)")
    ap.add_argument("--seed", type=int, default=DEFAULT_SEED, help="first seed (then +1, ...)")
    ap.add_argument("--shape", type=int, nargs=3, default=DEFAULT_SHAPE, metavar=("Z", "Y", "X"))
    ap.add_argument("--model", default="default", help="model name, folder or model.json")
    ap.add_argument("--device", default="auto", help="segment device: auto, cpu, cuda")
    ap.add_argument("--work", type=Path, help="working folder (default: a temporary one)")
    ap.add_argument("--pred-dir", type=Path, help="evaluate these predictions, skip segment")
    ap.add_argument("--json", type=Path, help="write the results as JSON here")
    ap.add_argument("--update-docs", action="store_true", help="rewrite docs/benchmarks.md section")
    args = ap.parse_args(argv)

    work = args.work or Path(tempfile.mkdtemp(prefix="bench_pipeline_"))
    sim_dir, seg_dir, rep_dir = work / "sim", args.pred_dir or work / "seg", work / "report"
    seeds = [args.seed + i for i in range(args.n)]
    result: dict = {"tomograms": {}}
    for i, seed in enumerate(seeds):
        stem = f"sim_{i:03d}"
        folder = sim_dir / stem
        entry: dict = {"seed": seed}
        entry["simulate"] = run_stage("simulate", seed=seed, shape=args.shape, folder=folder)
        if args.pred_dir is None:
            seg = run_stage(
                "segment",
                tomogram=folder / "tomogram.mrc",
                out=seg_dir / stem,
                device=args.device,
                model=args.model,
            )
            ruler = run_stage("yardstick", tomogram=folder / "tomogram.mrc")
            nvox = float(args.shape[0] * args.shape[1] * args.shape[2])
            entry["segment"] = seg
            entry["yardstick"] = ruler
            entry["mvoxel_per_s"] = nvox / 1e6 / seg["seconds"]
            entry["vs_yardstick"] = seg["seconds"] / ruler["seconds"]
        result["tomograms"][stem] = entry
        print(
            f"{stem}: done ({'simulated' if args.pred_dir else 'simulated, segmented'})",
            file=sys.stderr,
        )
    ev = run_stage("evaluate", gt=sim_dir, pred=seg_dir, out=rep_dir)
    pooled = json.loads((rep_dir / "metrics.json").read_text())
    for stem, entry in result["tomograms"].items():
        entry["metrics"] = pooled["tomograms"].get(stem)
        if entry["metrics"] is None:
            raise RuntimeError(f"{stem}: no metrics (was it segmented?)")
    params = json.loads((sim_dir / "sim_000" / "params.json").read_text())
    model = "–"
    first_report = seg_dir / "sim_000" / "tomogram_report.json"
    if first_report.exists():
        model = json.loads(first_report.read_text()).get("provenance", {}).get("model") or "–"
        if isinstance(model, dict):
            model = model.get("name", "–")
    result["pooled"] = {k: v for k, v in pooled.items() if k != "tomograms"}
    result["evaluate"] = ev
    result["config"] = {
        "command": "python benchmarks/bench_pipeline.py"
        + (f" --n {args.n}" if args.n != 3 else "")
        + (f" --seed {args.seed}" if args.seed != DEFAULT_SEED else "")
        + (
            " --shape " + " ".join(map(str, args.shape))
            if tuple(args.shape) != DEFAULT_SHAPE
            else ""
        )
        + (f" --device {args.device}" if args.device != "auto" else "")
        + (f" --model {args.model}" if args.model != "default" else ""),
        "date": date.today().isoformat(),
        "machine": machine(),
        "n": args.n,
        "seeds": seeds,
        "shape": list(args.shape),
        "voxel_size_nm": params.get("voxel_size_nm"),
        "simulation_params": {k: v for k, v in params.items() if k != "seed"},
        "model": model,
        "match_fraction": pooled.get("match_fraction"),
        "report": str(rep_dir / "report.html"),
    }
    head, rows = table_rows(result)
    widths = [max(len(h), *(len(r[i]) for r in rows)) for i, h in enumerate(head)]
    print("  ".join(h.ljust(w) for h, w in zip(head, widths)))
    for r in rows:
        print("  ".join(c.ljust(w) for c, w in zip(r, widths)))
    print(f"report: {rep_dir / 'report.html'}", file=sys.stderr)
    if args.json:
        args.json.write_text(json.dumps(result, indent=2, default=str))
    if args.update_docs:
        update_docs(markdown(result))
    return result


if __name__ == "__main__":
    main()
