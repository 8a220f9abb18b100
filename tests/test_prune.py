"""Pruning criteria against hand computations; masks reach the exact sparsity; structured masks keep whole groups."""


import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from jax.flatten_util import ravel_pytree

from sparsebnn import data as datasets
from sparsebnn import masks as mask_lib
from sparsebnn import nets, prune
from sparsebnn import priors
from sparsebnn.infer import _curvature as C
from sparsebnn.infer import _laplace as L
from sparsebnn.likelihood import Likelihood



@pytest.fixture(scope="module", autouse=True)
def x64():
    """float64 throughout; XLA optimisations off while this module runs (tiny problems: compile time dominates)."""
    fast_compile = jax.config.read("jax_disable_most_optimizations")
    jax.config.update("jax_disable_most_optimizations", True)
    with jax.enable_x64(True):
        yield
    jax.config.update("jax_disable_most_optimizations", fast_compile)


NET = nets.mlp([3, 4, 2])  # relu
DEEP = nets.mlp([5, 6, 4, 3])
LIN = nets.mlp([3, 3])  # linear softmax regression


def linear_data(n=12, d=3, c=3, seed=0):
    rng = np.random.default_rng(seed)
    return rng.normal(size=(n, d)), rng.integers(0, c, n)


def n_pruned(mask):
    return sum(int(np.sum(~np.asarray(m))) for m in jax.tree.leaves(mask))


# ----------------------------------------------------------------------------- criteria by hand


def test_opd_and_magnitude_by_hand():
    params = {"dense_0": {"w": jnp.array([[1.0, -2.0], [0.5, 3.0], [-1.0, 0.1]]), "b": jnp.array([0.2, -0.3])}}
    prec = {"dense_0": {"w": jnp.array([[4.0, 0.1], [2.0, 1.0], [1.0, 50.0]]), "b": jnp.array([1.0, 10.0])}}
    s = prune.opd(params, prec)
    np.testing.assert_allclose(s["dense_0"]["w"], [[4.0, 0.4], [0.5, 9.0], [1.0, 0.5]])
    np.testing.assert_allclose(s["dense_0"]["b"], [0.04, 0.9])
    np.testing.assert_allclose(prune.magnitude(params)["dense_0"]["w"], np.abs(params["dense_0"]["w"]))
    # through a Laplace posterior: P = diag GGN + prior precision
    net = nets.mlp([3, 2])
    post = L.LaplacePosterior(params, L.prior_precision(net, params, "scalar", 1.0), C.Diag(jax.tree.map(lambda p: p - 1.0, prec)),
                              jnp.array(0.0), {}, net, priors.Gaussian(), Likelihood(), 1)
    for a, b in zip(jax.tree.leaves(prune.scores("opd", net, params, posterior=post)), jax.tree.leaves(s)):
        np.testing.assert_allclose(a, b)
    # 3 of 8 pruned: 0.04 (b[0]), 0.4 (w[0,1]) and the first of the tied 0.5s in tree order (b, then w row-major)
    m = prune.weight_mask(net, s, 3 / 8)
    np.testing.assert_array_equal(m["dense_0"]["b"], [False, True])
    np.testing.assert_array_equal(m["dense_0"]["w"], [[True, False], [False, True], [True, True]])


