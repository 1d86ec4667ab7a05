"""Calibrate the simulated connectors and tethers against a real synapse (issue 15).

Makes docs/images/filaments_calibration.png and prints the tables of docs/filaments.md
("Are the simulated filaments as strong as real ones?").

The real data are Pyto's own results on a real presynaptic crop at 1.684 nm/px
(``../shared/reference/pyto-presynaptic-example``, Lucic lab, Pyto 1.11.2 examples): the
connector and tether tables (``connectors_tomo_new_{connectors,tethers}_good.dat``), the
vesicle table with the grey values of cytoplasm, vesicle membrane and lumen in the same
tomogram, and the boundaries (``viz_labels.mrc``). The grey-value tomogram is absent, so
the comparison is made through the procedure: Pyto's hierarchical thresholding, as the
.dat headers state its settings, is re-run on simulated synapses with and without their
filaments (``filament_model="published"`` / ``"none"``, tuning seeds, never the benchmark's
101-104), its thresholds put on the simulated tomogram in two ways:

* ``sigma``: the real thresholds in units of the real segmentation region's grey-value SD;
* ``membrane``: in units of the real vesicle-membrane contrast (region mean minus the
  mean of the vesicles' outer 2-voxel shell, Pyto's ``Membrane thickness: 2``), which does
  not depend on how much the real tomogram was low-pass filtered.

Pyto's settings re-implemented (from the .dat headers): segments are the face-connected
components of the region's voxels at or below a threshold (dense = dark), thresholds
ascending; a segment is kept at a level when it touches exactly two boundaries (face
contact, ``Contact mode: exact``, ``Number of boundaries contacted: 2``); ``keep new``: a
kept segment that contains a segment kept at a stricter threshold is not new and is
dropped; then the volume class "good" (3 <= voxels < 600, scaled to nm^3) and the split
into tethers (touching the AZ, id 2) and connectors (the rest).

    python docs/images/filaments_calibration.py                  # seeds 3 5 7, amplitude x1
    python docs/images/filaments_calibration.py --scales 1 2 3   # filament mass x scale
"""

from __future__ import annotations

import argparse
import json
import re
from pathlib import Path

import numpy as np
from scipy import ndimage

REF = Path(__file__).resolve().parents[3] / "shared" / "reference" / "pyto-presynaptic-example"
REAL_VOXEL_NM = 1.684
AZ = 1  # boundary id of the AZ / plasma membrane in this script's label volumes
VES0 = 10  # vesicle boundary ids start here
MAX_PAIR_GAP_NM = 25.0  # vesicle pairs counted as connector candidates
MAX_TETHER_GAP_NM = 45.0  # vesicles counted as tether candidates ("proximal")


# ----------------------------------------------------------------------------- real data
def read_dat(path: Path) -> list[dict]:
    """Rows of a Pyto connector/tether .dat: threshold, density, volume, length, contacts."""
    rows = []
    for line in path.read_text().splitlines():
        if line.startswith("#") or not line.strip():
            continue
        m = re.match(r"\s*(\d+)\s+(.*)\[\s*([\d\s]+)\]\s*$", line)
        if not m:
            continue
        v = [float(x) for x in m.group(2).split()]
        rows.append(
            {
                "id": int(m.group(1)),
                "threshold": v[0],
                "density_mean": v[1],
                "volume_vox": v[5],
                "length_px": v[11],
                "boundary_distance_px": v[12],
                "contacts": [int(x) for x in m.group(3).split()],
            }
        )
    return rows


def read_region_stats(path: Path) -> tuple[float, float]:
    """Mean and SD of the whole segmentation region (the last block of a .dat)."""
    lines = path.read_text().splitlines()
    k = next(i for i, s in enumerate(lines) if s.startswith("# Whole segmentation region"))
    v = [float(x) for x in lines[k + 1].lstrip("#").split()]
    return v[0], v[1]


