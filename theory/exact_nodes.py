r"""Exact node posterior of a tiny SS-IG network: every indicator configuration enumerated, the weights integrated.

Model (as :class:`sparsebnn.priors.SpikeSlabIG` over ``mlp([1, K, 1], "tanh")`` with a Gaussian likelihood of
known noise ``σ``): for hidden node ``j = 1..K``

    z_j ~ Bernoulli(π),   (u_j, c_j) ~ N(0, σ0² I_2),   w_j = z_j u_j,  b_j = z_j c_j          (hidden layer)
    v ~ N(0, σ0² I_K),  a ~ N(0, σ0²)                                                       (output layer, no indicator)
    y_i ~ N(f(x_i), σ²),   f(x) = Σ_j v_j tanh(w_j x + b_j) + a.

Given a configuration ``z`` and the active nodes' ``θ_z = (u_j, c_j)_{z_j = 1}``, ``f`` is linear in the output
weights ``β = (v_{active}, a)`` (an inactive node contributes ``tanh(0) = 0``; its ``v_j`` and slab integrate to 1),
so with ``H`` the ``(n, |z| + 1)`` matrix of active hidden outputs and a column of ones, ``β`` integrates exactly
(Bishop 2006, eq. 3.86): with ``Λ = I/σ0² + HᵀH/σ²`` and ``m = Λ⁻¹Hᵀy/σ²``,

    ln p(y | z, θ_z) = −n/2 ln(2πσ²) − d/2 ln σ0² − ½ ln|Λ| − ‖y − Hm‖²/(2σ²) − ‖m‖²/(2σ0²),   d = |z| + 1.

The remaining ``2|z|``-dimensional integral ``p(y | z) = E_{θ_z ~ N(0, σ0² I)} p(y | z, θ_z)`` is estimated by
importance sampling from the prior, in ``B`` independent batches, so every reported number has a Monte
Carlo standard error (the spread of the batch estimates / √B). Then

    P(z | y) ∝ π^{|z|} (1 − π)^{K − |z|} p(y | z),
    E[f(x*) | y] = Σ_z P(z | y) E[f(x*) | z, y],   E[f(x*) | z, y] = E_{θ_z | z, y}[h(x*)ᵀ m(θ_z)]

(self-normalised importance weights ``p(y | z, θ_z)``). Plain numpy/scipy in float64, written independently of
:mod:`sparsebnn` so it can check the reference sampler; :func:`log_joint` is the full joint density, checked
against the package's NumPyro model.
"""

from __future__ import annotations

import itertools
from typing import NamedTuple

import numpy as np
from scipy import special, stats

__all__ = ["Exact", "configurations", "exact_posterior", "log_joint", "log_marginal_given", "problem"]


