"""Agreement between two posteriors (say SVI against reference NUTS): predictives, marginals, count laws.

* :func:`predictive_agreement`: mean total variation and ``KL(a ‖ b)`` between two posterior
  predictives on the same inputs (classification: the mean class probabilities; regression: the
  moment-matched Gaussians ``N(E f, Var f + σ²)``, in closed form);
* :func:`gaussian_tv`: exact total variation between two univariate Gaussians;
* :func:`moment_gaps`: median standardised mean gap and sd ratio of two sets of draws;
* :func:`poisson_binomial`: the law of a sum of independent Bernoullis (a mean-field count of active nodes);
* :func:`mixture_quantiles`: quantiles of a Gaussian-noise predictive mixture ``f_s + N(0, σ²)``.
"""

from __future__ import annotations

import numpy as np
from scipy import stats

from sparsebnn import metrics


def predictive_agreement(task: str, out_a, out_b, noise: float | None) -> dict:
    """Mean TV and ``KL(a ‖ b)`` between the posterior predictives of draws ``out_a`` ``(S, N, out)``, ``out_b`` ``(S', N, out)``.

    Classification: the outputs are logits, the predictives ``p̄ = mean_s softmax``; TV ``½ Σ_c |p̄_a − p̄_b|``.
    Regression: ``N(mean_s f, var_s f + noise²)`` per input, TV by :func:`gaussian_tv`. Means over inputs.
    """
    if task not in ("classification", "regression"):
        raise ValueError(f"task must be 'classification' or 'regression'; got {task!r}")
    if np.ndim(out_a) != 3 or np.shape(out_a)[1:] != np.shape(out_b)[1:]:
        raise ValueError(f"out_a and out_b must be (draws, N, out) on the same inputs; got {np.shape(out_a)}, {np.shape(out_b)}")
    if task == "classification":
        p, q = metrics.predictive_probs(out_a), metrics.predictive_probs(out_b)
        tv = 0.5 * np.abs(p - q).sum(1)
        kl = np.sum(p * (np.log(np.maximum(p, 1e-300)) - np.log(np.maximum(q, 1e-300))), axis=1)
        return {"pred_tv": float(tv.mean()), "pred_kl": float(kl.mean())}
    if noise is None or not noise > 0:
        raise ValueError(f"noise must be > 0 for regression; got {noise!r}")
    fa, fb = np.asarray(out_a, np.float64)[..., 0], np.asarray(out_b, np.float64)[..., 0]
    m1, v1 = fa.mean(0), fa.var(0) + noise**2
    m2, v2 = fb.mean(0), fb.var(0) + noise**2
    kl = 0.5 * (np.log(v2 / v1) + (v1 + (m1 - m2) ** 2) / v2 - 1)
    return {"pred_tv": float(gaussian_tv(m1, v1, m2, v2).mean()), "pred_kl": float(kl.mean())}


def gaussian_tv(m1, v1, m2, v2) -> np.ndarray:
    """Exact total variation between ``N(m1, v1)`` and ``N(m2, v2)`` (elementwise): ``P(A) − Q(A)``, ``A = {p > q}``.

    ``ln p − ln q = a y² + b y + c`` with ``a = 1/(2v2) − 1/(2v1)``; its roots bound ``A``.
    """
    m1, v1, m2, v2 = np.broadcast_arrays(*(np.asarray(t, np.float64) for t in (m1, v1, m2, v2)))
    s1, s2 = np.sqrt(v1), np.sqrt(v2)
    a = 0.5 / v2 - 0.5 / v1
    b = m1 / v1 - m2 / v2
    c = 0.5 * m2**2 / v2 - 0.5 * m1**2 / v1 + 0.5 * np.log(v2 / v1)
    equal = np.abs(a) <= 1e-12 * (0.5 / v1)
    # equal variances: one crossing at the midpoint
    mid = 0.5 * (m1 + m2)
    tv_eq = np.abs(stats.norm.cdf(mid, m1, s1) - stats.norm.cdf(mid, m2, s2))
    # different variances: two crossings r1 < r2; p > q outside [r1, r2] when a > 0 (v1 > v2), inside when a < 0
    a_ = np.where(equal, 1.0, a)
    disc = np.sqrt(np.maximum(b**2 - 4 * a_ * c, 0.0))
    r1, r2 = np.sort(np.stack([(-b - disc) / (2 * a_), (-b + disc) / (2 * a_)]), axis=0)
    inside = lambda m, s: stats.norm.cdf(r2, m, s) - stats.norm.cdf(r1, m, s)  # noqa: E731
    tv_ne = np.abs(inside(m1, s1) - inside(m2, s2))
    return np.where(equal, tv_eq, tv_ne)


def moment_gaps(a: np.ndarray, b: np.ndarray) -> tuple[float, float]:
    """Median ``|mean_b − mean_a| / sd_a`` and median ``sd_b / sd_a`` over columns with ``sd_a > 0`` (a: the reference)."""
    sa, sb = a.std(0), b.std(0)
    keep = sa > 1e-12
    if not keep.any():
        return float("nan"), float("nan")
    return (float(np.median(np.abs(b.mean(0) - a.mean(0))[keep] / sa[keep])),
            float(np.median(sb[keep] / sa[keep])))


def poisson_binomial(p: np.ndarray) -> np.ndarray:
    """``P(Σ_j z_j = k)``, ``k = 0..K``, for independent ``z_j ~ Bernoulli(p_j)`` (the mean-field count law)."""
    pmf = np.ones(1)
    for q in np.asarray(p, np.float64):
        pmf = np.convolve(pmf, [1 - q, q])
    return pmf


def mixture_quantiles(f: np.ndarray, noise: float, q: float, iters: int = 60) -> np.ndarray:
    """The ``q`` quantile of ``y = f_s + N(0, noise²)``, ``s`` uniform over draws ``f`` ``(S, N)``, per column (bisection)."""
    lo, hi = f.min(0) - 10 * noise, f.max(0) + 10 * noise
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        below = stats.norm.cdf((mid[None] - f) / noise).mean(0) < q
        lo, hi = np.where(below, mid, lo), np.where(below, hi, mid)
    return 0.5 * (lo + hi)