def read_vesicles(path: Path) -> dict:
    """Vesicle ids, centers (z, y, x px), radii (px), AZ distance (px) and the averages."""
    ves, av = [], None
    for line in path.read_text().splitlines():
        s = line.split()
        if not s:
            continue
        if s[0] == "#" and len(s) > 1 and s[1] == "av":
            av = [float(x) for x in s[2:]]
        elif s[0].isdigit():
            v = [float(x) for x in s[1:]]
            # density mean/std/min/max of vesicle, membrane, interior (12), voxels of
            # vesicle and membrane (2), AZ distance mean and min, center x y z, radius...
            ves.append(
                {
                    "id": int(s[0]),
                    "az_min_px": v[15],
                    "center_px": (v[18], v[17], v[16]),
                    "radius_px": v[19],
                }
            )
    assert av is not None
    return {"vesicles": ves, "membrane_mean": av[4], "lumen_mean": av[8]}


def real_calibration() -> dict:
    conn = read_dat(REF / "connectors_tomo_new_connectors_good.dat")
    teth = read_dat(REF / "connectors_tomo_new_tethers_good.dat")
    mu, sd = read_region_stats(REF / "connectors_tomo_new_connectors_good.dat")
    ves = read_vesicles(REF / "vesicles_tomo_vesicles.dat")
    mem = mu - ves["membrane_mean"]
    head = (REF / "connectors_tomo_new_connectors_good.dat").read_text()
    thr = [float(x) for x in re.search(r"# Thresholds:([\d.\s]+)\n", head).group(1).split()]
    v = ves["vesicles"]
    cen = np.array([x["center_px"] for x in v])
    rad = np.array([x["radius_px"] for x in v])
    gap = (
        np.linalg.norm(cen[:, None] - cen[None], axis=2) - rad[:, None] - rad[None]
    ) * REAL_VOXEL_NM
    n_pairs = int(np.sum(np.triu(gap <= MAX_PAIR_GAP_NM, 1)))
    az_nm = np.array([x["az_min_px"] for x in v]) * REAL_VOXEL_NM
    segs = [dict(r, kind="connector") for r in conn] + [dict(r, kind="tether") for r in teth]
    for r in segs:
        r["level"] = thr.index(r["threshold"])
        r["t_sigma"] = (r["threshold"] - mu) / sd
        r["t_membrane"] = (r["threshold"] - mu) / mem
        r["density_sigma"] = (r["density_mean"] - mu) / sd
        r["density_membrane"] = (r["density_mean"] - mu) / mem
        r["volume_nm3"] = r["volume_vox"] * REAL_VOXEL_NM**3
        r["length_nm"] = r["length_px"] * REAL_VOXEL_NM
        r["pair"] = tuple(sorted(r["contacts"]))
    return {
        "region_mean": mu,
        "region_sd": sd,
        "membrane_contrast_sigma": mem / sd,
        "lumen_contrast_sigma": (mu - ves["lumen_mean"]) / sd,
        "t_sigma": [(t - mu) / sd for t in thr],
        "t_membrane": [(t - mu) / mem for t in thr],
        "n_vesicles": len(v),
        "n_pairs": n_pairs,
        "n_proximal": int(np.sum(az_nm <= MAX_TETHER_GAP_NM)),
        "segments": segs,
    }