def problem(n: int = 12, noise: float = 0.3, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Teacher data ``y = 1.5 tanh(1.5 x − 0.3) + N(0, noise²)`` at ``n`` inputs evenly spread on [−2, 2]: ``(x (n, 1), y (n,))``."""
    x = np.linspace(-2.0, 2.0, n)
    y = 1.5 * np.tanh(1.5 * x - 0.3) + noise * np.random.default_rng(seed).normal(size=n)
    return x[:, None], y


def configurations(k: int) -> np.ndarray:
    """Every indicator configuration ``(2^K, K)`` in binary order (``(0, …, 0)`` first)."""
    return np.array(list(itertools.product([0, 1], repeat=k)), np.int64)


def log_joint(x, y, z, u, c, v, a, *, noise: float, pi: float, sigma0: float = 1.0) -> float:
    """``ln p(y, z, u, c, v, a)`` of the model above (slab values ``u, c`` of every node, ``(K,)`` each; ``v (K,)``)."""
    x, y = np.asarray(x, np.float64)[:, 0], np.asarray(y, np.float64)
    z, u, c, v = (np.asarray(t, np.float64) for t in (z, u, c, v))
    f = np.tanh(np.outer(x, z * u) + z * c) @ v + a
    lp = stats.bernoulli.logpmf(z, pi).sum()
    lp += stats.norm.logpdf(np.concatenate([u, c, v, [a]]), 0.0, sigma0).sum()
    return float(lp + stats.norm.logpdf(y, f, noise).sum())


def log_marginal_given(x, y, u, c, *, noise: float, sigma0: float = 1.0, x_star=None):
    """``ln p(y | z, θ_z)`` with the output layer integrated (module docstring) for ``M`` draws of the active nodes'
    ``u, c`` ``(M, |z|)``; with ``x_star`` ``(P,)`` also ``E[f(x*) | z, θ_z, y] = h(x*)ᵀ m`` ``(M, P)``."""
    x, y = np.asarray(x, np.float64)[:, 0], np.asarray(y, np.float64)
    u, c = np.atleast_2d(u), np.atleast_2d(c)
    m_draws, n = u.shape[0], len(x)
    H = np.concatenate([np.tanh(x[None, :, None] * u[:, None, :] + c[:, None, :]), np.ones((m_draws, n, 1))], axis=2)
    d = H.shape[2]
    lam = np.eye(d) / sigma0**2 + np.einsum("mni,mnj->mij", H, H) / noise**2
    chol = np.linalg.cholesky(lam)
    m = np.linalg.solve(lam, np.einsum("mni,n->mi", H, y)[..., None] / noise**2)[..., 0]
    resid = y - np.einsum("mni,mi->mn", H, m)
    logdet = 2 * np.log(np.diagonal(chol, axis1=1, axis2=2)).sum(-1)
    out = (-0.5 * n * np.log(2 * np.pi * noise**2) - 0.5 * d * np.log(sigma0**2) - 0.5 * logdet
           - 0.5 * (resid**2).sum(-1) / noise**2 - 0.5 * (m**2).sum(-1) / sigma0**2)
    if x_star is None:
        return out
    xs = np.asarray(x_star, np.float64)
    h = np.concatenate([np.tanh(xs[None, :, None] * u[:, None, :] + c[:, None, :]), np.ones((m_draws, len(xs), 1))], 2)
    return out, np.einsum("mpi,mi->mp", h, m)


class Exact(NamedTuple):
    """The exact answer with Monte Carlo standard errors: ``configs (2^K, K)``, ``log_evidence (2^K,)`` =
    ``ln p(y | z)``, ``probs (2^K,)`` = ``P(z | y)``, ``predictive (P,)`` = ``E[f(x*) | y]`` at ``x_star``; ``*_se``
    their standard errors; ``ess (2^K,)`` the importance-sampling effective sample size of each configuration."""

    configs: np.ndarray
    log_evidence: np.ndarray
    log_evidence_se: np.ndarray
    probs: np.ndarray
    probs_se: np.ndarray
    x_star: np.ndarray
    predictive: np.ndarray
    predictive_se: np.ndarray
    ess: np.ndarray


def exact_posterior(x, y, k: int = 2, *, noise: float, pi: float, sigma0: float = 1.0, x_star=(-1.5, 0.0, 1.5),
                    n_draws: int = 2**18, batches: int = 16, chunk: int = 2**14, seed: int = 0) -> Exact:
    """Enumerate every configuration of ``k`` hidden nodes; importance-sample each one's evidence with ``n_draws``
    prior draws in ``batches`` independent batches (module docstring)."""
    per = n_draws // batches
    step = min(chunk, per)
    if batches < 2 or n_draws % batches or per % step:
        raise ValueError(f"n_draws ({n_draws}) must split into batches >= 2 ({batches}) of whole chunks of {chunk}")
    rng = np.random.default_rng(seed)
    xs = np.asarray(x_star, np.float64)
    configs = configurations(k)
    log_z = np.zeros((batches, len(configs)))  # ln p(y | z) per batch
    pred = np.zeros((batches, len(configs), len(xs)))  # E[f(x*) | z, y] per batch
    ess = np.zeros(len(configs))
    for ci, z in enumerate(configs):
        active = int(z.sum())
        lw_all, g_all = [], []
        for b in range(batches):
            lws, gs = [], []
            for _ in range(per // step):
                u = sigma0 * rng.normal(size=(step, active))
                c = sigma0 * rng.normal(size=(step, active))
                lw, g = log_marginal_given(x, y, u, c, noise=noise, sigma0=sigma0, x_star=xs)
                lws.append(lw)
                gs.append(g)
            lw, g = np.concatenate(lws), np.concatenate(gs)
            log_z[b, ci] = special.logsumexp(lw) - np.log(len(lw))
            w = np.exp(lw - lw.max())
            pred[b, ci] = w @ g / w.sum()
            lw_all.append(lw)
            g_all.append(g)
            if active == 0:  # nothing to integrate: every draw is the same number
                break
        if active == 0:
            log_z[:, ci], pred[:, ci] = log_z[0, ci], pred[0, ci]
        lw = np.concatenate(lw_all)
        w = np.exp(lw - lw.max())
        ess[ci] = w.sum() ** 2 / (w**2).sum() if active else np.inf
    log_prior = configs.sum(1) * np.log(pi) + (k - configs.sum(1)) * np.log1p(-pi)

    def combine(lz, pr):
        post = np.exp(lz + log_prior - special.logsumexp(lz + log_prior, axis=-1, keepdims=True))
        return post, np.einsum("...c,...cp->...p", post, pr)

    # point estimates from all draws pooled; standard errors from the spread of the batch estimates
    pooled_lz = special.logsumexp(log_z, axis=0) - np.log(batches)
    weights = np.exp(log_z - pooled_lz)  # each batch's evidence relative to the pooled one, per configuration
    pooled_pred = (weights[..., None] * pred).sum(0) / weights.sum(0)[:, None]
    probs, predictive = combine(pooled_lz, pooled_pred)
    b_probs, b_pred = combine(log_z, pred)
    se = lambda a: a.std(axis=0, ddof=1) / np.sqrt(batches)  # noqa: E731
    return Exact(configs, pooled_lz, se(log_z), probs, se(b_probs), xs, predictive, se(b_pred), ess)
