"""Fault injection: kill ``synapseg segment`` at random times; the next run must finish with
results identical to an uninterrupted run.

Simulates one small tomogram, runs ``synapseg segment`` on it once without interruption
(the reference), then ``--kills`` times: starts ``synapseg segment`` into a fresh output
folder, sends SIGKILL or SIGINT (alternating) after a random delay drawn uniformly from
[0, reference run time], and reruns the same command. Each rerun must exit 0, leave no
``*.tmp`` behind, and write a vesicle table (CSV) and label volume (MRC) byte-identical to
the reference, with the same probability map. A SIGINT that lands while the command runs
must exit 130 with the one-line "interrupted; rerun the same command to resume".
``--stage-kills`` adds kills at fixed points (each stage's first file appearing), so that
every stage is hit whatever the machine's speed.

    python benchmarks/fault_injection.py [--kills 20] [--stage-kills] [--seed 0] [--json F]

Prints a table and writes JSON (one record per kill and a summary). Exit status 1 if any
check failed.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

INTERRUPTED = "interrupted; rerun the same command to resume"
NAME = "tomo"
EVENTS = {
    "predict writing": f"{NAME}_probabilities.mrc.tmp",
    "predict done": f"{NAME}_report.json",
    "vesicles done": f"{NAME}_vesicles.csv",
    "export writing labels": f"{NAME}_vesicles.mrc.tmp",
}
"""Stage-targeted kills (``--stage-kills``): signal as soon as this file exists."""
COMPARED = (f"{NAME}_vesicles.csv", f"{NAME}_vesicles.mrc", f"{NAME}_probabilities.mrc")


def make_tomogram(folder: Path, shape: tuple[int, int, int], seed: int) -> Path:
    """A small simulated synapse tomogram (``folder/tomo.mrc``)."""
    from synapseg.io.volume_writer import write_volume
    from synapseg.simulate import SimulationParams, simulate_tomogram

    params = SimulationParams(shape=shape, voxel_size_nm=1.68, seed=seed, n_vesicles=8)
    sim = simulate_tomogram(params)
    return write_volume(folder / f"{NAME}.mrc", sim.tomogram, 1.68, overwrite=True)


def segment_command(tomogram: Path, out: Path) -> list[str]:
    """The command under test (the installed ``synapseg`` of this Python).

    Ctrl-C is re-armed first: a parent that ignores SIGINT (some test-suite plugins do)
    passes the ignore on through exec, and the SIGINT kill would then do nothing."""
    code = (
        "import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
        "from synapseg.cli import app; sys.argv[0] = 'synapseg'; app()"
    )
    return [sys.executable, "-c", code, "--quiet", "segment", str(tomogram), "-o", str(out)]


def run_to_end(tomogram: Path, out: Path, timeout_s: float = 600) -> tuple[int, float, str]:
    """Run ``segment`` to completion: (exit status, seconds, stderr)."""
    t0 = time.perf_counter()
    proc = subprocess.run(
        segment_command(tomogram, out), capture_output=True, text=True, timeout=timeout_s
    )
    return proc.returncode, time.perf_counter() - t0, proc.stderr


def run_and_kill(
    tomogram: Path,
    out: Path,
    sig: int,
    delay_s: float | None = None,
    when: Callable[[], bool] | None = None,
    timeout_s: float = 600,
) -> dict:
    """Start ``segment``, send ``sig`` after ``delay_s`` seconds or as soon as ``when()``
    is true (polled every 5 ms), and wait for it to end."""
    proc = subprocess.Popen(
        segment_command(tomogram, out), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True
    )
    t0 = time.perf_counter()
    sent = False
    while proc.poll() is None and time.perf_counter() - t0 < timeout_s:
        due = (when is not None and when()) or (
            delay_s is not None and time.perf_counter() - t0 >= delay_s
        )
        if due:
            proc.send_signal(sig)
            sent = True
            break
        time.sleep(0.005)
    at_s = time.perf_counter() - t0
    _, stderr = proc.communicate(timeout=timeout_s)
    stages = []
    report = out / f"{NAME}_report.json"
    if report.exists():
        stages = sorted(json.loads(report.read_text()).get("stages", {}))
    return {
        "signal": signal.Signals(sig).name,
        "sent_at_s": round(at_s, 3),
        "signal_sent": sent and proc.returncode != 0,  # False: it finished first
        "killed_rc": proc.returncode,
        "killed_stderr_tail": stderr.strip().splitlines()[-1:] if stderr.strip() else [],
        "stages_done_at_kill": stages,
        "tmp_left_by_kill": sorted(p.name for p in out.glob("*.tmp")) if out.exists() else [],
    }


MRC_LABELS = slice(224, 1024)
"""The MRC header's ten 80-character text labels: mrcfile stamps the creation time there."""


def _comparable(path: Path) -> bytes:
    data = path.read_bytes()
    if path.suffix == ".mrc":  # everything but the time-stamped text labels
        return data[: MRC_LABELS.start] + data[MRC_LABELS.stop :]
    return data


def compare_outputs(reference: Path, out: Path) -> dict[str, bool]:
    """Byte equality with the reference of the table, the label volume and the probability
    map (MRC: header and data, without the header's time-stamped text labels)."""
    same = {}
    for name in COMPARED:
        a, b = reference / name, out / name
        same[name] = a.exists() and b.exists() and _comparable(a) == _comparable(b)
    return same


def csv_difference(reference: Path, out: Path) -> list[str]:
    """Columns (or the shape) in which two vesicle tables differ, for the record."""
    import pandas as pd

    a, b = (pd.read_csv(f / f"{NAME}_vesicles.csv") for f in (reference, out))
    if list(a.columns) != list(b.columns) or len(a) != len(b):
        return [f"columns/rows {list(a.columns)} x {len(a)} vs {list(b.columns)} x {len(b)}"]
    return [c for c in a.columns if not a[c].equals(b[c])]


