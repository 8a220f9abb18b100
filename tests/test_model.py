"""The BNN as a NumPyro model: site names, likelihoods against scipy, minibatch scaling, conditioning, MCMC."""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest
from numpyro import handlers
from numpyro.infer import MCMC, NUTS, DiscreteHMCGibbs, Predictive
from numpyro.infer.util import log_density
from scipy import special, stats

from sparsebnn import nets, priors
from sparsebnn.model import BNN
from sparsebnn.likelihood import Likelihood

NET = nets.mlp([3, 4, 3])


def data(n=10, seed=0, out=3):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, 3)), rng.integers(0, out, n)


def sites(model, *args, **kwargs):
    tr = handlers.trace(handlers.seed(model, 0)).get_trace(*args, **kwargs)
    return {k: s for k, s in tr.items()}


def test_site_names_are_readable():
    x, y = data()
    tr = sites(BNN(NET, priors.SpikeSlabGroupHorseshoe(pi=0.1)), x, y)
    assert list(tr) == ["dense_0.s", "dense_0.tau", "dense_0.z", "dense_0.w", "dense_0.b", "dense_1.s", "dense_1.tau",
                        "dense_1.w", "dense_1.b", "f", "data", "y"]
    assert tr["dense_0.z"]["fn"].support is dist.constraints.boolean
    assert tr["y"]["is_observed"] and tr["f"]["type"] == "deterministic"


def values_of(model, *args, **kwargs):
    def run(*args):
        return {k: s["value"] for k, s in sites(model, *args, **kwargs).items() if s["type"] == "sample" and not s["is_observed"]}

    return jax.jit(run)(*args)


def jit_log_density(model, args, kwargs, values):
    return jax.jit(lambda v: log_density(model, args, kwargs, v)[0])(values)


def test_categorical_likelihood_and_minibatch_scaling():
    """ln p = ln prior + (N / B) Σ ln softmax(f)_y, with the prior untouched by the scaling."""
    x, y = data(8)
    model = BNN(NET, priors.Gaussian(sigma0=0.8))
    with jax.enable_x64(True):
        v = values_of(model, x, y)
        params = jax.jit(model.params)(v)
        logp = special.log_softmax(np.asarray(NET.apply(params, x)), axis=1)[np.arange(8), y].sum()
        lp_prior = sum(stats.norm.logpdf(np.asarray(a), 0, 0.8).sum() for a in v.values())
        full = jit_log_density(model, (x, y), {}, v)
        scaled = jit_log_density(model, (x, y), {"n_data": 100}, v)
    np.testing.assert_allclose(float(full), lp_prior + logp, rtol=1e-10)
    np.testing.assert_allclose(float(scaled), lp_prior + 100 / 8 * logp, rtol=1e-10)


def test_gaussian_likelihood_known_and_learned_noise():
    net = nets.mlp([3, 5, 1])
    x, _ = data(6)
    y = np.random.default_rng(1).normal(size=6)
    with jax.enable_x64(True):
        known = BNN(net, priors.Gaussian(), Likelihood("gaussian", 0.3))
        v = values_of(known, x, y)
        mean = np.asarray(net.apply(jax.jit(known.params)(v), x))[:, 0]
        prior_lp = sum(stats.norm.logpdf(np.asarray(a)).sum() for a in v.values())
        got = jit_log_density(known, (x, y), {}, v)
        np.testing.assert_allclose(float(got), prior_lp + stats.norm.logpdf(y, mean, 0.3).sum(), rtol=1e-10)
        learned = BNN(net, priors.Gaussian(), Likelihood("gaussian", dist.HalfNormal(2.0)))
        v2 = {**v, "noise": jnp.float64(0.7)}
        got = jit_log_density(learned, (x, y), {}, v2)
        want = prior_lp + stats.halfnorm.logpdf(0.7, scale=2.0) + stats.norm.logpdf(y, mean, 0.7).sum()
        np.testing.assert_allclose(float(got), want, rtol=1e-10)


def test_conditioning_indicators_switches_nodes_off():
    x, y = data()
    model = BNN(NET, priors.SpikeSlabIG(pi=0.5))
    off = handlers.condition(model, data={"dense_0.z": jnp.zeros(4)})
    f, v = jax.jit(lambda x, y: (sites(off, x, y)["f"]["value"], values_of(off, x, y)))(x, y)
    np.testing.assert_allclose(f, jnp.broadcast_to(v["dense_1.b"], f.shape), rtol=1e-6)  # only the output bias is left


