#!/usr/bin/env python
"""Train the calibrated vesicle-confidence model shipped as src/synapseg/post/confidence_model.json.

Needs scikit-learn (``pip install -e '.[dev]'``); running the shipped model does not.

Seeded and cached. For tomogram ``i`` (0 <= i < --n-tomograms):

1. draw ``SimulationParams.random(numpy.random.default_rng([20261203, i]), shape=...)``
   (seeds disjoint from the default model's recipe ``[20261125, i]`` and the domain-shift
   benchmark ``[20261202, ...]``) and apply the overrides of domain ``DOMAINS[i % len]``
   (low/high SNR, ±35-70° tilt, high protein crowding, voxel sizes 0.8-2.5 nm, no vesicles);
2. draw the candidate threshold from ``THRESHOLDS`` (automatic or lower); simulate, run the
   default model (``synapseg.infer.predict.predict_volume``) and
   ``synapseg.post.vesicles.find_vesicles`` with ``min_confidence=0`` and a neutral
   confidence model, so every candidate that passes the hard sanity limits and the overlap
   rule is kept, with its features (``feat_*`` columns of ``qc_filter``);
3. label each candidate by one-to-one matching to the ground truth
   (``synapseg.evaluate.matching.match_vesicles``, center distance < 0.5 x true radius);
4. cache the candidate table as ``<cache>/v2_tomo_<iii>.csv``.

Tomograms are split by index: ``i % 5 in {0, 1, 2}`` train the logistic model (standardised
features and their squares, scikit-learn, L2 with ``--C``), ``i % 5 == 3`` fit the
calibration (``--calibration platt`` or ``isotonic``) and
``i % 5 == 4`` are held out for the metrics recorded in the JSON (ECE with 10 bins, Brier,
AUC, and precision/recall at the cut-off 0.5 against the legacy absolute thresholds).

    nice python scripts/train_confidence.py                      # everything (cached)
    python scripts/train_confidence.py --n-tomograms 5 --out /tmp/m.json --cache /tmp/c
"""

from __future__ import annotations

import argparse
import json
import logging
import sys
import time
from pathlib import Path

import numpy as np
import pandas as pd

SEED_TAG = 20261203
EXTENT_NM = (100.0, 300.0, 300.0)  # target (z, y, x) field of view
MAX_VOXELS = 6_000_000
DOMAINS = ["random", "low_snr", "high_snr", "tilt", "protein", "voxel", "random", "empty"]
# candidate threshold per tomogram: automatic (as in `segment`) or lower, which lets through
# the weaker, partly false candidates that a less certain network map gives on shifted data
THRESHOLDS = [None, None, 0.4, 0.3, 0.2]
REPO = Path(__file__).resolve().parents[1]


def shape_for(voxel_size_nm: float) -> tuple[int, int, int]:
    """About ``EXTENT_NM`` at this voxel size, y and x shrunk to stay under ``MAX_VOXELS``."""
    z, y, x = (max(32, int(round(e / voxel_size_nm / 16)) * 16) for e in EXTENT_NM)
    while z * y * x > MAX_VOXELS:
        y, x = y - 16, x - 16
    return z, y, x


def domain_params(i: int, shape: tuple[int, int, int] | None):
    """The ``SimulationParams`` of training tomogram ``i`` and its domain name."""
    from synapseg.simulate import DEFAULT_SNR, SimulationParams

    rng = np.random.default_rng([SEED_TAG, i])
    domain = DOMAINS[i % len(DOMAINS)]
    extra = np.random.default_rng([SEED_TAG, i, 1])
    over: dict = {}
    if domain == "low_snr":
        over["snr"] = DEFAULT_SNR * float(extra.uniform(0.2, 0.4))
    elif domain == "high_snr":
        over["snr"] = DEFAULT_SNR * float(extra.uniform(3.0, 6.0))
    elif domain == "tilt":
        over["tilt_range_deg"] = float(extra.uniform(35.0, 70.0))
    elif domain == "protein":
        over["protein_crowding"] = float(extra.uniform(2.0, 3.5))
    elif domain == "voxel":
        over["voxel_size_nm"] = round(float(extra.choice([0.8, 0.9, 2.3, 2.5])), 3)
    elif domain == "empty":
        over["n_vesicles"] = 0
    params = SimulationParams.random(rng, **over)
    threshold = THRESHOLDS[int(extra.integers(len(THRESHOLDS)))]
    return params.replace(shape=shape or shape_for(params.voxel_size_nm)), domain, threshold


