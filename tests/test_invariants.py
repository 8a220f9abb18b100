"""sparsebnn.invariants (relabelling-invariant functionals, canonical node order) and the diagnostics' definitions."""

from __future__ import annotations

import numpyro  # noqa: F401  (before arviz, see sparsebnn.diagnostics)
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from numpyro import handlers
from scipy import stats

from sparsebnn import invariants, nets, priors
from sparsebnn.diagnostics import diagnose, split_rhat
from sparsebnn.infer import to_datatree
from sparsebnn.infer._nuts import Draws, from_draws
from sparsebnn.likelihood import Likelihood
from sparsebnn.model import BNN

# ----------------------------------------------------------------------------- exact invariance (float64)

WIDTHS = [2, 3, 4, 1]


def _model(prior) -> BNN:
    return BNN(nets.mlp(WIDTHS, act="tanh"), prior, Likelihood("gaussian", 0.5))


MODELS = {"ss-ghs": _model(priors.SpikeSlabGroupHorseshoe(pi=0.5, centered=False)),
          "horseshoe": _model(priors.RegularizedHorseshoe(tau0=0.3)),
          "ss-gl": _model(priors.SpikeSlabGroupLasso(pi=0.5))}


def _prior_draw(model, seed, x):
    tr = handlers.trace(handlers.seed(handlers.block(model, hide=["f"]), jax.random.key(seed))).get_trace(x)
    return {k: s["value"] for k, s in tr.items() if s["type"] == "sample" and not s["is_observed"]}, tr["y"]["value"]


@pytest.fixture(scope="module")
def checks():
    """One jitted function per model: everything the property compares, for a draw and its relabelling."""
    out = {}
    for name, model in MODELS.items():
        def run(draw, perms, x, y, model=model, name=name):
            moved = invariants.permute_sites(model.net, draw, perms)
            p, q = model.params(draw, 8), model.params(moved, 8)
            pq = invariants.permute_params(model.net, p, perms)
            g = lambda s, prm: (model.net.apply(prm, x), invariants.sorted_node_norms(model.net, prm),  # noqa: E731
                                invariants.log_likelihood(model, jax.tree_util.tree_map(lambda v: v[None], s), x, y),
                                invariants.active_nodes(s) if name != "horseshoe" else {})
            return (g(draw, p), g(moved, q), q, pq, invariants.canonical_sites(model, draw, 8),
                    invariants.canonical_sites(model, moved, 8))
        out[name] = jax.jit(run)
    return out


@settings(max_examples=60)
@given(seed=st.integers(0, 2**30), name=st.sampled_from(sorted(MODELS)), data=st.data())
def test_functionals_are_invariant_and_canonical_order_undoes_relabelling(checks, seed, name, data):
    model = MODELS[name]
    with jax.enable_x64(True):
        x = jnp.asarray(np.random.default_rng(seed).normal(size=(8, 2)))
        draw, y = _prior_draw(model, seed, x)
        perms = {layer.name: jnp.asarray(data.draw(st.permutations(range(layer.n_nodes))))
                 for layer in model.net.prunable_layers}
        before, after, q, pq, canon, canon_moved = checks[name](draw, perms, x, y)
    assert x.dtype == jnp.float64
    for a, b in zip(jax.tree_util.tree_leaves(q), jax.tree_util.tree_leaves(pq)):  # sites and params permute alike
        np.testing.assert_array_equal(a, b)
    for a, b in zip(jax.tree_util.tree_leaves(before), jax.tree_util.tree_leaves(after)):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)
    assert canon.keys() == draw.keys()
    for k in canon:  # the canonical order maps the relabelled draw back to the same arrays, exactly
        np.testing.assert_array_equal(canon[k], canon_moved[k], err_msg=k)


