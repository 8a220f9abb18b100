"""Priors: log densities against scipy, marginals against closed forms, the inclusion formula, validation."""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import numpyro.distributions as dist
import pytest
from hypothesis import given
from hypothesis import strategies as st
from numpyro import handlers
from numpyro.infer.util import log_density
from scipy import integrate, stats

from sparsebnn import nets, priors
from sparsebnn.nets import Layer, Network

N_DATA = 500
NET = nets.mlp([3, 4, 2])  # dense_0 prunable (3 -> 4), dense_1 the output layer (4 -> 2)


def site_info(prior, net):
    """``{site: (shape, support)}`` by abstract evaluation (nothing is compiled)."""
    info = {}

    def f():
        tr = handlers.trace(handlers.seed(prior, 0)).get_trace(net, N_DATA)
        info.update({k: (s["fn"].shape(), s["fn"].support) for k, s in tr.items() if s["type"] == "sample"})
        return 0

    jax.eval_shape(f)
    return info


def prior_log_density(prior, net, values):
    return jax.jit(lambda v: log_density(prior, (net, N_DATA), {}, v)[0])(values)


def random_point(prior, net, rng):
    """Random values in the support of every site of ``prior`` over ``net``."""
    out = {}
    for name, (shape, support) in site_info(prior, net).items():
        if support is dist.constraints.boolean:
            out[name] = rng.integers(0, 2, shape).astype(float)
        elif support is dist.constraints.positive:
            out[name] = rng.lognormal(-0.5, 1.0, shape)
        else:
            out[name] = rng.normal(0.0, 1.5, shape)
    return out


def capped(scale, c):
    return c * scale / np.sqrt(c**2 + scale**2)


def ref_layer_weights(v, layer, sd, centered):
    """log N(w; 0, sd²) for a layer's w and b (sd broadcast over the last axis), or N(ε; 0, 1) if non-centred."""
    total = 0.0
    for k in ("w", "b"):
        if centered:
            total += stats.norm.logpdf(v[f"{layer}.{k}"], 0.0, np.broadcast_to(sd, v[f"{layer}.{k}"].shape)).sum()
        else:
            total += stats.norm.logpdf(v[f"{layer}.{k}_decentered"]).sum()
    return total


def ref_gaussian(prior, v):
    return sum(ref_layer_weights(v, L, prior.sigma0, True) for L in ("dense_0", "dense_1"))


def ref_gaussian_scale(prior, v):
    total = 0.0
    for L in ("dense_0", "dense_1"):
        total += stats.halfcauchy.logpdf(v[f"{L}.scale"], scale=2.0)
        total += ref_layer_weights(v, L, v[f"{L}.scale"], True)
    return total


def ref_horseshoe(prior, v):
    total = 0.0
    for L in ("dense_0", "dense_1"):
        tau = v[f"{L}.tau"]
        total += stats.halfcauchy.logpdf(tau, scale=prior.tau0)
        if prior.slab_df is None:
            c = prior.slab_scale
        else:
            nu, s2 = prior.slab_df, prior.slab_scale**2
            total += stats.invgamma.logpdf(v[f"{L}.c2"], a=nu / 2, scale=nu * s2 / 2)
            c = np.sqrt(v[f"{L}.c2"])
        if prior.tiered:
            lam = v[f"{L}.lambda"]
            total += stats.halfcauchy.logpdf(lam).sum()
            total += ref_layer_weights(v, L, capped(tau * lam, c), prior.centered)
        else:
            for k in ("w", "b"):
                lam = v[f"{L}.lambda_{k}"]
                total += stats.halfcauchy.logpdf(lam).sum()
                if prior.centered:
                    total += stats.norm.logpdf(v[f"{L}.{k}"], 0.0, capped(tau * lam, c)).sum()
                else:
                    total += stats.norm.logpdf(v[f"{L}.{k}_decentered"]).sum()
    return total


def ref_spike_slab(prior, v, slab):
    """Sum over layers of: [log Bern(z; π)] + slab hyperprior + log N(w̃; 0, σ0² ŝ²)."""
    total = 0.0
    for layer in NET.layers:
        L = layer.name
        hyper, shat = slab(L, layer)
        total += hyper
        if layer.prunable:
            total += stats.bernoulli.logpmf(v[f"{L}.z"], prior.pi).sum()
        total += ref_layer_weights(v, L, prior.sigma0 * shat, prior.centered)
    return total


