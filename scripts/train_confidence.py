#!/usr/bin/env python
"""Train the calibrated vesicle-confidence model shipped as src/synapseg/post/confidence_model.json.

Needs scikit-learn (``pip install -e '.[dev]'``); running the shipped model does not.

Seeded and cached. Two sets of simulated tomograms (seeds disjoint from the default model's
recipes ``[20261125, i]`` (v1) and ``[20261205, i]`` (v2) and from the domain-shift benchmark
``[20261202, ...]``):

- set 1, tomogram ``i`` < ``--n-tomograms``: ``SimulationParams.random(default_rng([20261203,
  i]))`` with the overrides of domain ``DOMAINS[i % len]`` (low/high SNR, ±35-70° tilt, high
  protein crowding, voxel sizes 0.8-2.5 nm, no vesicles);
- set 2, tomogram ``j`` < ``--n-wide``: domain ``WIDE_DOMAINS[j % len]`` drawn from
  ``default_rng([20261208, j])``: the v2 world draw (``synapseg.simulate.draws.draw_world``),
  thick membranes (4-7 nm), protein-dense cytoplasm with ribosomes (crowding 1.5-3,
  10,000-25,000 ribosomes/µm³) and multivesicular bodies (every endosome an MVB, vesicles
  around them);
- set 3 (``--n-tubes``, default 0), tomogram ``k``: the v2 world draw from
  ``default_rng([20261263, k])`` with 4-8 microtubules and 1-3 ER tubules added (tubes cut
  across look like vesicles: a network's false vesicles there are the negatives this set
  adds; issue 11); the caches are named ``tomo_<i>``, ``wide_<j>`` and ``tube_<k>``.

For each:

1. draw its ``SimulationParams`` (field of view about 100 x 300 x 300 nm, at most 6 M voxels);
2. draw the candidate threshold from ``THRESHOLDS`` (automatic or lower); simulate, run the
   network (``--model``, default the shipped default) and
   ``synapseg.post.vesicles.find_vesicles`` with ``min_confidence=0`` and a neutral
   confidence model, so every candidate that passes the hard sanity limits is kept with its
   raw QC columns (the features are recomputed from them at training time, so a changed
   feature needs no new simulation); those the overlap rule removes stay in the cache as
   neighbours (``kept == 0``) but are not trained on;
3. label each candidate by one-to-one matching to the ground truth
   (``synapseg.evaluate.matching.match_vesicles``, center distance < 0.5 x true radius);
4. cache the candidate table as ``<cache>/<model>/{tomo,wide,tube}_<iii>.csv``.

Tomograms of every set are split by index: ``i % 5 in {0, 1, 2}`` train the logistic model
(standardised features and their squares, scikit-learn, L2 with ``--C``), ``i % 5 == 3`` fit the
calibration (``--calibration platt`` or ``isotonic``) and
``i % 5 == 4`` are held out for the metrics recorded in the JSON (ECE with 10 bins, Brier,
AUC, and precision/recall at the cut-off 0.5 against the legacy absolute thresholds).

    nice python scripts/train_confidence.py                      # everything (cached)
    python scripts/train_confidence.py --n-tomograms 5 --n-wide 4 -o /tmp/m.json --cache /tmp/c
    python scripts/train_confidence.py --model DIR -o DIR/confidence_model.json   # per network

A ``confidence_model.json`` in a model's folder is used by ``synapseg segment --model`` for that
network (``synapseg.model.registry.confidence_model_path``); without one, the packaged model.
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
WIDE_SEED_TAG = 20261208
TUBE_SEED_TAG = 20261263
WIDE_DOMAINS = ["world", "thick", "ribosomes", "mvb"]
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


def wide_params(j: int, shape: tuple[int, int, int] | None):
    """The ``SimulationParams`` of wide-set tomogram ``j`` and its domain name (threshold:
    automatic or lower, as in set 1)."""
    from synapseg.simulate import SimulationParams
    from synapseg.simulate.draws import draw_world

    domain = WIDE_DOMAINS[j % len(WIDE_DOMAINS)]
    rng = np.random.default_rng([WIDE_SEED_TAG, j])
    extra = np.random.default_rng([WIDE_SEED_TAG, j, 1])
    if domain == "world":
        params = draw_world(rng)
    else:
        over: dict = {}
        if domain == "thick":
            over["membrane_thickness_nm"] = round(float(extra.uniform(4.0, 7.0)), 2)
        elif domain == "ribosomes":
            over["protein_crowding"] = float(extra.uniform(1.5, 3.0))
            over["ribosome_density_per_um3"] = float(extra.uniform(10000, 25000))
        elif domain == "mvb":
            over.update(distractors=True, mvb_fraction=1.0)
        params = SimulationParams.random(rng, **over)
    threshold = THRESHOLDS[int(extra.integers(len(THRESHOLDS)))]
    return _bounded(params, shape), domain, threshold


def _bounded(params, shape: tuple[int, int, int] | None):
    """``params`` at ``shape``, or at its own shape narrowed in y-x to ``MAX_VOXELS``."""
    if shape is None:
        z, y, x = params.shape
        while z * y * x > MAX_VOXELS:
            y, x = y - 16, x - 16
        shape = (z, y, x)
    return params.replace(shape=shape)


def tube_params(k: int, shape: tuple[int, int, int] | None):
    """The ``SimulationParams`` of tube-set tomogram ``k``: a v2 world draw with 4-8
    microtubules and 1-3 ER tubules (threshold: automatic or lower, as in set 1)."""
    from synapseg.simulate.draws import draw_world

    rng = np.random.default_rng([TUBE_SEED_TAG, k])
    extra = np.random.default_rng([TUBE_SEED_TAG, k, 1])
    params = draw_world(rng).replace(
        n_microtubules=int(extra.integers(4, 9)), n_er_tubules=int(extra.integers(1, 4))
    )
    threshold = THRESHOLDS[int(extra.integers(len(THRESHOLDS)))]
    return _bounded(params, shape), "tubes", threshold


SETS = {False: ("base", 0), True: ("wide", 1000), "tube": ("tube", 2000)}
"""``wide`` argument -> (set name, tomogram-id offset)."""


def set_params(i: int, shape, wide: bool | str = False):
    """(params, domain, threshold) of tomogram ``i`` of set 1 (``wide=False``), 2 (``True``)
    or 3 (``"tube"``)."""
    fn = {False: domain_params, True: wide_params, "tube": tube_params}[wide]
    return fn(i, shape)


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


def candidates_of(
    i: int,
    shape,
    neutral_path: Path,
    device: str,
    model: str = "default",
    wide: bool | str = False,
) -> pd.DataFrame:
    """Every candidate of training tomogram ``i`` (of set 2 when ``wide``, set 3 when
    ``wide="tube"``) that passes the hard limits: raw QC columns, ``kept`` (0 when the
    overlap rule removed it) and label."""
    import synapseg.post.vesicles as vesicles
    from synapseg.evaluate.matching import match_vesicles
    from synapseg.infer.predict import predict_volume
    from synapseg.io.tables import make_table
    from synapseg.io.volume import Volume
    from synapseg.simulate import simulate_tomogram

    params, domain, threshold = set_params(i, shape, wide)
    sim = simulate_tomogram(params)
    vs = float(params.voxel_size_nm)
    prob = predict_volume(Volume(sim.tomogram, (vs, vs, vs)), model, device=device)
    captured: list[pd.DataFrame] = []
    real_qc = vesicles.qc_filter

    def spy(fits, voxel_size_nm, fp, shape=None):
        kept, rej = real_qc(fits, voxel_size_nm, fp, shape=shape)
        dup = rej[rej["reason"] == "overlaps a better vesicle"].drop(columns="reason")
        captured.append(pd.concat([kept.assign(kept=1), dup.assign(kept=0)], ignore_index=True))
        return kept, rej

    vesicles.qc_filter = spy
    try:
        post = vesicles.PostParams(
            tilt_range_deg=params.tilt_range_deg,
            tilt_axis="dual" if getattr(params, "dual_axis", False) else "y",
            threshold=threshold,
            invert="no",
            min_confidence=0.0,
            confidence_model=str(neutral_path),
            # no vesicle-free gate: it is calibrated per network afterwards, and the 0.9
            # default would drop every candidate of a tomogram whose network is less sure
            min_best_score=None,
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
    on = kept["kept"].to_numpy() == 1
    if len(sim.vesicles) and on.any():  # one-to-one matching among the kept candidates
        m = match_vesicles(sim.vesicles, table[on].reset_index(drop=True), 0.5)
        _, matched = m.matched_masks()
        label[np.flatnonzero(on)] = matched.astype(int)
    out = kept.assign(label=label, tomogram=i, domain=domain, voxel_size_nm=vs,
                      threshold=np.nan if threshold is None else threshold,
                      tilt_range_deg=params.tilt_range_deg, n_gt=len(sim.vesicles),
                      shape_z=params.shape[0], shape_y=params.shape[1], shape_x=params.shape[2],
                      set=SETS[wide][0])  # fmt: skip
    feats = [c for c in out if c.startswith("feat_")]
    return out.drop(columns=["confidence", *feats], errors="ignore")


def with_features(df: pd.DataFrame, i: int, wide: bool | str, shape) -> pd.DataFrame:
    """Recompute the ``feat_*`` columns of one tomogram's cached candidates from their raw QC
    columns (the reference population and the neighbours are every cached candidate, i.e.
    every one that passed the hard limits, as in ``qc_filter``)."""
    from synapseg.post.confidence import FEATURES, candidate_features

    df = df.drop(columns=[c for c in df if c.startswith("feat_")]).reset_index(drop=True)
    if "kept" not in df:  # cached before the overlap removals were kept
        df["kept"] = 1
    if "shape_z" in df:
        grid = tuple(int(df[f"shape_{a}"].iloc[0]) for a in "zyx")
    else:
        grid = set_params(i, shape, wide)[0].shape
    feats = candidate_features(df, float(df["voxel_size_nm"].iloc[0]), shape=grid)
    for f in FEATURES:
        df[f"feat_{f}"] = feats[f].to_numpy()
    df["tomogram"] = i + SETS[wide][1]  # unique; % 5 keeps the split of i / j / k
    df["set"] = SETS[wide][0]
    return df


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


def _design(x: np.ndarray, mean: np.ndarray, scale: np.ndarray, clip=None) -> np.ndarray:
    z = (np.where(np.isfinite(x), x, mean) - mean) / scale
    if clip is not None:
        z = np.clip(z, clip[0], clip[1])
    return np.hstack([z, z**2])


def fit_concave_logistic(design: np.ndarray, y: np.ndarray, c: float) -> tuple[np.ndarray, float]:
    """L2-regularised logistic regression (``c`` x log loss + 0.5 |w|^2, as scikit-learn's
    ``C``) on ``[z, z^2]`` whose square weights are constrained to be <= 0: each feature's
    contribution is then linear or concave (a preferred range), so values beyond the training
    data can only lower the confidence, never raise it (an unconstrained fit learned U-shapes
    from few negatives, e.g. a huge fit residual counting *for* a vesicle). Returns (w, b)."""
    from scipy.optimize import minimize

    n2 = design.shape[1]
    ys = np.where(y > 0, 1.0, -1.0)

    def loss(theta):
        w, b = theta[:-1], theta[-1]
        f = design @ w + b
        m = -ys * f
        ll = np.logaddexp(0.0, m)
        g = -ys / (1.0 + np.exp(-m))  # d ll / d f
        val = c * ll.sum() + 0.5 * w @ w
        grad = np.concatenate([c * design.T @ g + w, [c * g.sum()]])
        return val, grad

    bounds = [(None, None)] * (n2 // 2) + [(None, 0.0)] * (n2 // 2) + [(None, None)]
    res = minimize(loss, np.zeros(n2 + 1), jac=True, method="L-BFGS-B", bounds=bounds,
                   options={"maxiter": 20000})  # fmt: skip
    return res.x[:-1], float(res.x[-1])


def fit_model(
    data: pd.DataFrame, features: list[str], seed: int, calibration: str = "platt", c: float = 0.3
) -> tuple[dict, dict]:
    from sklearn.isotonic import IsotonicRegression
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import brier_score_loss, log_loss, roc_auc_score

    from synapseg.evaluate.metrics import expected_calibration_error, reliability_bins
    from synapseg.post.confidence import predict_confidence, raw_logit

    data = data[data["kept"] == 1]  # the overlap rule's removals only served as neighbours
    split = data["tomogram"] % 5
    tr, ca, te = data[split <= 2], data[split == 3], data[split == 4]
    x = tr[[f"feat_{f}" for f in features]].to_numpy(float)
    mean = np.nanmean(x, axis=0)
    scale = np.nanstd(x, axis=0)
    scale = np.where(scale > 1e-6, scale, 1.0)
    z = (np.where(np.isfinite(x), x, mean) - mean) / scale
    # the model never extrapolates past the training data: z is clipped to its range there
    clip = (np.nanpercentile(z, 0.5, axis=0), np.nanpercentile(z, 99.5, axis=0))
    w, b = fit_concave_logistic(_design(x, mean, scale, clip), tr["label"].to_numpy(), c)
    n = len(features)
    pos = tr[tr["label"] == 1][[f"feat_{f}" for f in features]].to_numpy(float)
    model = {
        "features": features,
        "mean": mean.tolist(),
        "scale": scale.tolist(),
        "z_clip": [clip[0].tolist(), clip[1].tolist()],
        "coef_linear": w[:n].tolist(),
        "coef_square": w[n:].tolist(),
        "intercept": b,
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
    ap.add_argument("--n-wide", type=int, default=32, help="tomograms of the wider set 2")
    ap.add_argument(
        "--n-tubes", type=int, default=0, help="tomograms of set 3 (microtubules, ER tubules)"
    )
    ap.add_argument(
        "--model",
        default="default",
        help="network whose candidates train the model (name or folder)",
    )
    ap.add_argument(
        "--cache",
        type=Path,
        default=Path.home() / ".cache/synapseg/train_confidence",
        help="candidate tables, in a sub-folder per --model",
    )
    ap.add_argument(
        "-o",
        "--out",
        type=Path,
        default=REPO / "src/synapseg/post/confidence_model.json",
        help="where to write the model (for a model folder: "
        "DIR/confidence_model.json, which segment then uses with it)",
    )
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--refresh", action="store_true", help="recompute cached candidate tables")
    ap.add_argument("--seed", type=int, default=0, help="seed of the logistic regression")
    ap.add_argument("--calibration", choices=["platt", "isotonic"], default="platt")
    ap.add_argument("--C", type=float, default=0.3, help="inverse L2 strength of the model")
    args = ap.parse_args(argv)
    logging.basicConfig(level=logging.WARNING)

    import synapseg
    from synapseg.post.confidence import FEATURES

    tag = "default" if args.model == "default" else Path(args.model).name or "model"
    cache = args.cache / tag
    cache.mkdir(parents=True, exist_ok=True)
    neutral = cache / "neutral_model.json"
    neutral.write_text(json.dumps(neutral_model(FEATURES)))
    shape = tuple(args.shape) if args.shape else None
    jobs = [(i, False) for i in range(args.n_tomograms)] + [(j, True) for j in range(args.n_wide)]
    jobs += [(k, "tube") for k in range(args.n_tubes)]
    tables = []
    for i, wide in jobs:
        prefix = {False: "tomo", True: "wide", "tube": "tube"}[wide]
        path = cache / f"{prefix}_{i:03d}.csv"
        domain = set_params(i, shape, wide)[1]
        if path.exists() and not args.refresh:
            try:
                df = pd.read_csv(path)
            except pd.errors.EmptyDataError:  # a tomogram without candidates
                df = pd.DataFrame()
        else:
            t0 = time.perf_counter()
            df = candidates_of(i, shape, neutral, args.device, args.model, wide)
            df.to_csv(path.with_suffix(".tmp"), index=False)
            path.with_suffix(".tmp").replace(path)
            print(f"{prefix} {i:3d} {domain:9s} {len(df):4d} candidates "
                  f"({int(df['label'].sum()) if len(df) else 0} true) "
                  f"{time.perf_counter() - t0:.0f} s", flush=True)  # fmt: skip
        if len(df):
            tables.append(with_features(df, i, wide, shape))
    data = pd.concat(tables, ignore_index=True)
    model, metrics = fit_model(data, list(FEATURES), args.seed, args.calibration, args.C)
    model.update(
        {
            "trained_by": "scripts/train_confidence.py",
            "command": "python scripts/train_confidence.py " + " ".join(argv or sys.argv[1:]),
            "synapseg_version": synapseg.__version__,
            "network": args.model,
            "seeds": f"set 1: numpy.random.default_rng([{SEED_TAG}, i]), i < {args.n_tomograms}; "
            f"set 2: numpy.random.default_rng([{WIDE_SEED_TAG}, j]), j < {args.n_wide}"
            + (
                f"; set 3 (tubes): numpy.random.default_rng([{TUBE_SEED_TAG}, k]), "
                f"k < {args.n_tubes}"
                if args.n_tubes
                else ""
            ),
            "domains": DOMAINS,
            "wide_domains": WIDE_DOMAINS,
            "candidate_thresholds": ["auto" if t is None else t for t in THRESHOLDS],
            "shape": list(shape) if shape else f"{EXTENT_NM} nm, <= {MAX_VOXELS} voxels",
            "split": "tomogram i (or j): i % 5 <= 2 train, == 3 calibration, == 4 test",
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