def test_canonical_order_sorts_nodes_and_keeps_the_function():
    model = MODELS["ss-ghs"]
    x = jnp.asarray(np.random.default_rng(0).normal(size=(8, 2)), jnp.float32)
    draw, _ = _prior_draw(model, 3, x)
    canon = invariants.canonical_sites(model, draw, 8)
    p, c = model.params(draw, 8), model.params(canon, 8)
    np.testing.assert_allclose(model.net.apply(p, x), model.net.apply(c, x), rtol=1e-5, atol=1e-6)
    for layer, norms in invariants.node_norms(model.net, c).items():
        assert np.all(np.diff(np.asarray(norms)) <= 0), (layer, norms)  # decreasing: off nodes (norm 0) last
    probes = invariants.probe_inputs(nets.mlp([1, 2, 1]), np.array([[0.0], [-2.0], [3.0]]), 3)
    np.testing.assert_array_equal(probes[:, 0], [-2.0, 0.5, 3.0])
    with pytest.raises(ValueError, match="probes"):
        invariants.probe_inputs(model.net, np.zeros((0, 2)))


# ----------------------------------------------------------------------------- the verdict is on invariants


def test_post_ok_is_decided_by_the_invariant_diagnostics():
    """Two chains that are exact relabellings of each other: raw R-hat is huge, invariant R-hat ~1, run passes."""
    rng = np.random.default_rng(1)
    model = BNN(nets.mlp([1, 3, 1], act="tanh"), priors.SpikeSlabIG(pi=0.5, centered=False), Likelihood("gaussian", 0.3))
    x = np.linspace(-2, 2, 20, dtype=np.float32)[:, None]
    y = np.tanh(2 * x[:, 0]).astype(np.float32)
    n = 400
    base = {"dense_0.w_decentered": np.array([[2.0, -1.0, 0.3]]), "dense_0.b_decentered": np.array([0.5, 0.0, -0.5]),
            "dense_1.w_decentered": np.array([[1.0], [0.2], [-0.7]]), "dense_1.b_decentered": np.array([0.1])}
    one = {k: (v + 0.05 * rng.normal(size=(n,) + v.shape)).astype(np.float32) for k, v in base.items()}
    one["dense_0.z"] = np.broadcast_to(np.array([1, 1, 0], np.int8), (n, 3)).copy()
    perm = np.array([2, 0, 1])
    other = jax.vmap(lambda s: invariants.permute_sites(model.net, s, {"dense_0": perm}))(one)
    samples = {k: np.stack([one[k], np.asarray(other[k])]) for k in one}
    stats_ = {"diverging": np.zeros((2, n), bool), "n_steps": np.ones((2, n), int)}
    post = from_draws(model, Draws(samples, stats_, None, 1.0, "enumerate"), x, y, warn=False)
    assert post.raw_diagnostics.max_rhat > 1.5 and not post.raw_diagnostics.ok
    assert post.diagnostics.max_rhat < 1.01 and post.ok, post.problems
    assert set(post.invariants) == {"log_lik", "f", "active.dense_0", "norm.dense_0"}
    assert post.invariants["f"].shape == (2, n, invariants.N_PROBES)
    np.testing.assert_array_equal(post.invariants["active.dense_0"], 2.0)
    row = post.diagnostics_row("nuts_")
    assert row["nuts_ok"] and not row["nuts_raw_ok"] and row["nuts_inv_max_rhat"] < 1.01


# ----------------------------------------------------------------------------- Vehtari et al. (2021), in numpy


def _ref_z(a):
    """Rank normalisation: Φ⁻¹((r − 3/8) / (S + 1/4)) over all S values."""
    r = stats.rankdata(a, method="average", axis=None).reshape(a.shape)
    return stats.norm.ppf((r - 0.375) / (a.size + 0.25))


def _ref_split(a):
    h = a.shape[1] // 2
    return np.concatenate([a[:, :h], a[:, a.shape[1] - h:]])


def _ref_rhat(a):
    """sqrt(var⁺ / W), var⁺ = (N−1)/N W + B/N, for (M, N) chains."""
    n = a.shape[1]
    w = a.var(axis=1, ddof=1).mean()
    b = n * a.mean(axis=1).var(ddof=1)
    return np.sqrt(((n - 1) / n * w + b / n) / w)


