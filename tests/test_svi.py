"""SVI: the conjugate mean-field optimum, the spike-and-slab ELBO, checkpoints, the posterior object."""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given
from hypothesis import strategies as st
from numpyro.infer import TraceMeanField_ELBO
from scipy import special

from sparsebnn import bmr, nets, priors
from sparsebnn.infer import MeanFieldGuide, SVIPosterior, svi
from sparsebnn.model import BNN
from sparsebnn.likelihood import Likelihood


def linear_data(n=40, d=3, sigma=0.5, seed=0):
    """Correlated design, so the mean-field variances 1/Λ_ii differ clearly from the marginals (Λ⁻¹)_ii."""
    rng = np.random.default_rng(seed)
    z = rng.normal(size=(n, d))
    x = z + 0.8 * z[:, :1]
    w = rng.normal(size=d + 1)
    y = np.hstack([x, np.ones((n, 1))]) @ w + sigma * rng.normal(size=n)
    return x, y


def test_conjugate_linear_model_reaches_the_mean_field_optimum():
    """y = Xw + b + ε, w, b ~ N(0, s0²): the mean-field optimum has the exact posterior means and
    variances 1/diag(Λ), Λ = I/s0² + AᵀA/σ² (A = [X, 1])."""
    sigma, s0 = 0.5, 1.0
    x, y = linear_data(sigma=sigma)
    a = np.hstack([x, np.ones((len(x), 1))])
    lam = np.eye(a.shape[1]) / s0**2 + a.T @ a / sigma**2
    mean, mf_var = np.linalg.solve(lam, a.T @ y / sigma**2), 1 / np.diag(lam)
    assert np.min(np.diag(np.linalg.inv(lam)) / mf_var) > 1.2  # mean field is measurably not the marginal
    with jax.enable_x64(True):
        post = svi(nets.mlp([3, 1]), priors.Gaussian(sigma0=s0), (x, y), likelihood=Likelihood("gaussian", sigma),
                   batch_size=None, num_steps=2000, num_particles=1024, init_scale=0.1,
                   optimizer=optax.adam(optax.exponential_decay(0.05, 2000, 1e-3)), chunk_size=1000, progress=False)
        f = post.normal_factors()
    mu = np.concatenate([np.ravel(f["dense_0.w"][0]), np.ravel(f["dense_0.b"][0])])
    var = np.concatenate([np.ravel(f["dense_0.w"][1]), np.ravel(f["dense_0.b"][1])]) ** 2
    np.testing.assert_allclose((mu - mean) / np.sqrt(mf_var), 0, atol=5e-3)
    np.testing.assert_allclose(var / mf_var, 1, atol=1e-2)


def test_spike_slab_elbo_terms():
    """Analytic pieces of the SS-IG ELBO: KL(Bern(σ(θ)) ‖ Bern(π)) per node, and σ(θ_j) · KL(N(μ, s²) ‖ N(0, σ0²))
    for node j's slab weights (the output layer's slab unweighted)."""
    net, pi, s0 = nets.mlp([2, 3, 2]), 0.2, 0.7
    model = BNN(net, priors.SpikeSlabIG(pi=pi, sigma0=s0))
    x, y = np.ones((4, 2)), np.array([0, 1, 1, 0])
    guide = MeanFieldGuide(model, x, y)
    rng = np.random.default_rng(0)
    params = {k: jnp.asarray(rng.normal(size=np.shape(v)), jnp.float32) for k, v in guide.init_params.items()}
    elbo = TraceMeanField_ELBO(sum_sites=False)
    with jax.enable_x64(True):
        params = {k: jnp.asarray(v, jnp.float64) for k, v in params.items()}
        terms = jax.jit(lambda p: elbo.loss(jax.random.key(0), p, model, functools.partial(guide, temperature=0.5), x, y))(params)
    theta = np.asarray(params["dense_0.z.logits"])
    q = special.expit(theta)
    kl_z = np.sum(q * np.log(q / pi) + (1 - q) * np.log((1 - q) / (1 - pi)))
    np.testing.assert_allclose(terms["dense_0.z"], kl_z, rtol=1e-10)

    def kl_normal(site):
        mu, s = np.asarray(params[f"{site}.loc"]), np.exp(np.asarray(params[f"{site}.log_scale"]))
        return 0.5 * (s**2 / s0**2 + mu**2 / s0**2 - 1 - np.log(s**2 / s0**2))

    np.testing.assert_allclose(terms["dense_0.w"], np.sum(q * kl_normal("dense_0.w")), rtol=1e-10)
    np.testing.assert_allclose(terms["dense_0.b"], np.sum(q * kl_normal("dense_0.b")), rtol=1e-10)
    np.testing.assert_allclose(terms["dense_1.w"], np.sum(kl_normal("dense_1.w")), rtol=1e-10)