def neutral_model(features: list[str]) -> dict:
    n = len(features)
    return {
        "features": features,
        "mean": [0.0] * n,
        "scale": [1.0] * n,
        "coef_linear": [0.0] * n,
        "coef_square": [0.0] * n,
        "intercept": 0.0,
        "positive_mean": [0.0] * n,
        "calibration": None,
    }


def candidates_of(i: int, shape, neutral_path: Path, device: str) -> pd.DataFrame:
    """Every candidate of training tomogram ``i`` with features, raw QC columns and label."""
    import synapseg.post.vesicles as vesicles
    from synapseg.evaluate.matching import match_vesicles
    from synapseg.infer.predict import predict_volume
    from synapseg.io.tables import make_table
    from synapseg.io.volume import Volume
    from synapseg.simulate import simulate_tomogram

    params, domain, threshold = domain_params(i, shape)
    sim = simulate_tomogram(params)
    vs = float(params.voxel_size_nm)
    prob = predict_volume(Volume(sim.tomogram, (vs, vs, vs)), "default", device=device)
    captured: list[pd.DataFrame] = []
    real_qc = vesicles.qc_filter

    def spy(fits, voxel_size_nm, fp, shape=None):
        kept, rej = real_qc(fits, voxel_size_nm, fp, shape=shape)
        captured.append(kept)
        return kept, rej

    vesicles.qc_filter = spy
    try:
        post = vesicles.PostParams(
            tilt_range_deg=params.tilt_range_deg,
            threshold=threshold,
            invert="no",
            min_confidence=0.0,
            confidence_model=str(neutral_path),
        )
        vesicles.find_vesicles(sim.tomogram, prob[0] if prob.ndim == 4 else prob, vs, post)
    finally:
        vesicles.qc_filter = real_qc
    if not captured or len(captured[0]) == 0:
        return pd.DataFrame()
    kept = captured[0].reset_index(drop=True)
    table = make_table(
        kept[["center_z_px", "center_y_px", "center_x_px"]].to_numpy(),
        kept["radius_nm"].to_numpy(),
        (vs, vs, vs),
        score=kept["score"].to_numpy(),
    )
    label = np.zeros(len(kept), int)
    if len(sim.vesicles):
        m = match_vesicles(sim.vesicles, table, 0.5)
        _, matched = m.matched_masks()
        label = matched.astype(int)
    out = kept.assign(label=label, tomogram=i, domain=domain, voxel_size_nm=vs,
                      threshold=np.nan if threshold is None else threshold,
                      tilt_range_deg=params.tilt_range_deg, n_gt=len(sim.vesicles))  # fmt: skip
    return out.drop(columns=["confidence"], errors="ignore")


def legacy_keep(df: pd.DataFrame) -> np.ndarray:
    """What the legacy absolute thresholds (FilterParams defaults) would keep."""
    from synapseg.post.filters import FilterParams

    p = FilterParams()
    mc = df["membrane_contrast"].to_numpy(float)
    ok = mc >= p.min_membrane_contrast
    ok &= df["profile_correlation"].to_numpy(float) >= p.min_profile_correlation
    ok &= df["fit_residual_nm"].to_numpy(float) <= p.max_fit_residual_nm
    ok &= ~(df["lumen_contrast"].to_numpy(float) > p.max_lumen_ratio * mc)
    ok &= df["inner_contrast"].to_numpy(float) >= p.min_inner_fraction * mc
    return ok


def _design(x: np.ndarray, mean: np.ndarray, scale: np.ndarray) -> np.ndarray:
    z = (np.where(np.isfinite(x), x, mean) - mean) / scale
    return np.hstack([z, z**2])