def _ref_rank_rhat(a):
    s = _ref_split(a)
    return max(_ref_rhat(_ref_z(s)), _ref_rhat(_ref_z(np.abs(s - np.median(s)))))


def _ref_ess(a):
    """ESS of (M, N) chains: ρ̂_0 = 1, ρ̂_t = 1 − (W − mean_m γ̂_{m,t}) / var⁺ with biased autocovariances γ̂, Geyer's
    initial positive then monotone sequence on pair sums ρ̂_{2k} + ρ̂_{2k+1}; τ̂ = −1 + 2 Σ ρ̂_t plus the last
    positive ρ̂_even (as Stan and the posterior package), floored at 1 / log10(MN)."""
    m, n = a.shape
    c = a - a.mean(axis=1, keepdims=True)
    acov = np.array([[np.dot(c[j, : n - t], c[j, t:]) / n for t in range(n)] for j in range(m)])
    w = acov[:, 0].mean() * n / (n - 1)
    var_plus = w * (n - 1) / n + (a.mean(axis=1).var(ddof=1) if m > 1 else 0.0)
    rho = 1 - (w - acov.mean(axis=0)) / var_plus
    rho[0] = 1.0  # by definition (the formula gives W-based 1 − (W − mean γ̂_0) / var⁺ ≠ 1 when chains differ)
    pairs, t = [], 0
    while t + 1 < n - 2 and rho[t] + rho[t + 1] > 0:  # initial positive sequence
        pairs.append(rho[t] + rho[t + 1])
        t += 2
    extra = rho[t] if t < n - 2 and rho[t] > 0 else 0.0  # the even term where the pair sum turned negative
    for k in range(1, len(pairs)):  # initial monotone sequence
        pairs[k] = min(pairs[k], pairs[k - 1])
    tau = max(-1 + 2 * sum(pairs) + extra, 1 / np.log10(m * n))
    return m * n / tau


def _ref_ess_bulk(a):
    return _ref_ess(_ref_z(_ref_split(a)))


def _ref_ess_tail(a):
    q05, q95 = np.quantile(a, [0.05, 0.95])
    return min(_ref_ess(_ref_split((a <= q05).astype(float))), _ref_ess(_ref_split((a <= q95).astype(float))))


@pytest.mark.parametrize("chains", [1, 4])
def test_diagnostics_follow_vehtari_et_al(chains):
    rng = np.random.default_rng(chains)
    n, phi = 301, 0.6  # AR(1) chains: ESS well below the number of draws; odd length drops the middle draw
    a = np.zeros((chains, n))
    a[:, 0] = rng.normal(size=chains)
    for t in range(1, n):
        a[:, t] = phi * a[:, t - 1] + np.sqrt(1 - phi**2) * rng.normal(size=chains)
    a += rng.normal(scale=0.05, size=(chains, 1))
    d = diagnose(to_datatree({"a": a}, {"diverging": np.zeros(a.shape, bool)}), min_ess=0)
    assert d.max_rhat == pytest.approx(_ref_rank_rhat(a), rel=1e-9)
    assert d.min_ess_bulk == pytest.approx(_ref_ess_bulk(a), rel=1e-6)
    assert d.min_ess_tail == pytest.approx(_ref_ess_tail(a), rel=1e-6)
    assert 0.1 * a.size < d.min_ess_bulk < 0.6 * a.size


def test_single_chain_split_rhat_catches_a_drift():
    rng = np.random.default_rng(0)
    drift = (rng.normal(size=400) + np.linspace(0, 3, 400))[None]
    assert split_rhat(drift) > 1.1
    d = diagnose(to_datatree({"a": drift}, {"diverging": np.zeros((1, 400), bool)}))
    assert any("R-hat" in p for p in d.problems)
    assert np.isnan(split_rhat(np.ones((1, 10))))  # constant: no R-hat
    with pytest.raises(ValueError, match="draws"):
        split_rhat(np.zeros((1, 3)))
