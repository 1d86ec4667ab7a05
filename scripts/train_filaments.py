"""Fit the decision of the line scan (``synapseg.filaments.lines.LINE_MODEL``).

Simulates synapses with the published filament model and, with the same seeds, without
filaments (the negative control), on TUNING seeds only (default 3 5 7 9 11: disjoint from
the benchmark's 101-104), at ``--filament-scale`` (the benchmark's calibration, x2), at the
calibrated noise and the noisier half. Every valid line of every candidate pair
(``scan_pair``) is recorded with its features; a line is positive when it runs along a
true filament of the pair (the mean distance of the filament's path, 1.5 nm trimmed at
each end, to the line is at most ``NEAR_NM``). A logistic regression per kind
(L2, C = 1, the objective of scikit-learn's default; fitted here with scipy) on those lines
gives the coefficients. The decision threshold is
then chosen as the detector uses the model: per pair the best-scoring lines are selected
(``select_lines``: one per connector pair, up to ``max_lines`` tethers), and they are
counted as the evaluation matches them, by pair; the threshold is the one with the best
mean F1 on the tuning data among those that keep the negative control under
``--max-false`` false filaments per vesicle (summed over both kinds) and every
negative-control synapse under ``--max-false-synapse``. A tether pair's 2nd and 3rd lines get
their own threshold (``FilamentParams.line_threshold_extra``, printed on the folded scale)
unless ``--no-extra``. ``--diagnose`` adds the error budget of the true filaments (none
near / another line selected / below the threshold / found on its path, and how many lie
in pairs with more than one true filament).

    nice -n 10 python scripts/train_filaments.py --filament-scale 2 --with-negatives \
        --top 20 --diagnose --max-false-synapse 0.1 --json /tmp/fil.json

Prints the ``LINE_MODEL`` literal (thresholds folded into the intercepts) to copy into
``lines.py``. ``--from-json`` refits from the tables a previous run wrote (``.pkl``).
"""

from __future__ import annotations

import argparse
import json

import numpy as np
import pandas as pd

from synapseg.evaluate.filaments import gt_filaments
from synapseg.filaments import FilamentParams
from synapseg.filaments.boundaries import Boundaries
from synapseg.filaments.detect import candidate_pairs
from synapseg.filaments.lines import LINE_FEATURES, scan_pair, select_lines
from synapseg.simulate import simulate_tomogram
from synapseg.simulate.params import DEFAULT_SNR

NEAR_NM = 1.5  # a line within this mean distance of a true filament's path is positive
RECORDED = LINE_FEATURES  # every feature kept (``--features`` picks the model's)


class LogisticRegression:
    """L2-penalised logistic regression (intercept not penalised), the objective of
    scikit-learn's ``LogisticRegression(C=...)``, fitted with scipy's L-BFGS: the script
    needs no scikit-learn."""

    def __init__(self, C: float = 1.0, max_iter: int = 2000, random_state: int = 0) -> None:
        self.C, self.max_iter = C, max_iter

    def fit(self, x: np.ndarray, y: np.ndarray) -> LogisticRegression:
        from scipy.optimize import minimize
        from scipy.special import expit

        x = np.asarray(x, float)
        y = np.asarray(y, float)
        s = 2 * y - 1

        def loss(w):
            z = s * (x @ w[1:] + w[0])
            nll = np.sum(np.logaddexp(0, -z))
            g = -s * expit(-z)
            grad = np.concatenate([[g.sum()], x.T @ g])
            grad = self.C * grad
            grad[1:] += w[1:]
            return self.C * nll + 0.5 * w[1:] @ w[1:], grad

        res = minimize(
            loss,
            np.zeros(x.shape[1] + 1),
            jac=True,
            method="L-BFGS-B",
            options={"maxiter": self.max_iter},
        )
        self.intercept_ = res.x[:1]
        self.coef_ = res.x[None, 1:]
        return self

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        from scipy.special import expit

        p = expit(np.asarray(x, float) @ self.coef_[0] + self.intercept_[0])
        return np.stack([1 - p, p], axis=1)


def _segment_distance(points: np.ndarray, a: np.ndarray, b: np.ndarray) -> np.ndarray:
    ab = b - a
    t = np.clip(((points - a) @ ab) / max(float(ab @ ab), 1e-9), 0, 1)
    return np.linalg.norm(points - (a + t[:, None] * ab), axis=1)