def ref_ss_ig(prior, v):
    return ref_spike_slab(prior, v, lambda L, layer: (0.0, 1.0))


def ref_ss_gl(prior, v):
    def slab(L, layer):
        m = layer.fan_in + 1
        lam2, tau2 = v[f"{L}.lambda2"], v[f"{L}.tau2"]
        hyper = stats.gamma.logpdf(lam2, a=prior.lambda2_shape, scale=1 / prior.lambda2_rate)
        hyper += stats.gamma.logpdf(tau2, a=(m + 1) / 2, scale=2 / lam2).sum()
        return hyper, np.sqrt(tau2)

    return ref_spike_slab(prior, v, slab)


def ref_ss_ghs(prior, v):
    def slab(L, layer):
        c = layer.fan_in + 1.0 if prior.c_reg == "fan_in" else prior.c_reg
        s, tau = v[f"{L}.s"], v[f"{L}.tau"]
        hyper = stats.halfcauchy.logpdf(s, scale=prior.s0) + stats.halfcauchy.logpdf(tau).sum()
        return hyper, capped(s * tau, c)

    return ref_spike_slab(prior, v, slab)


CASES = [
    (priors.Gaussian(sigma0=0.7), ref_gaussian),
    (priors.Gaussian(scale_prior=dist.HalfCauchy(2.0)), ref_gaussian_scale),
    (priors.RegularizedHorseshoe(), ref_horseshoe),
    (priors.RegularizedHorseshoe(tiered=True, centered=True, tau0=0.3), ref_horseshoe),
    (priors.RegularizedHorseshoe(slab_df=None, slab_scale=2.0, centered=True), ref_horseshoe),
    (priors.SpikeSlabIG(pi=0.3, sigma0=0.5), ref_ss_ig),
    (priors.SpikeSlabGroupLasso(pi=0.2), ref_ss_gl),
    (priors.SpikeSlabGroupLasso(pi=0.2, centered=False, lambda2_shape=2.0, lambda2_rate=3.0), ref_ss_gl),
    (priors.SpikeSlabGroupHorseshoe(pi=0.1), ref_ss_ghs),
    (priors.SpikeSlabGroupHorseshoe(pi=0.1, c_reg="fan_in", s0=0.5, centered=False), ref_ss_ghs),
]


@pytest.mark.parametrize("prior,ref", CASES, ids=lambda c: repr(c)[:60] if isinstance(c, priors.Prior) else "")
def test_log_density_matches_scipy(prior, ref):
    rng = np.random.default_rng(0)
    with jax.enable_x64(True):
        for _ in range(3):
            v = random_point(prior, NET, rng)
            got = prior_log_density(prior, NET, v)
            np.testing.assert_allclose(float(got), ref(prior, v), rtol=1e-10, atol=1e-8)


def test_gaussian_per_weight_variance_and_spike():
    rng = np.random.default_rng(1)
    var = {"dense_0": {"w": rng.uniform(0.1, 2.0, (3, 4)), "b": np.array([0.0, 1.0, 0.0, 3.0])}}
    var["dense_0"]["w"][0, 1] = 0.0
    prior = priors.Gaussian(sigma0=0.5, variance=var)
    with jax.enable_x64(True):
        v = random_point(prior, NET, rng)
        got = prior_log_density(prior, NET, v)
        want = 0.0
        for k in ("w", "b"):
            vk = var["dense_0"][k]
            want += stats.norm.logpdf(v[f"dense_0.{k}"], 0.0, np.sqrt(np.where(vk > 0, vk, 1.0))).sum()
        want += ref_layer_weights(v, "dense_1", 0.5, True)
        np.testing.assert_allclose(float(got), want, rtol=1e-10)
        params = handlers.substitute(prior, data=v)(NET, N_DATA)
        w, b = np.asarray(params["dense_0"]["w"]), np.asarray(params["dense_0"]["b"])
    assert w[0, 1] == 0 and b[0] == 0 and b[2] == 0 and np.all(w[np.arange(3) != 0] != 0)
    np.testing.assert_array_equal(b[[1, 3]], v["dense_0.b"][[1, 3]])