# ----------------------------------------------------------------- Pyto-like thresholds
def pyto_connections(
    image: np.ndarray, region: np.ndarray, bound: np.ndarray, thresholds: list[float]
) -> list[dict]:
    """Pyto's ``ThreshConn`` as configured in the .dat headers (see the module docstring).

    ``bound``: int labels, 0 = none; ``region``: bool mask of the segmentation region.
    Returns one dict per new segment: threshold index, voxels (flat), the two boundary ids.
    """
    cidx, cbid = [], []
    for ax in range(3):
        for sh in (1, -1):
            nb = np.roll(bound, sh, axis=ax)
            edge = [slice(None)] * 3
            edge[ax] = slice(0, 1) if sh == 1 else slice(-1, None)
            nb[tuple(edge)] = 0
            hit = np.flatnonzero(region.ravel() & (nb.ravel() > 0))
            cidx.append(hit)
            cbid.append(nb.ravel()[hit])
    cidx, cbid = np.concatenate(cidx), np.concatenate(cbid)
    kept = np.zeros(image.size, bool)
    out = []
    for k, t in enumerate(sorted(thresholds)):
        lab, n = ndimage.label(region & (image <= t))
        lab = lab.ravel()
        lc = lab[cidx]
        ok = lc > 0
        pairs = np.unique(np.stack([lc[ok], cbid[ok]], 1), axis=0)
        segs, nbound = np.unique(pairs[:, 0], return_counts=True)
        two = segs[nbound == 2]
        if not len(two):
            continue
        old = np.unique(lab[kept & (lab > 0)])
        ids = np.setdiff1d(two, old)  # "keep new": contains no segment of a stricter level
        kept |= np.isin(lab, two)
        if not len(ids):
            continue
        member = np.isin(lab, ids)
        order = np.argsort(lab[member], kind="stable")
        where = np.flatnonzero(member)[order]
        cuts = np.searchsorted(lab[where], ids)
        cuts = np.r_[cuts, len(where)]
        for j, s in enumerate(ids):
            vox = where[cuts[j] : cuts[j + 1]]
            b = pairs[pairs[:, 0] == s, 1]
            mine = lc == s
            ends = {int(x): cidx[mine & (cbid == x)] for x in b}
            out.append(
                {"level": k, "threshold": float(t), "voxels": vox, "boundaries": b, "ends": ends}
            )
    return out


def simulated_calibration(seed: int, model: str, real: dict, scale: float = 1.0) -> dict:
    """Pyto's procedure on one simulated synapse (64 x 256 x 256, calibrated noise)."""
    from synapseg.simulate import filaments as simfil
    from synapseg.simulate import simulate_tomogram
    from synapseg.simulate.measure import vesicle_contrast

    saved = dict(simfil.PUBLISHED)
    simfil.PUBLISHED["amplitude"] = simfil.LEGACY_AMPLITUDE * scale
    try:
        sim = simulate_tomogram(shape=(64, 256, 256), seed=seed, filament_model=model)
    finally:
        simfil.PUBLISHED.clear()
        simfil.PUBLISHED.update(saved)
    vs = sim.voxel_size_nm
    img = np.asarray(sim.tomogram, np.float32)
    ves = sim.vesicle_labels.astype(np.int32)
    pm = sim.membrane_labels == 1
    free = (ves == 0) & ~pm  # other organelles stay in the cytoplasm, as in the real region
    comp, _ = ndimage.label(free)
    near = ndimage.binary_dilation(ves > 0, iterations=2) & free
    cyto = np.bincount(comp[near], minlength=comp.max() + 1)
    cyto[0] = 0
    region = comp == int(np.argmax(cyto))  # the presynaptic cytoplasm around the vesicles
    bound = np.where(ves > 0, ves + VES0, 0).astype(np.int32)
    bound[pm & (ves == 0)] = AZ
    mu, sd = float(img[region].mean()), float(img[region].std())
    # the membrane as the simulator's realism check measures it (a 2-voxel shell on the
    # bilayer midline: 0.51 background SD at the default noise, as Pyto on the real one)
    vc = vesicle_contrast(img, sim.vesicles, vs, sim.vesicle_labels, background_mask=region)
    bkg_mean, bkg_sd = vc["background_mean"], vc["background_std"]
    mem = mu - (bkg_mean - vc["membrane_sigma"] * bkg_sd)
    lumen = mu - (bkg_mean - vc["lumen_sigma"] * bkg_sd)

    tab = sim.vesicles
    cen = tab[["center_z_nm", "center_y_nm", "center_x_nm"]].to_numpy()
    rad = tab["outer_radius_nm"].to_numpy()
    gap = np.linalg.norm(cen[:, None] - cen[None], axis=2) - rad[:, None] - rad[None]
    n_pairs = int(np.sum(np.triu(gap <= MAX_PAIR_GAP_NM, 1)))
    d_pm = ndimage.distance_transform_edt(~pm, sampling=vs)
    az = ndimage.minimum(d_pm, ves, tab["id"].to_numpy())
    n_prox = int(np.sum(np.asarray(az) <= MAX_TETHER_GAP_NM))
    truth = sim.filaments
    ends = truth[truth["kind"] == "connector"].groupby("filament_id")
    true_pairs = {
        tuple(
            sorted(
                (int(g["from_vesicle_id"].iloc[0]) + VES0, int(g["to_vesicle_id"].iloc[0]) + VES0)
            )
        )
        for _, g in ends
    }
    n_true = {
        k: int(truth.loc[truth["kind"] == k, "filament_id"].nunique())
        for k in ("connector", "tether")
    }

    vmin, vmax = 3 * REAL_VOXEL_NM**3, 600 * REAL_VOXEL_NM**3
    res = {
        "seed": seed,
        "model": model,
        "scale": scale,
        "n_vesicles": len(tab),
        "n_pairs": n_pairs,
        "n_proximal": n_prox,
        "n_true": n_true,
        "true_pairs": true_pairs,
        "membrane_contrast_sigma": mem / sd,
        "lumen_contrast_sigma": lumen / sd,
        "calibrations": {},
    }
    for cal in ("sigma", "membrane"):
        thr = [mu + t * (sd if cal == "sigma" else mem) for t in real[f"t_{cal}"]]
        segs = []
        for c in pyto_connections(img, region, bound, thr):
            vol = len(c["voxels"]) * vs**3
            if not (vmin <= vol < vmax):
                continue
            b = c["boundaries"]
            dens = float(img.ravel()[c["voxels"]].mean())
            # length proxy: between the centroids of its contact voxels with the two
            # boundaries, plus one voxel (Pyto's "Length" follows the segment's mid line)
            ends = [np.stack(np.unravel_index(e, img.shape), 1).mean(0) for e in c["ends"].values()]
            segs.append(
                {
                    "kind": "tether" if AZ in b else "connector",
                    "pair": tuple(sorted(int(x) for x in b)),
                    "level": c["level"],
                    "t_sigma": (c["threshold"] - mu) / sd,
                    "t_membrane": (c["threshold"] - mu) / mem,
                    "density_sigma": (dens - mu) / sd,
                    "density_membrane": (dens - mu) / mem,
                    "volume_nm3": vol,
                    "length_nm": float(np.linalg.norm(ends[0] - ends[1]) + 1) * vs,
                }
            )
        res["calibrations"][cal] = segs
    return res


