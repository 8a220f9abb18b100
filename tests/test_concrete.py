"""The binary Concrete relaxation: distribution, T → 0 limit, straight-through, analytic Bernoulli KL."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest
from hypothesis import given
from hypothesis import strategies as st
from numpyro.distributions.kl import kl_divergence
from scipy import special, stats

from sparsebnn.infer import ConcreteBernoulli, bernoulli_kl

N = 20000


@pytest.mark.parametrize("theta,T", [(0.0, 0.5), (1.3, 0.5), (-2.0, 1.0), (0.7, 2.0)])
def test_relaxed_sample_has_concrete_cdf(theta, T):
    """P(z̃ <= y) = σ(T logit(y) − θ)."""
    z = np.asarray(ConcreteBernoulli(T, theta, hard=False).sample(jax.random.key(0), (N,)), np.float64)
    z = z[(z > 0) & (z < 1)]  # float32 saturates a few samples to exactly 0 or 1
    assert stats.kstest(z, lambda y: special.expit(T * special.logit(y) - theta)).pvalue > 1e-3


@pytest.mark.parametrize("theta", [-1.5, 0.0, 0.4, 2.5])
def test_hard_sample_is_exactly_bernoulli(theta):
    """The straight-through value is 1[θ + logistic noise > 0]: Bernoulli(σ(θ)) at every temperature."""
    for T in (0.1, 0.5, 3.0):
        z = np.asarray(ConcreteBernoulli(T, theta).sample(jax.random.key(1), (N,)))
        assert set(np.unique(z)) <= {0.0, 1.0}
        assert stats.binomtest(int(z.sum()), N, special.expit(theta)).pvalue > 1e-3


def test_zero_temperature_limit():
    """As T → 0 the relaxed sample collapses onto the hard one and its mean onto σ(θ)."""
    theta, key = 0.8, jax.random.key(2)
    hard = np.asarray(ConcreteBernoulli(1.0, theta).sample(key, (N,)))
    gaps, means = [], []
    for T in (1.0, 0.1, 0.01, 0.001):
        soft = np.asarray(ConcreteBernoulli(T, theta, hard=False).sample(key, (N,)))
        gaps.append(np.mean(np.abs(soft - hard) > 1e-3))
        means.append(soft.mean())
    assert np.all(np.diff(gaps) < 0) and gaps[-1] < 0.01
    assert abs(means[-1] - special.expit(theta)) < 3 * np.sqrt(0.25 / N) + 0.005
    # same noise, same hard decisions: the limit is the very same Bernoulli draw
    np.testing.assert_array_equal(np.asarray(ConcreteBernoulli(1e-4, theta, hard=False).sample(key, (N,))) > 0.5, hard > 0.5)


def test_straight_through_gradient_is_the_relaxed_gradient():
    key = jax.random.key(3)

    def draw(theta, hard):
        return ConcreteBernoulli(0.5, theta, hard=hard).sample(key, (64,)).sum()

    g_hard = jax.grad(draw)(0.3, True)
    g_soft = jax.grad(draw)(0.3, False)
    assert g_soft > 0
    np.testing.assert_allclose(g_hard, g_soft, rtol=1e-6)


def bernoulli_kl_reference(q, p):
    return q * np.log(q / p) + (1 - q) * np.log((1 - q) / (1 - p))


@given(st.floats(-15, 15), st.floats(-15, 15))
def test_bernoulli_kl_formula(a, b):
    with jax.enable_x64(True):
        got = float(bernoulli_kl(jnp.float64(a), jnp.float64(b)))
    q, p = special.expit(a), special.expit(b)
    assert got >= -1e-12
    np.testing.assert_allclose(got, bernoulli_kl_reference(q, p), rtol=1e-8, atol=1e-12)


def test_registered_kl_against_bernoulli():
    """TraceMeanField_ELBO finds the analytic KL for Concrete (and exact Bernoulli) guides, expanded models too."""
    theta = jnp.array([-2.0, 0.0, 3.0])
    want = bernoulli_kl_reference(special.expit(np.asarray(theta)), 0.01)
    for q in (ConcreteBernoulli(0.5, theta), dist.BernoulliLogits(theta)):
        np.testing.assert_allclose(kl_divergence(q, dist.Bernoulli(probs=0.01).expand((3,))), want, rtol=1e-5)
        np.testing.assert_allclose(kl_divergence(q, dist.Bernoulli(logits=special.logit(0.01))), want, rtol=1e-5)
