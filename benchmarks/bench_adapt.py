#!/usr/bin/env python
"""``synapseg adapt`` on the domain-shift benchmark: F1 before and after unlabeled adaptation.

For each shift in ``--adapt-shifts`` the default model is adapted with ``synapseg adapt`` on
that shift's tomograms (only their ``tomogram.mrc``: no labels are read), then the adapted
model segments that shift and the ``--control-shifts`` (did it forget?). Everything is scored
like ``bench_domain_shift.py`` (its ``segment`` and ``score``: match when the center distance
< 0.5 x the true radius), next to the default model on the same tomograms.

The data are ``bench_domain_shift.py``'s caches (generated there, with seeds disjoint from
training); this script never changes them. ``--data`` holds the adapted shifts (any set:
``standard`` or ``hard``); a control shift not found there is looked up in
``--control-data`` (e.g. the hard set adapted, the standard set's shifts as controls).
``--before-json`` reuses the base model's rows from ``bench_domain_shift.py run`` result files
made with the same code, model and data (instead of segmenting those tomograms again).

    python benchmarks/bench_domain_shift.py generate --data ~/.cache/synapseg-domain-shift
    python benchmarks/bench_adapt.py --data ~/.cache/synapseg-domain-shift --json adapt.json
    python benchmarks/bench_adapt.py --data HARD --control-data V3 --adapt-shifts snr0.1 \
        --control-shifts tilt35,tilt40 --before-json hard_v1.json v3_v1.json \
        --segment-args --no-context
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import shlex
import subprocess
import sys
import time
from pathlib import Path
from types import SimpleNamespace
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import bench_domain_shift as ds  # noqa: E402


def _cases(data: Path | list[Path], shift: str) -> list[Path]:
    for folder in [data] if isinstance(data, Path) else data:
        cases = sorted(
            p for p in (folder / shift).glob(f"{shift}_*") if (p / "tomogram.mrc").exists()
        )
        if cases:
            return cases
    sys.exit(f"no cached tomograms for {shift} in {data}: run bench_domain_shift.py generate")


def _segment_shift(
    data: Path | list[Path], shift: str, out: Path, model: str, a: argparse.Namespace
) -> dict[str, Any]:
    args = SimpleNamespace(
        src=a.src,
        python=sys.executable,
        model=model,
        device=a.device,
        segment_args=list(a.segment_args),
        pass_tilt_range=False,
    )
    cases = _cases(data, shift)
    outs = [out / shift / c.name for c in cases]
    seconds = [ds.segment(c, o, args) for c, o in zip(cases, outs)]
    row = ds.score(cases, outs)
    row["segment_s"] = round(float(sum(seconds)), 1)
    return row


def _adapt(data: Path, shift: str, model_dir: Path, a) -> dict[str, Any]:
    tomos = [str(c / "tomogram.mrc") for c in _cases(data, shift)]
    cmd = [sys.executable, "-c", "from synapseg.cli import app; app()", "-q", "adapt", *tomos,
           "-o", str(model_dir), "--from", a.model, "--steps", str(a.steps),
           "--rounds", str(a.rounds), "--min-confidence", str(a.min_confidence),
           "--low-confidence", str(a.low_confidence), "--lr", str(a.lr), "--seed", str(a.seed),
           "--device", a.device, "--overwrite", *shlex.split(a.adapt_args)]  # fmt: skip
    env = dict(os.environ)
    if a.src:
        env["PYTHONPATH"] = os.pathsep.join(filter(None, [a.src, env.get("PYTHONPATH")]))
    t0 = time.perf_counter()
    proc = subprocess.run(cmd, capture_output=True, text=True, env=env)
    if proc.returncode:
        return {"error": proc.stderr.strip()[-2000:], "adapt_s": time.perf_counter() - t0}
    card = json.loads((model_dir / "model.json").read_text())
    record = card["extra"]["adaptation"]
    return {
        "adapt_s": round(time.perf_counter() - t0, 1),
        "pseudo_labels_per_round": [r["pseudo_labels"] for r in record["rounds"]],
        "uncertain_ignored_per_round": [r["uncertain_ignored"] for r in record["rounds"]],
        "negative_candidates_per_round": [r["negative_candidates"] for r in record["rounds"]],
        "weights": (record.get("weights") or {}).get("decision"),
        "postprocessing_changed": (record.get("postprocessing_adapted") or {}).get("changed"),
        "forgetting": {k: v for k, v in (record.get("forgetting") or {}).items()
                       if k in ("kept", "base", "adapted", "delta_f1", "delta_recall")},
        "interpolation": record.get("interpolation"),
        "rehearsal": {k: v for k, v in (record.get("rehearsal") or {}).items()
                      if k in ("fraction", "world")},
    }  # fmt: skip


def _f(v: float | None, w: int = 8) -> str:
    return f"{'n/a':>{w}}" if v is None else f"{v:>{w}.3f}"


def print_table(result: dict[str, Any]) -> None:
    print(f"{'adapted on':<16}{'scored on':<16}{'F1 before':>10}{'F1 after':>10}{'dF1':>8}"
          f"{'P after':>8}{'R after':>8}{'ctr after':>10}{'labels/round':>14}")  # fmt: skip
    for shift, entry in result["adapted"].items():
        labels = ",".join(str(n) for n in entry["adapt"].get("pseudo_labels_per_round", []))
        if "error" in entry["adapt"]:
            print(f"{shift:<16}{'(adapt failed)':<16} {entry['adapt']['error'].splitlines()[-1]}")
            continue
        for target, row in entry["scores"].items():
            before = result["before"][target]["f1"]
            print(f"{shift:<16}{target:<16}{_f(before, 10)}{_f(row['f1'], 10)}"
                  f"{_f(row['f1'] - before)}{_f(row['precision'])}{_f(row['recall'])}"
                  f"{_f(row['center_error_nm_median'], 10)}"
                  f"{labels if target == shift else '':>14}")  # fmt: skip


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", required=True, help="bench_domain_shift.py's cache folder")
    p.add_argument("--control-data", default=None,
                   help="a second cache folder for control shifts not in --data")  # fmt: skip
    p.add_argument("--model", default="default", help="the base model (adapt --from)")
    p.add_argument(
        "--before-json",
        nargs="*",
        default=[],
        help="bench_domain_shift.py results of the base model (same code and data)",
    )
    p.add_argument("--low-confidence", type=float, default=0.0)
    p.add_argument("--lr", type=float, default=2e-4)
    p.add_argument(
        "--adapt-args",
        default="",
        help="more synapseg adapt options in one string, e.g. --adapt-args='--blob-margin 15'",
    )
    p.add_argument("--adapt-shifts", default="thick_membrane,lamella_cut,dense_protein")
    p.add_argument("--control-shifts", default="tilt40,denoised",
                   help="shifts each adapted model is also scored on")  # fmt: skip
    p.add_argument("--steps", type=int, default=30, help="adapt --steps (per round)")
    p.add_argument("--rounds", type=int, default=2)
    p.add_argument("--min-confidence", type=float, default=0.8)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--device", default="cpu")
    p.add_argument("--src", default=None, help="a checkout's src/ to test (PYTHONPATH)")
    p.add_argument("--out", default="adapt_out", help="models and segment outputs go here")
    p.add_argument("--json", default=None, help="write the results here")
    p.add_argument("--segment-args", nargs=argparse.REMAINDER, default=[],
                   help="extra arguments for synapseg segment (last on the line)")  # fmt: skip
    a = p.parse_args(argv)
    data = Path(a.data).expanduser()
    folders = [data] + ([Path(a.control_data).expanduser()] if a.control_data else [])
    known: dict[str, Any] = {}
    for path in a.before_json:
        prior = json.loads(Path(path).read_text())
        if prior.get("model") != a.model:
            sys.exit(f"{path} is for model {prior.get('model')}, not {a.model}")
        known.update(prior["shifts"])
    out = Path(a.out).expanduser()
    adapt_shifts = [s for s in a.adapt_shifts.split(",") if s]
    controls = [s for s in a.control_shifts.split(",") if s]
    result: dict[str, Any] = {
        "benchmark": "adapt",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": f"{platform.machine()}, {os.cpu_count()} cores, device {a.device}",
        "command": " ".join([Path(sys.argv[0]).name, *(argv or sys.argv[1:])]),
        "settings": {k: v for k, v in vars(a).items() if k not in ("json",)},
        "match": "center distance < 0.5 x true midline radius",
        "before": {},
        "adapted": {},
    }
    for shift in dict.fromkeys(adapt_shifts + controls):
        if shift in known:
            result["before"][shift] = {**known[shift], "from": "--before-json"}
            continue
        result["before"][shift] = _segment_shift(folders, shift, out / "before", a.model, a)
        print(json.dumps({"before": {shift: result["before"][shift]["f1"]}}), file=sys.stderr)
    for shift in adapt_shifts:
        model_dir = out / "models" / shift
        entry: dict[str, Any] = {"adapt": _adapt(data, shift, model_dir, a), "scores": {}}
        result["adapted"][shift] = entry
        print(json.dumps({"adapt": {shift: entry["adapt"]}}), file=sys.stderr)
        if "error" in entry["adapt"]:
            continue
        for target in dict.fromkeys([shift] + controls):
            row = _segment_shift(folders, target, out / f"after_{shift}", str(model_dir), a)
            entry["scores"][target] = row
            print(json.dumps({"after": {shift: {target: row["f1"]}}}), file=sys.stderr)
    print_table(result)
    if a.json:
        Path(a.json).write_text(json.dumps(result, indent=2, default=str))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
