#!/usr/bin/env python
"""Time and peak memory of each whole-volume pass of the block-wise decisions (issue 17).

``synapseg.distributed.decisions.decide`` reads the whole tomogram once in the driver: the
specimen mask (cell statistics), the contrast polarity, the missing wedge, the network's
normalisation sample (model-grid rows) and the grey-value background. This runs each pass
on its own, over the same z-slab cache, on a region of a store (e.g. the one
``bench_distributed.py --out DIR --workers`` builds), with the process's peak resident set
(VmHWM, reset before each pass); with ``--save`` it also pickles the decisions, to compare two
code versions (run it once per ``PYTHONPATH``, then ``--compare A.pkl B.pkl``)::

    python benchmarks/bench_decisions.py /tmp/big/big.zarr --region 128 4096 4096 \\
        --save new.pkl --json passes.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import pickle
import time
from pathlib import Path

import numpy as np

from _machine import reset_peak_rss
from bench_distributed import open_region, peak_rss_gb


def passes(store: Path, region: list[int]) -> tuple[dict, dict]:
    from synapseg.distributed.decisions import ZSlabs
    from synapseg.distributed.regrid import ModelGridRows
    from synapseg.infer.normalise import stats_sample
    from synapseg.infer.polarity import decide_polarity
    from synapseg.infer.preprocess import check_rescale, grid_shape
    from synapseg.model.registry import load_model
    from synapseg.post.profiles import estimate_background
    from synapseg.specimen.mask import specimen_mask
    from synapseg.specimen.wedge import resolve_wedge

    vol = open_region(store, tuple(slice(0, int(n)) for n in region))
    vol = dataclasses.replace(vol, data=ZSlabs.wrap(vol.data))
    timings: dict = {}
    found: dict = {}

    def run(name, fn):
        reset_peak_rss()  # VmHWM from here is this pass's peak
        before, t0 = peak_rss_gb(), time.perf_counter()
        found[name] = fn()
        timings[name] = {
            "seconds": round(time.perf_counter() - t0, 2),
            "rss_before_gb": round(before, 3),
            "peak_rss_gb": round(peak_rss_gb(), 3),
        }
        print(name, timings[name], flush=True)

    run("specimen", lambda: specimen_mask(vol.data, vol.voxel_size_nm))
    spec = found["specimen"]
    model = load_model("default", device="cpu")
    card = model[1]
    run("polarity", lambda: decide_polarity(vol, model, "cpu", spec))
    z = spec.facts.get("specimen_z_range_px")
    z = tuple(z) if z else None
    run("wedge", lambda: resolve_wedge(vol.data, vol.voxel_size_nm, None, None, z_range_px=z))
    factors = check_rescale(vol.voxel_size_nm, card.voxel_size_nm, None)
    rows = ModelGridRows(
        vol.data, factors, grid_shape(vol.shape, vol.voxel_size_nm, card.voxel_size_nm)
    )
    run("stats_sample", lambda: stats_sample(rows, specimen=spec, voxel_size_nm=card.voxel_size_nm))
    run("background", lambda: estimate_background(vol.data, specimen=spec))
    decisions = {
        "specimen_cells": spec.coarse,
        "specimen_facts": spec.facts,
        "polarity": found["polarity"],
        "wedge": found["wedge"][0].to_json(),
        "sample": found["stats_sample"],
        "background": tuple(found["background"]),
    }
    return timings, decisions


def compare(a: Path, b: Path) -> dict:
    """Which decisions two pickles share exactly."""
    x, y = (pickle.loads(p.read_bytes()) for p in (a, b))
    return {
        k: bool(np.array_equal(x[k], y[k])) if isinstance(x[k], np.ndarray) else x[k] == y[k]
        for k in x
    }


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("store", type=Path, nargs="?")
    ap.add_argument("--region", type=int, nargs=3, default=[128, 4096, 4096])
    ap.add_argument("--save", type=Path, help="pickle the decisions here")
    ap.add_argument("--compare", type=Path, nargs=2, help="two --save pickles: same decisions?")
    ap.add_argument("--json", type=Path)
    args = ap.parse_args()
    if args.compare:
        print(json.dumps(compare(*args.compare)))
        return
    timings, decisions = passes(args.store, args.region)
    result = {"region_zyx": args.region, "passes": timings, "load_avg": list(os.getloadavg())}
    if args.save:
        args.save.write_bytes(pickle.dumps(decisions))
    text = json.dumps(result, indent=2)
    print(text)
    if args.json:
        args.json.write_text(text)


if __name__ == "__main__":
    main()
