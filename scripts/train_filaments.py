"""Fit the decision of the line scan (``synapseg.filaments.lines.LINE_MODEL``).

Simulates synapses with the published filament model and, with the same seeds, without
filaments (the negative control), on TUNING seeds only (default 3 5 7 9 11: disjoint from
the benchmark's 101-104), at the calibrated noise and the noisier half. For every candidate
pair the densest lines are found (``line_candidates``, ranked by mean density, so
the fitted model does not change which lines are scored) and labelled as the evaluation
matches them: by pair (see ``features``). A logistic regression
per kind (scikit-learn, fixed seed) gives the coefficients; the decision threshold is the
one with the best F1 on the tuning data among those that keep the negative control under
``--max-false`` false filaments per vesicle (summed over both kinds).

    nice -n 10 python scripts/train_filaments.py --json /tmp/fil_tune.json

Prints the ``LINE_MODEL`` literal and the threshold to copy into ``lines.py``.
"""

from __future__ import annotations

import argparse
import json
from dataclasses import replace

import numpy as np
import pandas as pd

from synapseg.evaluate.filaments import gt_filaments
from synapseg.filaments import FilamentParams
from synapseg.filaments.boundaries import Boundaries
from synapseg.filaments.detect import candidate_pairs, find_between
from synapseg.filaments.lines import LINE_FEATURES, line_candidates
from synapseg.simulate import simulate_tomogram
from synapseg.simulate.params import DEFAULT_SNR

FEATURES = LINE_FEATURES  # the model's inputs (``--features`` fits another set)
RECORDED = tuple(dict.fromkeys((*LINE_FEATURES, "mean_z", "xs_z")))  # every feature kept


def features(
    sim, p: FilamentParams, negative: bool, compare: bool = False
) -> tuple[pd.DataFrame, dict]:
    """One row per candidate line (features, kind, pair, rank, label) and the number of
    true filaments per kind among the searched pairs. The evaluation matches by pair, so
    the line of rank ``r`` (best first) of a pair is positive when the pair has more than
    ``r`` true filaments. With ``compare``, ``thr_firsts`` lists the first thresholds of the
    hierarchical thresholding's connections of the pair (to compare the two detectors)."""
    az = sim.membrane_labels == 1
    bounds = Boundaries.from_table(sim.vesicles, sim.tomogram.shape, sim.voxel_size_nm, az)
    pairs, near = candidate_pairs(bounds, p)
    count: dict[tuple, int] = {}
    if not negative:
        for _, r in gt_filaments(sim.filaments).iterrows():
            a = int(r["vesicle_a"])
            b = int(r["vesicle_b"]) if r["kind"] == "connector" else -1
            count[(a, b)] = count.get((a, b), 0) + 1
            if b >= 0:
                count[(b, a)] = count.get((b, a), 0) + 1
    rows, n_true = [], {"connector": 0, "tether": 0}
    loose = replace(p, min_first=0.0)
    for i, j in pairs:
        point = near[i] if j < 0 and near is not None else None
        a = int(bounds.ids[i])
        b = int(bounds.ids[j]) if j >= 0 else -1
        kind = "connector" if j >= 0 else "tether"
        n_pair = count.get((a, b), 0)
        n_true[kind] += n_pair
        thr = find_between(sim.tomogram, bounds, i, j, loose, (0.0, 1.0), point) if compare else []
        base = {
            "kind": kind,
            "pair": f"{a}-{b}",
            "n_pair": n_pair,
            "thr_firsts": ";".join(f"{t:.2f}" for t in sorted(c.t_first for c in thr)[::-1]),
        }
        lines = line_candidates(sim.tomogram, bounds, i, j, p, point)
        if not lines:
            rows.append({**base, "rank": -1, "label": False})
        for rank, c in enumerate(lines):
            feats = {f: c.stats[f] for f in RECORDED}
            rows.append({**base, **feats, "rank": rank, "label": rank < n_pair})
    return pd.DataFrame(rows), n_true


