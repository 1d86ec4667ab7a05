"""Benchmark: exports of a vesicle table (label volume, Pyto labels, CSV/JSON/STAR/.mod).

Places ``--n-vesicles`` random vesicles (midline radius 15-25 nm, outer radius +2.25 nm;
overlaps allowed) in a ``--shape`` volume at ``--voxel-size`` nm and measures, each in this
process:

* ``render_labels`` into a uint16 array in memory, and into a ``numpy.memmap`` (.npy file);
* ``write_pyto`` (int16 MRC streamed through a memmap, plus the parameter snippet);
* write and read back (``read_vesicles``) of the CSV, JSON, STAR and IMOD .mod files.

Baselines measured in the same run: ``np.save`` of the same uint16 label volume (the cost
of just writing that many bytes), a naive renderer (distance of every voxel of the volume
to each vesicle, z-slab by z-slab) timed on ``--naive-vesicles`` vesicles and extrapolated
linearly to all of them, and ``DataFrame.to_pickle`` / ``read_pickle`` for the tables.

Memory per step: the tracemalloc peak (numpy buffers included; memmap pages are not
allocations), RssAnon from /proc/self/status when the step ends (its result still alive),
and the peak resident set during the step (VmHWM after resetting it via
/proc/self/clear_refs, Linux only; file-backed memmap pages count there). Timings are taken
in a first run without tracemalloc, memory in a second, traced run.

    python benchmarks/bench_exports.py --help
    python benchmarks/bench_exports.py --json exports.json
    python benchmarks/bench_exports.py --shape 64 256 256 --n-vesicles 50   # quick check
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import json
import logging
import os
import platform
import tempfile
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from _machine import reset_peak_rss
from synapseg.io.imod import write_imod_spheres
from synapseg.io.pyto import write_pyto
from synapseg.io.star import write_table_star
from synapseg.io.tables import (
    CENTER_PX,
    make_table,
    read_vesicles,
    write_table_csv,
    write_table_json,
)
from synapseg.post.render import render_labels

MIB = 2**20


def proc_status() -> dict[str, float]:
    """RssAnon, VmRSS and VmHWM of this process in MiB (empty off Linux)."""
    out: dict[str, float] = {}
    try:
        with open("/proc/self/status") as fh:
            for line in fh:
                key = line.split(":")[0]
                if key in ("RssAnon", "VmRSS", "VmHWM"):
                    out[key] = int(line.split()[1]) / 1024
    except OSError:
        pass
    return out


def measure(fn: Callable[[], Any], repeat: int = 1, trace: bool = True) -> dict[str, Any]:
    """Best wall time of ``repeat`` untraced runs, then one traced run for memory."""
    times = []
    for _ in range(repeat):
        gc.collect()
        t0 = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - t0)
        del result
    row: dict[str, Any] = {"seconds": min(times)}
    if not trace:
        return row
    gc.collect()
    can_reset = reset_peak_rss()
    rss0 = proc_status().get("VmRSS", float("nan"))
    tracemalloc.start()
    try:
        result = fn()
        current0, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    status = proc_status()
    row["tracemalloc_peak_mib"] = peak / MIB
    row["rss_anon_mib"] = status.get("RssAnon", float("nan"))
    row["peak_rss_step_mib"] = status.get("VmHWM", float("nan")) - rss0 if can_reset else None
    del result
    gc.collect()
    return row


def random_table(shape: tuple[int, int, int], n: int, voxel_nm: float, seed: int) -> pd.DataFrame:
    """``n`` random vesicles (midline radius 15-25 nm) with centers away from the faces."""
    rng = np.random.default_rng(seed)
    lo = np.minimum([10, 20, 20], np.array(shape) // 4)
    hi = np.array(shape) - lo
    centers = rng.uniform(lo, hi, (n, 3))
    return make_table(centers, rng.uniform(15, 25, n), (voxel_nm,) * 3)


def naive_render(table: pd.DataFrame, shape: tuple[int, int, int], voxel_nm: float) -> np.ndarray:
    """Baseline: every voxel's distance to every vesicle, 16 z-sections at a time."""
    out = np.zeros(shape, np.uint16)
    yy = (np.arange(shape[1]) * voxel_nm)[None, :, None]
    xx = (np.arange(shape[2]) * voxel_nm)[None, None, :]
    centers = table[CENTER_PX].to_numpy() * voxel_nm
    for vid, c, r in zip(table["id"], centers, table["outer_radius_nm"]):
        for z0 in range(0, shape[0], 16):
            zz = (np.arange(z0, min(z0 + 16, shape[0])) * voxel_nm)[:, None, None]
            inside = (zz - c[0]) ** 2 + (yy - c[1]) ** 2 + (xx - c[2]) ** 2 <= r * r
            out[z0 : z0 + len(zz)][inside] = vid
    return out


