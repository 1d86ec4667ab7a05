"""Make docs/images/filaments_feasibility.png: what a simulated connector looks like at the
calibrated noise. For six true connectors of a tuning synapse (seed 3, published filament
model; not a benchmark seed), thin from left to right: the xy crop around the connector
(mean of the 3 sections at its middle), the same crop of the same phantom without its
filaments (same noise: ``filament_model="none"``), and their difference (the filament's
signal alone after imaging and reconstruction), all on one grey scale per row.

    python docs/images/filaments_feasibility.py
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from synapseg.simulate import simulate_tomogram  # noqa: E402


def main() -> None:
    kw = dict(shape=(64, 256, 256), seed=3)
    sim = simulate_tomogram(filament_model="published", **kw)
    neg = simulate_tomogram(filament_model="none", **kw)
    vs = sim.voxel_size_nm
    fil = sim.filaments[sim.filaments["kind"] == "connector"]
    rows = []
    for _, g in fil.groupby("filament_id"):
        pts = g.sort_values("point_index")[["z_px", "y_px", "x_px"]].to_numpy()
        mid = pts[len(pts) // 2]
        z = int(round(mid[0]))
        if 3 <= z < sim.tomogram.shape[0] - 3 and np.ptp(pts[:, 0]) * vs < 6:  # lies in xy
            rows.append((float(g["radius_nm"].iloc[0]) * 2, pts, mid))
    rows.sort(key=lambda r: -r[0])
    pick = [rows[k] for k in np.linspace(0, len(rows) - 1, 6).astype(int)]
    fig, axes = plt.subplots(len(pick), 3, figsize=(7.5, 2.6 * len(pick)))
    half = 20  # px: 34 nm crops
    for ax_row, (diam, pts, mid) in zip(axes, pick):
        z, y, x = (int(round(v)) for v in mid)
        y0, x0 = max(y - half, 0), max(x - half, 0)
        sl = (slice(z - 1, z + 2), slice(y0, y0 + 2 * half), slice(x0, x0 + 2 * half))
        a = sim.tomogram[sl].mean(axis=0)
        b = neg.tomogram[sl].mean(axis=0)
        lo, hi = np.percentile(np.concatenate([a.ravel(), b.ravel()]), [1, 99])
        for ax, img, title in zip(
            ax_row, (a, b, a - b), ("with filaments", "same, filaments removed", "difference")
        ):
            ax.imshow(img, cmap="gray", vmin=lo, vmax=hi)
            ax.set_axis_off()
            ax.set_title(
                f"{title}" + (f"\n{diam:.1f} nm connector" if title == "difference" else ""),
                fontsize=8,
            )
        ax_row[2].plot(pts[:, 2] - x0, pts[:, 1] - y0, color="lime", lw=0.8, alpha=0.6)
    fig.suptitle("tuning seed 3, calibrated noise, 1.68 nm/px; green: true path", fontsize=9)
    fig.tight_layout()
    out = Path(__file__).with_name("filaments_feasibility.png")
    fig.savefig(out, dpi=80)
    print(out)


if __name__ == "__main__":
    main()
