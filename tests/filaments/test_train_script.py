"""scripts/train_filaments.py: its logistic fit (no scikit-learn) and the threshold curve with
a separate threshold for a pair's extra tether lines (issue 15, fifth round)."""

from __future__ import annotations

import numpy as np
import pandas as pd


def test_logistic_fit_recovers_the_weights(load_script):
    mod = load_script("scripts/train_filaments.py")
    rng = np.random.default_rng(0)
    x = rng.normal(size=(20000, 2))
    y = rng.random(20000) < 1 / (1 + np.exp(-(0.5 + 2.0 * x[:, 0] - 1.0 * x[:, 1])))
    clf = mod.LogisticRegression(C=1.0).fit(x, y)
    assert np.allclose(clf.coef_[0], [2.0, -1.0], atol=0.1)
    assert abs(clf.intercept_[0] - 0.5) < 0.1
    p = clf.predict_proba(x[:3])
    assert p.shape == (3, 2) and np.allclose(p.sum(1), 1)


def test_curve_counts_extra_lines_against_their_own_threshold(load_script):
    mod = load_script("scripts/train_filaments.py")
    # one tethered pair (1 true tether) whose best line scores 0.9 and 2nd 0.4; the negative
    # control's pair has a best line at 0.3 and a second at 0.35
    sel = pd.DataFrame(
        {
            "sim": ["a", "a"],
            "pair": ["1:-1", "1:-1"],
            "n_pair": [1, 1],
            "rank": [0, 1],
            "score": [0.9, 0.4],
        }  # fmt: skip
    )
    null = pd.DataFrame(
        {"sim": ["a", "a"], "pair": ["1:-1"] * 2, "rank": [0, 1], "score": [0.3, 0.35]}
    )
    rows = mod.curve(sel, null, 1, {"a": 10}, [0.2], extra_grid=(None, 0.5))
    (t, t2, f1, prec, rec, false, per), (_, t2b, f1b, precb, _, falseb, _) = rows
    assert (t, t2) == (0.2, 0.2) and prec == 0.5 and false == 0.2 and per["a"] == 0.2
    assert t2b == 0.5 and precb == 1.0 and f1b == 1.0 and falseb == 0.1
    assert f1b > f1