def trial(
    tomogram: Path,
    reference: Path,
    out: Path,
    sig: int,
    delay_s: float | None = None,
    when: Callable[[], bool] | None = None,
) -> dict:
    """One kill and the rerun after it, with every check's outcome."""
    shutil.rmtree(out, ignore_errors=True)
    record = run_and_kill(tomogram, out, sig, delay_s, when)
    rc, seconds, stderr = run_to_end(tomogram, out)
    record.update(
        {
            "delay_s": None if delay_s is None else round(delay_s, 3),
            "rerun_rc": rc,
            "rerun_s": round(seconds, 2),
            "rerun_stderr_tail": stderr.strip().splitlines()[-3:],
            "tmp_after_rerun": sorted(p.name for p in out.glob("*.tmp")),
            "identical": compare_outputs(reference, out),
        }
    )
    if rc == 0 and not record["identical"][f"{NAME}_vesicles.csv"]:
        record["csv_differs_in"] = csv_difference(reference, out)
    interrupted_ok = True
    if record["signal"] == "SIGINT" and record["signal_sent"]:
        # Python may be interrupted before synapseg's handler is installed (during imports):
        # then there is nothing to resume and no message to give; count those separately.
        interrupted_ok = record["killed_rc"] != 130 or record["killed_stderr_tail"] == [INTERRUPTED]
    record["ok"] = (
        rc == 0
        and not record["tmp_after_rerun"]
        and all(record["identical"].values())
        and interrupted_ok
    )
    return record


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--kills", type=int, default=20, help="number of killed runs (default 20)")
    ap.add_argument("--seed", type=int, default=0, help="seed of the kill times and tomogram")
    ap.add_argument("--shape", type=int, nargs=3, default=[48, 128, 128], metavar=("Z", "Y", "X"))
    ap.add_argument("--work", type=Path, default=None, help="work folder (default: a temp dir)")
    ap.add_argument("--json", type=Path, default=Path("fault_injection.json"), help="JSON output")
    ap.add_argument(
        "--stage-kills",
        action="store_true",
        help="also kill at each stage's first file (SIGKILL and SIGINT each): " + ", ".join(EVENTS),
    )
    args = ap.parse_args(argv)
    import synapseg

    work = args.work or Path(tempfile.mkdtemp(prefix="synapseg-faults-"))
    work.mkdir(parents=True, exist_ok=True)
    tomogram = make_tomogram(work / "input", tuple(args.shape), args.seed)
    reference = work / "reference"
    shutil.rmtree(reference, ignore_errors=True)
    rc, ref_s, stderr = run_to_end(tomogram, reference)
    if rc != 0:
        print(f"reference run failed (exit {rc}):\n{stderr}", file=sys.stderr)
        return 1
    rng = random.Random(args.seed)
    records = []
    print(f"reference run: {ref_s:.1f} s; {args.kills} kills at U(0, {ref_s:.1f}) s")
    print(
        f"{'#':>3} {'signal':7} {'at s':>6} {'rc':>4} {'stages done':22} {'tmp':>3} "
        f"{'rerun':>5} {'s':>5} {'same':>4} ok"
    )
    plan: list[tuple[int, float | None, str | None]] = [
        (signal.SIGKILL if i % 2 == 0 else signal.SIGINT, rng.uniform(0, ref_s), None)
        for i in range(args.kills)
    ]
    if args.stage_kills:
        plan += [(sig, None, e) for e in EVENTS for sig in (signal.SIGKILL, signal.SIGINT)]
    for i, (sig, delay_s, event) in enumerate(plan):
        out = work / f"run_{i:02d}"
        when = None if event is None else (lambda f=out / EVENTS[event]: f.exists())
        r = trial(tomogram, reference, out, sig, delay_s=delay_s, when=when)
        r["index"], r["at_event"] = i, event
        records.append(r)
        same = sum(r["identical"].values())
        print(
            f"{i:>3} {r['signal']:7} {r['sent_at_s']:>6.2f} {r['killed_rc']:>4} "
            f"{','.join(r['stages_done_at_kill']) or '-':22} {len(r['tmp_left_by_kill']):>3} "
            f"{r['rerun_rc']:>5} {r['rerun_s']:>5.1f} {same}/{len(COMPARED)} {r['ok']}"
        )
    summary = {
        "kills": len(records),
        "signal_landed_while_running": sum(r["signal_sent"] for r in records),
        "finished_before_signal": sum(not r["signal_sent"] for r in records),
        "tmp_left_by_kill": sum(bool(r["tmp_left_by_kill"]) for r in records),
        "reruns_ok": sum(r["ok"] for r in records),
        "all_ok": all(r["ok"] for r in records),
        "sigint_with_message": sum(
            r["signal"] == "SIGINT" and r["killed_rc"] == 130 for r in records
        ),
    }
    result = {
        "benchmark": "fault_injection",
        "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime()),
        "machine": {
            "cpus": os.cpu_count(),
            "platform": platform.platform(),
            "python": platform.python_version(),
        },
        "command": "python benchmarks/fault_injection.py " + " ".join(argv or sys.argv[1:]),
        "synapseg": {
            "version": synapseg.__version__,
            "package": str(Path(synapseg.__file__).parent),
        },
        "shape_zyx": list(args.shape),
        "seed": args.seed,
        "reference_s": round(ref_s, 2),
        "summary": summary,
        "trials": records,
    }
    args.json.write_text(json.dumps(result, indent=2) + "\n")
    print(json.dumps(summary))
    print(f"wrote {args.json}")
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)
    return 0 if summary["all_ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