# ------------------------------------------------------------------------------ report
def summarise(segs: list[dict], n_pairs: int, n_prox: int, n_levels: int = 19) -> dict:
    out = {}
    for kind, denom in (("connector", n_pairs), ("tether", n_prox)):
        s = [r for r in segs if r["kind"] == kind]
        n_with = len({r["pair"] for r in s})
        row = {
            "n": len(s),
            "per_candidate": round(len(s) / max(denom, 1), 3),
            "candidates_with": round(n_with / max(denom, 1), 3),
            "per_linked": round(len(s) / max(n_with, 1), 3),
        }
        keys = ("t_sigma", "t_membrane", "density_sigma", "density_membrane", "volume_nm3")
        for key in (*keys, "length_nm"):
            v = np.array([r[key] for r in s])
            q = np.percentile(v, [25, 50, 75]) if len(v) else []
            row[key] = [round(float(x), 2) for x in q] or None
        # the connectivity curve: candidates with a segment formed at or below level k
        first: dict = {}
        for r in s:
            first[r["pair"]] = min(first.get(r["pair"], 99), r["level"])
        lv = np.array(list(first.values()))
        row["curve"] = [round(float(np.sum(lv <= k)) / max(denom, 1), 3) for k in range(n_levels)]
        out[kind] = row
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[3, 5, 7])
    ap.add_argument("--scales", type=float, nargs="+", default=[1.0])
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--no-figure", action="store_true")
    ap.add_argument("--from-json", type=Path, default=None, help="redraw from a --json run")
    a = ap.parse_args()
    if a.from_json:
        d = json.loads(a.from_json.read_text())
        figure(real_calibration(), d["real"], d["sim"])
        return

    real = real_calibration()
    print(
        f"real: region mean {real['region_mean']:.0f} SD {real['region_sd']:.0f}; membrane "
        f"contrast {real['membrane_contrast_sigma']:.2f} SD, lumen "
        f"{real['lumen_contrast_sigma']:.2f} SD; thresholds {real['t_sigma'][0]:.2f}.."
        f"{real['t_sigma'][-1]:.2f} SD = {real['t_membrane'][0]:.2f}.."
        f"{real['t_membrane'][-1]:.2f} membrane contrasts; {real['n_vesicles']} vesicles, "
        f"{real['n_pairs']} pairs <= {MAX_PAIR_GAP_NM:g} nm, {real['n_proximal']} within "
        f"{MAX_TETHER_GAP_NM:g} nm of the AZ"
    )
    rs = summarise(real["segments"], real["n_pairs"], real["n_proximal"])
    print("real", json.dumps(rs))
    sims = []
    for scale in a.scales:
        for model in ("published", "none"):
            if model == "none" and scale != a.scales[0]:
                continue
            for seed in a.seeds:
                r = simulated_calibration(seed, model, real, scale)
                sims.append(r)
                print(
                    f"seed {seed} {model} x{scale:g}: membrane {r['membrane_contrast_sigma']:.2f} "
                    f"SD, lumen {r['lumen_contrast_sigma']:.2f} SD, {r['n_vesicles']} vesicles, "
                    f"{r['n_pairs']} pairs, {r['n_proximal']} proximal, true {r['n_true']}",
                    flush=True,
                )
    table = {}
    for scale in a.scales:
        for model in ("published", "none"):
            grp = [s for s in sims if s["model"] == model and s["scale"] == scale]
            if not grp:
                continue
            for cal in ("sigma", "membrane"):
                segs = [x for s in grp for x in s["calibrations"][cal]]
                sm = summarise(
                    segs, sum(s["n_pairs"] for s in grp), sum(s["n_proximal"] for s in grp)
                )
                if model == "published":
                    hit = [0, 0]
                    for sim_ in grp:
                        found = {x["pair"] for x in sim_["calibrations"][cal]}
                        hit[0] += len(sim_["true_pairs"] & found)
                        hit[1] += len(sim_["true_pairs"])
                    sm["connector"]["true_pairs_with_segment"] = round(hit[0] / max(hit[1], 1), 3)
                table[f"{model} x{scale:g} {cal}"] = sm
                print(f"{model} x{scale:g} {cal}", json.dumps(sm), flush=True)
    if a.json:
        a.json.write_text(json.dumps({"real": rs, "sim": table, "t_sigma": real["t_sigma"]}))
    if not a.no_figure:
        figure(real, rs, table)


