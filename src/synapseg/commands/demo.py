"""``synapseg demo``: segment the sample tomogram and score it against its truth.

The sample is not shipped: it is simulated deterministically on first use (no network, a
few seconds) into the synapseg cache and reused afterwards (:func:`synapseg.simulate.sample_path`).
"""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from synapseg.commands.base import app, handle_errors, show_progress
from synapseg.commands.options import overwrite_option


@app.command()
@handle_errors
def demo(
    ctx: typer.Context,
    output: Path = typer.Option(Path("synapseg-demo"), "--output", "-o", help="Output folder."),
    overwrite: bool = overwrite_option(),
) -> None:
    """Run the full pipeline on the simulated sample and compare with its ground truth.

    The sample (64×256×256 voxels at 1.68 nm) is generated deterministically on first use, no
    network; a second run reuses the outputs in OUTPUT unless --overwrite.
    """
    from synapseg.evaluate.metrics import compute_metrics
    from synapseg.io.tables import read_table_csv
    from synapseg.pipeline import SegmentOptions, segment_tomogram
    from synapseg.simulate import sample_path

    sample = sample_path()
    options = SegmentOptions(overwrite=overwrite, progress=show_progress(ctx))
    report = segment_tomogram(sample / "tomogram.mrc", output, options)
    truth = read_table_csv(sample / "vesicles.csv")
    found = read_table_csv(output / "tomogram_vesicles.csv")
    m = compute_metrics(truth, found)
    console = Console(soft_wrap=True)
    console.print(
        f"sample: {sample / 'tomogram.mrc'}  (simulated deterministically on first use, "
        "exact ground truth)"
    )
    console.print(f"outputs: {output.resolve()}")
    if report.get("skipped"):
        console.print(
            "results reused from an earlier run in this folder: nothing was recomputed "
            "(pass --overwrite to recompute)"
        )
    console.print(
        f"vesicles found {m['n_pred']} / true {m['n_gt']}: precision {m['precision']:.3f}, "
        f"recall {m['recall']:.3f}, F1 {m['f1']:.3f}"
    )
    if m["tp"]:
        console.print(
            f"median center error {m['center_error_nm']['median']:.2f} nm, median |radius error| "
            f"{m['radius_error_nm']['median_abs']:.2f} nm"
        )
    timings = ", ".join(f"{k} {v:.1f}" for k, v in report.get("timings_s", {}).items())
    if report.get("skipped"):
        console.print(f"time per stage of that earlier run (s): {timings}")
    else:
        console.print(f"time per stage (s): {timings}")
