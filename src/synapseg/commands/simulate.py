"""``synapseg simulate``: synthetic synapse tomograms with exact ground truth."""

from __future__ import annotations

import logging
import sys
from pathlib import Path

import typer
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from synapseg.commands.base import app, err_console, handle_errors
from synapseg.commands.options import overwrite_option
from synapseg.errors import InputError
from synapseg.simulate import SimulationParams, simulate_tomogram, write_simulation
from synapseg.simulate.params import DEFAULT_SNR

log = logging.getLogger(__name__)


@app.command()
@handle_errors
def simulate(
    out_dir: Path = typer.Argument(..., help="Output folder; one sim_NNN/ subfolder per tomogram."),
    seed: int = typer.Option(0, "--seed", help="Seed of the first tomogram (then seed+1, ...)."),
    shape: tuple[int, int, int] = typer.Option(
        (64, 256, 256), "--shape", help="Output size Z Y X in voxels (z = beam axis)."
    ),
    voxel_size: float = typer.Option(
        1.68, "--voxel-size", metavar="NM", help="Output voxel size in nm."
    ),
    tilt_range: float = typer.Option(
        60.0, "--tilt-range", metavar="DEG", help="Maximum tilt ± in degrees."
    ),
    tilt_step: float = typer.Option(2.0, "--tilt-step", help="Tilt increment in degrees."),
    defocus: float = typer.Option(4.0, "--defocus", help="Underfocus in µm."),
    snr: float = typer.Option(
        DEFAULT_SNR,
        "--snr",
        help="Projection signal/noise variance ratio (default ≈ real data); 0 = noise-free.",
    ),
    n_tomograms: int = typer.Option(1, "--n-tomograms", "-n", min=1, help="How many."),
    randomize: bool = typer.Option(
        False,
        "--random",
        help="Random voxel size, tilts, defocus, SNR, content per tomogram (keeps --shape).",
    ),
    no_distractors: bool = typer.Option(
        False, "--no-distractors", help="No endosomes, mitochondria, dense-core vesicles, actin."
    ),
    bright_densities: bool = typer.Option(
        False, "--bright-densities", help="Write densities bright instead of dark."
    ),
    invert_deprecated: bool = typer.Option(
        False, "--invert", hidden=True, help="Deprecated alias of --bright-densities."
    ),
    n_vesicles: int | None = typer.Option(
        None, "--n-vesicles", min=0, help="Number of vesicles (0: a negative); default: density."
    ),
    membrane_thickness: float = typer.Option(
        4.5, "--membrane-thickness", help="Vesicle bilayer thickness in nm."
    ),
    lamella_thickness: float | None = typer.Option(
        None, "--lamella-thickness", help="Specimen slab in nm, vacuum above and below."
    ),
    lamella_tilt: float = typer.Option(0.0, "--lamella-tilt", help="Lamella tilt in degrees."),
    lamella_cuts: bool = typer.Option(
        False, "--lamella-cuts", help="Let the lamella surfaces cut vesicles (cut_by_surface)."
    ),
    gold: int = typer.Option(0, "--gold", min=0, help="Gold beads on the specimen surfaces."),
    microtubules: int = typer.Option(0, "--microtubules", min=0, help="Microtubules."),
    microtubule_tilt: tuple[float, float] | None = typer.Option(
        None,
        "--microtubule-tilt",
        help="LO HI: each microtubule axis at an angle drawn from LO..HI degrees out of the "
        "xy plane (default: mostly in-plane).",
    ),
    er_tubules: int = typer.Option(0, "--er-tubules", min=0, help="ER membrane tubes."),
    ice: int = typer.Option(0, "--ice", min=0, help="Ice contamination blobs on the surfaces."),
    mvb_fraction: float = typer.Option(
        0.0, "--mvb-fraction", min=0, max=1, help="Endosomes that are multivesicular bodies."
    ),
    coated_vesicles: int = typer.Option(
        0, "--coated-vesicles", min=0, help="Clathrin-coated vesicles (not in the table)."
    ),
    ribosomes: float = typer.Option(
        0.0, "--ribosomes", min=0, help="Ribosome-sized particles per µm³ (e.g. 30000)."
    ),
    denoise_sigma: float = typer.Option(
        0.0, "--denoise-sigma", min=0, help="Denoised look: Gaussian σ in nm (0 = off)."
    ),
    dual_axis: bool = typer.Option(False, "--dual-axis", help="Dual-axis tilt series."),
    wedge_fill: bool = typer.Option(
        False, "--wedge-fill", help="IsoNet-like look: the missing wedge filled."
    ),
    defocus_gradient: bool = typer.Option(
        False, "--defocus-gradient", help="Defocus changes across each tilted image."
    ),
    filament_model: str = typer.Option(
        "legacy",
        "--filament-model",
        help="Connectors and tethers: legacy (unchanged), published (numbers from the "
        "literature, docs/filaments.md) or none (the negative control).",
    ),
    filament_amplitude_scale: float = typer.Option(
        1.0,
        "--filament-amplitude-scale",
        help="Published filaments' density x this (2: the calibration against a real "
        "synapse that bench_filaments uses, docs/filaments.md).",
    ),
    overwrite: bool = overwrite_option(),
) -> None:
    """Simulate synapse tomograms (phantom, tilt series with CTF and noise, weighted
    back-projection) with exact ground truth: OUT_DIR/sim_000/{tomogram.mrc, vesicles.csv,
    vesicle_labels.mrc, membrane_labels.mrc, filaments.csv, info.json, params.json}.
    """
    if invert_deprecated:  # --invert means auto|yes|no elsewhere: renamed here
        err_console.print(
            "warning: simulate --invert is deprecated; use --bright-densities", markup=False
        )
        bright_densities = True
    fixed = dict(
        shape=shape,
        voxel_size_nm=voxel_size,
        tilt_range_deg=tilt_range,
        tilt_step_deg=tilt_step,
        defocus_um=defocus,
        snr=snr if snr > 0 else None,
        distractors=not no_distractors,
        invert_contrast=bright_densities,
    )
    world = dict(
        n_vesicles=n_vesicles,
        membrane_thickness_nm=membrane_thickness,
        lamella_thickness_nm=lamella_thickness,
        lamella_tilt_deg=lamella_tilt,
        lamella_cuts_vesicles=lamella_cuts,
        n_gold=gold,
        n_microtubules=microtubules,
        microtubule_tilt_deg=tuple(microtubule_tilt) if microtubule_tilt else None,
        n_er_tubules=er_tubules,
        n_coated_vesicles=coated_vesicles,
        mvb_fraction=mvb_fraction,
        n_ice_blobs=ice,
        ribosome_density_per_um3=ribosomes,
        denoise_sigma_nm=denoise_sigma,
        dual_axis=dual_axis,
        defocus_gradient=defocus_gradient,
        wedge_fill=wedge_fill,
        filament_model=filament_model,
        filament_amplitude_scale=filament_amplitude_scale,
    )
    if snr < 0:
        raise InputError("--snr", f"snr must be >= 0, got {snr}", "use e.g. 0.2, or 0 for none")
    jobs = []
    for i in range(n_tomograms):
        if randomize:
            keep = {k: fixed[k] for k in ("shape", "invert_contrast")}
            params = SimulationParams.random(seed + i, **keep, **world)
        else:
            params = SimulationParams(seed=seed + i, **fixed, **world)
        jobs.append((out_dir / f"sim_{i:03d}", params))
    if not overwrite:
        for folder, _ in jobs:
            if (folder / "params.json").exists() or (folder / "tomogram.mrc").exists():
                raise InputError(
                    folder, "a simulation exists here", "pass --overwrite or choose another folder"
                )
    show = sys.stderr.isatty() and logging.getLogger("synapseg").level < logging.ERROR
    with Progress(
        TextColumn("simulating"),
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=err_console,
        disable=not show,
    ) as progress:
        task = progress.add_task("simulate", total=len(jobs))
        for folder, params in jobs:
            result = simulate_tomogram(params, keep_phantom=False)
            write_simulation(folder, result, overwrite=overwrite)
            log.info("%s: %d vesicles", folder, len(result.vesicles))
            progress.advance(task)
    typer.echo(f"wrote {len(jobs)} simulated tomogram(s) to {out_dir}")
