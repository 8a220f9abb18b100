"""The exact conjugate reference (theory.savage_dickey) against independent computations."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats

from theory import savage_dickey as sd


@st.composite
def problems(draw, correlated=None, max_k=6, max_n=20, max_log_cond=4.0):
    """A random conjugate regression (structure from hypothesis, entries from a seeded generator)."""
    k = draw(st.integers(1, max_k))
    n = draw(st.integers(1, max_n))
    cond = 10.0 ** draw(st.floats(0, max_log_cond))
    noise_var = 10.0 ** draw(st.floats(-3, 1))
    corr = draw(st.booleans()) if correlated is None else correlated
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    return sd.random_regression(rng, k, n, cond, noise_var, corr), rng


def _close(a, b, rtol=1e-9, atol=1e-9):
    return abs(a - b) <= rtol * max(abs(a), abs(b)) + atol


@given(problems(max_log_cond=2.0))
def test_log_evidence_is_the_gaussian_marginal(case):
    """ln p(y) == ln N(y; X m0, σ²I + X S0 Xᵀ) evaluated by scipy (well-conditioned cases)."""
    (X, y, s2, m, S), _ = case
    C = s2 * np.eye(len(y)) + X @ S @ X.T
    ref = stats.multivariate_normal(X @ m, C).logpdf(y)
    assert _close(sd.log_evidence(X, y, s2, m, S), ref, rtol=1e-10, atol=1e-10)


@given(problems())
def test_candidate_formula(case):
    """ln p(y) == ln p(y|w) + ln p(w) - ln p(w|y) at any w (posterior and evidence agree)."""
    reg, rng = case
    X, y, s2, m, S = reg
    mn, Sn = sd.posterior(*reg)
    w = mn + np.linalg.cholesky(Sn) @ rng.normal(size=len(m))  # a typical posterior draw
    ll = stats.norm(X @ w, np.sqrt(s2)).logpdf(y).sum()
    lp = stats.multivariate_normal(m, S).logpdf(w)
    lq = stats.multivariate_normal(mn, Sn).logpdf(w)
    assert _close(sd.log_evidence(*reg), ll + lp - lq, rtol=1e-8, atol=1e-10 * (1 + abs(ll) + abs(lp) + abs(lq)))


@given(problems(max_log_cond=2.0))
def test_posterior_matches_precision_form(case):
    """S_N = (S0⁻¹ + XᵀX/σ²)⁻¹, m_N = S_N(S0⁻¹m0 + Xᵀy/σ²) with plain numpy inverses."""
    reg, _ = case
    X, y, s2, m, S = reg
    P0 = np.linalg.inv(S)
    Sn = np.linalg.inv(P0 + X.T @ X / s2)
    mn = Sn @ (P0 @ m + X.T @ y / s2)
    got_m, got_S = sd.posterior(*reg)
    np.testing.assert_allclose(got_S, Sn, rtol=1e-7, atol=1e-10 * np.abs(Sn).max())
    np.testing.assert_allclose(got_m, mn, rtol=1e-7, atol=1e-9 * (1 + np.abs(mn).max()))


@given(problems())
def test_drop_is_a_zero_variance_prior(case):
    """Dropping a set at value c == the same model with a spike prior N(c, 0) on the set."""
    reg, rng = case
    X, y, s2, m, S = reg
    k = len(m)
    drop = rng.random(k) < 0.5
    c = rng.normal(size=drop.sum())
    mr, Sr = m.copy(), S.copy()
    mr[drop] = c
    Sr[drop, :] = 0
    Sr[:, drop] = 0
    a = sd.log_evidence(X, y, s2, m, S, drop, c)
    b = sd.log_evidence(X, y, s2, mr, Sr)
    assert _close(a, b, rtol=1e-10, atol=1e-10)
    # And as an explicit regression on the kept columns.
    keep = ~drop
    ref = sd.log_evidence(X[:, keep], y - X[:, drop] @ c, s2, m[keep], S[np.ix_(keep, keep)]) if keep.any() else (
        stats.norm(0, np.sqrt(s2)).logpdf(y - X @ mr).sum()
    )
    assert _close(a, ref, rtol=1e-10, atol=1e-10)
    mn, Sn = sd.posterior(X, y, s2, m, S, drop, c)
    assert np.array_equal(mn[drop], c) and not Sn[drop].any() and not Sn[:, drop].any()


@given(problems(), st.data())
def test_savage_dickey_identity(case, data):
    """ln p(w_D = c | y) - ln p(w_D = c) == ln p(y | w_D = c, conditional prior) - ln p(y)."""
    reg, rng = case
    X, y, s2, m, S = reg
    k = len(m)
    idx = data.draw(st.lists(st.integers(0, k - 1), min_size=1, max_size=k, unique=True))
    c = rng.normal(size=len(idx)) * rng.choice([0.0, 1.0])
    mc, Sc = sd.conditional_prior(m, S, idx, c)
    lbf = sd.log_evidence(X, y, s2, mc, Sc) - sd.log_evidence(*reg)
    assert _close(sd.savage_dickey(*reg, idx, c), lbf, rtol=1e-8, atol=1e-9)


@given(problems(correlated=False))
def test_savage_dickey_diagonal_prior_is_dropping(case):
    """With an independent prior the conditional prior is the marginal block: SD == drop the coefficient."""
    reg, rng = case
    i = int(rng.integers(len(reg.prior_mean)))
    lbf = sd.log_evidence(*reg, drop=[i]) - sd.log_evidence(*reg)
    assert _close(sd.savage_dickey(*reg, [i]), lbf, rtol=1e-8, atol=1e-9)
    assert _close(sd.log_bayes_factor(*reg, reg.prior_mean, reg.prior_cov, drop=[i]), lbf, rtol=1e-12, atol=1e-12)


@given(problems(correlated=False))
def test_shrinking_to_zero_variance_approaches_dropping(case):
    reg, rng = case
    X, y, s2, m, S = reg
    i = int(rng.integers(len(m)))
    drop = sd.log_evidence(X, y, s2, np.where(np.arange(len(m)) == i, 0.0, m), S, drop=[i])
    gaps = []
    for t in (1e-8, 1e-12, 1e-16, 1e-20):  # the slope in t can be ~1e10 nats when the data are strong
        St = S.copy()
        St[i, i] *= t
        mt = m.copy()
        mt[i] = 0.0
        gaps.append(abs(sd.log_evidence(X, y, s2, mt, St) - drop))
    assert gaps[-1] <= 1e-8 * (1 + abs(drop)) and gaps[-1] <= gaps[0] + 1e-12 * (1 + abs(drop))


def test_bad_input_raises():
    reg = sd.random_regression(np.random.default_rng(0), 3, 5)
    X, y, s2, m, S = reg
    with pytest.raises(ValueError, match="noise_var"):
        sd.log_evidence(X, y, -1.0, m, S)
    with pytest.raises(ValueError, match="y must have shape"):
        sd.log_evidence(X, y[:-1], s2, m, S)
    with pytest.raises(ValueError, match="prior_cov must be"):
        sd.log_evidence(X, y, s2, m, np.eye(2))
    with pytest.raises(ValueError, match="symmetric"):
        sd.log_evidence(X, y, s2, m, S + np.triu(np.ones((3, 3)), 1))
    with pytest.raises(ValueError, match="X must be finite"):
        sd.log_evidence(np.where(X > 0, np.nan, X), y, s2, m, S)
    with pytest.raises(ValueError, match="drop indices"):
        sd.log_evidence(*reg, drop=[5])
    with pytest.raises(ValueError, match="non-negative variances"):
        sd.log_evidence(X, y, s2, m, -S)
    with pytest.raises(ValueError, match="k >= 1"):
        sd.random_regression(np.random.default_rng(0), 0, 5)
