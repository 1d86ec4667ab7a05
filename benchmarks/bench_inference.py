#!/usr/bin/env python
"""Inference speed and memory: network throughput and end-to-end ``synapseg predict``.

Two parts, each optional:

``--network``: forward-pass throughput (Mvoxel/s of model-grid output) of candidate
architectures on one tile, with ``--threads`` torch threads. Reports wall-clock throughput and
CPU-time throughput (voxels per CPU-second x threads: what the same threads would give
without other processes competing for the cores), and the ratio to the baseline (a plain
3D U-Net, base 8, depth 3) measured in the same run.

``--e2e SHAPES``: writes random float32 MRC tomograms of the given shapes at ``--voxel-size``,
runs ``synapseg predict`` on each in a subprocess, samples its anonymous memory (RssAnon in
/proc/PID/status; memory-mapped file pages are not counted, as they are not the process's
own) every 50 ms and reports wall time, per-stage timings, throughput and peak RssAnon.

    python benchmarks/bench_inference.py --network --threads 2
    python benchmarks/bench_inference.py --e2e 131x1024x1024,261x1024x1024 --voxel-size 1.469
    python benchmarks/bench_inference.py --e2e 261x1024x1024 --model default --json out.json
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))
from _machine import run_monitored  # noqa: E402

ARCHITECTURES = {
    "plain-b8-d3 (baseline)": {"stem": 1, "base_channels": 8, "depth": 3},
    "plain-b4-d3": {"stem": 1, "base_channels": 4, "depth": 3},
    "plain-b8-d3-1conv": {"stem": 1, "base_channels": 8, "depth": 3, "convs_per_level": 1},
    "stem2-b8-d3 (sim-unet-v1)": {"stem": 2, "base_channels": 8, "depth": 3},
    "stem2-b16-d3 (UNetConfig())": {"stem": 2, "base_channels": 16, "depth": 3},
    "stem2-b16-d2": {"stem": 2, "base_channels": 16, "depth": 2},
    "stem2-b24-d3": {"stem": 2, "base_channels": 24, "depth": 3},
    "monai-BasicUNet-f8": {"monai": {"features": [8, 16, 32, 64, 128, 8]}},
}


def machine() -> dict:
    import torch

    mem_gb = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 1e9
    try:
        cpu = next(
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        )
    except (OSError, StopIteration):
        cpu = platform.processor()
    return {
        "cpu": cpu,
        "cores_available": len(os.sched_getaffinity(0)),
        "ram_gb": round(mem_gb, 1),
        "gpu": torch.cuda.get_device_name(0) if torch.cuda.is_available() else None,
        "torch": torch.__version__,
        "load_average_1min_at_start": os.getloadavg()[0],
    }


# --------------------------------------------------------------------------- network


def _build(name: str, fast: bool):
    """(network ready for inference, parameter count, receptive field or None)."""
    from synapseg.model.fast import fuse_batchnorm, prepare_for_inference
    from synapseg.model.unet import UNetConfig, build_unet, count_parameters

    spec = ARCHITECTURES[name]
    if "monai" in spec:
        from monai.networks.nets import BasicUNet

        net = BasicUNet(
            spatial_dims=3, in_channels=1, out_channels=1, norm="batch", **spec["monai"]
        )
        net.eval()
        n_params = count_parameters(net)
        return (prepare_for_inference(net) if fast else net), n_params, None, spec
    cfg = UNetConfig(**spec)
    net = build_unet(cfg, seed=0).eval()
    ready = prepare_for_inference(net) if fast else fuse_batchnorm(net)
    return ready, count_parameters(net), cfg.receptive_field, cfg.to_dict()


def bench_network(
    names: list[str], tile: tuple[int, int, int], threads: int, reps: int, fast: bool = True
) -> list:
    import torch

    torch.set_num_threads(threads)
    rows = []
    x = torch.randn(1, 1, *tile)
    for name in names:
        try:
            net, n_params, rf, config = _build(name, fast)
        except ImportError as exc:  # MONAI is not a dependency of synapseg
            print(f"{name:26s} skipped ({exc})", flush=True)
            continue
        with torch.inference_mode():
            net(x)  # warm-up (oneDNN primitive creation)
            walls, cpus = [], []
            for _ in range(reps):
                t0, c0 = time.perf_counter(), time.process_time()
                net(x)
                walls.append(time.perf_counter() - t0)
                cpus.append(time.process_time() - c0)
        n = x.numel()
        rows.append(
            {
                "architecture": name,
                "config": config,
                "parameters": n_params,
                "receptive_field": rf,
                "onednn_forced": fast,
                "tile_zyx": list(tile),
                "threads": threads,
                "wall_s_best": round(min(walls), 3),
                "wall_mvoxel_per_s": round(n / min(walls) / 1e6, 3),
                "cpu_mvoxel_per_s": round(n / (min(cpus) / threads) / 1e6, 3),
            }
        )
        print(
            f"{name:26s} {n_params:>9,d} params  RF {rf or '?':>3}  "
            f"wall {rows[-1]['wall_mvoxel_per_s']:6.2f} Mvox/s  "
            f"cpu-time {rows[-1]['cpu_mvoxel_per_s']:6.2f} Mvox/s",
            flush=True,
        )
    base = next((r for r in rows if "baseline" in r["architecture"]), None)
    if base:
        for r in rows:
            r["speedup_vs_baseline_cpu"] = round(
                r["cpu_mvoxel_per_s"] / base["cpu_mvoxel_per_s"], 2
            )
    return rows


# --------------------------------------------------------------------------- end to end


def write_random_mrc(path: Path, shape: tuple[int, int, int], voxel_size_nm: float) -> None:
    from synapseg.io.volume_writer import open_volume_writer

    rng = np.random.default_rng(0)
    with open_volume_writer(path, shape, np.float32, voxel_size_nm, overwrite=True) as out:
        for z in range(shape[0]):
            out[z] = rng.standard_normal(shape[1:], dtype=np.float32)


def ensure_model(model: str | None, arch: str, voxel_nm: float, workdir: Path) -> str:
    """The model to benchmark: ``model`` if given, else a random one of ``arch``."""
    if model:
        return model
    from synapseg.model.registry import create_random_model
    from synapseg.model.unet import UNetConfig

    cfg = UNetConfig(**ARCHITECTURES[arch])
    path = workdir / f"random-{arch.split()[0]}-{voxel_nm:g}nm"
    if not (path / "model.json").exists():
        create_random_model(path, name=f"random {arch}", config=cfg, voxel_size_nm=voxel_nm)
    return str(path)


def bench_e2e(shapes, voxel_nm, model, workdir, threads, tile, extra) -> list:
    rows = []
    for shape in shapes:
        tomo = workdir / f"random_{'x'.join(map(str, shape))}.mrc"
        if not tomo.exists():
            t0 = time.perf_counter()
            write_random_mrc(tomo, shape, voxel_nm)
            print(f"wrote {tomo} in {time.perf_counter() - t0:.1f} s", flush=True)
        out = workdir / "out"
        cli = "import synapseg.cli as c; (c.run if hasattr(c, 'run') else c.app)()"
        cmd = [sys.executable, "-c", cli, "-q", "predict", str(tomo), "-o", str(out)]
        cmd += ["--model", model, "--overwrite"]
        if threads:
            cmd += ["--threads", str(threads)]
        if tile:
            cmd += ["--tile-size", str(tile)]
        cmd += extra
        load0 = os.getloadavg()[0]
        run = run_monitored(cmd)
        code, wall, cpu, peak_mb = run["code"], run["wall_s"], run["cpu_s"], run["peak_rss_anon_mb"]
        if code != 0:
            raise SystemExit(f"predict failed ({code}):\n{run['output_tail']}")
        report = json.loads((out / f"{tomo.stem}_predict_report.json").read_text())
        row = {
            "shape_zyx": list(shape),
            "input_voxel_size_nm": voxel_nm,
            "input_mvoxel": round(int(np.prod(shape)) / 1e6, 1),
            "wall_s": round(wall, 1),
            "cpu_s": round(cpu, 1),
            "load_average_1min_before": load0,
            "peak_rss_anon_mb": round(peak_mb, 0),
            "timings": report["timings"],
            "throughput": report["throughput"],
            "model_grid_shape_zyx": report["model_grid_shape_zyx"],
            "tiles": report["tiles"],
            "device": report["device"],
            "model": report["model"]["name"],
        }
        rows.append(row)
        t = row["timings"]
        print(
            f"{'x'.join(map(str, shape)):>15s}  wall {wall:6.1f} s  cpu {cpu:6.1f} s  "
            f"(rescale {t['rescale_s']:.1f}, "
            f"network {t['network_s']:.1f}, back {t['resample_back_s']:.1f})  "
            f"network {row['throughput']['network_model_mvoxel_per_s']:.2f} Mvox/s  "
            f"peak RssAnon {peak_mb:.0f} MB",
            flush=True,
        )
    return rows


def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--network", action="store_true", help="benchmark forward-pass throughput")
    p.add_argument(
        "--architectures",
        default="all",
        help="comma-separated names for --network (default: all): " + "; ".join(ARCHITECTURES),
    )
    p.add_argument("--tile", default="96,128,128", help="tile z,y,x for --network")
    p.add_argument("--reps", type=int, default=2, help="timed passes per architecture")
    p.add_argument(
        "--no-onednn", action="store_true", help="--network: keep PyTorch's own conv dispatch"
    )
    p.add_argument("--e2e", default="", help="comma-separated shapes ZxYxX for end-to-end runs")
    p.add_argument("--voxel-size", type=float, default=1.469, help="input voxel size (nm)")
    p.add_argument("--model", default=None, help="model for --e2e (default: random --arch)")
    p.add_argument("--arch", default="stem2-b16-d3 (UNetConfig())", help="architecture for --e2e")
    p.add_argument("--model-voxel-size", type=float, default=1.8, help="nm, for a random model")
    p.add_argument("--tile-size", type=int, default=None, help="--tile-size for predict")
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--extra", default="", help="extra predict arguments, space-separated")
    p.add_argument("--workdir", default="/tmp/synapseg-bench", help="scratch folder")
    p.add_argument("--json", default=None, help="write results here")
    args = p.parse_args(argv)
    if not args.network and not args.e2e:
        p.error("give --network and/or --e2e")
    result: dict = {"machine": machine(), "date": time.strftime("%Y-%m-%d %H:%M:%S %Z")}
    print(json.dumps(result["machine"]))
    if args.network:
        names = (
            list(ARCHITECTURES) if args.architectures == "all" else args.architectures.split(",")
        )
        tile = tuple(int(v) for v in args.tile.split(","))
        result["network"] = bench_network(
            names,
            tile,  # type: ignore[arg-type]
            args.threads,
            args.reps,
            fast=not args.no_onednn,
        )
    if args.e2e:
        workdir = Path(args.workdir)
        workdir.mkdir(parents=True, exist_ok=True)
        shapes = [tuple(int(v) for v in s.split("x")) for s in args.e2e.split(",")]
        model = ensure_model(args.model, args.arch, args.model_voxel_size, workdir)
        result["e2e"] = bench_e2e(
            shapes,
            args.voxel_size,
            model,
            workdir,
            args.threads,
            args.tile_size,
            args.extra.split() if args.extra else [],
        )
    result["load_average_1min_at_end"] = os.getloadavg()[0]
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=2) + "\n")


if __name__ == "__main__":
    main()
