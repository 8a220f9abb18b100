"""Empirical rates: the log-log slope of a quantity against the sample size, with a bootstrap interval.

A quantity that behaves as ``y ≈ C n^b`` (an error, a posterior spread, a contraction radius) has slope ``b``
on a log-log scale. :func:`ols_slope` is the least-squares slope of ``ln y`` on ``ln n`` over every run;
:func:`fit_slope` adds a percentile bootstrap interval that resamples the replicates (seeds) within each
``n``, keeping the design.
"""

from __future__ import annotations

import numpy as np


def _log_log(n, y) -> tuple[np.ndarray, np.ndarray]:
    n, y = np.asarray(n, np.float64), np.asarray(y, np.float64)
    if n.shape != y.shape or n.ndim != 1:
        raise ValueError(f"n and y must be 1-D of equal length; got {n.shape}, {y.shape}")
    if np.any(~np.isfinite(n)) or np.any(~np.isfinite(y)) or np.any(n <= 0) or np.any(y <= 0):
        raise ValueError("n and y must be finite and positive")
    if np.unique(n).size < 2:
        raise ValueError(f"a slope needs at least two distinct n; got {np.unique(n).tolist()}")
    return np.log(n), np.log(y)


def ols_slope(n, y) -> float:
    """Least-squares slope of ln y on ln n."""
    x, z = _log_log(n, y)
    xc = x - x.mean()
    return float(xc @ (z - z.mean()) / (xc @ xc))


def fit_slope(n, y, n_boot: int = 2000, level: float = 0.95, seed: int = 0) -> tuple[float, float, float]:
    """:func:`ols_slope` and its percentile bootstrap interval at ``level``.

    The bootstrap resamples the replicates (seeds) within each distinct n with replacement, keeping the
    design; the interval is NaN when some n has a single replicate (nothing to resample).
    """
    slope = ols_slope(n, y)
    if not 0 < level < 1:
        raise ValueError(f"level must lie in (0, 1); got {level}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1; got {n_boot}")
    x, z = _log_log(n, y)
    n = np.asarray(n, np.float64)
    xc = x - x.mean()
    groups = [np.flatnonzero(n == v) for v in np.unique(n)]
    if min(len(g) for g in groups) < 2:
        return slope, float("nan"), float("nan")
    rng = np.random.default_rng(seed)
    idx = np.concatenate([rng.choice(g, (n_boot, len(g))) for g in groups], axis=1)  # (B, runs), same design
    zb = z[idx]
    xb = xc[idx]  # resampling within n keeps every x: xb has the same mean and spread as xc
    boots = np.sum(xb * (zb - zb.mean(1, keepdims=True)), 1) / np.sum(xb * xb, 1)
    lo, hi = np.quantile(boots, [(1 - level) / 2, (1 + level) / 2])
    return slope, float(lo), float(hi)