def test_snip_by_hand():
    """Linear softmax model: ∇ mean CE = X̃ᵀ(p − Y)/n, SNIP = |g ⊙ θ|."""
    x, y = linear_data()
    net = LIN
    params = net.init(jax.random.PRNGKey(0))
    params["dense_0"]["b"] = jnp.array([0.1, -0.2, 0.3])
    w, b = np.asarray(params["dense_0"]["w"]), np.asarray(params["dense_0"]["b"])
    f = x @ w + b
    p = np.exp(f - f.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    r = (p - np.eye(3)[y]) / len(y)
    s = prune.snip(net, params, (x, y))
    np.testing.assert_allclose(s["dense_0"]["w"], np.abs(x.T @ r * w), rtol=1e-10)
    np.testing.assert_allclose(s["dense_0"]["b"], np.abs(r.sum(0) * b), rtol=1e-10)


def test_grasp_by_hand():
    """θ ⊙ Hg for a linear softmax model at temperature T: g = X̃ᵀ(p_T − Y)/(nT), (Hg)_n = x̃_n (Λ_n Gᵀ x̃_n)ᵀ / (nT²)."""
    x, y = linear_data(seed=1)
    net = LIN
    params = net.init(jax.random.PRNGKey(1))
    t = 2.0
    xt = np.concatenate([x, np.ones((len(x), 1))], 1)
    wt = np.concatenate([params["dense_0"]["w"], params["dense_0"]["b"][None]])
    f = xt @ wt / t
    p = np.exp(f - f.max(1, keepdims=True))
    p /= p.sum(1, keepdims=True)
    g = xt.T @ (p - np.eye(3)[y]) / (len(y) * t)
    hg = sum(np.outer(xn, (np.diag(pn) - np.outer(pn, pn)) @ (g.T @ xn)) for xn, pn in zip(xt, p)) / (len(y) * t**2)
    s = prune.grasp(net, params, (x, y), temperature=t)
    np.testing.assert_allclose(s["dense_0"]["w"], wt[:-1] * hg[:-1], rtol=1e-9)
    np.testing.assert_allclose(s["dense_0"]["b"], wt[-1] * hg[-1], rtol=1e-9)


def _flat_loss(net, params, x, y, t=1.0):
    """The mean cross-entropy of logits / t as a function of the flat parameter vector (written out here)."""
    flat, unravel = ravel_pytree(params)

    def loss(v):
        z = net.apply(unravel(v), x) / t
        return -jnp.mean(jnp.take_along_axis(jax.nn.log_softmax(z), jnp.asarray(y)[:, None], 1))

    return flat, loss


def _deep_case(seed=0):
    rng = np.random.default_rng(seed)
    x, y = rng.normal(size=(20, 5)), rng.integers(0, 3, 20)
    params = jax.tree.map(lambda t: t + 0.2 * rng.normal(size=t.shape), DEEP.init(jax.random.PRNGKey(seed)))
    return params, x, y


def test_grasp_and_snip_against_brute_force_on_a_relu_mlp():
    """GraSP = θ ⊙ (H g) with the explicit Hessian matrix (jax.hessian); SNIP = |θ ⊙ g|; any temperature."""
    params, x, y = _deep_case()
    for t in (1.0, 3.0, 200.0):
        flat, loss = _flat_loss(DEEP, params, x, y, t)
        g, h = jax.grad(loss)(flat), jax.hessian(loss)(flat)
        want = flat * (h @ g)
        got = ravel_pytree(prune.grasp(DEEP, params, (x, y), temperature=t))[0]
        np.testing.assert_allclose(got, want, rtol=1e-9, atol=1e-12 * np.abs(want).max())
    assert np.array_equal(ravel_pytree(prune.grasp(DEEP, params, (x, y)))[0],
                          ravel_pytree(prune.grasp(DEEP, params, (x, y), temperature=200.0))[0])  # the default T
    flat, loss = _flat_loss(DEEP, params, x, y)
    np.testing.assert_allclose(ravel_pytree(prune.snip(DEEP, params, (x, y)))[0], np.abs(flat * jax.grad(loss)(flat)),
                               rtol=1e-12)


def test_grasp_sign_is_the_gradient_norm_change():
    """Wang et al.'s convention by finite differences: shrinking θ_i to (1 − ε)θ_i changes ‖g‖² at rate
    −2 θ_i (Hg)_i = −2·score_i, so the lowest scores (pruned first) are the removals that raise ‖g‖² most."""
    params, x, y = _deep_case(1)
    flat, loss = _flat_loss(DEEP, params, x, y, 3.0)
    gnorm = lambda v: jnp.sum(jax.grad(loss)(v) ** 2)  # noqa: E731
    score = np.asarray(ravel_pytree(prune.grasp(DEEP, params, (x, y), temperature=3.0))[0])
    eps = 1e-6
    for i in (int(np.argmin(score)), int(np.argmax(score)), 7):
        rate = (gnorm(flat.at[i].multiply(1 + eps)) - gnorm(flat.at[i].multiply(1 - eps))) / (2 * eps)
        np.testing.assert_allclose(-float(rate), -2 * score[i], rtol=1e-6)  # d‖g‖²/dε with θ_i → (1 − ε)θ_i


def test_grasp_masks_preserve_gradient_flow_at_initialisation():
    """GraSP's purpose, at a random initialisation on digits: its 20 % mask raises ‖g‖² above the dense
    network's, while the reversed ranking and random masks of the same size lower it."""
    ds = datasets.load("digits", seed=0)
    x, y = ds.train.x[:256].astype(np.float64), ds.train.y[:256]
    net = nets.mlp([ds.in_dim, 32, ds.n_classes])
    params = net.init(jax.random.PRNGKey(0))
    _, loss = _flat_loss(net, params, x, y, 200.0)
    gnorm = lambda p: float(jnp.sum(jax.grad(loss)(ravel_pytree(p)[0]) ** 2))  # noqa: E731
    sc = prune.grasp(net, params, (x, y))
    after = lambda scores: gnorm(prune.apply_mask(params, prune.weight_mask(net, scores, 0.2)))  # noqa: E731
    dense, grasp_ = gnorm(params), after(sc)
    others = [after(jax.tree.map(jnp.negative, sc))] + [after(prune.random(jax.random.PRNGKey(k), params)) for k in range(4)]
    assert grasp_ > 1.5 * dense and max(others) < dense


def synflow_by_hand(params, keep=None):
    """ReLU net [3, 4, 2] on all-ones input with |θ| (ReLU is the identity there); masked entries removed."""
    a = {k: {n: np.abs(np.asarray(v)) for n, v in sub.items()} for k, sub in params.items()}
    if keep is not None:
        a = {k: {n: v * keep[k][n] for n, v in sub.items()} for k, sub in a.items()}
    w1, b1, w2, b2 = a["dense_0"]["w"], a["dense_0"]["b"], a["dense_1"]["w"], a["dense_1"]["b"]
    h = w1.sum(0) + b1  # hidden activations
    down = w2.sum(1)  # ∂R/∂h
    return {
        "dense_0": {"w": w1 * down[None, :], "b": b1 * down},
        "dense_1": {"w": w2 * h[:, None], "b": b2 * 1.0},
    }


def test_synflow_by_hand():
    params = NET.init(jax.random.PRNGKey(2))
    params["dense_0"]["b"] = jnp.array([0.1, -0.2, 0.3, 0.05])
    params["dense_1"]["b"] = jnp.array([0.4, -0.1])
    one_shot = prune.synflow(NET, params)
    for a, b in zip(jax.tree.leaves(one_shot), jax.tree.leaves(synflow_by_hand(params))):
        np.testing.assert_allclose(a, b, rtol=1e-12)
    # iterative: n rounds to 1 − (1 − s)^(k/n), rescoring the surviving network each round
    s, n = 0.75, 3
    keep = jax.tree.map(lambda t: np.ones(t.shape), params)
    for k in range(1, n + 1):
        sc = synflow_by_hand(params, keep)
        flat = np.concatenate([np.where(keep[l][m] > 0, sc[l][m], -np.inf).ravel() for l in sorted(sc) for m in sorted(sc[l])])
        cut = int(np.round((1 - (1 - s) ** (k / n) if k < n else s) * flat.size))
        kept = np.ones(flat.size, bool)
        kept[np.argsort(flat, kind="stable")[:cut]] = False
        i = 0
        for l in sorted(sc):
            for m in sorted(sc[l]):
                keep[l][m] = kept[i : i + sc[l][m].size].reshape(sc[l][m].shape).astype(float)
                i += sc[l][m].size
    mask = prune.weight_mask(NET, prune.synflow(NET, params, s, n_iter=n), s)
    for a, b in zip(jax.tree.leaves(mask), jax.tree.leaves(keep)):
        np.testing.assert_array_equal(a, b > 0)
    assert n_pruned(mask) == round(s * 26)


def test_synflow_against_brute_force_on_a_deeper_mlp():
    """One-shot SynFlow on [5, 6, 4, 3]: |θ| ⊙ ∂R/∂|θ| with R = 1ᵀ(|W3|ᵀ(|W2|ᵀ(|W1|ᵀ1 + |b1|) + |b2|) + |b3|)
    written out (ReLU is the identity on the positive network), differentiated by jax.grad."""
    params, _, _ = _deep_case(2)
    a = {k: {n: jnp.abs(v) for n, v in sub.items()} for k, sub in params.items()}

    def r(a):
        h = jnp.ones(5)
        for name in ("dense_0", "dense_1", "dense_2"):
            h = h @ a[name]["w"] + a[name]["b"]
        return h.sum()

    want = jax.tree.map(jnp.multiply, a, jax.grad(r)(a))
    for got, w in zip(jax.tree.leaves(prune.synflow(DEEP, params)), jax.tree.leaves(want), strict=True):
        np.testing.assert_allclose(got, w, rtol=1e-12)


def test_random_scores_and_dispatch():
    params = LIN.init(jax.random.PRNGKey(0))
    x, y = linear_data()
    pairs = [
        (prune.scores("random", LIN, params, key=jax.random.PRNGKey(1)), prune.random(jax.random.PRNGKey(1), params)),
        (prune.scores("snip", LIN, params, data=(x, y)), prune.snip(LIN, params, (x, y))),
        (prune.scores("magnitude", LIN, params), prune.magnitude(params)),
    ]
    for got, want in pairs:
        for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want), strict=True):
            np.testing.assert_array_equal(a, b)
    assert all(np.all((a >= 0) & (a < 1)) for a in jax.tree.leaves(pairs[0][0]))


