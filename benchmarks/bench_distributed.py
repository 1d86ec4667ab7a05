#!/usr/bin/env python
"""Block-wise segmentation of a huge synthetic OME-Zarr tomogram on a dask LocalCluster.

1. **Build** an int8 OME-Zarr of ``--shape`` voxels (default 1024 x 4096 x 4096, ~17 GB) block
   by block: one simulated synapse (``--tile`` voxels at ``--voxel-size`` nm, scaled to int8)
   repeated over the volume, chunk by chunk; nothing of the size of the volume is ever in
   memory. Free disk space is checked first; when it is short the largest fitting size is
   used (and said).
2. **Decisions** on the whole volume (specimen mask, polarity, wedge, statistics,
   background: one streaming pass in the driver), timed, with the driver's peak RSS
   (``--decide-full``; they do not depend on the number of workers).
3. **Segment** ``--region`` (a documented fraction of the volume, read lazily from the big
   store) with 1 and 2 workers (``--workers``), each in a fresh process with a fresh
   ``LocalCluster(processes=True)``: wall time per phase, throughput, peak RSS of every
   worker process and of the driver (``VmHWM``).
4. **Projection** of the throughput on cluster nodes, with the assumptions printed.

    python benchmarks/bench_distributed.py --out /tmp/synapseg-bench --json dist.json
    python benchmarks/bench_distributed.py --shape 256 1024 1024 --region 64 512 512
    # 1 -> 2 workers, a few minutes: 16 tiles of 256 in 4 network blocks, 4 vesicle blocks
    python benchmarks/bench_distributed.py --shape 128 1024 1024 --region 128 1024 1024 \
        --tile-size 256 --post-block 128 512 512 --out /tmp/synapseg-dist --json scaling.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import resource
import shutil
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

GB = 1e9


class CropView:
    """A lazy (z, y, x) region of a large array (zarr): indexing reads only what is asked."""

    def __init__(self, array, region):
        self.array = array
        self.region = tuple(slice(int(s.start), int(s.stop)) for s in region)

    @property
    def shape(self):
        return tuple(s.stop - s.start for s in self.region)

    @property
    def dtype(self):
        return np.dtype(self.array.dtype)

    @property
    def ndim(self):
        return 3

    @property
    def chunks(self):
        return self.array.chunks

    def __getitem__(self, key):
        key = key if isinstance(key, tuple) else (key,)
        key = key + (slice(None),) * (3 - len(key))
        out = []
        for k, r, n in zip(key, self.region, self.shape):
            if isinstance(k, slice):
                a, b, step = k.indices(n)
                out.append(slice(r.start + a, r.start + max(a, b), step))
            else:
                k = int(k)
                out.append(r.start + (k + n if k < 0 else k))
        return np.asarray(self.array[tuple(out)])


def peak_rss_gb() -> float:
    """Peak resident memory of this process (VmHWM: unlike ``ru_maxrss`` it does not carry
    over the high-water mark of the parent that forked it)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024 / GB
    except OSError:
        pass
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024 / GB


def has_synapse(index: tuple[int, int, int], every: int) -> bool:
    """Whether the tile at grid ``index`` holds the synapse (1 in ``every``, spread along a
    diagonal lattice so that no row or column of tiles is all synapse or all empty)."""
    iz, iy, ix = index
    return (7 * iz + 3 * iy + ix) % every == 0


