r"""Exact conjugate Bayesian linear regression with known noise: the reference that BMR must match.

Model: ``y = X w + ε``, ``ε ~ N(0, σ² I)``, ``w ~ N(m₀, S₀)`` (``X`` is ``(n, k)``).

* evidence   ``p(y) = N(y; X m₀, σ² I + X S₀ Xᵀ)``,
* posterior  ``S_N = (S₀⁻¹ + XᵀX/σ²)⁻¹``, ``m_N = S_N (S₀⁻¹ m₀ + Xᵀy/σ²)``,

both computed from one QR factorisation of the prior-whitened least-squares problem
``[X B/σ; I] z ≈ [(y - X m₀)/σ; 0]`` (``S₀ = B Bᵀ``), which is backward stable and allows a singular
``S₀`` (a zero variance is a spike at the prior mean).
* dropping coefficients ``D`` (fixing ``w_D = c``): delete their columns, ``y ← y - X_D c``, and keep
  the prior block of the others,
* Savage–Dickey: ``ln p(w_D = c | y) - ln p(w_D = c)`` equals ``ln p(y | w_D = c) - ln p(y)`` when the
  reduced model's prior on the rest is the full prior's conditional given ``w_D = c``
  (:func:`conditional_prior`); for a prior independent across ``D`` and the rest that is its marginal block.

Plain numpy/scipy in float64, written independently of :mod:`sparsebnn.bmr` so it can check it.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
from scipy import linalg, stats

__all__ = [
    "Regression",
    "conditional_prior",
    "log_bayes_factor",
    "log_evidence",
    "posterior",
    "random_regression",
    "savage_dickey",
]


class Regression(NamedTuple):
    """One conjugate problem; ``log_evidence(*problem)`` and ``posterior(*problem)`` take it unpacked."""

    X: np.ndarray
    y: np.ndarray
    noise_var: float
    prior_mean: np.ndarray
    prior_cov: np.ndarray


def _orthogonal(rng: np.random.Generator, d: int) -> np.ndarray:
    return stats.ortho_group.rvs(d, random_state=rng) if d > 1 else np.ones((1, 1))


def random_regression(
    rng: np.random.Generator,
    k: int,
    n: int,
    cond: float = 1.0,
    noise_var: float = 1.0,
    correlated: bool = False,
    prior_var_range: tuple[float, float] = (1e-2, 1e2),
) -> Regression:
    """Draw a conjugate regression with ``k`` coefficients and ``n`` observations.

    ``X = U diag(s) Vᵀ`` with random orthogonal ``U, V`` and singular values ``s`` log-spaced from
    ``√n`` down to ``√n / cond``; prior variances (or, if ``correlated``, the eigenvalues of a
    randomly rotated prior covariance) log-uniform in ``prior_var_range``; prior mean
    ``N(0, c²)`` with ``c`` log-uniform in [1e-2, 10]; ``w`` from the prior and ``y = Xw + ε``.
    """
    if k < 1 or n < 1 or cond < 1 or noise_var <= 0:
        raise ValueError(f"need k >= 1, n >= 1, cond >= 1, noise_var > 0; got {k}, {n}, {cond}, {noise_var}")
    r = min(n, k)
    s = np.sqrt(n) * np.logspace(0, -np.log10(cond), r)
    X = _orthogonal(rng, n)[:, :r] @ np.diag(s) @ _orthogonal(rng, k)[:, :r].T
    lo, hi = np.log10(prior_var_range)
    var = 10.0 ** rng.uniform(lo, hi, k)
    if correlated:
        W = _orthogonal(rng, k)
        cov = W @ np.diag(var) @ W.T
        cov = 0.5 * (cov + cov.T)
    else:
        cov = np.diag(var)
    mean = rng.normal(size=k) * 10.0 ** rng.uniform(-2, 1)
    w = rng.multivariate_normal(mean, cov)
    y = X @ w + np.sqrt(noise_var) * rng.normal(size=n)
    return Regression(X, y, float(noise_var), mean, cov)


def _problem(X, y, noise_var, prior_mean, prior_cov):
    X = np.atleast_2d(np.asarray(X, dtype=np.float64))
    y = np.asarray(y, dtype=np.float64)
    n, k = X.shape
    m0 = np.broadcast_to(np.asarray(prior_mean, dtype=np.float64), (k,)).copy()
    S0 = np.asarray(prior_cov, dtype=np.float64)
    if S0.ndim < 2:
        S0 = np.diag(np.broadcast_to(S0, (k,)))
    for name, a in (("X", X), ("y", y), ("prior_mean", m0), ("prior_cov", S0)):
        if not np.isfinite(a).all():
            raise ValueError(f"{name} must be finite")
    if y.shape != (n,):
        raise ValueError(f"y must have shape ({n},) to match X {X.shape}; got {y.shape}")
    if S0.shape != (k, k):
        raise ValueError(f"prior_cov must be ({k}, {k}) (or a vector of variances); got {S0.shape}")
    if np.abs(S0 - S0.T).max(initial=0) > 1e-10 * np.abs(S0).max(initial=0):
        raise ValueError("prior_cov must be symmetric")
    if (np.diag(S0) < 0).any():
        raise ValueError("prior_cov must have non-negative variances on its diagonal")
    if not (np.isfinite(noise_var) and noise_var > 0):
        raise ValueError(f"noise_var must be finite and > 0; got {noise_var!r}")
    return X, y, float(noise_var), m0, 0.5 * (S0 + S0.T)


def _mask(drop, k: int) -> np.ndarray:
    """A boolean mask of length k from None, a boolean mask or a sequence of indices."""
    if drop is None:
        return np.zeros(k, bool)
    drop = np.asarray(drop)
    if drop.dtype == bool:
        if drop.shape != (k,):
            raise ValueError(f"drop mask must have shape ({k},); got {drop.shape}")
        return drop.copy()
    idx = np.atleast_1d(drop).astype(int)
    if idx.size and (idx.min() < -k or idx.max() >= k):
        raise ValueError(f"drop indices must lie in [0, {k}); got {idx}")
    mask = np.zeros(k, bool)
    mask[idx] = True
    return mask


def _reduce(X, y, m0, S0, drop, drop_value):
    """Fix ``w_drop = drop_value`` (and zero-variance coefficients at their prior mean).

    Returns the kept mask, the values of the fixed coefficients, the shifted data
    ``y - X_fixed c - X_kept m_kept`` and a factor ``B`` (full column rank) with ``S_kept = B Bᵀ``.
    """
    k = X.shape[1]
    spike = np.diag(S0) <= 0
    keep = ~drop & ~spike
    fixed = np.where(spike, m0, 0.0)
    fixed[drop] = np.broadcast_to(np.asarray(drop_value, dtype=np.float64), (drop.sum(),))
    e = y - X[:, ~keep] @ fixed[~keep] - X[:, keep] @ m0[keep]
    Sk = S0[np.ix_(keep, keep)]
    try:
        B = linalg.cholesky(Sk, lower=True) if keep.any() else np.zeros((0, 0))
    except linalg.LinAlgError:  # singular prior block: keep its range only
        w, V = linalg.eigh(Sk)
        if w.min() < -1e-10 * max(w.max(), 0.0):
            raise ValueError("prior_cov must be positive semi-definite") from None
        pos = w > k * np.finfo(float).eps * w.max()
        B = V[:, pos] * np.sqrt(w[pos])
    return keep, fixed, e, B


def _least_squares(X, e, s2, B):
    """Whitened problem ``w_kept = m_kept + B z``, ``z ~ N(0, I)``: QR of ``[X B / σ; I]``.

    ``ln p(y) = -n/2 ln(2πσ²) - ln|det R| - ½ ‖r‖²`` with ``r`` the least-squares residual of
    ``[X B/σ; I] z ≈ [e/σ; 0]``; the posterior of ``z`` is ``N(R⁻¹ c, (RᵀR)⁻¹)``. Backward stable,
    so accurate even when the noise is small and ``σ² I + X S Xᵀ`` is nearly singular.
    """
    n, r = X.shape[0], B.shape[1]
    sigma = np.sqrt(s2)
    M = np.vstack([X @ B / sigma, np.eye(r)])
    Q, R = linalg.qr(M)
    c = Q.T @ np.concatenate([e / sigma, np.zeros(r)])
    R = R[:r]
    log_z = -0.5 * n * np.log(2 * np.pi * s2) - np.log(np.abs(np.diag(R))).sum() - 0.5 * c[r:] @ c[r:]
    return float(log_z), R, c[:r]


def log_evidence(X, y, noise_var, prior_mean, prior_cov, drop=None, drop_value=0.0) -> float:
    """``ln p(y) = ln N(y; X m₀, σ² I + X S₀ Xᵀ)``, optionally with coefficients ``drop`` fixed at ``drop_value``.

    ``prior_cov`` may be any positive semi-definite matrix (a zero variance is a spike at the prior
    mean) or a vector of variances; ``drop`` is a boolean mask or a list of indices.
    """
    X, y, s2, m0, S0 = _problem(X, y, noise_var, prior_mean, prior_cov)
    keep, _, e, B = _reduce(X, y, m0, S0, _mask(drop, X.shape[1]), drop_value)
    return _least_squares(X[:, keep], e, s2, B)[0]


def log_bayes_factor(X, y, noise_var, prior_mean, prior_cov, red_mean, red_cov, drop=None, drop_value=0.0) -> float:
    """``ln p(y | reduced) - ln p(y | full)`` for the reduced prior ``N(red_mean, red_cov)`` (and ``drop``)."""
    full = log_evidence(X, y, noise_var, prior_mean, prior_cov)
    return log_evidence(X, y, noise_var, red_mean, red_cov, drop, drop_value) - full


def posterior(X, y, noise_var, prior_mean, prior_cov, drop=None, drop_value=0.0):
    """Exact posterior ``(m_N, S_N)`` over all k coefficients (fixed ones: their value, zero variance).

    ``S_N = (S₀⁻¹ + XᵀX/σ²)⁻¹`` and ``m_N = S_N(S₀⁻¹m₀ + Xᵀy/σ²)``, computed as ``m + B R⁻¹c`` and
    ``(B R⁻¹)(B R⁻¹)ᵀ`` from the QR of the whitened problem (no inverse of ``S₀`` is formed).
    """
    X, y, s2, m0, S0 = _problem(X, y, noise_var, prior_mean, prior_cov)
    keep, fixed, e, B = _reduce(X, y, m0, S0, _mask(drop, X.shape[1]), drop_value)
    _, R, c = _least_squares(X[:, keep], e, s2, B)
    mean = fixed.copy()
    cov = np.zeros_like(S0)
    if B.size:
        # R is upper triangular, so LU needs no pivoting and np.linalg.solve is back substitution
        # (scipy's solve_triangular is much slower for these tiny systems under threaded BLAS).
        mean[keep] = m0[keep] + B @ np.linalg.solve(R, c)
        F = np.linalg.solve(R.T, B.T).T  # B R⁻¹
        cov[np.ix_(keep, keep)] = F @ F.T
    return mean, cov


def conditional_prior(prior_mean, prior_cov, drop, drop_value=0.0):
    """The prior given ``w_drop = drop_value``, as a length-k ``(mean, cov)`` with zero rows/columns on ``drop``.

    ``m_K + S_KD S_DD⁻¹ (c - m_D)`` and ``S_KK - S_KD S_DD⁻¹ S_DK``: the reduced model for which the
    Savage–Dickey ratio is the exact Bayes factor.
    """
    m0 = np.asarray(prior_mean, dtype=np.float64)
    S0 = np.asarray(prior_cov, dtype=np.float64)
    k = m0.shape[0]
    if S0.ndim < 2:
        S0 = np.diag(np.broadcast_to(S0, (k,)))
    drop = _mask(drop, k)
    keep = ~drop
    c = np.broadcast_to(np.asarray(drop_value, dtype=np.float64), (drop.sum(),))
    mean, cov = np.zeros(k), np.zeros((k, k))
    mean[drop] = c
    if drop.any():
        f = linalg.cho_factor(S0[np.ix_(drop, drop)], lower=True)
        gain = linalg.cho_solve(f, S0[np.ix_(drop, keep)]).T  # S_KD S_DD⁻¹
    else:
        gain = np.zeros((keep.sum(), 0))
    mean[keep] = m0[keep] + gain @ (c - m0[drop])
    ck = S0[np.ix_(keep, keep)] - gain @ S0[np.ix_(drop, keep)]
    cov[np.ix_(keep, keep)] = 0.5 * (ck + ck.T)
    return mean, cov


def savage_dickey(X, y, noise_var, prior_mean, prior_cov, idx, value=0.0) -> float:
    """Exact ``ln p(w_idx = value | y) - ln p(w_idx = value)`` for one or several coefficients ``idx``."""
    X, y, s2, m0, S0 = _problem(X, y, noise_var, prior_mean, prior_cov)
    idx = np.flatnonzero(_mask(idx, X.shape[1]))
    c = np.broadcast_to(np.asarray(value, dtype=np.float64), (idx.size,))
    mn, Sn = posterior(X, y, s2, m0, S0)
    sub = np.ix_(idx, idx)
    post = stats.multivariate_normal(mn[idx], Sn[sub]).logpdf(c)
    prior = stats.multivariate_normal(m0[idx], S0[sub]).logpdf(c)
    return float(post - prior)