# ----------------------------------------------------------------------------- masks


@given(st.floats(0.0, 0.999), st.integers(0, 2**31 - 1), st.booleans())
def test_weight_mask_reaches_exact_sparsity(sparsity, seed, ties):
    with jax.enable_x64(True):
        rng = np.random.default_rng(seed)
        params = jax.tree.map(lambda t: jnp.asarray(rng.integers(0, 3, t.shape) if ties else rng.normal(size=t.shape), float), DEEP.init(jax.random.PRNGKey(0)))
        mask = prune.weight_mask(DEEP, params, sparsity)
        n = sum(t.size for t in jax.tree.leaves(params))
        assert n_pruned(mask) == int(np.round(sparsity * n))
        flat_s = np.concatenate([np.ravel(t) for t in jax.tree.leaves(params)])
        flat_m = np.concatenate([np.ravel(m) for m in jax.tree.leaves(mask)])
        if 0 < flat_m.sum() < n:
            assert flat_s[~flat_m].max() <= flat_s[flat_m].min()  # the lowest scores go


def test_parameters_outside_layers_are_never_pruned():
    params = {**NET.init(jax.random.PRNGKey(0)), "norm": {"scale": jnp.full(4, -100.0)}}
    mask = prune.weight_mask(NET, prune.scores("magnitude", NET, params) | {"norm": {"scale": jnp.zeros(4)}}, 0.5)
    assert np.all(mask["norm"]["scale"]) and n_pruned(mask) == 13


