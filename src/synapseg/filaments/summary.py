"""What the papers report about connectors and tethers, from the filament table.

Per vesicle: ``n_connectors``, ``n_tethers`` (columns added to the vesicle table). For the
tomogram: the fraction of vesicles connected and tethered in bins of distance to the
active zone (Fernández-Busnadiego et al. 2010 report them for the proximal 0-45 nm zone
and beyond), counts per vesicle, and the lengths of each kind.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import pandas as pd

AZ_BINS_NM = (0.0, 5.0, 10.0, 20.0, 45.0, 100.0, 250.0)

__all__ = ["AZ_BINS_NM", "add_counts", "filament_summary", "summary_figure"]


def add_counts(vesicles: pd.DataFrame, filaments: pd.DataFrame) -> pd.DataFrame:
    """A copy of ``vesicles`` with ``n_connectors`` and ``n_tethers`` per vesicle."""
    out = vesicles.copy()
    ids = out["id"].to_numpy(int)
    con = filaments[filaments["kind"] == "connector"] if len(filaments) else filaments
    teth = filaments[filaments["kind"] == "tether"] if len(filaments) else filaments
    ends = (
        np.concatenate([con["vesicle_a"].to_numpy(int), con["vesicle_b"].to_numpy(int)])
        if len(con)
        else np.zeros(0, int)
    )
    tends = teth["vesicle_a"].to_numpy(int) if len(teth) else np.zeros(0, int)
    out["n_connectors"] = [int(np.sum(ends == i)) for i in ids]
    out["n_tethers"] = [int(np.sum(tends == i)) for i in ids]
    return out


def _stats(values: np.ndarray) -> dict[str, Any]:
    values = np.asarray(values, float)
    values = values[np.isfinite(values)]
    if len(values) == 0:
        return {"n": 0}
    q = np.percentile(values, [25, 50, 75])
    return {
        "n": int(len(values)),
        "mean": round(float(values.mean()), 3),
        "median": round(float(q[1]), 3),
        "q25": round(float(q[0]), 3),
        "q75": round(float(q[2]), 3),
    }


def filament_summary(
    vesicles: pd.DataFrame,
    filaments: pd.DataFrame,
    az_distance_nm: np.ndarray | None = None,
    bins_nm: tuple[float, ...] = AZ_BINS_NM,
) -> dict[str, Any]:
    """The summary JSON (see the module docstring).

    ``az_distance_nm`` (per vesicle row, nm from the outer surface to the AZ) defaults to
    the vesicle table's ``az_distance_nm`` column; without either, the by-distance
    fractions are left out.
    """
    counted = (
        vesicles
        if {"n_connectors", "n_tethers"} <= set(vesicles)
        else add_counts(vesicles, filaments)
    )
    nc = counted["n_connectors"].to_numpy(int)
    nt = counted["n_tethers"].to_numpy(int)
    out: dict[str, Any] = {
        "n_vesicles": int(len(counted)),
        "n_connectors": int((filaments["kind"] == "connector").sum()) if len(filaments) else 0,
        "n_tethers": int((filaments["kind"] == "tether").sum()) if len(filaments) else 0,
        "fraction_connected": round(float(np.mean(nc > 0)), 4) if len(nc) else None,
        "fraction_tethered": round(float(np.mean(nt > 0)), 4) if len(nt) else None,
        "connectors_per_vesicle": _stats(nc),
        "tethers_per_vesicle": _stats(nt),
    }
    for kind in ("connector", "tether"):
        sel = filaments[filaments["kind"] == kind] if len(filaments) else filaments
        out[f"{kind}_length_nm"] = _stats(sel["length_nm"]) if len(sel) else {"n": 0}
    if az_distance_nm is None and "az_distance_nm" in vesicles:
        az_distance_nm = vesicles["az_distance_nm"].to_numpy(float)
    if az_distance_nm is not None and np.isfinite(az_distance_nm).any():
        d = np.asarray(az_distance_nm, float)
        rows = []
        for lo, hi in zip(bins_nm[:-1], bins_nm[1:]):
            sel = (d >= lo) & (d < hi)
            n = int(sel.sum())
            rows.append(
                {
                    "az_distance_nm": [lo, hi],
                    "n_vesicles": n,
                    "fraction_connected": round(float(np.mean(nc[sel] > 0)), 4) if n else None,
                    "fraction_tethered": round(float(np.mean(nt[sel] > 0)), 4) if n else None,
                    "connectors_per_vesicle": round(float(nc[sel].mean()), 3) if n else None,
                    "tethers_per_vesicle": round(float(nt[sel].mean()), 3) if n else None,
                }
            )
        out["by_az_distance"] = rows
    return out


def summary_figure(summary: dict[str, Any], filaments: pd.DataFrame) -> Any:
    """A two-panel figure: fractions by AZ distance, and the length histograms."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(9, 3.4))
    rows = summary.get("by_az_distance") or []
    if rows:
        labels = [f"{int(r['az_distance_nm'][0])}-{int(r['az_distance_nm'][1])}" for r in rows]
        x = np.arange(len(rows))
        con = [r["fraction_connected"] or 0 for r in rows]
        teth = [r["fraction_tethered"] or 0 for r in rows]
        ax1.bar(x - 0.2, con, 0.4, label="connected")
        ax1.bar(x + 0.2, teth, 0.4, label="tethered")
        ax1.set_xticks(x, labels, rotation=30)
        ax1.set_xlabel("distance to the AZ (nm)")
        ax1.set_ylabel("fraction of vesicles")
        ax1.legend(frameon=False)
    else:
        ax1.text(0.5, 0.5, "no active zone", ha="center", va="center")
        ax1.set_axis_off()
    for kind in ("connector", "tether"):
        sel = filaments[filaments["kind"] == kind] if len(filaments) else filaments
        if len(sel):
            ax2.hist(sel["length_nm"], bins=np.arange(0, 62, 3), alpha=0.6, label=kind)
    ax2.set_xlabel("length (nm)")
    ax2.set_ylabel("filaments")
    ax2.legend(frameon=False)
    fig.tight_layout()
    return fig
