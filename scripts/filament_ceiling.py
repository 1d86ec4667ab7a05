"""Detectability ceiling of connectors and tethers: what an ideal detector that knows each
filament's exact path can reach at the false rate the negative control allows.

For every true connector and tether of simulated synapses (TUNING seeds only; never the
benchmark's 101-104), statistics of the tomogram along its exact path (the true polyline,
1.5 nm trimmed at each end, as the line scan trims the membranes' blur):

- ``line_S``: the mean density (dense = high, Gaussian of S nm) along the axis;
- ``xs_R``: a cylinder matched filter: the mean over a disc of radius R across the path
  minus the mean over the annulus R + 1.5 to R + 3.5 nm (free voxels only: outside every
  vesicle's outer surface + 1 nm and the grown AZ), averaged along the path.

The null distribution of each statistic comes from paths where no filament is: at every
candidate pair of the negative control (the same phantom without filaments, the
negative-control floor's own data), ``--draws`` paths drawn as the simulator draws a
filament there (endpoints on the outer surfaces along the pair's axis with the
simulator's jitter, the same bend; tethers: from the vesicle towards the nearest AZ voxel
until the AZ); and, as a check, the same at the candidate pairs of the synapse with
filaments that carry none. Each true path is z-scored against the null paths of the same
kind and nearly the same length (the ``--n-len`` nearest in length).

The ideal detector tests one path per candidate pair (the true path where there is a
filament): in the negative control it reports ``f`` x (candidate pairs per vesicle) false
filaments per vesicle when its threshold is the null's (1 - f) quantile, so the floor
(0.1 per vesicle) allows ``f = 0.1 / pairs per vesicle``. Its recall at that ``f`` and its
F1 on the synapses with filaments (false ones: ``f`` x the pairs without a filament) are
the ceiling. ``true radius``: the statistic whose disc matches the filament's rendered
radius (max(d, 3.5 nm) / 2: thinner filaments are drawn as one 3.5 nm-FWHM line of lower
mass); ``best``: per diameter bin, the statistic with the best recall (an oracle choice).

    nice -n 10 python scripts/filament_ceiling.py --seeds 3 5 7 9 11 13 15 17 \
        --json /tmp/ceiling.json
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import pandas as pd
from scipy import ndimage

from synapseg.filaments import FilamentParams
from synapseg.filaments.boundaries import Boundaries
from synapseg.filaments.detect import candidate_pairs
from synapseg.simulate import simulate_tomogram
from synapseg.simulate.filaments import curved_polyline, sample_polyline
from synapseg.simulate.params import DEFAULT_SNR

BENCHMARK_SEEDS = (101, 102, 103, 104)
TRIM_NM = 1.5
STEP_NM = 0.75  # sampling along a path
LINE_SIGMAS = (0.5, 1.0, 1.5, 2.0)
XS_RADII = (1.0, 1.5, 2.0, 2.5, 3.0)
JITTER, BEND = 0.25, 0.15  # the simulator's (synapseg.simulate.filaments.PUBLISHED)
DIAMETER_BINS = (2.0, 2.5, 3.5, 4.5, 6.01)
LENGTH_BINS = (0.0, 10.0, 20.0, 35.0, 80.0)


def _frames(path: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    t = np.gradient(path, axis=0)
    t /= np.maximum(np.linalg.norm(t, axis=1, keepdims=True), 1e-9)
    ref = np.where(np.abs(t[:, :1]) < 0.9, [[1.0, 0, 0]], [[0, 1.0, 0]])
    e1 = np.cross(t, ref)
    e1 /= np.maximum(np.linalg.norm(e1, axis=1, keepdims=True), 1e-9)
    return e1, np.cross(t, e1)


def _disc(r_max: float, step: float = 0.5):
    g = np.arange(-r_max, r_max + 1e-6, step)
    a, b = (x.ravel() for x in np.meshgrid(g, g, indexing="ij"))
    r = np.hypot(a, b)
    keep = r <= r_max
    return a[keep], b[keep], r[keep]


class Sampler:
    """The smoothed densities and the free mask of one tomogram, sampled along paths."""

    def __init__(self, tomogram, vs: float, bounds: Boundaries) -> None:
        raw = -np.asarray(tomogram, np.float32)
        med = float(np.median(raw))
        sig = float(1.4826 * np.median(np.abs(raw - med)))
        raw = (raw - med) / sig
        self.vs = vs
        self.dens = {s: ndimage.gaussian_filter(raw, s / vs) for s in LINE_SIGMAS}
        box = tuple(slice(0, n) for n in raw.shape)
        self.free = (bounds.render(box, 1.0, np.arange(len(bounds.ids))) == 0).astype(np.float32)
        self.disc = _disc(max(XS_RADII) + 3.5)
        self.ext = np.array(raw.shape) * vs

    def stats(self, polyline_nm: np.ndarray) -> dict | None:
        pts = sample_polyline(polyline_nm, STEP_NM / 4)
        seg = np.r_[0, np.cumsum(np.linalg.norm(np.diff(pts, axis=0), axis=1))]
        length = float(seg[-1])
        t = np.arange(TRIM_NM, length - TRIM_NM + 1e-6, STEP_NM)
        if len(t) < 2:
            return None
        path = np.stack([np.interp(t, seg, pts[:, k]) for k in range(3)], 1)
        if np.any(path < 0) or np.any(path > self.ext - self.vs):
            return None
        out = {"length_nm": length}
        coords = (path / self.vs).T
        for s, d in self.dens.items():
            out[f"line_{s}"] = float(ndimage.map_coordinates(d, coords, order=1).mean())
        e1, e2 = _frames(path)
        a, b, r = self.disc
        q = path[:, None] + a[None, :, None] * e1[:, None] + b[None, :, None] * e2[:, None]
        qc = (q.reshape(-1, 3) / self.vs).T
        v = ndimage.map_coordinates(self.dens[1.0], qc, order=1, mode="nearest")
        f = ndimage.map_coordinates(self.free, qc, order=0, mode="constant") > 0.5
        v, f = v.reshape(q.shape[:2]), f.reshape(q.shape[:2])
        for rc in XS_RADII:
            core = (r <= rc)[None] & f
            ring = ((r >= rc + 1.5) & (r <= rc + 3.5))[None] & f
            nc, nr = core.sum(1), ring.sum(1)
            ok = (nc > 0) & (nr > 0)
            if not ok.any():
                out[f"xs_{rc}"] = np.nan
                continue
            cm = (v * core).sum(1)[ok] / nc[ok]
            rm = (v * ring).sum(1)[ok] / nr[ok]
            out[f"xs_{rc}"] = float((cm - rm).mean())
        return out


def _clear(path: np.ndarray, centers: np.ndarray, outer: np.ndarray, skip) -> bool:
    keep = np.ones(len(centers), bool)
    keep[list(skip)] = False
    if not keep.any():
        return True
    d = np.linalg.norm(path[:, None] - centers[None, keep], axis=2) - outer[keep]
    return bool(np.all(d > 0.5))


def null_path(bounds, i, j, az_px, az_mask, rng) -> np.ndarray | None:
    """A path drawn as the simulator draws a filament between row ``i`` and row ``j``
    (``j < 0``: to the AZ, towards its nearest voxel ``az_px``)."""
    vs = bounds.voxel_size_nm
    c, outer = bounds.centers_nm, bounds.outer_nm
    if j >= 0:
        u = c[j] - c[i]
        u /= np.linalg.norm(u)
        jit = rng.normal(scale=JITTER, size=3)
        jit -= jit.dot(u) * u
        da, db = u + jit, -u + jit
        a = c[i] + da / np.linalg.norm(da) * outer[i]
        b = c[j] + db / np.linalg.norm(db) * outer[j]
    else:
        u = np.asarray(az_px, float) * vs - c[i]
        u /= np.linalg.norm(u)
        d = u + rng.normal(scale=JITTER, size=3)
        a = c[i] + d / np.linalg.norm(d) * outer[i]
        steps = a + np.arange(0, 80, 0.5)[:, None] * u
        idx = np.rint(steps / vs).astype(int)
        ok = np.all((idx >= 0) & (idx < np.array(az_mask.shape)), axis=1)
        hit = np.zeros(len(idx), bool)
        hit[ok] = az_mask[tuple(idx[ok].T)]
        if not hit.any():
            return None
        b = steps[int(np.argmax(hit))]
    pts = curved_polyline(a, b, rng, BEND)
    skip = (i, j) if j >= 0 else (i,)
    return pts if _clear(sample_polyline(pts, 1.0), c, outer, skip) else None


def synapse_rows(seed, scale, snr_factor, shape, draws, p) -> tuple[list[dict], dict]:
    kw = dict(shape=tuple(shape), seed=seed, snr=DEFAULT_SNR * snr_factor)
    sim = simulate_tomogram(filament_model="published", filament_amplitude_scale=scale, **kw)
    neg = simulate_tomogram(filament_model="none", **kw)
    vs = float(sim.voxel_size_nm)
    az = sim.membrane_labels == 1
    bounds = Boundaries.from_table(sim.vesicles, sim.tomogram.shape, vs, az)
    pairs, near = candidate_pairs(bounds, p)
    rows: list[dict] = []
    row_of = {int(v): k for k, v in enumerate(bounds.ids)}
    carried = set()
    s_pos = Sampler(sim.tomogram, vs, bounds)
    for _fid, g in sim.filaments.groupby("filament_id"):
        kind = str(g["kind"].iloc[0])
        if kind not in ("connector", "tether"):
            continue
        a, b = int(g["from_vesicle_id"].iloc[0]), int(g["to_vesicle_id"].iloc[0])
        key = (min(row_of[a], row_of[b]), max(row_of[a], row_of[b])) if b else (row_of[a], -1)
        carried.add(key)
        st = s_pos.stats(g.sort_values("point_index")[["z_nm", "y_nm", "x_nm"]].to_numpy())
        if st is None:
            continue
        diam = 2 * float(g["radius_nm"].iloc[0])
        rows.append(
            {
                "seed": seed,
                "set": "true",
                "kind": kind,
                "diameter_nm": diam,
                "candidate": key in set(pairs),
                **st,
            }
        )
    rng = np.random.default_rng(seed)
    s_neg = Sampler(neg.tomogram, vs, bounds)
    for i, j in pairs:
        kind = "connector" if j >= 0 else "tether"
        for sampler, name in ((s_neg, "null_negative"), (s_pos, "null_unlinked")):
            if name == "null_unlinked" and (i, j) in carried:
                continue
            for _ in range(draws):
                pts = null_path(bounds, i, j, near[i] if j < 0 else None, az, rng)
                st = sampler.stats(pts) if pts is not None else None
                if st is not None:
                    rows.append(
                        {
                            "seed": seed,
                            "set": name,
                            "kind": kind,
                            "diameter_nm": np.nan,
                            "candidate": True,
                            **st,
                        }
                    )
    n_conn = sum(j >= 0 for _, j in pairs)
    n_unl = {
        k: sum((j >= 0) == (k == "connector") and (i, j) not in carried for i, j in pairs)
        for k in ("connector", "tether")
    }
    info = {
        "n_vesicles": len(sim.vesicles),
        "pairs": {"connector": n_conn, "tether": len(pairs) - n_conn},
        "unlinked_pairs": n_unl,
    }
    return rows, info


STATS = tuple(f"line_{s}" for s in LINE_SIGMAS) + tuple(f"xs_{r}" for r in XS_RADII)


def zscores(true: pd.DataFrame, null: pd.DataFrame, n_len: int) -> pd.DataFrame:
    """Each true path's statistics z-scored against the ``n_len`` null paths of its kind
    nearest in length; also each null path's (leave-one-out) for the quantiles."""
    out = []
    for kind in ("connector", "tether"):
        nl = null[null["kind"] == kind]
        if not len(nl):
            continue
        lens = nl["length_nm"].to_numpy()
        for df, loo in ((true[true["kind"] == kind], False), (nl, True)):
            z = {s: np.full(len(df), np.nan) for s in STATS}
            for r, length in enumerate(df["length_nm"].to_numpy()):
                order = np.argsort(np.abs(lens - length), kind="stable")
                pick = order[1 : n_len + 1] if loo else order[:n_len]
                ref = nl.iloc[pick]
                for s in STATS:
                    vals = ref[s].to_numpy()
                    vals = vals[np.isfinite(vals)]
                    if len(vals) > 5:
                        z[s][r] = (df[s].iloc[r] - vals.mean()) / max(vals.std(), 1e-9)
            out.append(df.assign(**{f"z_{s}": v for s, v in z.items()}))
    return pd.concat(out, ignore_index=True)