def run(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    shape = tuple(args.shape)
    vs = args.voxel_size
    table = random_table(shape, args.n_vesicles, vs, args.seed)
    nvox = float(np.prod(shape))
    rows: dict[str, dict[str, Any]] = {}

    # --- volume baselines
    def save_npy():
        labels = np.zeros(shape, np.uint16)
        np.save(tmp / "baseline.npy", labels)
        return labels

    rows["np.save of the uint16 volume (baseline)"] = measure(save_npy)
    (tmp / "baseline.npy").unlink()
    k = min(args.naive_vesicles, len(table))
    naive = measure(lambda: naive_render(table.iloc[:k], shape, vs), trace=False)
    naive["seconds"] *= len(table) / max(k, 1)
    naive["extrapolated_from"] = k
    rows[f"naive full-volume rendering (baseline, {k} vesicles extrapolated)"] = naive

    # --- rendering
    rows["render_labels into memory"] = measure(
        lambda: render_labels(table, shape, vs, out=np.zeros(shape, np.uint16))
    )

    def render_memmap():
        out = np.lib.format.open_memmap(tmp / "labels.npy", "w+", np.uint16, shape)
        render_labels(table, shape, vs, out=out)
        out.flush()
        return out

    rows["render_labels into a memmap"] = measure(render_memmap)
    (tmp / "labels.npy").unlink()

    def pyto():
        return write_pyto(tmp / "bench", table, shape=shape, voxel_size_nm=vs, overwrite=True)

    rows["write_pyto (int16 MRC + parameters)"] = measure(pyto)
    pyto_bytes = (tmp / "bench_pyto_labels.mrc").stat().st_size
    (tmp / "bench_pyto_labels.mrc").unlink()

    for row in rows.values():
        row["mvoxel_per_s"] = nvox / row["seconds"] / 1e6
        row["kind"] = "volume"
    rows["write_pyto (int16 MRC + parameters)"]["file_kib"] = pyto_bytes / 1024

    # --- tables
    writers: dict[str, Callable[[Path], Any]] = {
        "pickle (baseline)": lambda p: table.to_pickle(p),
        "CSV": lambda p: write_table_csv(p, table, overwrite=True),
        "JSON": lambda p: write_table_json(p, table, overwrite=True),
        "STAR": lambda p: write_table_star(
            p, table, tomogram_name="bench", voxel_size_nm=vs, shape=shape, overwrite=True
        ),
        "IMOD .mod": lambda p: write_imod_spheres(
            p, table, voxel_size_nm=vs, shape=shape, overwrite=True
        ),
    }
    suffix = {"pickle (baseline)": ".pkl", "CSV": ".csv", "JSON": ".json", "STAR": ".star"}
    for fmt, write in writers.items():
        path = tmp / f"vesicles{suffix.get(fmt, '.mod')}"
        w = measure(lambda p=path, f=write: f(p), repeat=args.repeat)
        if fmt.startswith("pickle"):
            r = measure(lambda p=path: pd.read_pickle(p), repeat=args.repeat)
        else:
            r = measure(
                lambda p=path: read_vesicles(p, voxel_size_nm=vs, shape=shape), repeat=args.repeat
            )
            back = read_vesicles(path, voxel_size_nm=vs, shape=shape)
            err = np.abs(back[CENTER_PX].to_numpy() - table[CENTER_PX].to_numpy()).max()
            assert err < 0.01, (fmt, err)  # the round trip really read the vesicles back
        size = path.stat().st_size / 1024
        rows[f"write {fmt}"] = {**w, "kind": "table", "file_kib": size}
        rows[f"read {fmt}"] = {**r, "kind": "table", "file_kib": size}

    # ratios against the baselines of the same run
    save_s = rows["np.save of the uint16 volume (baseline)"]["seconds"]
    naive_s = naive["seconds"]
    for name, row in rows.items():
        if row["kind"] == "volume":
            row["x_np_save"] = row["seconds"] / save_s
            row["naive_speedup"] = naive_s / row["seconds"]
        else:
            op = name.split()[0]
            row["x_pickle"] = row["seconds"] / rows[f"{op} pickle (baseline)"]["seconds"]
    return rows


def fmt_num(value: Any, spec: str) -> str:
    return "–" if value is None or (isinstance(value, float) and np.isnan(value)) else spec % value


def print_table(rows: dict[str, dict[str, Any]]) -> None:
    head = ("step", "time", "Mvox/s", "×base", "speedup", "tm peak MiB", "RssAnon", "peak RSS Δ")
    print("| " + " | ".join(head) + " |")
    print("|" + "---|" * len(head))
    for name, r in rows.items():
        t = r["seconds"]
        time_s = f"{t:.2f} s" if t >= 1 else f"{t * 1e3:.0f} ms"
        base = r.get("x_np_save", r.get("x_pickle"))
        cells = [
            name,
            time_s,
            fmt_num(r.get("mvoxel_per_s"), "%.0f"),
            fmt_num(base, "%.2f"),
            fmt_num(r.get("naive_speedup"), "%.0f×"),
            fmt_num(r.get("tracemalloc_peak_mib"), "%.1f"),
            fmt_num(r.get("rss_anon_mib"), "%.0f"),
            fmt_num(r.get("peak_rss_step_mib"), "%.0f"),
        ]
        print("| " + " | ".join(cells) + " |")


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--shape", type=int, nargs=3, default=(261, 1024, 1024), metavar=("Z", "Y", "X")
    )
    parser.add_argument("--n-vesicles", type=int, default=1000)
    parser.add_argument("--voxel-size", type=float, default=1.68, help="nm (default 1.68)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument(
        "--naive-vesicles",
        type=int,
        default=10,
        help="vesicles the naive baseline renders (time extrapolated to all; default 10)",
    )
    parser.add_argument("--repeat", type=int, default=3, help="table I/O: best of N (default 3)")
    parser.add_argument("--tmp", type=Path, default=None, help="scratch folder (default: system)")
    parser.add_argument("--json", type=Path, default=None, help="write results as JSON here")
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)  # face-touching vesicles: expected, not news
    with tempfile.TemporaryDirectory(dir=args.tmp) as tmp:
        rows = run(args, Path(tmp))
    meta = {
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "shape": list(args.shape),
        "n_vesicles": args.n_vesicles,
        "voxel_size_nm": args.voxel_size,
        "seed": args.seed,
        "machine": {
            "node": platform.node(),
            "processor": platform.processor() or platform.machine(),
            "cpus": os.cpu_count(),
            "python": platform.python_version(),
            "numpy": np.__version__,
        },
    }
    shape_s = "×".join(str(s) for s in args.shape)
    print(f"{args.n_vesicles} vesicles in {shape_s} at {args.voxel_size} nm, seed {args.seed}")
    print("×base: time / np.save of the volume (volume rows) or / pickle (table rows)")
    print_table(rows)
    if args.json:
        args.json.write_text(json.dumps({**meta, "results": rows}, indent=2))


if __name__ == "__main__":
    main()
