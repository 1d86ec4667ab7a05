"""Make docs/images/filaments_feasibility.png: what a simulated connector looks like at the
calibrated noise. For six true connectors of a tuning synapse (seed 3, published filament
model; not a benchmark seed), thin from left to right: the xy crop around the connector
(mean of the 3 sections at its middle), the same crop of the same phantom without its
filaments (same noise: ``filament_model="none"``), and their difference (the filament's
signal alone after imaging and reconstruction), all on one grey scale per row.

    python docs/images/filaments_feasibility.py
    python docs/images/filaments_feasibility.py --oracle 3 5 7   # the d' table of the doc

``--oracle``: for each true connector/tether, the mean density (Gaussian of 1 nm, dense =
high) along its exact path without 2 nm at each end, against the same path shifted sideways
by 5-12 nm (40 shifts clear of the vesicles, seed 0): d' = (true - mean of shifts) / SD.
"""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from synapseg.simulate import simulate_tomogram  # noqa: E402


def cross_section(core_nm: float = 1.5, ring_nm: tuple[float, float] = (3.0, 5.0)):
    """Offsets (in a cross-section plane, units nm) of a cylinder matched filter: a disc of
    radius ``core_nm`` (weight +1/n) and an annulus ``ring_nm`` (weight -1/n)."""
    g = np.arange(-ring_nm[1], ring_nm[1] + 1e-6, 0.5)
    a, b = (x.ravel() for x in np.meshgrid(g, g, indexing="ij"))
    r = np.hypot(a, b)
    core = r <= core_nm
    ring = (r >= ring_nm[0]) & (r <= ring_nm[1])
    w = np.where(core, 1.0 / core.sum(), np.where(ring, -1.0 / ring.sum(), 0.0))
    keep = w != 0
    return a[keep], b[keep], w[keep]


def oracle(seeds: list[int], shape=(64, 256, 256), matched: tuple | None = None) -> list[dict]:
    """d' of every true connector/tether of the given seeds (see the module docstring).
    With ``matched`` = (core_nm, ring_nm), also the d' of the cylinder matched filter
    (core mean minus annulus mean in the plane across the path, averaged along it) on the
    same true and shifted paths (``dprime_matched``)."""
    from scipy import ndimage

    rows = []
    rng = np.random.default_rng(0)
    xs = cross_section(*matched) if matched else None
    for seed in seeds:
        sim = simulate_tomogram(shape=shape, seed=seed, filament_model="published")
        vs = sim.voxel_size_nm
        dens = -ndimage.gaussian_filter(np.asarray(sim.tomogram, np.float32), 1.0 / vs)
        cen = sim.vesicles[["center_z_nm", "center_y_nm", "center_x_nm"]].to_numpy()
        rad = sim.vesicles["outer_radius_nm"].to_numpy()
        ext = np.array(dens.shape) * vs

        def mean_on(pts, dens=dens, vs=vs):
            return float(ndimage.map_coordinates(dens, (pts / vs).T, order=1).mean())

        def matched_on(pts, u, dens=dens, vs=vs):
            e1 = np.cross(u, [1.0, 0.0, 0.0])
            if np.linalg.norm(e1) < 0.3:
                e1 = np.cross(u, [0.0, 1.0, 0.0])
            e1 /= np.linalg.norm(e1)
            e2 = np.cross(u, e1)
            a, b, w = xs
            q = pts[:, None, :] + a[None, :, None] * e1 + b[None, :, None] * e2
            v = ndimage.map_coordinates(dens, (q.reshape(-1, 3) / vs).T, order=1, mode="nearest")
            return float((v.reshape(q.shape[:2]) * w).sum(axis=1).mean())

        for _, g in sim.filaments.groupby("filament_id"):
            kind = g["kind"].iloc[0]
            if kind not in ("connector", "tether"):
                continue
            pts = g.sort_values("point_index")[["z_nm", "y_nm", "x_nm"]].to_numpy()
            seg = np.r_[0, np.cumsum(np.linalg.norm(np.diff(pts, axis=0), axis=1))]
            t = np.arange(0, seg[-1], 0.5)
            path = np.stack([np.interp(t, seg, pts[:, k]) for k in range(3)], 1)
            core = path[(t >= 2) & (t <= seg[-1] - 2)]
            if len(core) < 2 or np.any(core < 0) or np.any(core > ext):
                continue
            u = (pts[-1] - pts[0]) / np.linalg.norm(pts[-1] - pts[0])
            nulls, mnulls = [], []
            for _ in range(400):
                v = rng.normal(size=3)
                v -= v.dot(u) * u
                q = core + v / np.linalg.norm(v) * rng.uniform(5, 12)
                if np.any(q < 2) or np.any(q > ext - 2):
                    continue
                if (np.linalg.norm(q[:, None] - cen[None], axis=2) - rad).min() < 1.5:
                    continue
                nulls.append(mean_on(q))
                if xs is not None:
                    mnulls.append(matched_on(q, u))
                if len(nulls) >= 40:
                    break
            if len(nulls) > 3:
                d = (mean_on(core) - np.mean(nulls)) / np.std(nulls)
                diam = 2 * float(g["radius_nm"].iloc[0])
                row = {"seed": seed, "kind": kind, "diameter_nm": diam, "dprime": d}
                if xs is not None:
                    m = matched_on(core, u)
                    row["dprime_matched"] = (m - np.mean(mnulls)) / np.std(mnulls)
                rows.append(row)
    return rows


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
    import sys

    if len(sys.argv) > 1 and sys.argv[1] in ("--oracle", "--matched"):
        # --matched CORE_NM RING_IN_NM RING_OUT_NM SEED...: also the cylinder matched filter
        import pandas as pd

        args = sys.argv[2:]
        matched = None
        if sys.argv[1] == "--matched":
            matched = (float(args[0]), (float(args[1]), float(args[2])))
            args = args[3:]
        r = pd.DataFrame(oracle([int(a) for a in args] or [3, 5, 7], matched=matched))
        cols = ["dprime", "dprime_matched"] if matched else ["dprime"]
        for kind, g in r.groupby("kind"):
            for col in cols:
                bins = pd.cut(g["diameter_nm"], [2, 3, 4, 5, 6.01], right=False)
                by = g.groupby(bins, observed=False)[col].median().round(2).tolist()
                d = g[col]
                print(
                    f"{kind} {col}: n {len(d)}, median d' {d.median():.2f}, "
                    f"d'<1 {(d < 1).mean():.0%}, d'<2 {(d < 2).mean():.0%}, by diameter "
                    f"2-3/3-4/4-5/5-6 nm {by}; recall at 5 % / 10 % false positives "
                    f"{(d > 1.645).mean():.2f} / {(d > 1.2816).mean():.2f}"
                )
    else:
        main()