def fit_model(
    data: pd.DataFrame, features: list[str], seed: int, calibration: str = "platt", c: float = 0.3
) -> tuple[dict, dict]:
    from sklearn.isotonic import IsotonicRegression
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import brier_score_loss, log_loss, roc_auc_score

    from synapseg.evaluate.metrics import expected_calibration_error, reliability_bins
    from synapseg.post.confidence import predict_confidence, raw_logit

    split = data["tomogram"] % 5
    tr, ca, te = data[split <= 2], data[split == 3], data[split == 4]
    x = tr[[f"feat_{f}" for f in features]].to_numpy(float)
    mean = np.nanmean(x, axis=0)
    scale = np.nanstd(x, axis=0)
    scale = np.where(scale > 1e-6, scale, 1.0)
    clf = LogisticRegression(C=c, max_iter=5000, random_state=seed)
    clf.fit(_design(x, mean, scale), tr["label"].to_numpy())
    n = len(features)
    pos = tr[tr["label"] == 1][[f"feat_{f}" for f in features]].to_numpy(float)
    model = {
        "features": features,
        "mean": mean.tolist(),
        "scale": scale.tolist(),
        "coef_linear": clf.coef_[0, :n].tolist(),
        "coef_square": clf.coef_[0, n:].tolist(),
        "intercept": float(clf.intercept_[0]),
        "positive_mean": np.nanmedian(pos, axis=0).tolist(),
        "calibration": None,
    }

    def feats(df):
        return df[[f"feat_{f}" for f in features]].set_axis(features, axis=1)

    if calibration == "isotonic":
        iso = IsotonicRegression(y_min=0.0, y_max=1.0, out_of_bounds="clip")
        iso.fit(predict_confidence(feats(ca), model), ca["label"].to_numpy())
        model["calibration"] = {
            "method": "isotonic",
            "x": [float(v) for v in iso.X_thresholds_],
            "y": [float(v) for v in iso.y_thresholds_],
        }
    else:  # Platt: a logistic regression on the raw logit (robust with few negatives)
        platt = LogisticRegression(C=1e6, max_iter=1000)
        platt.fit(raw_logit(feats(ca), model).reshape(-1, 1), ca["label"].to_numpy())
        model["calibration"] = {
            "method": "platt",
            "a": float(platt.coef_[0, 0]),
            "b": float(platt.intercept_[0]),
        }
    metrics: dict = {"n_candidates": {"train": len(tr), "calibration": len(ca), "test": len(te)},
                     "n_tomograms": {"train": int(tr["tomogram"].nunique()),
                                     "calibration": int(ca["tomogram"].nunique()),
                                     "test": int(te["tomogram"].nunique())}}  # fmt: skip
    for name, df in (("calibration", ca), ("test", te)):
        y = df["label"].to_numpy()
        p = predict_confidence(feats(df), model)
        raw = predict_confidence(feats(df), {**model, "calibration": None})
        keep, legacy = p >= 0.5, legacy_keep(df)
        row = {
            "ece_10": expected_calibration_error(p, y, 10),
            "ece_10_uncalibrated": expected_calibration_error(raw, y, 10),
            "brier": float(brier_score_loss(y, p)),
            "log_loss": float(log_loss(y, np.clip(p, 1e-6, 1 - 1e-6), labels=[0, 1])),
            "auc": float(roc_auc_score(y, p)) if 0 < y.sum() < len(y) else None,
            "positives": int(y.sum()),
            "negatives": int(len(y) - y.sum()),
        }
        for tag, k in (("confidence_0.5", keep), ("legacy_thresholds", legacy)):
            tp = int((k & (y == 1)).sum())
            row[tag] = {
                "kept": int(k.sum()),
                "tp": tp,
                "fp": int((k & (y == 0)).sum()),
                "candidate_recall": tp / max(int(y.sum()), 1),
                "precision": tp / max(int(k.sum()), 1),
            }
        if name == "test":
            row["reliability"] = reliability_bins(p, y, 10)
            row["per_domain"] = {
                d: {
                    "n": int(len(g)),
                    "positives": int(g["label"].sum()),
                    "kept_0.5": int((predict_confidence(feats(g), model) >= 0.5).sum()),
                    "tp_0.5": int(
                        ((predict_confidence(feats(g), model) >= 0.5) & (g["label"] == 1)).sum()
                    ),
                    "legacy_kept": int(legacy_keep(g).sum()),
                    "legacy_tp": int((legacy_keep(g) & (g["label"].to_numpy() == 1)).sum()),
                }
                for d, g in df.groupby("domain")
            }
        metrics[name] = row
    return model, metrics


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--n-tomograms", type=int, default=80)
    ap.add_argument(
        "--shape",
        type=int,
        nargs=3,
        default=None,
        metavar=("Z", "Y", "X"),
        help="fixed shape (default: about 100 x 300 x 300 nm, <= 6 M voxels)",
    )
    ap.add_argument("--cache", type=Path, default=Path.home() / ".cache/synapseg/train_confidence")
    ap.add_argument("--out", type=Path, default=REPO / "src/synapseg/post/confidence_model.json")
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--refresh", action="store_true", help="recompute cached candidate tables")
    ap.add_argument("--seed", type=int, default=0, help="seed of the logistic regression")
    ap.add_argument("--calibration", choices=["platt", "isotonic"], default="platt")
    ap.add_argument("--C", type=float, default=0.3, help="inverse L2 strength of the model")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    import synapseg
    from synapseg.post.confidence import FEATURES, PER_CANDIDATE, candidate_features

    args.cache.mkdir(parents=True, exist_ok=True)
    neutral = args.cache / "neutral_model.json"
    neutral.write_text(json.dumps(neutral_model(FEATURES)))
    shape = tuple(args.shape) if args.shape else None
    tables = []
    for i in range(args.n_tomograms):
        path = args.cache / f"v2_tomo_{i:03d}.csv"
        if path.exists() and not args.refresh:
            try:
                df = pd.read_csv(path)
            except pd.errors.EmptyDataError:  # a tomogram without candidates
                df = pd.DataFrame()
        else:
            t0 = time.perf_counter()
            df = candidates_of(i, shape, neutral, args.device)
            df.to_csv(path.with_suffix(".tmp"), index=False)
            path.with_suffix(".tmp").replace(path)
            print(f"tomogram {i:3d} {DOMAINS[i % len(DOMAINS)]:9s} {len(df):4d} candidates "
                  f"({int(df['label'].sum()) if len(df) else 0} true) "
                  f"{time.perf_counter() - t0:.0f} s", flush=True)  # fmt: skip
        missing = [f for f in FEATURES if f"feat_{f}" not in df]
        if len(df) and missing:  # cached before a feature was added: compute it from the row
            if not set(missing) <= PER_CANDIDATE:
                raise SystemExit(f"{path}: cached without {missing}; rerun with --refresh")
            params, _, _ = domain_params(i, shape)
            feats = candidate_features(df, df["voxel_size_nm"].iloc[0], shape=params.shape)
            for f in missing:
                df[f"feat_{f}"] = feats[f].to_numpy()
        if len(df):
            tables.append(df)
    data = pd.concat(tables, ignore_index=True)
    model, metrics = fit_model(data, list(FEATURES), args.seed, args.calibration, args.C)
    model.update(
        {
            "trained_by": "scripts/train_confidence.py",
            "command": "python scripts/train_confidence.py " + " ".join(argv or sys.argv[1:]),
            "synapseg_version": synapseg.__version__,
            "seeds": f"numpy.random.default_rng([{SEED_TAG}, i]), i < {args.n_tomograms}",
            "domains": DOMAINS,
            "candidate_thresholds": ["auto" if t is None else t for t in THRESHOLDS],
            "shape": list(shape) if shape else f"{EXTENT_NM} nm, <= {MAX_VOXELS} voxels",
            "split": "tomogram i: i % 5 <= 2 train, == 3 calibration, == 4 test",
            "label": "match to ground truth, center distance < 0.5 x true radius (one to one)",
            "metrics": metrics,
        }
    )
    tmp = args.out.with_suffix(".tmp")
    tmp.write_text(json.dumps(model, indent=1) + "\n")
    tmp.replace(args.out)
    t = metrics["test"]
    keys = ("ece_10", "ece_10_uncalibrated", "brier", "auc", "confidence_0.5", "legacy_thresholds")
    print(json.dumps({k: t[k] for k in keys}, indent=1))
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
