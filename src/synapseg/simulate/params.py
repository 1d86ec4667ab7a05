"""Every knob of the simulator in one dataclass, with realistic defaults and random draws.

All lengths are in nm (``_nm``), angles in degrees (``_deg``), defocus in µm, dose in
electrons per Å² (the unit microscopes report). The defaults describe a typical
presynaptic terminal imaged at 300 kV, ±60° in 2° steps, 4 µm underfocus, reconstructed by
weighted back-projection at 1.68 nm/px; the default ``snr`` puts the vesicle membrane
≈ 0.5 noise-σ below the cytoplasm, as measured by Pyto on a real tomogram (see
docs/simulation.md).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from typing import Any

import numpy as np

from synapseg.errors import InputError

TILT_SCHEMES = ("dose_symmetric", "bidirectional", "continuous")
RECON_FILTERS = ("ramp", "sirt")
# Projection SNR (signal variance / noise variance, all tilts) that lands the default
# tomogram on the real calibration (membrane ≈ 0.5 σ darker than cytoplasm); see
# docs/simulation.md for the measurement.
DEFAULT_SNR = 0.075


@dataclass(frozen=True)
class SimulationParams:
    """Parameters of one simulated tomogram.

    Geometry
        shape: output (z, y, x) in voxels (z is the beam axis); voxel_size_nm: output
        voxel size; oversample: the phantom is rendered at ``voxel_size_nm / oversample``
        (sub-voxel samples) and binned to the output grid; seed: everything random.
    Vesicles
        n_vesicles (None: from ``vesicle_density_per_um3`` over the presynaptic volume);
        outer radius ~ normal(radius_mean_nm, radius_sd_nm) clipped to radius_range_nm;
        membrane_thickness_nm (bilayer); lumen_density (relative to lipid head groups = 1);
        elongated_fraction of vesicles are prolate with axis ratio up to max_elongation;
        crowding: probability that a vesicle is placed 1-4 nm from an existing one;
        cluster_decay_nm: vesicle density decays with distance from the plasma membrane.
    Context
        plasma_membrane, cleft (synaptic cleft + postsynaptic membrane + PSD),
        distractors (endosome-like compartments, a mitochondrion, dense-core vesicles,
        actin filaments), filaments (connectors between vesicles, tethers to the plasma
        membrane, with polyline ground truth), protein_crowding (amplitude, 0 = none);
        filament_model: legacy (default, unchanged bytes), published (connectors and
        tethers tuned to published numbers, docs/filaments.md) or none (the same phantom
        without them, a negative control); filament_amplitude_scale: the published
        model's filament density times this (1 = as published; the real-data calibration
        of docs/filaments.md).
    Imaging
        tilt_range_deg (±), tilt_step_deg, tilt_scheme (dose_symmetric, bidirectional,
        continuous), voltage_kv, cs_mm, amplitude_contrast, defocus_um (underfocus > 0),
        defocus_jitter_um (per tilt), dose_e_per_A2 (total, for radiation damage and the
        per-tilt noise share), bfactor_A2 (envelope exp(-B k²/4) for everything that
        blurs a real tilt series: beam-induced motion, detector MTF, residual alignment),
        snr (projection signal/noise variance; None = noise-free),
        jitter_shift_px / jitter_angle_deg (alignment errors), phase_flip (CTF correction).
    Reconstruction
        recon_filter (ramp = WBP, sirt = SIRT-like filter with sirt_iterations),
        radial_cutoff / radial_falloff (IMOD-style Gaussian roll-off, cycles/px),
        invert_contrast (densities bright instead of dark); denoise_sigma_nm (> 0: a
        Gaussian smoothing of the reconstruction, the look of denoised tomograms);
        dual_axis (a second tilt series about x, reconstructed and averaged with the first);
        defocus_gradient (the defocus changes across each tilted image, perpendicular to
        the tilt axis, as u·tan θ); wedge_fill (an IsoNet-like look: the missing wedge of
        the reconstruction filled with the scaled noise-free phantom, below 0.25 cycles/px).
    Specimen and extra content (all off by default)
        lamella_thickness_nm (None: the specimen fills the volume; else a slab centred in z
        with vacuum of ``vacuum_density`` above and below, shown brighter than the
        specimen by ``vacuum_brightness_sigma`` reconstruction σ), lamella_tilt_deg (slab normal
        tilted from z towards x), lamella_cuts_vesicles (vesicle centres only need to lie in
        the slab, so surfaces cut some: column ``cut_by_surface``); n_gold beads of
        gold_radius_nm on the specimen surfaces; n_microtubules (25 nm tubes; their axes lie
        mostly in-plane unless microtubule_tilt_deg = (lo, hi) draws each axis's angle out of
        the xy plane uniformly in lo..hi degrees, 0..90); n_er_tubules
        (membrane tubes of radius 15-25 nm, class 3); n_coated_vesicles (clathrin-coated,
        class 3, not in the vesicle table); mvb_fraction (endosomes that are multivesicular
        bodies, with intraluminal vesicles: class 3, not in the table); n_ice_blobs
        (crystalline ice contamination on the specimen surfaces);
        ribosome_density_per_um3 (≈ 25 nm dense particles in the cytoplasm).
    """

    shape: tuple[int, int, int] = (64, 256, 256)
    voxel_size_nm: float = 1.68
    seed: int = 0
    oversample: int = 2
    # vesicles
    n_vesicles: int | None = None
    vesicle_density_per_um3: float = 6000.0
    radius_mean_nm: float = 20.0
    radius_sd_nm: float = 2.5
    radius_range_nm: tuple[float, float] = (15.0, 30.0)
    membrane_thickness_nm: float = 4.5
    lumen_density: float = 0.25
    elongated_fraction: float = 0.05
    max_elongation: float = 1.2
    crowding: float = 0.6
    cluster_decay_nm: float = 150.0
    # context
    plasma_membrane: bool = True
    cleft: bool = True
    distractors: bool = True
    filaments: bool = True
    filament_model: str = "legacy"  # legacy | published | none (docs/filaments.md)
    filament_amplitude_scale: float = 1.0  # published model: filament density x this
    protein_crowding: float = 1.0
    # imaging
    tilt_range_deg: float = 60.0
    tilt_step_deg: float = 2.0
    tilt_scheme: str = "dose_symmetric"
    voltage_kv: float = 300.0
    cs_mm: float = 2.7
    amplitude_contrast: float = 0.07
    defocus_um: float = 4.0
    defocus_jitter_um: float = 0.1
    dose_e_per_A2: float = 120.0
    bfactor_A2: float = 3000.0
    snr: float | None = DEFAULT_SNR
    jitter_shift_px: float = 0.0
    jitter_angle_deg: float = 0.0
    phase_flip: bool = False
    # reconstruction
    recon_filter: str = "ramp"
    sirt_iterations: int = 10
    radial_cutoff: float = 0.35
    radial_falloff: float = 0.035
    invert_contrast: bool = False
    # the wider world (issue 11); the defaults switch every one of these off
    lamella_thickness_nm: float | None = None
    lamella_tilt_deg: float = 0.0
    lamella_cuts_vesicles: bool = False
    vacuum_density: float = -2.0
    vacuum_brightness_sigma: float = 1.0
    n_gold: int = 0
    gold_radius_nm: float = 5.0
    n_microtubules: int = 0
    microtubule_tilt_deg: tuple[float, float] | None = None
    n_er_tubules: int = 0
    n_coated_vesicles: int = 0
    mvb_fraction: float = 0.0
    n_ice_blobs: int = 0
    ribosome_density_per_um3: float = 0.0
    denoise_sigma_nm: float = 0.0
    dual_axis: bool = False
    defocus_gradient: bool = False
    wedge_fill: bool = False

    def __post_init__(self) -> None:
        shape = tuple(int(s) for s in np.broadcast_to(np.asarray(self.shape), (3,)))
        object.__setattr__(self, "shape", shape)
        object.__setattr__(self, "radius_range_nm", tuple(float(r) for r in self.radius_range_nm))
        self.validate()

    def validate(self) -> None:
        """Raise :class:`InputError` for values the simulator cannot use."""

        def bad(name: str, problem: str, fix: str) -> InputError:
            return InputError(f"--{name.replace('_', '-')}", problem, fix)

        if min(self.shape) < 8:
            raise bad("shape", f"shape {self.shape} is too small", "use at least 8 voxels per axis")
        if not (0.1 <= self.voxel_size_nm <= 20):
            raise bad("voxel_size", f"{self.voxel_size_nm} nm is implausible", "use 0.5-5 nm")
        if not (1 <= self.tilt_range_deg <= 89):
            raise bad("tilt_range", f"±{self.tilt_range_deg}° is impossible", "use 40-70")
        if not (0.1 <= self.tilt_step_deg <= self.tilt_range_deg):
            raise bad("tilt_step", f"step {self.tilt_step_deg}° is invalid", "use 1-3")
        if self.tilt_scheme not in TILT_SCHEMES:
            raise bad("tilt_scheme", f"unknown scheme {self.tilt_scheme!r}", f"use {TILT_SCHEMES}")
        if not (self.filament_amplitude_scale > 0 and math.isfinite(self.filament_amplitude_scale)):
            raise bad(
                "filament_amplitude_scale",
                f"must be positive, got {self.filament_amplitude_scale}",
                "use 1 (the published model) or a calibration factor such as 2",
            )
        if self.filament_model not in ("legacy", "published", "none"):
            raise bad(
                "filament_model",
                f"unknown filament model {self.filament_model!r}",
                "use legacy, published or none",
            )
        if self.recon_filter not in RECON_FILTERS:
            raise bad("recon_filter", f"unknown filter {self.recon_filter!r}", "use ramp or sirt")
        if self.snr is not None and not (self.snr > 0 and math.isfinite(self.snr)):
            raise bad("snr", f"snr must be positive, got {self.snr}", "omit it for no noise")
        if not (0 <= self.crowding <= 1):
            raise bad("crowding", f"crowding {self.crowding} is not in [0, 1]", "use e.g. 0.6")
        lo, hi = self.radius_range_nm
        if not (self.membrane_thickness_nm < lo <= hi):
            raise bad("radius_range", f"radius range {lo}-{hi} nm is invalid", "use e.g. 15 30")
        if self.lamella_thickness_nm is not None and not (
            4 * self.voxel_size_nm <= self.lamella_thickness_nm
        ):
            raise bad("lamella_thickness", "the lamella is thinner than 4 voxels", "use 80-300")
        if not (abs(self.lamella_tilt_deg) <= 45):
            raise bad("lamella_tilt", f"{self.lamella_tilt_deg}° is implausible", "use -20..20")
        if (
            min(
                self.n_gold,
                self.n_microtubules,
                self.n_er_tubules,
                self.n_coated_vesicles,
                self.n_ice_blobs,
            )
            < 0
            or self.ribosome_density_per_um3 < 0
        ):
            raise bad("n_gold", "counts and densities must be >= 0", "use 0 to switch off")
        if self.microtubule_tilt_deg is not None and not (
            0 <= self.microtubule_tilt_deg[0] <= self.microtubule_tilt_deg[1] <= 90
        ):
            problem = f"microtubule tilt {self.microtubule_tilt_deg} is not 0 <= lo <= hi <= 90"
            raise bad("microtubule_tilt_deg", problem, "use e.g. (0, 60) degrees")
        if not (0 <= self.mvb_fraction <= 1):
            raise bad("mvb_fraction", f"{self.mvb_fraction} is not in [0, 1]", "use e.g. 0.5")
        if self.denoise_sigma_nm < 0 or self.gold_radius_nm <= 0:
            raise bad("denoise_sigma", "sizes must be positive", "use e.g. 1.5 (0 = off)")
        if self.n_vesicles is not None and self.n_vesicles < 0:
            raise bad("n_vesicles", "n_vesicles must be >= 0", "use 0 for a negative")
        if int(self.oversample) < 1:
            raise bad("oversample", "oversample must be >= 1", "use 2")

    # ------------------------------------------------------------------ helpers

    @property
    def tilt_angles_deg(self) -> np.ndarray:
        """Tilt angles in ascending order (the order of acquisition is :meth:`tilt_order`)."""
        n = int(math.floor(self.tilt_range_deg / self.tilt_step_deg + 1e-6))
        return np.arange(-n, n + 1, dtype=float) * self.tilt_step_deg

    def replace(self, **changes: Any) -> SimulationParams:
        """A copy with some fields changed."""
        return dataclasses.replace(self, **changes)

    def to_dict(self) -> dict[str, Any]:
        """All fields as JSON-serialisable values (tuples become lists)."""
        out = dataclasses.asdict(self)
        return {k: list(v) if isinstance(v, tuple) else v for k, v in out.items()}

    @classmethod
    def from_dict(cls, values: dict[str, Any]) -> SimulationParams:
        """Inverse of :meth:`to_dict`; unknown keys raise ``InputError``."""
        names = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - names)
        if unknown:
            raise InputError("params", f"unknown simulation parameters {unknown}", "remove them")
        kwargs = {k: tuple(v) if isinstance(v, list) else v for k, v in values.items()}
        return cls(**kwargs)

    @classmethod
    def random(
        cls, rng: np.random.Generator | int | None = None, **overrides: Any
    ) -> SimulationParams:
        """A random draw over realistic ranges, for training-data generation.

        Voxel size 0.8-2.2 nm, tilt range ±40-70° in 1-3° steps, both tilt schemes,
        defocus 2-6 µm (less at small voxel sizes), projection SNR 0.3-3× the calibrated
        default, crowding 0.3-0.9, cleft and distractors most of the time, optional
        phase flipping and alignment jitter. ``overrides`` fix any field (e.g. ``shape``).
        """
        rng = np.random.default_rng(rng)
        vs = float(rng.uniform(0.8, 2.2))
        draw: dict[str, Any] = {
            "seed": int(rng.integers(0, 2**31 - 1)),
            "voxel_size_nm": round(vs, 3),
            "tilt_range_deg": float(rng.choice([40, 45, 50, 55, 60, 60, 60, 65, 70])),
            "tilt_step_deg": float(rng.choice([1.0, 2.0, 2.0, 3.0])),
            "tilt_scheme": str(rng.choice(["dose_symmetric", "bidirectional"])),
            "defocus_um": round(float(rng.uniform(2.0, 3.0 + 1.5 * vs)), 2),
            "amplitude_contrast": round(float(rng.uniform(0.05, 0.1)), 3),
            "dose_e_per_A2": round(float(rng.uniform(60, 160)), 1),
            "bfactor_A2": round(float(rng.uniform(1500, 5000)), 0),
            "snr": round(DEFAULT_SNR * float(np.exp(rng.uniform(np.log(0.3), np.log(3.0)))), 5),
            "crowding": round(float(rng.uniform(0.3, 0.9)), 3),
            "radius_mean_nm": round(float(rng.uniform(18.0, 23.0)), 2),
            "vesicle_density_per_um3": round(float(rng.uniform(3000, 9000)), 0),
            "elongated_fraction": round(float(rng.uniform(0.0, 0.1)), 3),
            "cleft": bool(rng.random() < 0.6),
            "distractors": bool(rng.random() < 0.85),
            "filaments": bool(rng.random() < 0.8),
            "protein_crowding": round(float(rng.uniform(0.5, 1.5)), 3),
            "jitter_shift_px": round(float(rng.choice([0.0, rng.uniform(0.0, 0.7)])), 3),
            "jitter_angle_deg": round(float(rng.choice([0.0, rng.uniform(0.0, 0.3)])), 3),
            "phase_flip": bool(rng.random() < 0.3),
            "recon_filter": str(rng.choice(["ramp", "ramp", "sirt"])),
            "lumen_density": round(float(rng.uniform(0.15, 0.35)), 3),
        }
        draw.update(overrides)
        return cls(**draw)