def test_init_sites_reproduce_network_init():
    for prior in (priors.RegularizedHorseshoe(), priors.SpikeSlabGroupLasso(pi=0.2), priors.Gaussian()):
        model = BNN(NET, prior)
        params0 = NET.init(jax.random.key(7))
        v = jax.jit(model.init_sites, static_argnames="n_data")(jax.random.key(1), params0, n_data=50)
        got = jax.jit(model.params, static_argnums=1)(v, 50)
        for a, b in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(params0)):
            np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7)
    with pytest.raises(ValueError, match="missing"):
        model.params({"dense_0.w": jnp.zeros((3, 4))})


def test_horseshoe_global_scale_starts_at_the_rms_of_the_initial_weights():
    """Non-centred tiered horseshoe: τ_L = √(mean w²) of layer L, so the ε = w / (τ λ̃) start at unit scale."""
    model = BNN(NET, priors.get(name="tiered-horseshoe"))
    params0 = NET.init(jax.random.key(7))
    v = model.init_sites(jax.random.key(1), params0, n_data=50)
    for layer in NET.layers:
        w = np.asarray(params0[layer.name]["w"])
        np.testing.assert_allclose(v[f"{layer.name}.tau"], np.sqrt(np.mean(w**2)), rtol=1e-6)
        eps = np.asarray(v[f"{layer.name}.w_decentered"])
        assert 0.5 < np.sqrt(np.mean(eps**2)) < 1.5  # unit scale (≈ 1 up to the slab cap and the node-wise λ = 1)
    assert priors.Gaussian().init_values(NET, params0) == {}


def test_predictive_draws_labels():
    x, _ = data(5)
    samples = Predictive(BNN(NET, priors.SpikeSlabIG(pi=0.5)), num_samples=7)(jax.random.key(0), x)
    assert samples["y"].shape == (7, 5) and samples["dense_0.z"].shape == (7, 4) and samples["f"].shape == (7, 5, 3)


@pytest.mark.parametrize(
    "make,match",
    [
        (lambda: BNN(NET, priors.Gaussian(), "poisson"), "likelihood"),
        (lambda: Likelihood("categorical", noise=0.5), "gaussian likelihood only"),
        (lambda: BNN(NET, priors.Gaussian(), "gaussian"), "noise"),
        (lambda: BNN(NET, priors.Gaussian(), Likelihood("gaussian", -1.0)), "noise"),
        (lambda: BNN(NET, priors.Gaussian(), Likelihood("gaussian", dist.Normal(0, 1))), "positive"),
    ],
)
def test_bad_model_arguments(make, match):
    with pytest.raises(ValueError, match=match):
        make()


def test_bad_data_raises():
    model = BNN(NET, priors.Gaussian())
    x, y = data(6)
    with pytest.raises(ValueError, match="x must have shape"):
        sites(model, np.zeros((6, 4)), y)
    with pytest.raises(ValueError, match="y must have shape"):
        sites(model, x, y[:5])
    with pytest.raises(ValueError, match="n_data"):
        sites(model, x, y, n_data=3)
    with pytest.raises(ValueError, match="net must be"):
        BNN("mlp", priors.Gaussian())
    with pytest.raises(ValueError, match="prior must be"):
        BNN(NET, "gaussian")


@pytest.mark.slow
def test_discrete_hmc_gibbs_runs_on_indicators():
    """The indicators are genuine Bernoulli sites: NumPyro's DiscreteHMCGibbs samples them beside NUTS."""
    net = nets.mlp([2, 3, 2])
    x, y = data(30, out=2)
    x = x[:, :2]
    mcmc = MCMC(DiscreteHMCGibbs(NUTS(BNN(net, priors.SpikeSlabIG(pi=0.5)))), num_warmup=50, num_samples=50,
                progress_bar=False)
    mcmc.run(jax.random.key(0), x, y)
    z = mcmc.get_samples()["dense_0.z"]
    assert z.shape == (50, 3) and set(np.unique(np.asarray(z))) <= {0, 1}


def test_labels_outside_the_network_outputs_are_rejected_before_fitting():
    from sparsebnn.infer import svi

    model = BNN(NET, priors.Gaussian())
    x, y = data(6)
    for bad in (3, -1, 1.5):
        with pytest.raises(ValueError, match=r"class labels in \[0, 3\)"):
            sites(model, x, np.where(np.arange(6) == 0, bad, y))
    y = y.copy()
    y[0] = 5  # a label the 3-output network cannot predict: caught before any step, not as a NaN loss
    with pytest.raises(ValueError, match=r"class labels in \[0, 3\).*\[0, 5\]"):
        svi(NET, priors.Gaussian(), (x, y), num_steps=2, batch_size=6, progress=False)