def _true_paths(sim) -> dict[tuple[int, int], list[np.ndarray]]:
    """The true filaments' paths (nm, resampled at 0.5 nm, 1.5 nm trimmed at each end) per
    (vesicle id, other vesicle id or -1)."""
    from synapseg.simulate.filaments import sample_polyline

    out: dict[tuple[int, int], list[np.ndarray]] = {}
    for _, g in sim.filaments.groupby("filament_id"):
        kind = str(g["kind"].iloc[0])
        if kind not in ("connector", "tether"):
            continue
        pts = sample_polyline(
            g.sort_values("point_index")[["z_nm", "y_nm", "x_nm"]].to_numpy(), 0.5
        )
        core = pts[3:-3] if len(pts) > 8 else pts
        a, b = int(g["from_vesicle_id"].iloc[0]), int(g["to_vesicle_id"].iloc[0])
        keys = [(a, b), (b, a)] if kind == "connector" else [(a, -1)]
        for key in keys:
            out.setdefault(key, []).append(core)
    return out


def features(sim, p: FilamentParams, negative: bool) -> tuple[pd.DataFrame, dict]:
    """One row per valid line of every candidate pair (features, kind, pair, lateral
    offset, ``near``: it runs along a true filament of the pair, ``n_pair``: the pair's
    true filaments) and the number of true filaments per kind."""
    az = sim.membrane_labels == 1
    bounds = Boundaries.from_table(sim.vesicles, sim.tomogram.shape, sim.voxel_size_nm, az)
    pairs, near_px = candidate_pairs(bounds, p)
    paths = {} if negative else _true_paths(sim)
    n_true = {"connector": 0, "tether": 0}
    if not negative:
        for _, r in gt_filaments(sim.filaments).iterrows():
            n_true[str(r["kind"])] += 1
    tables = []
    for i, j in pairs:
        a = int(bounds.ids[i])
        b = int(bounds.ids[j]) if j >= 0 else -1
        scan = scan_pair(sim.tomogram, bounds, i, j, p, near_px[i] if j < 0 else None)
        if scan is None:
            continue
        d = pd.DataFrame(scan["features"])[list(RECORDED)]
        off = scan["offsets_nm"]
        d["off_z"], d["off_y"], d["off_x"] = off[:, 0], off[:, 1], off[:, 2]
        true = paths.get((a, b), [])
        dist = np.full(len(d), np.inf)
        for path in true:
            for r, (s, e) in enumerate(zip(scan["start_nm"], scan["end_nm"])):
                dist[r] = min(dist[r], float(_segment_distance(path, s, e).mean()))
        d["near"] = dist <= NEAR_NM
        d["kind"] = scan["kind"]
        d["pair"] = f"{a}:{b}"
        d["n_pair"] = len(true)
        tables.append(d)
    return (pd.concat(tables, ignore_index=True) if tables else pd.DataFrame()), n_true


def selected(data: pd.DataFrame, score: np.ndarray, p: FilamentParams) -> pd.DataFrame:
    """The lines the detector would select per pair (best score first), with their score."""
    data = data.assign(score=score)
    out = []
    for _, g in data.groupby(["sim", "pair"], sort=False):
        n_max = p.max_lines if g["kind"].iloc[0] == "tether" else 1
        off = g[["off_z", "off_y", "off_x"]].to_numpy()
        keep = select_lines(g["score"].to_numpy(), off, n_max, p.line_exclude_nm)
        out.append(g.iloc[keep].assign(rank=np.arange(len(keep))))
    return pd.concat(out, ignore_index=True)


def curve(
    sel: pd.DataFrame, null: pd.DataFrame, n_true: int, n_ves: dict, grid, extra_grid=(None,)
) -> list:
    """(threshold, extra threshold, F1, precision, recall, false per vesicle, worst
    synapse's false per vesicle) as the evaluation counts them: a pair's selected lines
    above the threshold (its 2nd and 3rd lines: above the extra threshold too) match its
    true filaments one to one. ``n_ves``: vesicles per negative-control synapse."""
    rows = []
    total = max(sum(n_ves.values()), 1)
    for t in grid:
        for t2 in extra_grid:
            t2 = t if t2 is None or t2 < t else t2
            if rows and rows[-1][:2] == (float(t), float(t2)):
                continue
            above = sel[np.where(sel["rank"] == 0, sel["score"] >= t, sel["score"] >= t2)]
            n_pred = above.groupby(["sim", "pair"]).size()
            n_pair = above.groupby(["sim", "pair"])["n_pair"].first()
            tp = int(np.minimum(n_pred, n_pair).sum())
            fp = int(len(above) - tp)
            prec, rec = tp / max(tp + fp, 1), tp / max(n_true, 1)
            f1 = 2 * prec * rec / max(prec + rec, 1e-9)
            nul = null[np.where(null["rank"] == 0, null["score"] >= t, null["score"] >= t2)]
            per = nul.groupby("sim").size() if len(nul) else pd.Series(dtype=int)
            per = pd.Series({k: per.get(k, 0) / max(v, 1) for k, v in n_ves.items()})
            rows.append((float(t), float(t2), f1, prec, rec, len(nul) / total, per))
    return rows