def true_radius_stat(diameter_nm: float) -> str:
    r = max(diameter_nm, 3.5) / 2
    return f"z_xs_{min(XS_RADII, key=lambda x: abs(x - r))}"


def ceiling(zt: pd.DataFrame, zn: pd.DataFrame, f: float) -> dict:
    """Recall per kind and diameter bin at per-pair false rate ``f``."""
    res: dict = {}
    for kind in ("connector", "tether"):
        t, n = zt[zt["kind"] == kind], zn[zn["kind"] == kind]
        if not len(t) or not len(n):
            continue
        thr = {s: float(np.nanquantile(n[f"z_{s}"], 1 - f)) for s in STATS}
        hit = {s: (t[f"z_{s}"] > thr[s]).to_numpy() for s in STATS}
        bins = pd.cut(t["diameter_nm"], DIAMETER_BINS, right=False)
        entry = {"n": len(t), "by_stat": {s: round(float(h.mean()), 3) for s, h in hit.items()}}
        tr = np.array([hit[true_radius_stat(d)[2:]][k] for k, d in enumerate(t["diameter_nm"])])
        entry["true_radius"] = round(float(tr.mean()), 3)
        best_total, by_bin = 0, {}
        for b, idx in t.groupby(bins, observed=False).indices.items():
            if not len(idx):
                continue
            rec = {s: float(hit[s][idx].mean()) for s in STATS}
            s_best = max(rec, key=rec.get)
            best_total += rec[s_best] * len(idx)
            by_bin[str(b)] = {
                "n": int(len(idx)),
                "true_radius": round(float(tr[idx].mean()), 3),
                "best": round(rec[s_best], 3),
                "best_stat": s_best,
            }
        entry["best"] = round(best_total / len(t), 3)
        entry["by_diameter"] = by_bin
        lbins = pd.cut(t["length_nm"], LENGTH_BINS, right=False)
        entry["by_length_true_radius"] = {
            str(b): {"n": int(len(idx)), "recall": round(float(tr[idx].mean()), 3)}
            for b, idx in t.groupby(lbins, observed=False).indices.items()
            if len(idx)
        }
        res[kind] = entry
    return res


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[3, 5, 7, 9, 11, 13, 15, 17])
    ap.add_argument("--shape", type=int, nargs=3, default=[64, 256, 256])
    ap.add_argument("--filament-scale", type=float, default=2.0)
    ap.add_argument("--snr-factor", type=float, default=1.0)
    ap.add_argument("--draws", type=int, default=3, help="null paths per candidate pair")
    ap.add_argument("--n-len", type=int, default=150, help="null paths per z-score")
    ap.add_argument("--table", default=None, help="write/read the path table (.pkl)")
    ap.add_argument("--json", default=None)
    args = ap.parse_args(argv)
    if set(args.seeds) & set(BENCHMARK_SEEDS):
        raise SystemExit("seeds 101-104 are the benchmark's: use tuning seeds")
    p = FilamentParams()
    rows, infos = [], {}
    for seed in args.seeds:
        r, info = synapse_rows(
            seed, args.filament_scale, args.snr_factor, args.shape, args.draws, p
        )
        rows += r
        infos[seed] = info
        print(f"seed {seed}: {info}", flush=True)
    df = pd.DataFrame(rows)
    if args.table:
        df.to_pickle(args.table)
    n_ves = sum(i["n_vesicles"] for i in infos.values())
    n_pairs = {k: sum(i["pairs"][k] for i in infos.values()) for k in ("connector", "tether")}
    n_unl = {k: sum(i["unlinked_pairs"][k] for i in infos.values()) for k in n_pairs}
    per_ves = sum(n_pairs.values()) / n_ves
    true = df[df["set"] == "true"]
    out = {
        "args": vars(args),
        "n_vesicles": n_ves,
        "candidate_pairs": n_pairs,
        "pairs_per_vesicle": round(per_ves, 3),
        "unlinked_pairs": n_unl,
        "n_true": true.groupby("kind").size().to_dict(),
        "n_true_not_candidate": true[~true["candidate"]].groupby("kind").size().to_dict(),
    }
    for null_set in ("null_negative", "null_unlinked"):
        z = zscores(true, df[df["set"] == null_set], args.n_len)
        zt, zn = z[z["set"] == "true"], z[z["set"] == null_set]
        res = {}
        for floor in (0.1, 0.06):
            f = floor / per_ves
            c = ceiling(zt, zn, f)
            for kind, e in c.items():
                for which in ("true_radius", "best"):
                    tp = e[which] * e["n"]
                    fp = f * n_unl[kind]
                    prec = tp / max(tp + fp, 1e-9)
                    e[f"f1_{which}"] = round(2 * prec * e[which] / max(prec + e[which], 1e-9), 3)
                    e[f"precision_{which}"] = round(prec, 3)
            res[f"false_per_vesicle_{floor}"] = {"per_pair_rate": round(f, 4), **c}
        med = {}
        for kind, g in zt.groupby("kind"):
            zz = np.array([g[true_radius_stat(d)].iloc[k] for k, d in enumerate(g["diameter_nm"])])
            bins = pd.cut(g["diameter_nm"], DIAMETER_BINS, right=False)
            med[kind] = {
                str(b): round(float(np.nanmedian(zz[idx])), 2)
                for b, idx in g.groupby(bins, observed=False).indices.items()
                if len(idx)
            }
        res["median_z_true_radius_by_diameter"] = med
        out[null_set] = res
    print(json.dumps(out, indent=1))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=1)


if __name__ == "__main__":
    main()