def digits_subset(n=300):
    from sklearn.datasets import load_digits

    d = load_digits()
    return (d.data[:n] / 16.0).astype(np.float32), d.target[:n]


NET = nets.mlp([64, 16, 10])


def test_checkpoint_resume_is_bit_identical(tmp_path):
    x, y = digits_subset()
    kw = dict(num_steps=60, batch_size=32, chunk_size=20, progress=False, seed=3)
    straight = svi(NET, priors.SpikeSlabIG(pi=0.5), (x, y), **kw)
    ck = tmp_path / "svi.pkl"
    svi(NET, priors.SpikeSlabIG(pi=0.5), (x, y), **{**kw, "num_steps": 40}, checkpoint=ck)
    resumed = svi(NET, priors.SpikeSlabIG(pi=0.5), (x, y), **kw, checkpoint=ck)
    for k in straight.params:
        np.testing.assert_array_equal(straight.params[k], resumed.params[k])
    np.testing.assert_array_equal(straight.losses, resumed.losses)
    with pytest.raises(ValueError, match="checkpoint"):
        svi(NET, priors.SpikeSlabIG(pi=0.5), (x, y), **{**kw, "seed": 4}, checkpoint=ck)


def test_posterior_object_spike_slab():
    x, y = digits_subset()
    post = svi(NET, priors.SpikeSlabGroupHorseshoe(pi=0.3), (x, y), val=(x[:50], y[:50]), num_steps=40, batch_size=32,
               chunk_size=20, progress=False, temperature=optax.linear_schedule(1.0, 0.5, 40))
    assert len(post.losses) == 40 and np.all(np.isfinite(post.losses))
    assert [row["step"] for row in post.history] == [20, 40]
    assert {"val_accuracy", "val_nll", "nodes_kept", "nodes_kept/dense_0", "temperature"} <= set(post.history[-1])
    assert post.history[0]["temperature"] > post.history[1]["temperature"]
    probs = post.inclusion_probs()
    assert post.history[-1]["nodes_kept/dense_0"] == np.mean(np.asarray(probs["dense_0"]) >= 0.5)
    assert set(probs) == {"dense_0"} and probs["dense_0"].shape == (16,)
    masks = post.node_masks()
    np.testing.assert_array_equal(masks["dense_0"], np.asarray(probs["dense_0"]) >= 0.5)
    out = post.predict(x[:7], n_samples=5)
    assert out.shape == (5, 7, 10)
    off = {"dense_0": np.arange(16) % 2 == 0}
    params = post.sample_params(jax.random.key(1), 4, masks=off)
    assert np.all(np.asarray(params["dense_0"]["w"])[:, :, 1::2] == 0)
    assert np.all(np.asarray(params["dense_0"]["w"])[:, :, 0::2] != 0)  # kept nodes: indicators set to 1
    with pytest.raises(ValueError, match="BMR"):
        post.node_masks("bmr")


