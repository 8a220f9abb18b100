"""Replica exchange (``NUTSOptions(replicas=R)``): swap acceptance, exactness on a conjugate model and under a flat
likelihood with enumerated indicators."""

from __future__ import annotations

import numpyro  # noqa: F401  (before arviz, see sparsebnn.diagnostics)
import arviz as az
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from sparsebnn import nets, priors
from sparsebnn.infer import NUTSOptions, nuts
from sparsebnn.infer._nuts import swap_moves, temperatures
from sparsebnn.likelihood import Likelihood
from theory import savage_dickey as sd

Z = 4.5


def _ess(draws):
    return np.asarray(az.ess(az.from_dict({"posterior": {"v": draws}}), method="bulk")["v"].values)


def test_swap_acceptance_is_the_tempering_formula():
    """With U(θ, β) = θ²/2 − β ℓ(θ), a swap of (θ_0, θ_1) between β_0, β_1 is accepted w.p.
    min(1, exp((β_0 − β_1)(ℓ(θ_1) − ℓ(θ_0))))."""
    ell = lambda z: -0.5 * (z["a"] - 2.0) ** 2  # noqa: E731
    potential = lambda z, b: 0.5 * z["a"] ** 2 - b * ell(z)  # noqa: E731
    betas = jnp.array([1.0, 0.4, 0.1])
    z = {"a": jnp.array([1.5, 0.2, -1.0])}
    pe = jax.vmap(potential)(z, betas)
    n = 20000
    src, acc = jax.vmap(lambda k: swap_moves(potential, betas, z, pe, 0, k))(jax.random.split(jax.random.key(0), n))
    want = min(1.0, float(np.exp((1.0 - 0.4) * (ell({"a": 0.2}) - ell({"a": 1.5})))))
    freq = float(acc[:, 0].mean())
    assert abs(freq - want) < Z * np.sqrt(want * (1 - want) / n), (freq, want)
    assert not bool(acc[:, 1].any())  # odd pair not proposed at parity 0
    np.testing.assert_array_equal(np.asarray(src)[np.asarray(acc[:, 0])], [[1, 0, 2]] * int(acc[:, 0].sum()))
    np.testing.assert_allclose(temperatures(4, 0.001), [1.0, 0.1, 0.01, 0.001])
    assert temperatures(1, 0.5).tolist() == [1.0]


def test_replica_exchange_matches_the_exact_conjugate_posterior():
    with jax.enable_x64(True):
        rng = np.random.default_rng(3)
        n, k, noise = 25, 3, 0.7
        X = rng.normal(size=(n, k))
        y = X @ np.array([0.8, -0.3, 0.0]) + 0.5 + noise * rng.normal(size=n)
        prior = priors.Gaussian(variance={"dense_0": {"w": np.ones((k, 1)), "b": np.array([4.0])}})
        post = nuts(nets.mlp([k, 1]), prior, (X, y), likelihood=Likelihood("gaussian", noise), num_warmup=200,
                    num_samples=300, num_chains=2, replicas=3, beta_min=0.1, seed=0)
        p = post.sample_params(n=None)
        draws = np.concatenate([np.asarray(p["dense_0"]["w"])[..., 0], np.asarray(p["dense_0"]["b"])], axis=1)
    mean, cov = sd.posterior(np.hstack([X, np.ones((n, 1))]), y, noise**2, np.zeros(k + 1), np.array([1.0] * k + [4.0]))
    v, e = np.diag(cov), _ess(draws.reshape(2, -1, k + 1))
    assert np.all(np.abs((draws.mean(0) - mean) / np.sqrt(v / e)) < Z)
    assert np.all(np.abs((draws.var(0, ddof=1) - v) / (v * np.sqrt(2 / e))) < Z)
    assert post.ok, post.problems
    stats_ = post.trace["sample_stats"]
    assert stats_["swap_accept"].shape == (2, 300, 2) and 0 < float(stats_["swap_accept"].values.mean()) <= 1
    assert post.n_leapfrog >= 3 * 600  # every replica's gradients are counted


def test_replica_exchange_with_enumerated_indicators_recovers_the_prior():
    """Flat likelihood: every tempered target is the prior, P(z_j = 1) = π exactly (Rao–Blackwellised), ε ~ N(0, 1)."""
    pi = 0.3
    x, y = np.zeros((1, 1), np.float32), np.zeros(1, np.float32)
    post = nuts(nets.mlp([1, 2, 1]), priors.SpikeSlabIG(pi=pi), (x, y), likelihood=Likelihood("gaussian", 1e4),
                num_warmup=100, num_samples=300, num_chains=2, replicas=2, indicators="enumerate", seed=1, warn=False)
    np.testing.assert_allclose(post.inclusion_probs()["dense_0"], pi, atol=1e-4)
    eps = post.samples["dense_0.w_decentered"]
    assert np.all(np.abs(eps.reshape(-1, 2).mean(0)) < Z * np.sqrt(1 / _ess(eps).ravel()))
    z = post.samples["dense_0.z"].astype(float)
    assert np.all(np.abs(z.reshape(-1, 2).mean(0) - pi) < Z * np.sqrt(pi * (1 - pi) / _ess(z)))


@pytest.mark.parametrize("kw, match", [(dict(replicas=0), "replicas"), (dict(beta_min=1.0), "beta_min"),
                                       (dict(replicas=2, indicators="gibbs"), "enumerate")])
def test_bad_replica_settings_raise(kw, match):
    x, y = np.zeros((4, 2), np.float32), np.zeros(4, np.float32)
    with pytest.raises(ValueError, match=match):
        nuts(nets.mlp([2, 2, 1]), priors.SpikeSlabIG(pi=0.5), (x, y), likelihood=Likelihood("gaussian", 1.0), **kw)
    assert NUTSOptions(replicas=4).replicas == 4


def test_batched_sampler_sums_indicators_out_and_draws_them():
    """batched_sampler (SBC) with node indicators: summed out in NUTS, then drawn exactly per kept draw."""
    from sparsebnn.infer import batched_sampler
    from sparsebnn.model import BNN

    x = np.linspace(-1, 1, 6, dtype=np.float32)[:, None]
    model = BNN(nets.mlp([1, 2, 1], act="tanh"), priors.SpikeSlabIG(pi=0.5, centered=False), Likelihood("gaussian", 0.3))
    run = batched_sampler(model, x, np.zeros(6, np.float32), NUTSOptions(num_warmup=20, num_samples=8, max_tree_depth=4))
    ys = np.stack([np.tanh(2 * x[:, 0]), np.zeros(6)]).astype(np.float32)
    samples, stats_ = run(jax.random.split(jax.random.key(0), 2), np.stack([x, x]), ys)
    assert samples["dense_0.z"].shape == (2, 8, 2) and set(np.unique(samples["dense_0.z"])) <= {0, 1}
    assert samples["dense_0.w_decentered"].shape == (2, 8, 1, 2) and stats_["diverging"].shape == (2, 8)