def build(
    path: Path, shape, tile_shape, voxel_nm: float, seed: int, synapse_every: int = 1
) -> dict:
    """Write the int8 OME-Zarr chunk by chunk (chunks = the simulated tile).

    With ``synapse_every`` N > 1, one tile in N holds the synapse and the others the same
    kind of specimen without vesicles (``n_vesicles=0``, same seed): a field of view with
    synapses here and there instead of a synapse everywhere.
    """
    import synapseg
    from synapseg.io.zarr_writer import open_ome_zarr_writer

    def as_int8(sim, med=None, scale=None):
        tomo = np.asarray(sim.tomogram, np.float32)
        if med is None:
            med = float(np.median(tomo))
            scale = 127 / max(float(np.percentile(np.abs(tomo - med), 99.9)), 1e-6)
        return np.clip(np.rint((tomo - med) * scale), -128, 127).astype(np.int8), med, scale

    t0 = time.perf_counter()
    sim = synapseg.simulate(shape=tuple(tile_shape), voxel_size_nm=voxel_nm, seed=seed)
    tile, med, scale = as_int8(sim)
    empty = tile
    if synapse_every > 1:  # the same grey scale, so the two kinds of tile match
        plain = synapseg.simulate(
            shape=tuple(tile_shape), voxel_size_nm=voxel_nm, seed=seed, n_vesicles=0
        )
        empty = as_int8(plain, med, scale)[0]
    t_sim = time.perf_counter() - t0
    n_synapse = 0
    t0 = time.perf_counter()
    with open_ome_zarr_writer(
        path, shape, np.int8, voxel_nm, overwrite=True, chunks=tile_shape, max_levels=1,
        compress=False,
    ) as out:  # fmt: skip
        tz, ty, tx = tile_shape
        for z0 in range(0, shape[0], tz):
            for y0 in range(0, shape[1], ty):
                for x0 in range(0, shape[2], tx):
                    syn = has_synapse((z0 // tz, y0 // ty, x0 // tx), synapse_every)
                    n_synapse += syn
                    src = tile if syn else empty
                    part = src[: shape[0] - z0, : shape[1] - y0, : shape[2] - x0]
                    out[z0 : z0 + tz, y0 : y0 + ty, x0 : x0 + tx] = part
    return {
        "simulate_s": round(t_sim, 1),
        "write_s": round(time.perf_counter() - t0, 1),
        "bytes": int(np.prod(shape)),
        "true_vesicles_per_tile": int(len(sim.vesicles)),
        "synapse_every": synapse_every,
        "synapse_tiles": int(n_synapse),
        "true_vesicles": int(n_synapse * len(sim.vesicles)),
    }


def open_region(path: Path, region):
    import synapseg
    from synapseg.io.volume import Volume

    big = synapseg.read_volume(path)
    view = CropView(big.data, region)
    return Volume(view, big.voxel_size_nm, path=None, voxel_size_source="header")


def run_config(args) -> dict:
    """One worker count, in this (fresh) process."""
    import distributed
    from synapseg.distributed.run import segment_blocks

    region = tuple(slice(0, int(n)) for n in args.region)
    volume = open_region(Path(args.store), region)
    with (
        distributed.LocalCluster(
            n_workers=args.run, threads_per_worker=1, processes=True, dashboard_address=None,
            memory_limit=None,
        ) as cluster,
        distributed.Client(cluster) as client,
    ):  # fmt: skip
        t0 = time.perf_counter()
        res = segment_blocks(
            volume,
            client=client,
            tiles_per_block=tuple(args.tiles_per_block),
            post_block=tuple(args.post_block),
            invert="no",
            tile_size=args.tile_size,
        )
        wall = time.perf_counter() - t0
        rss = client.run(peak_rss_gb)
    n = int(np.prod(volume.shape))
    f = res.facts
    return {
        "workers": args.run,
        "region_zyx": list(volume.shape),
        "wall_s": round(wall, 1),
        "decisions_s": round(f["decisions_s"], 1),
        "predict_s": round(f["predict"]["seconds"], 1),
        "vesicles_s": round(f["vesicles"]["seconds"], 1),
        "mvoxel_per_s": round(n / wall / 1e6, 3),
        "blocks_mvoxel_per_s": round(
            n / (f["predict"]["seconds"] + f["vesicles"]["seconds"]) / 1e6, 3
        ),
        "tiles": f["predict"]["tiles"],
        "tiles_computed": f["predict"]["tiles_computed"],
        "network_blocks": f["predict"]["blocks"],
        "vesicle_blocks": f["vesicles"]["blocks"]["n"],
        "n_vesicles": int(len(res.vesicles)),
        "worker_peak_rss_gb": sorted(round(v, 3) for v in rss.values()),
        "driver_peak_rss_gb": round(peak_rss_gb(), 3),
    }


def block_memory(args) -> dict:
    """Peak RSS of the largest network block of the *full-size* tile plan (256^3 tiles), in
    this fresh process: decisions from a small region, the plan of the whole volume."""
    import dataclasses

    import synapseg
    from synapseg.distributed.block_predict import predict_block
    from synapseg.distributed.blocks import network_blocks, tiles_for
    from synapseg.distributed.decisions import block_tiling, decide
    from synapseg.model.registry import load_model

    big = synapseg.read_volume(args.store)
    small = open_region(Path(args.store), tuple(slice(0, n) for n in (64, 512, 512)))
    d = decide(small, "default", {"invert": "no", "device": "cpu"})
    _, card = load_model("default")
    plan = block_tiling(card.config, big.shape, args.tile_size)  # as decide() plans it
    d = dataclasses.replace(d, plan=plan, network_mask=False)
    k = tuple(args.tiles_per_block)
    blocks = network_blocks(plan, d.factors, big.shape, k)
    one = (1.0, 1.0, 1.0)
    block = max(blocks, key=lambda b: len(tiles_for(plan, b.core, one)))
    rss0 = peak_rss_gb()
    t0 = time.perf_counter()
    predict_block(big.data, block, d, threads=1)
    return {
        "tiles_per_block": list(k),
        "block_core_zyx": list(block.core_shape),
        "tiles": len(tiles_for(plan, block.core, one)),
        "tile_zyx": list(plan.tile_shape),
        "seconds": round(time.perf_counter() - t0, 1),
        "peak_rss_gb": round(peak_rss_gb(), 3),
        "peak_rss_before_block_gb": round(rss0, 3),
    }


def decide_full(path: Path, region) -> dict:
    from synapseg.distributed.decisions import decide

    volume = open_region(path, tuple(slice(0, int(n)) for n in region))
    t0 = time.perf_counter()
    d = decide(volume, "default", {"invert": "no", "device": "cpu"})
    return {
        "region_zyx": list(volume.shape),
        "seconds": round(time.perf_counter() - t0, 1),
        "driver_peak_rss_gb": round(peak_rss_gb(), 3),
        "specimen_cells": list(d.specimen.coarse.shape),
        "threshold": d.threshold,
    }


def project(full_voxels: int, runs: list[dict], decide_s: float | None, region_voxels: int,
            cores: int, gpu_mvox_s: float) -> dict:  # fmt: skip
    one = next(r for r in runs if r["workers"] == 1)
    per_core = one["blocks_mvoxel_per_s"]  # one single-threaded worker = one core
    two = next((r for r in runs if r["workers"] == 2), None)
    eff = (two["blocks_mvoxel_per_s"] / (2 * per_core)) if two else 1.0
    eff = min(eff, 1.0)
    dec = decide_s if decide_s is not None else one["decisions_s"] * full_voxels / region_voxels
    cpu_s = full_voxels / 1e6 / (per_core * cores * eff) + dec
    net_share = one["predict_s"] / (one["predict_s"] + one["vesicles_s"])
    post_s = full_voxels / 1e6 * (1 - net_share) / per_core / cores
    gpu_s = full_voxels / 1e6 / gpu_mvox_s + post_s + dec
    return {
        "assumptions": [
            f"a CPU node has {cores} cores running {cores} single-threaded workers, each as fast "
            f"as the 1-worker run here ({per_core} Mvoxel/s of blocks) times the 1->2 worker "
            f"efficiency measured here ({eff:.2f})",
            "the whole-volume decisions run once in the driver (their time measured with "
            "--decide-full on --decide-region, scaled to the full volume by voxel count)",
            f"a GPU node: the network at an ASSUMED {gpu_mvox_s} Mvoxel/s (not measured: no GPU "
            f"here), post-processing on its {cores} CPU cores as above",
            "storage reads keep up (local or object store), no queueing between tomograms",
        ],
        "full_volume_voxels": full_voxels,
        "cpu_node_s_per_tomogram": round(cpu_s, 0),
        "cpu_node_tomograms_per_hour": round(3600 / cpu_s, 2),
        "gpu_node_s_per_tomogram": round(gpu_s, 0),
        "gpu_node_tomograms_per_hour": round(3600 / gpu_s, 2),
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--shape", type=int, nargs=3, default=[1024, 4096, 4096])
    ap.add_argument("--tile", type=int, nargs=3, default=[64, 256, 256])
    ap.add_argument("--region", type=int, nargs=3, default=[256, 1024, 1024])
    ap.add_argument("--voxel-size", type=float, default=1.8)
    ap.add_argument("--workers", type=int, nargs="*", default=[1, 2], help="none: build only")
    ap.add_argument("--tiles-per-block", type=int, nargs=3, default=[1, 2, 2])
    ap.add_argument("--post-block", type=int, nargs=3, default=[128, 512, 512])
    ap.add_argument(
        "--tile-size", type=int, help="network tile edge (default: the budgeted default tiles)"
    )
    ap.add_argument("--out", type=Path, default=Path("/tmp/synapseg-bench"))
    ap.add_argument("--reuse", action="store_true", help="keep an existing store")
    ap.add_argument("--decide-full", action="store_true", help="time the whole-volume decisions")
    ap.add_argument("--decide-region", type=int, nargs=3, help="...on this part (default: all)")
    ap.add_argument("--node-cores", type=int, default=32)
    ap.add_argument("--gpu-mvox-s", type=float, default=100.0, help="ASSUMED GPU network speed")
    ap.add_argument("--seed", type=int, default=7)
    ap.add_argument(
        "--synapse-every", type=int, default=1, help="1 tile in N holds the synapse (default: all)"
    )
    ap.add_argument("--json", type=Path)
    ap.add_argument("--block-memory", action="store_true", help="peak RSS of one full-size block")
    ap.add_argument("--run", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--store", help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.run:
        print(json.dumps(run_config(args)))
        return
    if args.block_memory and args.store:
        print(json.dumps(block_memory(args)))
        return
    args.out.mkdir(parents=True, exist_ok=True)
    store = args.out / "big.zarr"
    shape = list(args.shape)
    free = shutil.disk_usage(args.out).free
    note = None
    while np.prod(shape) * 1.1 > free - 2 * GB and not (args.reuse and store.exists()):
        shape[0] //= 2
        note = f"disk short ({free / GB:.1f} GB free): volume reduced to {shape}"
    if note:
        print(note)
    result: dict = {
        "machine": {
            "cpus": os.cpu_count(),
            "load_avg_before": os.getloadavg(),
            "python": platform.python_version(),
        },
        "shape_zyx": shape,
        "voxel_size_nm": args.voxel_size,
        "note": note,
    }
    if not (args.reuse and store.exists()):
        result["build"] = build(
            store, shape, args.tile, args.voxel_size, args.seed, args.synapse_every
        )
        print("build:", result["build"])
    if args.decide_full:
        result["decisions_full_volume"] = decide_full(store, args.decide_region or shape)
        print("decisions on the full volume:", result["decisions_full_volume"])
    tile = ["--tile-size", str(args.tile_size)] if args.tile_size else []
    if args.block_memory:
        cmd = [sys.executable, __file__, "--block-memory", "--store", str(store),
               "--tiles-per-block", *map(str, args.tiles_per_block), *tile]  # fmt: skip
        out = subprocess.run(cmd, check=True, capture_output=True, text=True)
        result["full_size_block"] = json.loads(out.stdout.strip().splitlines()[-1])
        print("one full-size network block:", result["full_size_block"])
    runs = []
    for n in args.workers:
        cmd = [sys.executable, __file__, "--run", str(n), "--store", str(store), "--region",
               *map(str, args.region), "--tiles-per-block", *map(str, args.tiles_per_block),
               "--post-block", *map(str, args.post_block), *tile]  # fmt: skip
        out = subprocess.run(cmd, check=True, capture_output=True, text=True)
        runs.append(json.loads(out.stdout.strip().splitlines()[-1]))
        print(runs[-1])
    result["runs"] = runs
    result["machine"]["load_avg_after"] = os.getloadavg()
    if not runs:
        print(json.dumps(result, indent=2))
        if args.json:
            args.json.write_text(json.dumps(result, indent=2))
        return
    full = int(np.prod(shape))
    dec = None
    if "decisions_full_volume" in result:  # scaled by voxels when measured on a part
        part = result["decisions_full_volume"]
        dec = part["seconds"] * full / int(np.prod(part["region_zyx"]))
    result["projection"] = project(
        full, runs, dec, int(np.prod(args.region)), args.node_cores, args.gpu_mvox_s
    )
    print(f"\n{'workers':>8} {'wall s':>8} {'Mvox/s':>8} {'peak RSS/worker GB':>20}")
    for r in runs:
        print(f"{r['workers']:>8} {r['wall_s']:>8} {r['mvoxel_per_s']:>8} "
              f"{max(r['worker_peak_rss_gb']):>20}")  # fmt: skip
    if len(runs) > 1:
        print(f"speed-up 1 -> {runs[-1]['workers']} workers: "
              f"{runs[0]['wall_s'] / runs[-1]['wall_s']:.2f}x")  # fmt: skip
    print(json.dumps(result["projection"], indent=2))
    if args.json:
        args.json.write_text(json.dumps(result, indent=2))


if __name__ == "__main__":
    main()