def untrained_posterior(prior, x, y, seed=0):
    """A posterior object with random guide parameters (no training: checks the bookkeeping only)."""
    model = BNN(NET, prior)
    guide = MeanFieldGuide(model, x[:8], y[:8], n_data=len(x))
    rng = np.random.default_rng(seed)
    params = {k: jnp.asarray(v + rng.normal(0, 0.5, np.shape(v)), jnp.float32) for k, v in guide.init_params.items()}
    return SVIPosterior(model, guide, params, len(x), np.zeros(0), [], 0.0, 0.0)


def test_gaussian_posterior_prunes_with_bmr():
    x, y = digits_subset()
    post = untrained_posterior(priors.Gaussian(sigma0=0.5), x, y)
    with pytest.raises(ValueError, match="indicator"):
        post.node_masks("indicator")
    df = post.delta_f()
    mu, sd = post.normal_factors()["dense_0.w"]
    np.testing.assert_allclose(df["dense_0"]["w"], bmr.delta_f(mu, sd**2, 0.0, 0.25, 0.0, 0.0), rtol=1e-6)
    masks = post.node_masks()
    np.testing.assert_array_equal(masks["dense_0"], np.asarray(bmr.node_delta_f(df, NET.layers[0])) <= 0)
    wm = post.weight_masks()
    np.testing.assert_array_equal(wm["dense_1"]["w"], np.asarray(df["dense_1"]["w"]) <= 0)
    assert 0 < wm["dense_1"]["w"].sum() < wm["dense_1"]["w"].size
    # iterative BMR: the pruned weights' prior becomes a spike; SVI keeps their effective weights at exactly 0
    spike = {k: {kk: np.where(v, 0.25, 0.0) for kk, v in m.items()} for k, m in wm.items()}
    post2 = svi(NET, priors.Gaussian(sigma0=0.5, variance=spike), (x, y), num_steps=20, batch_size=32,
                chunk_size=20, progress=False, init=post.params)
    w = np.asarray(post2.sample_params(jax.random.key(0), 2)["dense_1"]["w"])
    assert np.all(w[:, ~wm["dense_1"]["w"]] == 0) and np.all(w[:, wm["dense_1"]["w"]] != 0)
    np.testing.assert_array_equal(np.asarray(post2.delta_f()["dense_1"]["w"])[~wm["dense_1"]["w"]], 0.0)


def test_horseshoe_bmr_on_decentered_sites():
    x, y = digits_subset()
    post = untrained_posterior(priors.RegularizedHorseshoe(tiered=True), x, y)
    mu, sd = post.normal_factors()["dense_0.w_decentered"]
    np.testing.assert_allclose(post.delta_f()["dense_0"]["w"], bmr.delta_f(mu, sd**2, 0.0, 1.0, 0.0, 0.0), rtol=1e-6)
    assert post.node_masks()["dense_0"].shape == (16,)
    with pytest.raises(ValueError, match="BMR"):
        untrained_posterior(priors.RegularizedHorseshoe(centered=True), x, y).delta_f()


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(batch_size=1000), "batch_size"),
        (dict(batch_size=0), "batch_size"),
        (dict(num_steps=0), "num_steps"),
        (dict(temperature=0.0), "temperature"),
        (dict(init={"nope": 1.0}), "nope"),
        (dict(init={"dense_0.w.loc": np.zeros(3)}), "shape"),
        (dict(init_scale=-1.0), "init_scale"),
        (dict(init_inclusion=1.0), "init_inclusion"),
        (dict(batch_size=31, devices=jax.local_devices() * 2), "divisible"),
    ],
)
def test_bad_arguments_raise(kwargs, match):
    x, y = digits_subset()
    with pytest.raises(ValueError, match=match):
        svi(NET, priors.SpikeSlabIG(pi=0.5), (x, y), **{"num_steps": 1, "progress": False, **kwargs})


def test_bad_data_raises():
    x, y = digits_subset()
    with pytest.raises(ValueError, match="x must have shape"):
        svi(NET, priors.Gaussian(), (x[:, :10], y), num_steps=1, progress=False)
    bad = x.copy()
    bad[0, 0] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        svi(NET, priors.Gaussian(), (bad, y), num_steps=1, progress=False)
    with pytest.raises(ValueError, match="integer class labels"):
        svi(NET, priors.Gaussian(), (x, y + 0.5), num_steps=1, progress=False)
    with pytest.raises(ValueError, match="data"):
        svi(NET, priors.Gaussian(), x, num_steps=1, progress=False)


