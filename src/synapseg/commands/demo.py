"""``synapseg demo``: segment the bundled sample tomogram and score it against its truth."""

from __future__ import annotations

from pathlib import Path

import typer
from rich.console import Console

from synapseg.cli import app, handle_errors, show_progress


@app.command()
@handle_errors
def demo(
    ctx: typer.Context,
    output: Path = typer.Option(Path("synapseg-demo"), "--output", "-o", help="Output folder."),
    overwrite: bool = typer.Option(False, "--overwrite", help="Recompute existing outputs."),
) -> None:
    """Run the full pipeline on the bundled simulated sample and compare with its ground truth."""
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
    console.print(f"sample: {sample / 'tomogram.mrc'}  (simulated, exact ground truth)")
    console.print(f"outputs: {output.resolve()}")
    console.print(
        f"vesicles found {m['n_pred']} / true {m['n_gt']}: precision {m['precision']:.3f}, "
        f"recall {m['recall']:.3f}, F1 {m['f1']:.3f}"
    )
    if m["tp"]:
        console.print(
            f"median center error {m['center_error_nm']['median']:.2f} nm, median |radius error| "
            f"{m['radius_error_nm']['median_abs']:.2f} nm"
        )
    timings = report.get("timings_s", {})
    console.print("time per stage (s): " + ", ".join(f"{k} {v:.1f}" for k, v in timings.items()))
