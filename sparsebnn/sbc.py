"""Simulation-based calibration statistics (Talts et al. 2018).

For a draw ``θ̃`` from the prior, data from ``p(y | θ̃)`` and ``L`` posterior draws given that data, the
rank ``#{draws < θ̃}`` is uniform on ``{0, …, L}`` when the sampler is exact. :func:`rank` computes it
(ties, which only discrete quantities have, broken uniformly at random), :func:`chi2_uniform` tests
one quantity's ranks for uniformity (χ² on equal bins), and :func:`uniformity` tests every quantity of
a ranks table with a Bonferroni correction for their number.
"""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy import stats


def rank(draws: np.ndarray, truth: float, rng: np.random.Generator) -> int:
    """``#{draws < truth}`` plus a uniform share of the ties (discrete quantities such as indicators)."""
    less, ties = int(np.sum(draws < truth)), int(np.sum(draws == truth))
    return less + int(rng.integers(0, ties + 1))


def chi2_uniform(ranks: np.ndarray, n_ranks: int, bins: int = 10) -> tuple[float, float, np.ndarray]:
    """χ² statistic, p-value and bin counts of ``ranks`` ∈ {0..n_ranks-1} against the uniform distribution.

    The ``n_ranks`` possible ranks are pooled into ``bins`` equal bins (``bins`` must divide ``n_ranks``);
    the statistic has ``bins - 1`` degrees of freedom.
    """
    ranks = np.asarray(ranks)
    if n_ranks % bins:
        raise ValueError(f"bins ({bins}) must divide the number of possible ranks ({n_ranks})")
    if ranks.size == 0 or ranks.min() < 0 or ranks.max() >= n_ranks:
        raise ValueError(f"ranks must be a non-empty array of integers in [0, {n_ranks})")
    counts = np.bincount(ranks // (n_ranks // bins), minlength=bins)
    chi2, p = stats.chisquare(counts)
    return float(chi2), float(p), counts


def uniformity(ranks: pd.DataFrame, n_ranks: int, bins: int = 10, alpha: float = 1e-3) -> pd.DataFrame:
    """One row per ``quantity`` of a ranks table (columns ``quantity``, ``rank``): :func:`chi2_uniform`'s χ²,
    p-value and bin counts, and ``passed``: ``p > alpha / #quantities`` (Bonferroni over the quantities)."""
    if not 0 < alpha < 1:
        raise ValueError(f"alpha must lie in (0, 1); got {alpha}")
    rows = []
    for name, g in ranks.groupby("quantity", sort=False):
        chi2, p, counts = chi2_uniform(g["rank"].to_numpy(), n_ranks, bins)
        rows.append(dict(quantity=name, n_sims=len(g), chi2=chi2, p_value=p, counts=" ".join(map(str, counts))))
    out = pd.DataFrame(rows)
    out["passed"] = out["p_value"] > alpha / max(len(out), 1)
    return out