@pytest.mark.parametrize("sparsity", [0.0, 0.3, 0.5, 0.9, 0.99])
def test_node_masks_keep_whole_groups(sparsity):
    params = DEEP.init(jax.random.PRNGKey(3))
    sc = prune.magnitude(params)
    masks = prune.node_mask(DEEP, sc, sparsity)
    assert set(masks) == {"dense_0", "dense_1"}  # the output layer's nodes are never pruned
    for layer in DEEP.prunable_layers:
        m = np.asarray(masks[layer.name])
        assert (~m).sum() == min(round(sparsity * layer.n_nodes), layer.n_nodes - 1)
        group = np.asarray(nets.node_groups(sc, layer)).sum(1)  # L1 norm of the incoming group
        if m.any() and (~m).any():
            assert group[~m].max() <= group[m].min()
    pruned = prune.apply_mask(params, mask_lib.to_weights(DEEP, masks, like=params))
    for layer in DEEP.prunable_layers:
        g, g0 = np.asarray(nets.node_groups(pruned, layer)), np.asarray(nets.node_groups(params, layer))
        m = np.asarray(masks[layer.name])
        assert np.all(g[~m] == 0) and np.array_equal(g[m], g0[m])
    np.testing.assert_array_equal(pruned["dense_2"]["w"], params["dense_2"]["w"])
    # equivalent to scaling the nodes by 0/1 (the nets convention)
    scaled = nets.scale_nodes(params, {k: v.astype(float) for k, v in masks.items()})
    for a, b in zip(jax.tree.leaves(pruned), jax.tree.leaves(scaled)):
        np.testing.assert_array_equal(a, b)


def test_masks_at_grid_are_nested():
    params = DEEP.init(jax.random.PRNGKey(4))
    sc = prune.magnitude(params)
    grid = prune.masks_at(DEEP, sc)
    assert list(grid) == list(prune.SPARSITIES)
    prev = None
    for s, m in grid.items():
        flat = np.concatenate([np.ravel(x) for x in jax.tree.leaves(m)])
        if prev is not None:
            assert np.all(flat <= prev)  # higher sparsity prunes a superset
        prev = flat
    nodes = prune.masks_at(DEEP, sc, (0.5, 0.9), structured=True)
    assert set(nodes) == {0.5, 0.9} and set(nodes[0.5]) == {"dense_0", "dense_1"}