def main(argv=None) -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--seeds", type=int, nargs="+", default=[3, 5, 7, 9, 11])
    ap.add_argument("--shape", type=int, nargs=3, default=[64, 256, 256])
    ap.add_argument("--snr-factors", type=float, nargs="+", default=[1.0, 0.5])
    ap.add_argument("--max-false", type=float, default=0.08)
    ap.add_argument("--json", default=None)
    ap.add_argument(
        "--filament-scale",
        type=float,
        default=1.0,
        help="filament_amplitude_scale of the tuning synapses (the benchmark's calibration)",
    )
    ap.add_argument(
        "--features",
        nargs="+",
        default=list(LINE_FEATURES),
        help="features the logistic model uses (default: LINE_FEATURES); e.g. add xs_z",
    )
    ap.add_argument(
        "--compare-threshold",
        action="store_true",
        help="also record the hierarchical thresholding's connections per pair (slow)",
    )
    ap.add_argument(
        "--from-json",
        default=None,
        help="refit from the tables a run with --json wrote (JSON, _pos.csv, _neg.csv), "
        "without simulating: e.g. with other --features",
    )
    args = ap.parse_args(argv)
    from sklearn.linear_model import LogisticRegression

    global FEATURES
    FEATURES = tuple(args.features)

    p = FilamentParams()
    pos, neg, n_ves = [], [], 0
    n_true = {"connector": 0, "tether": 0}
    if args.from_json:
        with open(args.from_json) as fh:
            prev = json.load(fh)
        n_true, n_ves = prev["n_true"], prev["n_vesicles_negative"]
        pos = [pd.read_csv(args.from_json.replace(".json", "_pos.csv"))]
        neg = [pd.read_csv(args.from_json.replace(".json", "_neg.csv"))]
        args.seeds = []
    for seed in args.seeds:
        if seed in (101, 102, 103, 104):
            raise SystemExit("seeds 101-104 are the benchmark's: tune on others")
        for f in args.snr_factors:
            kw = dict(shape=tuple(args.shape), seed=seed, snr=DEFAULT_SNR * f)
            sim = simulate_tomogram(
                filament_model="published", filament_amplitude_scale=args.filament_scale, **kw
            )
            d, nt = features(sim, p, False, args.compare_threshold)
            pos.append(d.assign(seed=seed, factor=f))
            n_true = {k: n_true[k] + nt[k] for k in n_true}
            nsim = simulate_tomogram(filament_model="none", **kw)
            neg.append(
                features(nsim, p, True, args.compare_threshold)[0].assign(seed=seed, factor=f)
            )
            n_ves += len(nsim.vesicles)
            print(f"seed {seed} x{f}: {len(d)} paths, {int(d['label'].sum())} true", flush=True)
    data, null = pd.concat(pos, ignore_index=True), pd.concat(neg, ignore_index=True)
    if args.json and not args.from_json:
        data.to_csv(args.json.replace(".json", "_pos.csv"), index=False)
        null.to_csv(args.json.replace(".json", "_neg.csv"), index=False)
    finite = np.isfinite(data[list(FEATURES)].to_numpy(float)).all(axis=1)
    data = data[finite | (data["rank"] < 0)]
    null = null[np.isfinite(null[list(FEATURES)].to_numpy(float)).all(axis=1) | (null["rank"] < 0)]
    model, probs = {}, {}
    for kind in ("connector", "tether"):
        d = data[(data["kind"] == kind) & (data["rank"] >= 0)]
        clf = LogisticRegression(C=1.0, max_iter=1000, random_state=0)
        clf.fit(d[list(FEATURES)].to_numpy(), d["label"].to_numpy())
        model[kind] = (
            round(float(clf.intercept_[0]), 4),
            tuple(round(float(w), 4) for w in clf.coef_[0]),
        )
        probs[kind] = clf
    grid = np.round(np.arange(0.05, 0.96, 0.01), 2)
    curves = {}
    for kind, clf in probs.items():
        d = data[(data["kind"] == kind) & (data["rank"] >= 0)]
        nd = null[(null["kind"] == kind) & (null["rank"] >= 0)]
        pd_ = clf.predict_proba(d[list(FEATURES)].to_numpy())[:, 1]
        pn = clf.predict_proba(nd[list(FEATURES)].to_numpy())[:, 1] if len(nd) else np.zeros(0)
        rows = []
        for t in grid:
            tp = int(((pd_ >= t) & d["label"].to_numpy()).sum())
            fp = int(((pd_ >= t) & ~d["label"].to_numpy()).sum())
            prec, rec = tp / max(tp + fp, 1), tp / max(n_true[kind], 1)
            f1 = 2 * prec * rec / max(prec + rec, 1e-9)
            rows.append((float(t), f1, prec, rec, int((pn >= t).sum()) / max(n_ves, 1)))
        curves[kind] = rows
    best = None
    for rc in curves["connector"]:
        for rt in curves["tether"]:
            false = rc[4] + rt[4]
            mean_f1 = (rc[1] + rt[1]) / 2
            if false <= args.max_false and (best is None or mean_f1 > best["mean_f1"]):
                best = {
                    "threshold": {"connector": rc[0], "tether": rt[0]},
                    "mean_f1": mean_f1,
                    "connector": rc[1:],
                    "tether": rt[1:],
                    "false_per_vesicle": false,
                }
    if best is not None:  # move each kind's threshold into its intercept (decision at 0.5)
        for kind in model:
            t = best["threshold"][kind]
            model[kind] = (round(model[kind][0] - float(np.log(t / (1 - t))), 4), model[kind][1])
    for kind, rows in curves.items():
        print(kind, "n_true", n_true[kind], "t / F1 / P / R / false per vesicle:")
        for r in rows[::5]:
            print("  " + "  ".join(f"{v:.3f}" for v in r))
    out = {
        "LINE_MODEL": model,
        "n_true": n_true,
        "best": best,
        "n_vesicles_negative": n_ves,
        "features": FEATURES,
    }
    print(json.dumps(out, indent=1))
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(out, fh, indent=1)


if __name__ == "__main__":
    main()
