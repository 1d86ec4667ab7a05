"""Figures of a simulated tomogram for the docs: ``python -m synapseg.simulate.figures DIR``.

Writes ``simulation_xy.png`` (a central xy slice) and ``simulation_xz.png`` (an xz slice
through a vesicle), each as tomogram | low-passed tomogram | noise-free reconstruction |
phantom with the ground-truth membranes outlined.
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


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    out = Path(argv[0] if argv else "docs/images")
    noisy = simulate_tomogram(FIGURE_PARAMS)
    clean = simulate_tomogram(FIGURE_PARAMS, snr=None)
    for path in save_figures(out, noisy, clean):
        print(path)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