def draw(prior, net, n, key, condition=None):
    """``n`` prior draws: (effective params, site values), each with a leading axis ``n``."""
    fn = prior if condition is None else handlers.condition(prior, data=condition)

    def one(k):
        with handlers.trace() as tr, handlers.seed(rng_seed=k):
            params = fn(net, N_DATA)
        return params, {name: s["value"] for name, s in tr.items() if s["type"] == "sample"}

    return jax.jit(jax.vmap(one))(jax.random.split(key, n))


def mixture_abs_cdf(samples, scale_of, density):
    """A callable P(|w| <= t) for w | u ~ N(0, scale_of(u)²), u ~ density: quadrature on a grid of
    200 sample quantiles, interpolated linearly in between (far below the KS test's resolution)."""

    def exact(t):
        f = lambda u: (2 * stats.norm.cdf(t / scale_of(u)) - 1) * density(u)  # noqa: E731
        return integrate.quad(f, 0.0, np.inf, limit=200)[0]

    grid = np.unique(np.concatenate([[0.0], np.quantile(samples, np.linspace(0, 1, 200))]))
    values = np.array([exact(t) for t in grid])
    return lambda t: np.interp(t, grid, values)


def test_ss_gl_marginal_is_group_lasso():
    """Given λ, w̃_j ∝ exp(−λ‖w̃_j‖/σ0) in R^m, so λ‖w̃_j‖/σ0 ~ Gamma(m, 1) (one layer: a single Gamma site)."""
    sigma0, lam2, net = 0.7, 2.5, nets.mlp([3, 5])
    prior = priors.SpikeSlabGroupLasso(sigma0=sigma0, pi=0.5)
    _, v = draw(prior, net, 2000, jax.random.key(0), {"dense_0.lambda2": lam2})
    groups = np.concatenate([np.asarray(v["dense_0.w"]), np.asarray(v["dense_0.b"])[:, None, :]], axis=1)  # (n, m, nodes)
    r = np.sqrt(lam2) * np.linalg.norm(groups, axis=1).ravel() / sigma0
    assert stats.kstest(r, stats.gamma(a=net.layers[0].fan_in + 1).cdf).pvalue > 1e-3


def test_regularized_horseshoe_marginal_and_cap():
    """w = β τ λ̃: the marginal of |w| matches the scale mixture, and the slab caps the scale at c.

    Layer dense_0 has τ = 0.8; in dense_1 a huge τ saturates every local scale at c, so there
    w ~ N(0, c²) (light-tailed, never Cauchy-like)."""
    c, tau = 1.5, 0.8
    prior = priors.RegularizedHorseshoe(slab_df=None, slab_scale=c)
    params, v = draw(prior, NET, 3000, jax.random.key(1), {"dense_0.tau": tau, "dense_1.tau": 1e8})
    w = np.abs(np.asarray(params["dense_0"]["w"])).ravel()[:4000]
    assert stats.kstest(w, mixture_abs_cdf(w, lambda l: capped(tau * l, c), stats.halfcauchy.pdf)).pvalue > 1e-3
    w = np.asarray(params["dense_1"]["w"]).ravel()
    assert abs(w.std() / c - 1) < 0.03
    assert abs(stats.kurtosis(w, fisher=False) - 3) < 0.3
    lam = np.asarray(v["dense_1.lambda_w"])
    assert np.all(np.asarray(priors.capped_scale(1e8 * lam, c)) <= c)


def test_ss_ghs_slab_marginal():
    """Given s, the slab w̃ | τ ~ N(0, σ0² ŝ(τ)²), τ ~ C⁺(0, 1): the |w̃| marginal matches the mixture."""
    s, sigma0 = 0.6, 1.3
    prior = priors.SpikeSlabGroupHorseshoe(pi=0.5, sigma0=sigma0)
    _, v = draw(prior, NET, 3000, jax.random.key(3), {"dense_0.s": s})
    w = np.abs(np.asarray(v["dense_0.w"])[:, 0, :]).ravel()  # one weight per node: independent given s
    cdf = mixture_abs_cdf(w, lambda u: sigma0 * capped(s * u, 1.0), stats.halfcauchy.pdf)
    assert stats.kstest(w, cdf).pvalue > 1e-3
    assert np.all(np.abs(np.asarray(v["dense_0.w"])) < 7 * sigma0)  # ŝ <= c = 1 caps the slab


