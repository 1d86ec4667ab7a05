"""Figures of a simulated tomogram for the docs: ``python -m synapseg.simulate.figures DIR``.

Writes ``simulation_xy.png`` (a central xy slice) and ``simulation_xz.png`` (an xz slice
through a vesicle), each as tomogram | low-passed tomogram | noise-free reconstruction |
phantom with the ground-truth membranes outlined. ``python -m synapseg.simulate.figures DIR
--world`` writes ``simulation_world_xy.png`` / ``_xz.png``: the wider world's looks next to
the default.
"""

from __future__ import annotations

import sys
from pathlib import Path

import numpy as np
from scipy import ndimage

from synapseg.simulate.params import SimulationParams
from synapseg.simulate.simulator import SimulationResult, simulate_tomogram

FIGURE_PARAMS = SimulationParams(shape=(80, 256, 256), voxel_size_nm=1.68, seed=9)


def _panel(ax, image: np.ndarray, title: str, outline: np.ndarray | None = None) -> None:
    lo, hi = np.percentile(image, [0.5, 99.5])
    ax.imshow(image, cmap="gray", vmin=lo, vmax=hi, interpolation="nearest")
    if outline is not None:
        ax.contour(outline > 0, levels=[0.5], colors="tab:orange", linewidths=0.4)
    ax.set_title(title, fontsize=9)
    ax.set_xticks([])
    ax.set_yticks([])


def save_figures(
    out_dir: str | Path, noisy: SimulationResult, clean: SimulationResult
) -> list[Path]:
    """Save the xy and xz figures of ``noisy`` (and its noise-free twin ``clean``)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    nz = noisy.tomogram.shape[0]
    t = noisy.vesicles
    row = t.iloc[int(np.argmin(np.abs(t["center_z_px"] - nz / 2)))]
    y = int(round(row["center_y_px"]))
    z = int(round(row["center_z_px"]))
    vs = noisy.voxel_size_nm
    smooth = ndimage.gaussian_filter(noisy.tomogram, 1.5)
    views = {
        "xy": (np.s_[z], f"xy slice z = {z}"),
        "xz": (np.s_[:, y], f"xz slice y = {y} (z vertical = beam)"),
    }
    paths = []
    for name, (index, where) in views.items():
        images = [noisy.tomogram[index], smooth[index], clean.tomogram[index], noisy.phantom[index]]
        aspect = images[0].shape[0] / images[0].shape[1]
        fig, axes = plt.subplots(1, 4, figsize=(16, 4.2 * aspect + 0.6))
        _panel(axes[0], images[0], f"tomogram (snr {noisy.params['snr']}), {where}")
        _panel(axes[1], images[1], "same, Gaussian σ 1.5 voxels (as usually viewed)")
        _panel(axes[2], images[2], "same, noise-free")
        _panel(
            axes[3],
            -images[3],
            "phantom (density dark) + GT membranes",
            noisy.membrane_labels[index],
        )
        fig.suptitle(f"{vs} nm/px, ±{noisy.params['tilt_range_deg']:g}° tilt about y", fontsize=9)
        fig.tight_layout()
        path = out_dir / f"simulation_{name}.png"
        fig.savefig(path, dpi=90)
        plt.close(fig)
        paths.append(path)
    return paths


# The wider world (issue 11): each look next to the default, same seed (same objects
# wherever the look changes only imaging).
WORLD_BASE = SimulationParams(shape=(64, 160, 160), voxel_size_nm=1.68, seed=9)
WORLD_LOOKS: dict[str, dict] = {
    "default": {},
    "denoised (denoise_sigma_nm 2, snr ×8)": {"denoise_sigma_nm": 2.0, "snr": 0.6},
    "SIRT-like, radial cutoff 0.2": {"recon_filter": "sirt", "sirt_iterations": 4,
                                     "radial_cutoff": 0.2},
    "dual_axis": {"dual_axis": True},
    "wedge_fill (IsoNet-like)": {"wedge_fill": True},
    "defocus_gradient": {"defocus_gradient": True},
    "ribosomes + protein ×3": {"ribosome_density_per_um3": 30000.0, "protein_crowding": 3.0},
    "lamella 60 nm + vacuum": {"lamella_thickness_nm": 60.0},
    "lamella 50 nm, tilted 10°, cuts, ice ×2": {"lamella_thickness_nm": 50.0,
                                                "lamella_tilt_deg": 10.0,
                                                "lamella_cuts_vesicles": True, "n_ice_blobs": 2},
    "gold ×6 + microtubules ×2": {"n_gold": 6, "n_microtubules": 2},
    "membrane 6.8 nm": {"membrane_thickness_nm": 6.8},
    "ER tubules ×2 + coated vesicles ×2": {"n_er_tubules": 2, "n_coated_vesicles": 2},
}  # fmt: skip


def save_world_figures(out_dir: str | Path) -> list[Path]:
    """``simulation_world_xy.png`` / ``_xz.png``: every look of :data:`WORLD_LOOKS`,
    low-passed (Gaussian σ 1.5 voxels, as usually viewed), central xy slice and an xz
    slice through the y row of the first gold bead."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    sims = {name: simulate_tomogram(WORLD_BASE, keep_phantom=False, **kw)
            for name, kw in WORLD_LOOKS.items()}  # fmt: skip
    nz, ny, _ = WORLD_BASE.shape
    beads = [s.info["gold_beads_px"] for s in sims.values() if "gold_beads_px" in s.info]
    y_row = int(round(beads[0][0][1])) if beads else ny // 2  # through a gold bead
    paths = []
    for view, index in (("xy", np.s_[nz // 2]), ("xz", np.s_[:, y_row])):
        n = len(sims)
        cols = 3
        rows = int(np.ceil(n / cols))
        aspect = nz / ny if view == "xz" else 1.0
        fig, axes = plt.subplots(rows, cols, figsize=(3.2 * cols, 3.2 * rows * aspect + 0.5))
        for ax, (name, sim) in zip(axes.ravel(), sims.items()):
            _panel(ax, ndimage.gaussian_filter(sim.tomogram, 1.5)[index], name)
        for ax in axes.ravel()[n:]:
            ax.axis("off")
        where = f"z = {nz // 2}" if view == "xy" else f"y = {y_row}"
        fig.suptitle(f"{view} ({where}), {WORLD_BASE.voxel_size_nm} nm/px, seed {WORLD_BASE.seed}",
                     fontsize=9)  # fmt: skip
        fig.tight_layout()
        path = out_dir / f"simulation_world_{view}.png"
        fig.savefig(path, dpi=55)
        plt.close(fig)
        from PIL import Image  # matplotlib's own dependency

        Image.open(path).convert("L").save(path, optimize=True)  # grey: a third of the size
        paths.append(path)
    return paths


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    out = Path(argv[0] if argv else "docs/images")
    if "--world" in argv:
        for path in save_world_figures(Path(argv[0]) if argv[0] != "--world" else out):
            print(path)
        return 0
    noisy = simulate_tomogram(FIGURE_PARAMS)
    clean = simulate_tomogram(FIGURE_PARAMS, snr=None)
    for path in save_figures(out, noisy, clean):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
