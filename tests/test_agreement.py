"""sparsebnn.agreement against exact answers: enumeration, closed forms, quadrature."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import integrate, optimize, stats

from sparsebnn import agreement


@given(st.lists(st.floats(0, 1), min_size=0, max_size=6))
def test_poisson_binomial_matches_enumeration(p):
    pmf = agreement.poisson_binomial(np.array(p))
    brute = np.zeros(len(p) + 1)
    for z in itertools.product([0, 1], repeat=len(p)):
        brute[sum(z)] += np.prod([q if b else 1 - q for q, b in zip(p, z)])
    np.testing.assert_allclose(pmf, brute, atol=1e-12)


def test_mixture_quantiles():
    f = np.array([[0.0, 1.0], [0.0, 3.0]])  # column 0: one Gaussian; column 1: two components
    lo = agreement.mixture_quantiles(f, 0.5, 0.05)
    assert lo[0] == pytest.approx(stats.norm.ppf(0.05, 0, 0.5), abs=1e-9)
    cdf = 0.5 * (stats.norm.cdf(lo[1], 1, 0.5) + stats.norm.cdf(lo[1], 3, 0.5))
    assert cdf == pytest.approx(0.05, abs=1e-9)


def test_predictive_agreement_exact():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(50, 7, 3))
    same = agreement.predictive_agreement("classification", logits, logits, None)
    assert same == {"pred_tv": 0.0, "pred_kl": 0.0}
    # regression: two predictive Gaussians with equal variance v: TV = 2Φ(|Δ| / (2√v)) − 1, KL = Δ² / (2v)
    a = np.zeros((2, 1, 1)) + np.array([-0.1, 0.1])[:, None, None]  # mean 0, var 0.01
    b = a + 0.3
    r = agreement.predictive_agreement("regression", a, b, noise=0.2)
    v = 0.01 + 0.04
    assert r["pred_kl"] == pytest.approx(0.09 / (2 * v), rel=1e-9)
    assert r["pred_tv"] == pytest.approx(2 * stats.norm.cdf(0.3 / (2 * np.sqrt(v))) - 1, abs=1e-6)
    # classification TV and KL by definition
    p, q = np.array([[0.2, 0.8]]), np.array([[0.5, 0.5]])
    r = agreement.predictive_agreement("classification", np.log(p)[None], np.log(q)[None], None)
    assert r["pred_tv"] == pytest.approx(0.3) and r["pred_kl"] == pytest.approx(np.sum(p * np.log(p / q)))


def crossings(f, lo: float, hi: float, n: int = 4001) -> list[float]:
    """Sign changes of ``f`` on ``[lo, hi]``: a fine grid, refined by Brent's method."""
    t = np.linspace(lo, hi, n)
    s = np.sign(f(t))
    return [optimize.brentq(f, t[i], t[i + 1], xtol=1e-14) for i in np.flatnonzero(s[:-1] * s[1:] < 0)]


@given(st.floats(-3, 3), st.floats(0.05, 4), st.floats(-3, 3), st.floats(0.05, 4))
def test_gaussian_tv_matches_quadrature(m1, v1, m2, v2):
    lo = min(m1 - 12 * v1**0.5, m2 - 12 * v2**0.5)
    hi = max(m1 + 12 * v1**0.5, m2 + 12 * v2**0.5)
    gap = lambda y: abs(stats.norm.pdf(y, m1, v1**0.5) - stats.norm.pdf(y, m2, v2**0.5))  # noqa: E731
    # |p - q| has kinks where the densities cross: quadrature breakpoints there (found numerically)
    kinks = crossings(lambda y: stats.norm.logpdf(y, m1, v1**0.5) - stats.norm.logpdf(y, m2, v2**0.5), lo, hi)
    want = 0.5 * integrate.quad(gap, lo, hi, points=[m1, m2, *kinks], limit=200, epsabs=1e-11)[0]
    assert float(agreement.gaussian_tv(m1, v1, m2, v2)) == pytest.approx(want, abs=1e-7)


def test_moment_gaps():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(4000, 3)) * [1.0, 2.0, 0.0]
    b = rng.normal(size=(4000, 3)) * [0.5, 1.0, 1.0] + [1.0, 2.0, 0.0]
    gap, ratio = agreement.moment_gaps(a, b)  # the third column has no NUTS spread and is skipped
    assert gap == pytest.approx(1.0, abs=0.1) and ratio == pytest.approx(0.5, abs=0.05)


def test_predictive_agreement_rejects_bad_input():
    a = np.zeros((4, 3, 1))
    with pytest.raises(ValueError, match="task"):
        agreement.predictive_agreement("ranking", a, a, None)
    with pytest.raises(ValueError, match="same inputs"):
        agreement.predictive_agreement("regression", a, np.zeros((4, 2, 1)), 0.1)
    with pytest.raises(ValueError, match="noise"):
        agreement.predictive_agreement("regression", a, a, None)