def test_finetune_keeps_pruned_entries_at_zero():
    x, y = linear_data(n=40, d=5)
    params = DEEP.init(jax.random.PRNGKey(5))
    mask = prune.weight_mask(DEEP, prune.magnitude(params), 0.6)
    start = prune.apply_mask(params, mask)
    tuned = prune.finetune(DEEP, start, mask, (x, y), epochs=20, batch_size=10, lr=1e-2)
    loss = lambda p: -float(jnp.mean(Likelihood().log_prob(DEEP.apply(p, x), jnp.asarray(y))))  # noqa: E731
    assert loss(tuned) < loss(start)
    for m, t, t0 in zip(jax.tree.leaves(mask), jax.tree.leaves(tuned), jax.tree.leaves(start)):
        m = np.asarray(m)
        assert np.all(np.asarray(t)[~m] == 0)
        assert not m.any() or np.any(np.asarray(t)[m] != np.asarray(t0)[m])


def test_bad_input_raises():
    params = DEEP.init(jax.random.PRNGKey(0))
    sc = prune.magnitude(params)
    for bad in (-0.1, 1.0, float("nan")):
        with pytest.raises(ValueError, match="sparsity"):
            prune.weight_mask(DEEP, sc, bad)
        with pytest.raises(ValueError, match="sparsity"):
            prune.node_mask(DEEP, sc, bad)
    with pytest.raises(ValueError, match="criterion"):
        prune.scores("hessian", DEEP, params)
    with pytest.raises(ValueError, match="posterior"):
        prune.scores("opd", DEEP, params)
    with pytest.raises(ValueError, match="data"):
        prune.scores("snip", DEEP, params)
    with pytest.raises(ValueError, match="key"):
        prune.scores("random", DEEP, params)
    with pytest.raises(ValueError, match="NaN"):
        prune.weight_mask(DEEP, jax.tree.map(lambda t: t * jnp.nan, sc), 0.5)
    with pytest.raises(ValueError, match="shaped like params"):
        prune.apply_mask(params, {"dense_0": {"w": jnp.ones((5, 6), bool)}})
    with pytest.raises(ValueError, match="output layer"):
        mask_lib.to_weights(DEEP, {"dense_2": jnp.ones(3, bool)}, like=params)
    with pytest.raises(ValueError, match="shape"):
        mask_lib.to_weights(DEEP, {"dense_0": jnp.ones(2, bool)}, like=params)
    with pytest.raises(ValueError, match="structured"):
        prune.node_mask(DEEP, prune.synflow(DEEP, params, 0.5, n_iter=2), 0.5)
    with pytest.raises(ValueError, match="temperature"):
        prune.grasp(DEEP, params, linear_data(d=5), temperature=0.0)


def test_global_node_masks_rank_all_layers_together_and_keep_one_node_per_layer():
    """DEEP: dense_0 (6 nodes) scores 10..15, dense_1 (4 nodes) scores 1..4: global pruning takes dense_1 first
    but leaves its best node; 'layer' takes the same fraction of each layer."""
    sc = jax.tree.map(jnp.zeros_like, DEEP.init(jax.random.PRNGKey(0)))
    sc["dense_0"]["b"] = jnp.arange(10.0, 16.0)
    sc["dense_1"]["b"] = jnp.array([3.0, 1.0, 4.0, 2.0])
    glob = {k: np.asarray(v) for k, v in prune.node_mask(DEEP, sc, 0.4, scope="global").items()}
    np.testing.assert_array_equal(glob["dense_1"], [False, False, True, False])  # 4 of 10 pruned: 3 + the lowest
    np.testing.assert_array_equal(glob["dense_0"], [False, True, True, True, True, True])
    every = {k: np.asarray(v) for k, v in prune.node_mask(DEEP, sc, 0.99, scope="global").items()}
    assert [m.sum() for m in every.values()] == [1, 1] and every["dense_0"][5] and every["dense_1"][2]
    layer = prune.node_mask(DEEP, sc, 0.5, scope="layer")
    assert [int(np.sum(~np.asarray(m))) for m in layer.values()] == [3, 2]
    with pytest.raises(ValueError, match="scope"):
        prune.node_mask(DEEP, sc, 0.5, scope="net")