@given(size=st.integers(1, 10**7), draws=st.integers(1, 2000))
def test_noise_pool_size_bounds_its_cost(size, draws):
    """The pool holds ≥ 2P normals (room for a random window) and costs per draw at most 1/16 of fresh
    normals plus the 2P minimum spread over the chunk, never more than fresh normals beyond that minimum."""
    from sparsebnn.infer._loop import POOL_MAX, noise_pool

    n = jax.eval_shape(lambda k: noise_pool(k, 0, size, draws), jax.random.key(0)).shape[0]
    assert n >= 2 * size
    assert n <= max(2 * size, min(draws * size / 16 + 1, POOL_MAX))
    assert n == 2 * size or n == POOL_MAX or abs(n - draws * size / 16) < 1


def test_pooled_noise_is_a_window_of_the_pool():
    """With a pool, every Gaussian factor's ε is one window of consecutive pool entries, in site order."""
    net = nets.mlp([3, 4, 2])
    model = BNN(net, priors.Gaussian())
    x, y = np.ones((4, 3)), np.array([0, 1, 1, 0])
    guide = MeanFieldGuide(model, x, y)
    params = {k: jnp.zeros_like(v) for k, v in guide.init_params.items()}
    pool = jnp.arange(3 * guide.noise_size, dtype=jnp.float32)
    for seed in range(5):
        draw = guide.rsample(params, jax.random.key(seed), pool=pool)  # μ = 0, σ = exp(0) = 1: the draw is ε
        eps = np.concatenate([np.ravel(draw[s.name]) for s in guide.sites])
        start = int(eps[0])
        np.testing.assert_array_equal(eps, np.arange(start, start + guide.noise_size))
    with pytest.raises(ValueError, match="pool"):
        guide.rsample(params, jax.random.key(0), pool=pool[: guide.noise_size - 1])


def test_weight_noise_must_be_known():
    with pytest.raises(ValueError, match="weight_noise"):
        svi(nets.mlp([3, 2]), priors.Gaussian(), (np.ones((4, 3)), np.array([0, 1, 1, 0])), batch_size=None,
            weight_noise="shared")


def test_init_from_a_posterior_leaves_it_intact():
    """The jitted chunk donates its state; a posterior passed as ``init`` must keep its own arrays."""
    data = (np.random.default_rng(0).normal(size=(16, 3)), np.arange(16) % 2)
    kw = dict(batch_size=None, num_steps=5, chunk_size=5, progress=False)
    post = svi(nets.mlp([3, 2]), priors.Gaussian(), data, **kw)
    svi(nets.mlp([3, 2]), priors.Gaussian(), data, init=post.params, **kw)
    assert all(np.all(np.isfinite(np.asarray(v))) for v in post.params.values())
    assert not any(v.is_deleted() for v in post.guide.init_params.values())  # the guide's defaults survive too


def test_identical_calls_reuse_the_compiled_chunk():
    """A second svi() with the same model, settings and shapes compiles nothing new, even with another seed
    (the keys are arguments of the compiled program), and still gives that seed's own numbers."""
    from sparsebnn.infer import _loop

    x, y = digits_subset()
    kw = dict(num_steps=20, batch_size=32, chunk_size=10, progress=False)
    a = svi(NET, priors.SpikeSlabIG(pi=0.5), (x, y), seed=11, **kw)
    n = len(_loop._COMPILED)
    b = svi(NET, priors.SpikeSlabIG(pi=0.5), (x, y), seed=12, **kw)
    c = svi(NET, priors.SpikeSlabIG(pi=0.5), (x, y), seed=11, **kw)
    assert len(_loop._COMPILED) == n
    assert not np.allclose(a.losses, b.losses)
    np.testing.assert_array_equal(a.losses, c.losses)