def test_spike_slab_indicators_and_output_layer():
    """(SS-IG and SS-GL share this code with SS-GHS: :class:`sparsebnn.priors.SpikeSlab`.)"""
    pi = 0.3
    params, v = draw(priors.SpikeSlabGroupHorseshoe(pi=pi), NET, 2000, jax.random.key(4))
    z = np.asarray(v["dense_0.z"])
    assert stats.binomtest(int(z.sum()), z.size, pi).pvalue > 1e-3
    off = z == 0  # (n, nodes): switched-off nodes have exactly zero weights and bias
    assert np.all(np.asarray(params["dense_0"]["w"]).transpose(0, 2, 1)[off] == 0)
    assert np.all(np.asarray(params["dense_0"]["b"])[off] == 0)
    assert "dense_1.z" not in v  # the output layer: slab only
    assert np.all(np.asarray(params["dense_1"]["w"]) != 0)


def test_parameters_outside_layers_are_gaussian():
    base = nets.mlp([3, 4, 2])

    def init(key):
        return {**base.init(key), "norm": {"scale": jnp.ones(4), "shift": jnp.zeros(4)}}

    def apply(params, x):
        return base.apply(params, x) * params["norm"]["scale"].sum()

    net = Network("extra", init, apply, base.layers, base.in_shape, base.out_dim)
    prior = priors.SpikeSlabGroupHorseshoe(pi=0.2, sigma0=0.4)
    rng = np.random.default_rng(5)
    with jax.enable_x64(True):
        v = random_point(prior, net, rng)
        assert {"norm.scale", "norm.shift"} <= set(v)
        full = prior_log_density(prior, net, v)
        extra = stats.norm.logpdf(v["norm.scale"], 0, 0.4).sum() + stats.norm.logpdf(v["norm.shift"], 0, 0.4).sum()
        np.testing.assert_allclose(float(full), ref_ss_ghs(prior, v) + extra, rtol=1e-10)


# ----------------------------------------------------------------------------- inclusion probabilities


def theory_reference(widths, n):
    """The π_l formula of docs/priors.md written out literally for an MLP ``widths = [k_0, ..., k_{L+1}]``."""
    k, L = widths, len(widths) - 2
    u = [(L + 1) ** 2 * (math.log(n) + math.log(L + 1) + math.log(k[l] + 1) + math.log(k[l + 1])) for l in range(L + 1)]
    out = []
    for l in range(L):
        v = (k[l] + 1) ** 2 + sum(math.log(k[m] + 1) for m in range(L + 1)) + L + math.log(k[l + 1]) + math.log(n) + math.log(sum(u))
        out.append(math.exp(-(math.log(k[l + 1]) + 1e-9 * (k[l] + 1) * v)))
    return out


def test_theory_inclusion_design_values():
    got = priors.inclusion_probs(nets.mlp([784, 400, 400, 10]), 60000)
    assert set(got) == {"dense_0", "dense_1"}
    np.testing.assert_allclose([got["dense_0"], got["dense_1"]], [1.54e-3, 2.34e-3], rtol=2e-3)


@given(st.lists(st.integers(1, 3000), min_size=3, max_size=6), st.integers(1, 10**7))
def test_theory_inclusion_matches_formula(widths, n):
    got = priors.inclusion_probs(nets.mlp(widths), n)
    np.testing.assert_allclose(list(got.values()), theory_reference(widths, n), rtol=1e-12)


def test_inclusion_probs_validation():
    net = nets.mlp([5, 6, 7, 2])
    assert priors.inclusion_probs(net, None, 0.25) == {"dense_0": 0.25, "dense_1": 0.25}
    assert priors.inclusion_probs(net, None, {"dense_0": 0.1, "dense_1": 0.2})["dense_1"] == 0.2
    for bad, match in [(1.5, "pi"), (0.0, "pi"), ("thoery", "theory"), ({"dense_0": 0.1}, "dense_1")]:
        with pytest.raises(ValueError, match=match):
            priors.inclusion_probs(net, 100, bad)
    with pytest.raises(ValueError, match="n_data"):
        priors.inclusion_probs(net, None, "theory")


