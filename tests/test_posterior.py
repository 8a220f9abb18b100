"""The posterior contract (sparsebnn.posterior): every engine's posterior passes the same checks."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from sparsebnn import bmr, data, masks, nets, priors
from sparsebnn.infer import laplace, nuts, svi
from sparsebnn.posterior import DRAWS, GaussianFactors, Posterior, spike_delta_f

NET = nets.mlp([4, 5, 3], act="tanh")


@pytest.fixture(scope="module")
def toy():
    ds = data.from_arrays(np.random.default_rng(0).normal(size=(40, 4)), np.arange(40) % 3, seed=0)
    return ds.train


@pytest.fixture(scope="module", params=["svi", "nuts", "laplace"])
def posterior(request, toy) -> Posterior:
    prior = priors.Gaussian(1.0)
    if request.param == "svi":
        return svi(NET, prior, toy, num_steps=40, batch_size=8, chunk_size=20, progress=False, seed=1)
    if request.param == "nuts":
        return nuts(NET, prior, toy, centered=None, num_warmup=30, num_samples=40, num_chains=1, seed=1, warn=False)
    return laplace(NET, priors.Gaussian(1.0, learn="layer"), toy, curvature="diag", epochs=3, batch_size=8,
                   marglik_burnin=1, marglik_every=1, hyper_steps=3, progress=False)


def test_engines_return_posteriors(posterior):
    assert isinstance(posterior, Posterior)
    assert posterior.net is NET and posterior.n_data == 28  # the training split of the 40 rows
    assert posterior.likelihood.kind == "categorical"


def test_draws_and_predictions(posterior, toy):
    x = toy.x[:6]
    draws = posterior.sample_params(jax.random.key(3), 5)
    assert jax.tree.map(jnp.shape, draws) == jax.tree.map(lambda t: (5, *t.shape), NET.init(jax.random.key(0)))
    out = posterior.predict(x)
    assert out.shape == (DRAWS, 6, 3)  # the same default number of draws for every posterior
    again = posterior.predict(x, jax.random.key(0))
    np.testing.assert_array_equal(out, again)  # key=None is key(0): same numbers
    mean = posterior.mean_params(jax.random.key(2), 7)
    ref = jax.tree.map(lambda a: a.mean(0), posterior.sample_params(jax.random.key(2), 7))
    for a, b in zip(jax.tree.leaves(mean), jax.tree.leaves(ref)):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)
    with pytest.raises(ValueError, match="x must have shape"):
        posterior.predict(np.zeros((2, 5)))
    with pytest.raises(ValueError, match="must be a positive integer"):
        posterior.predict(x, n_samples=0)


def test_masks_zero_what_they_drop(posterior, toy):
    node = {"dense_0": np.array([True, False, True, False, True])}
    draws = posterior.sample_params(jax.random.key(1), 4, masks=node)
    assert np.all(np.asarray(draws["dense_0"]["w"])[:, :, [1, 3]] == 0)
    assert np.all(np.asarray(draws["dense_0"]["b"])[:, [1, 3]] == 0)
    weight = masks.to_weights(NET, node)
    out_node = posterior.predict(toy.x[:4], masks=node)
    out_weight = posterior.predict(toy.x[:4], masks=weight)
    np.testing.assert_allclose(out_node, out_weight, rtol=1e-5, atol=1e-6)


def test_gaussian_factors_and_bmr(posterior):
    f = posterior.gaussian_factors()
    assert isinstance(f, GaussianFactors)
    shapes = jax.tree.map(jnp.shape, NET.init(jax.random.key(0)))
    for field in f:
        assert jax.tree.map(jnp.shape, field) == shapes
    assert all(np.all(np.asarray(v) > 0) for v in jax.tree.leaves(f.var))
    assert all(np.all(np.asarray(v) > 0) for v in jax.tree.leaves(f.prior_var))
    df = posterior.delta_f()
    # ΔF of a spike = the Savage–Dickey ratio ln q(0) − ln p(0) of the factors (independent formula)
    for layer in NET.layers:
        for k in ("w", "b"):
            m, v, v0 = (np.asarray(t[layer.name][k], np.float64) for t in f)
            want = -0.5 * np.log(v / v0) - m**2 / (2 * v)
            np.testing.assert_allclose(df[layer.name][k], want, rtol=1e-4, atol=1e-4)
    nodes = posterior.node_masks("bmr")
    assert set(nodes) == {"dense_0"} and nodes["dense_0"].shape == (5,)
    np.testing.assert_array_equal(nodes["dense_0"], np.asarray(bmr.node_delta_f(df, NET.layers[0]) <= 0))
    keep = posterior.weight_masks()
    assert jax.tree.map(np.shape, keep) == shapes
    np.testing.assert_array_equal(keep["dense_1"]["w"], np.asarray(df["dense_1"]["w"]) <= 0)
    assert posterior.inclusion_probs() == {}
    with pytest.raises(ValueError, match="indicators"):
        posterior.node_masks("indicator")


def test_spike_delta_f_is_zero_at_the_spike():
    f = GaussianFactors({"a": jnp.array([0.3, 1.0])}, {"a": jnp.array([0.5, 0.2])}, {"a": jnp.array([1.0, 0.0])})
    df = spike_delta_f(f)
    assert float(df["a"][1]) == 0.0
    np.testing.assert_allclose(df["a"][0], -0.5 * np.log(0.5) - 0.09 / 1.0, rtol=1e-6)


def test_indicator_posteriors_give_inclusion_probabilities(toy):
    post = svi(NET, priors.SpikeSlabIG(pi=0.5), toy, num_steps=20, batch_size=8, chunk_size=20, progress=False)
    probs = post.inclusion_probs()
    assert set(probs) == {"dense_0"} and probs["dense_0"].shape == (5,)
    np.testing.assert_array_equal(post.node_masks()["dense_0"], np.asarray(probs["dense_0"]) >= 0.5)


class _Fixed(Posterior):
    """A posterior with given BMR weight masks or inclusion probabilities (what pruning_masks reads)."""

    def __init__(self, net, keep=None, probs=None):
        self.net, self.keep, self.probs = net, keep, probs or {}

    def sample_params(self, key=None, n=DRAWS, masks=None):
        raise NotImplementedError  # not read by pruning_masks

    def gaussian_factors(self):
        raise NotImplementedError  # not read by pruning_masks

    def weight_masks(self, margin=0.0):
        return self.keep

    def inclusion_probs(self):
        return self.probs


@given(st.integers(0, 2**31 - 1), st.floats(0.0, 1.0))
def test_pruning_masks_drop_a_node_when_its_whole_group_has_gone(seed, keep):
    """BMR weight masks: a node stays while any incoming weight or its bias does (by brute force over every node)."""
    net = nets.mlp([3, 4, 5, 2])
    rng = np.random.default_rng(seed)
    weights = {l.name: {k: rng.random(s) < keep for k, s in (("w", (l.fan_in, l.n_nodes)), ("b", (l.n_nodes,)))}
               for l in net.layers}
    nodes, pruned = _Fixed(net, keep=weights).pruning_masks()
    assert pruned is weights and set(nodes) == {"dense_0", "dense_1"}
    for layer, alive in nodes.items():
        want = [weights[layer]["w"][:, j].any() or weights[layer]["b"][j] for j in range(len(alive))]
        np.testing.assert_array_equal(alive, want)
        assert isinstance(alive, np.ndarray) and alive.dtype == bool


def test_pruning_masks_of_spike_and_slab_are_the_indicator_masks():
    probs = {"dense_0": np.array([0.9, 0.2, 0.5, 0.7, 0.1])}
    nodes, applied = _Fixed(NET, probs=probs).pruning_masks()
    np.testing.assert_array_equal(nodes["dense_0"], [True, False, True, True, False])
    assert applied is nodes
