"""``synapseg predict``: a tomogram's vesicle probability map (MRC) and a JSON report."""

from __future__ import annotations

import json
import logging
import math
import resource
import sys
import time
from pathlib import Path

import typer

from synapseg import __version__
from synapseg.commands.base import app, err_console, handle_errors
from synapseg.commands.options import (
    device_option,
    invert_option,
    model_option,
    overwrite_option,
    tile_size_option,
    tta_option,
    voxel_size_option,
)
from synapseg.io.atomic import check_free_space, check_writable, write_text_atomic
from synapseg.io.volume import read_volume
from synapseg.io.volume_writer import open_volume_writer

_FORMATS = {"float16": "float16", "uint8": "uint8", "float32": "float32"}


def _rss_anon_mb() -> float | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("RssAnon:"):
                return round(int(line.split()[1]) / 1024, 1)
    except OSError:  # pragma: no cover - not Linux
        pass
    return None


def check_predict_options(
    device: str,
    tile_size: int | None,
    halo: int | None,
    batch_size: int | None,
    voxel_size: float | None,
    threads: int | None,
) -> None:
    """Every option value checked before the tomogram is read or a file written."""
    from synapseg import options as check

    check.check_device(device)
    check.check_tile_size(tile_size)
    check.check_int_at_least("--halo", halo, 0, "give a halo of 0 or more model voxels")
    check.check_int_at_least("--batch-size", batch_size, 1, "give 1 or more tiles per pass")
    check.check_int_at_least("--threads", threads, 1, "give 1 or more threads")
    check.check_positive("--voxel-size", voxel_size, "give the voxel size in nm")


@app.command()
@handle_errors
def predict(
    tomogram: Path = typer.Argument(..., help="Tomogram: MRC/REC, TIFF stack or OME-Zarr."),
    output: Path = typer.Option(..., "--output", "-o", help="Output folder."),
    model: str = model_option(),
    device: str = device_option(),
    tta: bool = tta_option(),
    tile_size: int | None = tile_size_option(),
    halo: int | None = typer.Option(
        None,
        "--halo",
        metavar="VOXELS",
        help="Context voxels dropped at inner tile faces (default tile/10; the model card's "
        "'halo' makes tiles exactly equal to a whole-volume pass).",
    ),
    batch_size: int | None = typer.Option(None, "--batch-size", help="Tiles per forward pass."),
    voxel_size: float | None = voxel_size_option(),
    invert: str = invert_option(),
    fmt: str = typer.Option(
        "float16",
        "--format",
        metavar="float16|uint8|float32",
        help="Probability file type: float16, uint8 (0-255) or float32.",
    ),
    threads: int | None = typer.Option(
        None, "--threads", help="CPU threads (default: available cores)."
    ),
    overwrite: bool = overwrite_option(),
    fill_nonfinite: str | None = typer.Option(
        None,
        "--fill-nonfinite",
        help="Replace NaN/inf voxels by the tomogram's median ('median'); default: refuse them.",
    ),
) -> None:
    """Predict a vesicle probability map on the tomogram's own grid.

    Writes OUT/<name>_probabilities.mrc (input grid and voxel size) and
    OUT/<name>_predict_report.json (timings per stage, throughput, device, model and sha256).
    """
    from synapseg.errors import InputError
    from synapseg.infer.predict import predict_volume
    from synapseg.model.registry import load_model, resolve_model

    if fmt not in _FORMATS:
        raise InputError("--format", f"unknown format '{fmt}'", "use float16, uint8 or float32")
    if invert not in ("auto", "yes", "no"):
        raise InputError("--invert", f"unknown value '{invert}'", "use auto, yes or no")
    check_predict_options(device, tile_size, halo, batch_size, voxel_size, threads)
    t0 = time.perf_counter()
    volume = read_volume(tomogram, voxel_size)
    prob_path = output / f"{volume.name}_probabilities.mrc"
    report_path = output / f"{volume.name}_predict_report.json"
    check_writable(prob_path, overwrite)
    check_writable(report_path, overwrite)
    bytes_per_voxel = {"float16": 2, "uint8": 1, "float32": 4}[fmt]
    check_free_space(output, bytes_per_voxel * math.prod(volume.shape) + 2**20, "probability map")
    from synapseg.io.scan import check_finite

    volume, input_facts = check_finite(volume, fill_nonfinite)  # whole volume, before writing
    card_path = resolve_model(model)
    net, card = load_model(card_path)
    if invert == "auto":  # one decision, recorded, as in segment
        from synapseg.infer.polarity import decide_polarity

        polarity = decide_polarity(volume, (net, card), device)
    else:
        polarity = {"invert": invert == "yes", "forced": True}
    from synapseg.summary import segment_warnings

    input_facts["warnings"] += segment_warnings(volume, card)  # may stop: nm as Å, too coarse
    t_load = time.perf_counter() - t0
    show_progress = sys.stderr.isatty() and logging.getLogger("synapseg").level < logging.ERROR
    facts: dict = {}
    with open_volume_writer(
        prob_path,
        volume.shape,
        _FORMATS[fmt],
        volume.voxel_size_nm,
        volume.origin_nm,
        overwrite=overwrite,
        label=f"synapseg {__version__} predict: {card.name} probabilities",
    ) as out:
        predict_volume(
            volume,
            (net, card),
            device=device,
            tta=tta,
            tile_size=tile_size,
            halo=halo,
            batch_size=batch_size,
            out=out,
            progress=show_progress,
            invert=bool(polarity["invert"]),
            threads=threads,
            scratch_dir=output,
            report=facts,
        )
        t_write0 = time.perf_counter()
    facts["timings"]["load_s"] = round(t_load, 3)
    facts["timings"]["finalise_s"] = round(time.perf_counter() - t_write0, 3)
    total = time.perf_counter() - t0
    facts["timings"]["command_total_s"] = round(total, 3)
    report = {
        "synapseg_version": __version__,
        "command": "predict",
        "input": str(tomogram),
        "output": str(prob_path),
        "output_format": fmt,
        "model": {
            "name": card.name,
            "version": card.version,
            "path": str(card_path),
            "sha256": card.sha256,
            "trained": card.trained,
            "voxel_size_nm": card.voxel_size_nm,
        },
        **facts,
        "polarity": polarity,
        "input_scan": input_facts["scan"],
        "fill_nonfinite": input_facts["fill_nonfinite"],
        "warnings": input_facts["warnings"],
        "memory": {
            "max_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
            "rss_anon_mb_at_end": _rss_anon_mb(),
        },
    }
    write_text_atomic(report_path, json.dumps(report, indent=2) + "\n", overwrite=overwrite)
    err_console.print(
        f"{prob_path} ({volume.shape[0]}x{volume.shape[1]}x{volume.shape[2]}, {fmt}) in "
        f"{total:.1f} s on {facts['device']}",
        markup=False,
        highlight=False,
    )