# ----------------------------------------------------------------------------- construction and validation


def test_get_and_names():
    assert isinstance(priors.get("ss-ghs", c_reg=2.0), priors.SpikeSlabGroupHorseshoe)
    assert priors.get("tiered-horseshoe").tiered
    for name in ("gaussian", "horseshoe", "ss-ig", "ss-gl", "ss-ghs"):
        assert priors.get(name).name == name
    with pytest.raises(ValueError, match="unknown prior"):
        priors.get("laplace")


@pytest.mark.parametrize(
    "make,match",
    [
        (lambda: priors.Gaussian(sigma0=-1.0), "sigma0"),
        (lambda: priors.Gaussian(sigma0=float("nan")), "sigma0"),
        (lambda: priors.Gaussian(scale_prior=dist.Normal(0, 1)), "positive"),
        (lambda: priors.Gaussian(scale_prior=dist.HalfCauchy(1.0), variance={}), "either"),
        (lambda: priors.RegularizedHorseshoe(tau0=0.0), "tau0"),
        (lambda: priors.RegularizedHorseshoe(slab_df=-2.0), "slab_df"),
        (lambda: priors.SpikeSlabIG(pi=1.0), "pi"),
        (lambda: priors.SpikeSlabIG(pi="half"), "pi"),
        (lambda: priors.SpikeSlabGroupLasso(lambda2_rate=0.0), "lambda2_rate"),
        (lambda: priors.SpikeSlabGroupHorseshoe(c_reg="big"), "c_reg"),
        (lambda: priors.SpikeSlabGroupHorseshoe(s0=-1.0), "s0"),
    ],
)
def test_bad_hyperparameters_raise(make, match):
    with pytest.raises(ValueError, match=match):
        make()


@pytest.mark.parametrize(
    "variance,match",
    [
        ({"dense_9": {}}, "dense_9"),
        ({"dense_0": {"w": np.ones((3, 4))}}, "leaves"),
        ({"dense_0": {"w": np.ones((4, 3)), "b": np.ones(4)}}, "shape"),
        ({"dense_0": {"w": -np.ones((3, 4)), "b": np.ones(4)}}, ">= 0"),
        ({"dense_0": {"w": np.full((3, 4), np.nan), "b": np.ones(4)}}, "finite"),
    ],
)
def test_bad_variance_raises(variance, match):
    with pytest.raises(ValueError, match=match):
        handlers.seed(priors.Gaussian(variance=variance), 0)(NET, N_DATA)


def test_conv_layers_get_node_groups_on_last_axis():
    """A prior over a conv layer (HWIO weights) puts one indicator and one scale per output channel."""
    layer = Layer("conv_0", "conv", 3 * 3 * 2, 5)

    def init(key):
        return {"conv_0": {"w": jnp.zeros((3, 3, 2, 5)), "b": jnp.zeros(5)}}

    net = Network("c", init, lambda p, x: x, (layer, Layer("out", "dense", 5, 2, prunable=False)), (4, 4, 2), 2)
    init2 = lambda key: {**init(key), "out": {"w": jnp.zeros((5, 2)), "b": jnp.zeros(2)}}  # noqa: E731
    net = net._replace(init=init2)
    prior = priors.SpikeSlabGroupHorseshoe(pi=0.5)
    v = random_point(prior, net, np.random.default_rng(6))
    assert v["conv_0.z"].shape == (5,) and v["conv_0.tau"].shape == (5,) and v["conv_0.w"].shape == (3, 3, 2, 5)
    v["conv_0.z"] = np.array([1.0, 0.0, 1.0, 0.0, 0.0])
    params = jax.jit(lambda v: handlers.substitute(prior, data=v)(net, N_DATA))(v)
    w = np.asarray(params["conv_0"]["w"])
    assert np.all(w[..., [1, 3, 4]] == 0) and np.all(w[..., [0, 2]] != 0)
