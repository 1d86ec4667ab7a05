"""Opening a large MRC must not read it.

Creates a sparse 4096×4096×512 int8 MRC (8 GiB apparent size, almost no disk), then in fresh
subprocesses times ``read_volume`` + reading one z-section, and the same with plain
``mrcfile.mmap`` as the baseline. Reports seconds, peak RSS and anonymous memory (RssAnon).

    python benchmarks/bench_io.py [--shape 512 4096 4096] [--json out.json]
"""

from __future__ import annotations

import argparse
import json
import platform
import subprocess
import sys
import tempfile
import warnings
from pathlib import Path

import mrcfile
import numpy as np

CHILD = r"""
import json, resource, sys, time
t0 = time.perf_counter()
path, which = sys.argv[1], sys.argv[2]
if which == "synapseg":
    from synapseg.io.volume import read_volume
    vol = read_volume(path)
    data = vol.data
else:
    import mrcfile
    mrc = mrcfile.mmap(path, mode="r", permissive=True)
    data = mrc.data
t1 = time.perf_counter()
section = __import__("numpy").asarray(data[data.shape[0] // 2], dtype="float32")
t2 = time.perf_counter()
anon = 0
for line in open("/proc/self/status"):
    if line.startswith("RssAnon:"):
        anon = int(line.split()[1]) / 1024
print(json.dumps({"open_s": t1 - t0, "slice_s": t2 - t1, "total_s": t2 - t0,
                  "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                  "rss_anon_mb": anon, "checksum": float(section.sum())}))
"""


def make_sparse_mrc(path: Path, shape: tuple[int, int, int]) -> None:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        mrc = mrcfile.new_mmap(path, shape=shape, mrc_mode=0, overwrite=True)
        mrc.voxel_size = 14.69
        mrc.data[shape[0] // 2, :16, :16] = 7  # a few real bytes; the rest is a hole
        mrc.close()


def run(path: Path, which: str) -> dict:
    out = subprocess.run(
        [sys.executable, "-c", CHILD, str(path), which], capture_output=True, text=True, check=True
    )
    return json.loads(out.stdout)


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawTextHelpFormatter
    )
    parser.add_argument(
        "--shape", type=int, nargs=3, default=(512, 4096, 4096), metavar=("Z", "Y", "X")
    )
    parser.add_argument("--json", type=Path, default=None, help="write results as JSON here")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "big.mrc"
        make_sparse_mrc(path, tuple(args.shape))
        rows = {
            "mrcfile.mmap (baseline)": run(path, "mrcfile"),
            "synapseg read_volume": run(path, "synapseg"),
        }
    base = rows["mrcfile.mmap (baseline)"]["total_s"]
    size_gib = np.prod(args.shape) / 2**30
    print(f"sparse int8 MRC {tuple(args.shape)} ({size_gib:.1f} GiB), {platform.node()}")
    heads = ("open s", "slice s", "total s", "×base", "peak RSS MB", "RssAnon MB")
    print(f"{'reader':28s} " + " ".join(f"{h:>11s}" for h in heads))
    for name, r in rows.items():
        print(
            f"{name:28s} {r['open_s']:11.3f} {r['slice_s']:11.3f} {r['total_s']:11.3f} "
            f"{r['total_s'] / base:11.2f} {r['peak_rss_mb']:11.1f} {r['rss_anon_mb']:11.1f}"
        )
    if args.json:
        args.json.write_text(json.dumps({"shape": list(args.shape), "results": rows}, indent=2))


if __name__ == "__main__":
    main()
