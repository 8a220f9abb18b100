"""Intervals over seeds: every comparison of the suite reports a mean with its 95 % interval, never one run.

A cell (a method on a network and dataset) is run once per seed; its summary is the mean over seeds
with the Student-t interval ``mean ± t_{n−1, 0.975} · sd / √n`` (n seeds; a single seed has no
interval: NaN bounds). Differences between methods are **paired by seed** (same data split, same
initialisation seed), which removes the seed-to-seed variation both share:
``d_s = metric(a, s) − metric(b, s)``, summarised the same way.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd
from scipy import stats


def t_interval(values, level: float = 0.95) -> tuple[float, float, float]:
    """``(mean, low, high)`` of the finite ``values``: the Student-t interval at ``level`` (NaN bounds for one value)."""
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1); got {level!r}")
    v = np.asarray(values, float)
    v = v[np.isfinite(v)]
    if v.size == 0:
        return float("nan"), float("nan"), float("nan")
    m = float(v.mean())
    if v.size == 1:
        return m, float("nan"), float("nan")
    half = float(stats.t.ppf(0.5 + level / 2, v.size - 1) * v.std(ddof=1) / np.sqrt(v.size))
    return m, m - half, m + half


def _check(table: pd.DataFrame, columns: Sequence[str]) -> None:
    missing = [c for c in columns if c not in table.columns]
    if missing:
        raise ValueError(f"the table has no columns {missing}; it has {list(table.columns)}")


def summarise(table: pd.DataFrame, by: Sequence[str], metrics: Sequence[str], seed: str = "seed",
              level: float = 0.95) -> pd.DataFrame:
    """One row per cell ``by``: ``n_seeds`` and, per metric, ``<metric>`` (mean), ``<metric>_lo``, ``<metric>_hi``.

    Rows of one cell with the same seed are averaged first (one value per seed).
    """
    by, metrics = list(by), list(metrics)
    _check(table, [*by, *metrics, seed])
    per_seed = table.groupby([*by, seed], dropna=False, sort=False)[metrics].mean().reset_index()
    rows = []
    for cell, g in per_seed.groupby(by, dropna=False, sort=False):
        cell = cell if isinstance(cell, tuple) else (cell,)
        row = dict(zip(by, cell), n_seeds=int(g[seed].nunique()))
        for m in metrics:
            row[m], row[f"{m}_lo"], row[f"{m}_hi"] = t_interval(pd.to_numeric(g[m], errors="coerce"), level)
        rows.append(row)
    return pd.DataFrame(rows)


def paired_difference(table: pd.DataFrame, by: Sequence[str], column: str, a, b, metric: str, seed: str = "seed",
                      level: float = 0.95) -> pd.DataFrame:
    """Per cell ``by`` (without ``column``): ``metric(column = a) − metric(column = b)`` paired by seed.

    Returns ``n_seeds`` (seeds present for both), ``diff`` (mean), ``diff_lo``, ``diff_hi``; NaN where no seed has both.
    """
    by = [c for c in by if c != column]
    _check(table, [*by, column, metric, seed])
    per_seed = table.groupby([*by, column, seed], dropna=False, sort=False)[metric].mean().reset_index()
    wide = per_seed[per_seed[column].isin([a, b])].pivot_table(index=[*by, seed], columns=column, values=metric,
                                                                 dropna=False)
    rows = []
    groups = wide.groupby(level=list(range(len(by))), dropna=False, sort=False) if by else [((), wide)]
    for cell, g in groups:
        cell = cell if isinstance(cell, tuple) else (cell,)
        d = (g[a] - g[b]).dropna() if a in g and b in g else pd.Series(dtype=float)
        m, lo, hi = t_interval(d, level)
        rows.append({**dict(zip(by, cell)), "n_seeds": int(d.size), "diff": m, "diff_lo": lo, "diff_hi": hi})
    return pd.DataFrame(rows)


__all__ = ["paired_difference", "summarise", "t_interval"]
