#!/usr/bin/env python
"""The whole of a huge OME-Zarr tomogram through ``synapseg segment --backend dask``, with the
peak memory of every process (issue 17: "segmented with peak RSS per worker < 3 GB").

Runs the command line a user runs, in a child process::

    synapseg -q segment STORE -o OUT --backend dask --workers N --volume-format zarr \\
        --no-context --no-filaments [EXTRA...]

and samples every process of its tree every ``--every`` seconds (``psutil``, which
dask.distributed installs): the high-water mark of resident memory (``VmHWM``, monotonic, so
sampling misses no peak before the last sample) and the anonymous resident memory
(``RssAnon``, which leaves out memory-mapped file pages). The driver is the child itself;
every other process of the tree (dask's nannies and workers, forked helpers) is listed with
its command line, so the workers' peaks can be read off. Build the store first with
``bench_distributed.py --out DIR --workers`` (no worker counts: build only)::

    python benchmarks/bench_distributed.py --out /tmp/big --synapse-every 16 --workers
    python benchmarks/bench_full_volume.py /tmp/big/big.zarr -o /tmp/big/out --workers 1 \\
        --json full.json
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path

import psutil

CLI = "from synapseg.cli import run; run()"


def _status_kb(pid: int, field: str) -> int:
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        pass
    return 0


def monitor(cmd: list[str], every: float, log: Path | None) -> dict:
    """Run ``cmd``; per process of its tree: peak VmHWM and RssAnon (MB), command line."""
    t0 = time.perf_counter()
    sink = log.open("wb") if log else subprocess.DEVNULL
    proc = subprocess.Popen(cmd, stdout=sink, stderr=subprocess.STDOUT)
    root = psutil.Process(proc.pid)
    seen: dict[int, dict] = {}
    while proc.poll() is None:
        try:
            tree = [root, *root.children(recursive=True)]
        except psutil.NoSuchProcess:
            tree = []
        for p in tree:
            rec = seen.get(p.pid)
            if rec is None:
                try:
                    cmdline = " ".join(p.cmdline())[:160]
                except psutil.Error:
                    cmdline = "?"
                rec = seen[p.pid] = {"pid": p.pid, "cmd": cmdline, "hwm_mb": 0, "anon_mb": 0}
            rec["hwm_mb"] = max(rec["hwm_mb"], _status_kb(p.pid, "VmHWM") // 1024)
            rec["anon_mb"] = max(rec["anon_mb"], _status_kb(p.pid, "RssAnon") // 1024)
        time.sleep(every)
    if log:
        sink.close()
    driver = seen.pop(proc.pid, {"hwm_mb": 0, "anon_mb": 0})
    others = sorted(seen.values(), key=lambda r: -r["hwm_mb"])
    return {
        "code": proc.returncode,
        "wall_s": round(time.perf_counter() - t0, 1),
        "driver_peak_hwm_mb": driver["hwm_mb"],
        "driver_peak_rss_anon_mb": driver["anon_mb"],
        "other_processes": others,
        "max_other_hwm_mb": max((r["hwm_mb"] for r in others), default=0),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("store", type=Path)
    ap.add_argument("-o", "--out", type=Path, required=True)
    ap.add_argument("--workers", type=int, default=1)
    ap.add_argument("--every", type=float, default=1.0, help="sampling interval, s")
    ap.add_argument("--json", type=Path)
    ap.add_argument("extra", nargs="*", help="more segment options (after --)")
    args = ap.parse_args()
    cmd = [sys.executable, "-c", CLI, "-q", "segment", str(args.store), "-o", str(args.out),
           "--backend", "dask", "--workers", str(args.workers), "--volume-format", "zarr",
           "--no-context", "--no-filaments", *args.extra]  # fmt: skip
    result = {"command": cmd[3:], "load_avg_before": psutil.getloadavg()}
    args.out.mkdir(parents=True, exist_ok=True)
    result.update(monitor(cmd, args.every, args.out / "segment.log"))
    result["load_avg_after"] = psutil.getloadavg()
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text)
    sys.exit(result["code"])


if __name__ == "__main__":
    main()