def figure(real: dict, rs: dict, table: dict) -> None:
    """Connectivity curves: fraction of candidates with a segment formed at or below each
    of the real thresholds (x: the real thresholds in region SD), real against simulated."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(10, 4))
    t = real["t_sigma"]
    for ax, kind, what in zip(
        axes, ("connector", "tether"), ("vesicle pairs <= 25 nm", "vesicles <= 45 nm of the AZ")
    ):
        ax.plot(t, rs[kind]["curve"], "k-o", lw=2, label="real (Pyto)")
        for name, sm in table.items():
            model, scale, cal = name.split()
            ls = "-" if cal == "membrane" else ":"
            color = (
                "grey"
                if model == "none"
                else plt.cm.viridis(min(np.log2(float(scale[1:])) / 3, 1) * 0.85)
            )
            label = f"{'no filaments' if model == 'none' else 'sim ' + scale} ({cal})"
            ax.plot(t, sm[kind]["curve"], ls, color=color, label=label)
        ax.set_xlabel("threshold (real region SD below the mean)")
        ax.set_ylabel(f"fraction with a {kind} formed at <= threshold")
        ax.set_title(f"{kind}s: {what}", fontsize=9)
        ax.set_ylim(0, 1)
    axes[1].legend(fontsize=6, ncol=2)
    fig.suptitle(
        "Pyto's procedure on the real synapse and on simulated ones (tuning seeds; thresholds "
        "as region SD (dotted) or membrane contrast (solid))",
        fontsize=8,
    )
    fig.tight_layout()
    out = Path(__file__).with_name("filaments_calibration.png")
    fig.savefig(out, dpi=80)
    print(out)


if __name__ == "__main__":
    main()