def budget(sel: pd.DataFrame, data: pd.DataFrame, t: float, t2: float) -> dict:
    """Error budget of the true filaments (``--diagnose``): per kind, how many true
    filaments lie in pairs with more than one; and each true filament in one class: no
    valid line runs along it (``none_near``), a line runs along it but another line of the
    pair was selected in its place (``other_line``), its line was selected but scores below
    the threshold (``below``), or it is found on its path (``found``)."""
    near = data[data["near"]].groupby(["sim", "pair"]).size()
    out = {}
    for (sim, pair), g in sel.groupby(["sim", "pair"]):
        n = int(g["n_pair"].iloc[0])
        if n == 0:
            continue
        ok = np.where(g["rank"] == 0, g["score"] >= t, g["score"] >= t2)
        on = int((g["near"].to_numpy() & ok).sum())
        sel_near_below = int((g["near"].to_numpy() & ~ok).sum())
        n_near = int(near.get((sim, pair), 0) > 0) * n  # at most n filaments have a line
        found = min(on, n)
        below = min(sel_near_below, n - found)
        other = max(min(n_near, n) - found - below, 0)
        snr = sim.split("/")[1]
        d = out.setdefault(snr, {"true": 0, "in_multi_pairs": 0, "none_near": 0,
                                 "other_line": 0, "below": 0, "found": 0})  # fmt: skip
        d["true"] += n
        d["in_multi_pairs"] += n if n > 1 else 0
        d["found"] += found
        d["below"] += below
        d["other_line"] += other
        d["none_near"] += n - found - below - other
    return out


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[3, 5, 7, 9, 11])
    ap.add_argument("--shape", type=int, nargs=3, default=[64, 256, 256])
    ap.add_argument("--snr-factors", type=float, nargs="+", default=[1.0, 0.5])
    ap.add_argument("--max-false", type=float, default=0.05)
    ap.add_argument(
        "--max-false-synapse",
        type=float,
        default=1.0,
        help="and at most this many false per vesicle on every negative-control synapse",
    )
    ap.add_argument(
        "--no-extra",
        action="store_true",
        help="one threshold for all of a pair's tethers (no separate line_threshold_extra)",
    )
    ap.add_argument("--diagnose", action="store_true", help="print the error budget")
    ap.add_argument("--json", default=None, help="write the result here (and the line tables)")
    ap.add_argument(
        "--filament-scale",
        type=float,
        default=2.0,
        help="filament_amplitude_scale of the tuning synapses (the benchmark's calibration)",
    )
    ap.add_argument(
        "--features",
        nargs="+",
        default=list(LINE_FEATURES),
        help="features the logistic model uses (default: LINE_FEATURES)",
    )
    ap.add_argument("--from-json", default=None, help="refit from a previous --json run")
    ap.add_argument(
        "--with-negatives",
        action="store_true",
        help="also fit on the negative control's lines (all negative)",
    )
    ap.add_argument(
        "--top", type=int, default=0, help="refit on each pair's N best lines of a first fit"
    )
    args = ap.parse_args(argv)
    feats = list(args.features)
    p = FilamentParams()
    pos, neg, n_ves = [], [], {}
    n_true = {"connector": 0, "tether": 0}
    if args.from_json:
        with open(args.from_json) as fh:
            prev = json.load(fh)
        n_true, n_ves = prev["n_true"], prev["n_vesicles_per_synapse"]
        pos = [pd.read_pickle(args.from_json.replace(".json", "_pos.pkl"))]
        neg = [pd.read_pickle(args.from_json.replace(".json", "_neg.pkl"))]
        args.seeds = []
    for seed in args.seeds:
        if seed in (101, 102, 103, 104):
            raise SystemExit("seeds 101-104 are the benchmark's: tune on others")
        for f in args.snr_factors:
            kw = dict(shape=tuple(args.shape), seed=seed, snr=DEFAULT_SNR * f)
            sim = simulate_tomogram(
                filament_model="published", filament_amplitude_scale=args.filament_scale, **kw
            )
            d, nt = features(sim, p, False)
            pos.append(d.assign(sim=f"{seed}/{f}"))
            n_true = {k: n_true[k] + nt[k] for k in n_true}
            nsim = simulate_tomogram(filament_model="none", **kw)
            neg.append(features(nsim, p, True)[0].assign(sim=f"{seed}/{f}"))
            n_ves[f"{seed}/{f}"] = len(nsim.vesicles)
            print(f"seed {seed} x{f}: {len(d)} lines, {int(d['near'].sum())} near", flush=True)
    data, null = pd.concat(pos, ignore_index=True), pd.concat(neg, ignore_index=True)
    if args.json and not args.from_json:
        data.to_pickle(args.json.replace(".json", "_pos.pkl"))
        null.to_pickle(args.json.replace(".json", "_neg.pkl"))
    model, curves, sels = {}, {}, {}
    grid = np.round(np.arange(0.05, 0.96, 0.01), 2)
    for kind in ("connector", "tether"):
        d = data[data["kind"] == kind]
        nd = null[null["kind"] == kind]
        clf = LogisticRegression(C=1.0, max_iter=2000, random_state=0)
        negs = nd.assign(sim=nd["sim"] + "/none")  # the same pairs, another phantom
        train = pd.concat([d, negs], ignore_index=True) if args.with_negatives else d
        clf.fit(train[feats].to_numpy(), train["near"].to_numpy())
        if args.top:  # refit on the lines that compete for selection: each pair's top N
            sc = clf.predict_proba(train[feats].to_numpy())[:, 1]
            rank = train.assign(s=sc).groupby(["sim", "pair"])["s"].rank(ascending=False)
            top = train[rank.to_numpy() <= args.top]
            clf = LogisticRegression(C=1.0, max_iter=2000, random_state=0)
            clf.fit(top[feats].to_numpy(), top["near"].to_numpy())
        model[kind] = (
            round(float(clf.intercept_[0]), 4),
            tuple(round(float(w), 4) for w in clf.coef_[0]),
        )
        sel = selected(d, clf.predict_proba(d[feats].to_numpy())[:, 1], p)
        nsel = selected(nd, clf.predict_proba(nd[feats].to_numpy())[:, 1], p) if len(nd) else nd
        sels[kind] = sel
        extra = grid if kind == "tether" and not args.no_extra else (None,)
        curves[kind] = curve(sel, nsel, n_true[kind], n_ves, grid, extra)
    best = None
    for rc in curves["connector"]:
        for rt in curves["tether"]:
            per = rc[6] + rt[6]
            false = rc[5] + rt[5]
            mean_f1 = (rc[2] + rt[2]) / 2
            if false > args.max_false or per.max() > args.max_false_synapse:
                continue
            if best is None or mean_f1 > best["mean_f1"]:
                best = {
                    "threshold": {"connector": rc[0], "tether": rt[0]},
                    "extra_threshold": rt[1],
                    "mean_f1": mean_f1,
                    "connector": rc[2:6],
                    "tether": rt[2:6],
                    "false_per_vesicle": false,
                    "worst_synapse_false_per_vesicle": float(per.max()),
                }
    if best is not None:  # move each kind's threshold into its intercept (decision at 0.5)
        for kind in model:
            t = best["threshold"][kind]
            model[kind] = (round(model[kind][0] - float(np.log(t / (1 - t))), 4), model[kind][1])
        # the extra lines' threshold on the folded scale (FilamentParams.line_threshold_extra)
        t, t2 = best["threshold"]["tether"], best["extra_threshold"]
        best["line_threshold_extra"] = round(
            float(1 / (1 + np.exp(-(np.log(t2 / (1 - t2)) - np.log(t / (1 - t)))))), 3
        )
        if args.diagnose:
            for kind in model:
                t1 = best["threshold"][kind]
                t2 = best["extra_threshold"] if kind == "tether" else t1
                best[f"budget_{kind}"] = budget(sels[kind], data[data["kind"] == kind], t1, t2)
    for kind, rows in curves.items():
        print(kind, "n_true", n_true[kind], "t / t2 / F1 / P / R / false per vesicle:")
        for r in rows[:: 5 * (len(rows) // len(grid))]:
            print("  " + "  ".join(f"{v:.3f}" for v in r[:6]))
    out = {
        "LINE_MODEL": model,
        "n_true": n_true,
        "best": best,
        "n_vesicles_negative": sum(n_ves.values()),
        "n_vesicles_per_synapse": n_ves,
        "features": feats,
        "near_nm": NEAR_NM,
        "filament_scale": args.filament_scale,
    }
    print(json.dumps(out, indent=1))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=1)


if __name__ == "__main__":
    main()
