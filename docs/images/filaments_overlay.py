"""Make docs/images/filaments_overlay.png: xy slices of a held-out simulated synapse (seed
101, calibrated noise, published filament model at the calibrated density x 2) with the
true (green) and detected (orange: matched, red: unmatched) connectors and tethers
overlaid.

    python docs/images/filaments_overlay.py
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from synapseg.evaluate.filaments import gt_filaments, match_filaments  # noqa: E402
from synapseg.filaments import detect_filaments  # noqa: E402
from synapseg.filaments.measure import parse_path  # noqa: E402
from synapseg.simulate import simulate_tomogram  # noqa: E402


def main() -> None:
    sim = simulate_tomogram(
        shape=(64, 256, 256),
        seed=101,
        filament_model="published",
        filament_amplitude_scale=2.0,  # the benchmark's calibrated density (docs/filaments.md)
    )
    vs = sim.voxel_size_nm
    table, _ = detect_filaments(sim.tomogram, vs, sim.vesicles, sim.membrane_labels == 1)
    gt = gt_filaments(sim.filaments)
    pairs = match_filaments(gt, gt_filaments(table))
    hit_pred = {p for _, p in pairs}
    hit_gt = {g for g, _ in pairs}
    true_paths = [
        g[["z_px", "y_px", "x_px"]].to_numpy()
        for _, g in sim.filaments.groupby("filament_id")
        if g["kind"].iloc[0] in ("connector", "tether")
    ]
    zs = [24, 40]
    y0, y1, x0, x1 = 40, 200, 30, 190  # a crop, so the lines are visible
    fig, axes = plt.subplots(1, 2, figsize=(12, 6.3))
    half = 6  # slab of 13 sections: the filaments are 3D
    for ax, z in zip(axes, zs):
        slab = sim.tomogram[z - 2 : z + 3, y0:y1, x0:x1].mean(axis=0)
        lo, hi = np.percentile(slab, [1, 99])
        ax.imshow(
            slab, cmap="gray", vmin=lo, vmax=hi, extent=(x0 - 0.5, x1 - 0.5, y1 - 0.5, y0 - 0.5)
        )
        for k, path in enumerate(true_paths):
            if np.any(np.abs(path[:, 0] - z) <= half):
                ax.plot(
                    path[:, 2], path[:, 1], color="lime", lw=2.5, alpha=0.8 if k in hit_gt else 0.5
                )
        for i, row in table.reset_index(drop=True).iterrows():
            path = parse_path(row["path_px"])
            if np.any(np.abs(path[:, 0] - z) <= half):
                color = "orange" if i in hit_pred else "red"
                ax.plot(path[:, 2], path[:, 1], color=color, lw=2)
        ax.set_title(f"z {z - half}-{z + half} (mean of z {z - 2}-{z + 2} shown)")
        ax.set_xlim(x0 - 0.5, x1 - 0.5)
        ax.set_ylim(y1 - 0.5, y0 - 0.5)
        ax.set_axis_off()
    fig.suptitle(
        "seed 101, calibrated noise, filaments x 2, 1.68 nm/px: true (green), detected and matched "
        "(orange), detected but false (red)"
    )
    fig.tight_layout()
    out = Path(__file__).with_name("filaments_overlay.png")
    fig.savefig(out, dpi=90)
    print(out)


if __name__ == "__main__":
    main()
