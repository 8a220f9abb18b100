"""Laplace: curvature (diagonal GGN / EF, KFAC) and the log marginal likelihood against brute force.

Brute force = full Jacobians of the network outputs w.r.t. the flattened parameters, the exact
per-example Hessian of the negative log-likelihood w.r.t. the outputs (jax.hessian), dense
matrices and exact log-determinants; and the exact evidence of a linear-Gaussian model.
Networks are shared between tests so that compiled functions are reused (fast suite).
"""

import warnings
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from hypothesis.extra.numpy import arrays
from jax.flatten_util import ravel_pytree

from sparsebnn import nets, priors
from sparsebnn.infer import _curvature as C
from sparsebnn.infer import _laplace as L
from sparsebnn.infer import _taps as taps
from sparsebnn.likelihood import Likelihood
from sparsebnn.nets import Layer, Network
from theory import savage_dickey


def laplace_post(net, params, precision, curv, ll, lik=Likelihood(), n=1):
    """A LaplacePosterior assembled from its parts (prior N(0, 1), learned ``precision``)."""
    return L.LaplacePosterior(params, precision, curv, ll, {}, net, priors.Gaussian(), lik, n)


@pytest.fixture(scope="module", autouse=True)
def x64():
    """float64 throughout; XLA optimisations off while this module runs (tiny problems: compile time dominates)."""
    fast_compile = jax.config.read("jax_disable_most_optimizations")
    jax.config.update("jax_disable_most_optimizations", True)
    with jax.enable_x64(True):
        yield
    jax.config.update("jax_disable_most_optimizations", fast_compile)


# ----------------------------------------------------------------------------- tiny networks and brute force


def _scaled_mlp() -> Network:
    """A 3-layer tanh MLP whose output is multiplied by a parameter outside every layer (``params['temp']['s']``)."""
    base = nets.mlp([3, 4, 3, 3], act="tanh")

    def init(key):
        return {**base.init(key), "temp": {"s": jnp.array(1.3)}}

    return Network("scaled", init, lambda p, x: base.apply(p, x) * p["temp"]["s"], base.layers, (3,), 3)


def _tiny_cnn():
    """conv 2x2 (2 -> 3 filters, VALID, stride 1) on 4x4x2 inputs, tanh, then dense to 2 outputs."""
    dn = ("NHWC", "HWIO", "NHWC")
    layers = (Layer("conv", "conv", 2 * 2 * 2, 3), Layer("out", "dense", 3 * 3 * 3, 2, prunable=False))

    def init(key):
        k1, k2, k3 = jax.random.split(key, 3)
        return {
            "conv": {"w": jax.random.normal(k1, (2, 2, 2, 3)) * 0.5, "b": jax.random.normal(k3, (3,)) * 0.1},
            "out": {"w": jax.random.normal(k2, (27, 2)) * 0.3, "b": jnp.zeros(2)},
        }

    def head(params, s):
        h = jnp.tanh(s + params["conv"]["b"]).reshape(s.shape[0], -1)
        return h @ params["out"]["w"] + params["out"]["b"]

    def conv(params, x):
        return jax.lax.conv_general_dilated(x, params["conv"]["w"], (1, 1), "VALID", dimension_numbers=dn)

    return Network("tiny_cnn", init, lambda p, x: head(p, conv(p, x)), layers, (4, 4, 2), 2), conv, head


MLP = _scaled_mlp()
CNN, CNN_CONV, CNN_HEAD = _tiny_cnn()
LIN1, LIN2 = nets.mlp([3, 1]), nets.mlp([3, 2])


def neg_log_lik(kind, sigma=1.0):
    """−ln p(y | f) for one example, written independently of the library."""
    if kind == "categorical":
        return lambda f, y: jax.scipy.special.logsumexp(f) - f[y]
    return lambda f, y: 0.5 * jnp.sum((jnp.reshape(y, f.shape) - f) ** 2) / sigma**2 + f.size * (
        jnp.log(sigma) + 0.5 * jnp.log(2 * jnp.pi)
    )


def brute_curvature(net, params, x, y, fisher):
    """The full GGN / empirical Fisher (classification) over the raveled parameters, and Σ ln p."""
    return _brute_curvature(net, params, x, y, fisher)


@partial(jax.jit, static_argnums=(0, 4))
def _brute_curvature(net, params, x, y, fisher):
    theta, unravel = ravel_pytree(params)
    nll = neg_log_lik("categorical")
    jac = jax.jacrev(lambda t: net.apply(unravel(t), x))(theta)  # (N, C, P)
    f = net.apply(params, x)
    if fisher == "ggn":
        h = jnp.einsum("ncp,ncd,ndq->pq", jac, jax.vmap(jax.hessian(nll))(f, y), jac)
    else:
        g = jnp.einsum("ncp,nc->np", jac, jax.vmap(jax.grad(nll))(f, y))
        h = g.T @ g
    return h, -jnp.sum(jax.vmap(nll)(f, y))


def index_tree(params):
    """The position of every parameter in ``ravel_pytree(params)``, shaped like params."""
    theta, unravel = ravel_pytree(params)
    return jax.tree.map(lambda t: np.asarray(t).astype(int), unravel(jnp.arange(theta.size, dtype=float)))


def layer_index(idx, name):
    """Raveled positions of ``[w.reshape(-1, n); b]`` in row-major order."""
    return np.concatenate([idx[name]["w"].reshape(-1, idx[name]["b"].size), idx[name]["b"][None]]).ravel()


def kfac_dense(curv, params):
    """The block-diagonal KFAC matrix (plus diag for params outside layers) over the raveled parameters."""
    idx = index_tree(params)
    p = ravel_pytree(params)[0].size
    m = np.zeros((p, p))
    for name, (a, g) in curv.factors.items():
        i = layer_index(idx, name)
        m[np.ix_(i, i)] = np.kron(a, g)
    for key, sub in curv.diag.items():
        for ii, hh in zip(jax.tree.leaves(idx[key]), jax.tree.leaves(sub)):
            m[np.ravel(ii), np.ravel(ii)] = np.ravel(hh)
    return m


def make_data(key, net, n):
    kx, ky = jax.random.split(key)
    return jax.random.normal(kx, (n, *net.in_shape)), jax.random.randint(ky, (n,), 0, net.out_dim)


@pytest.fixture(scope="module")
def mlp_case():
    """The shared MLP problem: 7 examples; the diagonal GGN computed in chunks of 3 (scan + remainder)."""
    params = MLP.init(jax.random.PRNGKey(0))
    x, y = make_data(jax.random.PRNGKey(1), MLP, 7)
    out = {"params": params, "x": x, "y": y}
    for fisher in C.FISHERS:
        out["brute", fisher] = brute_curvature(MLP, params, x, y, fisher)
    out["diag", "ggn"] = C.curvature(MLP, params, x, y, kind="diag", batch_size=3)
    out["diag", "ef"] = C.curvature(MLP, params, x, y, kind="diag", fisher="ef")
    out["kfac", "ggn"] = C.curvature(MLP, params, x, y, kind="kfac")
    return out


def random_prior(net, params, structure, key):
    prior = L.prior_precision(net, params, structure)
    leaves, tree = jax.tree.flatten(prior.log_prec)
    keys = jax.random.split(key, len(leaves))
    lp = jax.tree.unflatten(tree, [jax.random.normal(k, l.shape) for k, l in zip(keys, leaves)])
    return L.PriorPrecision(lp, structure, prior.layers)


# ----------------------------------------------------------------------------- likelihood


@jax.jit
def _likelihood_errors(f, y, r):
    """Max errors of L Lᵀ vs ∇²(−ln p) and of the closed-form gradient, classification and regression."""
    errs = []
    for lik, target in ((Likelihood("categorical"), y), (Likelihood("gaussian", 0.7), r)):
        nll = neg_log_lik(lik.kind, 1.0 if lik.noise is None else lik.noise)
        lsq = lik.hessian_sqrt(f[None])[0]
        errs.append(jnp.max(jnp.abs(lsq @ lsq.T - jax.hessian(nll)(f, target))))
        errs.append(jnp.max(jnp.abs(lik.grad(f[None], target[None])[0] - jax.grad(nll)(f, target))))
        errs.append(jnp.abs(lik.log_prob(f[None], target[None])[0] + nll(f, target)))
    return jnp.stack(errs)


@given(arrays(np.float64, 5, elements=st.floats(-30, 30)), st.integers(0, 4), arrays(np.float64, 5, elements=st.floats(-5, 5)))
def test_likelihood_hessian_sqrt_gradient_logprob(logits, label, target):
    """softmax: L = diag(√p) − p√pᵀ; Gaussian: L = I/σ — against jax.hessian / jax.grad of −ln p."""
    with jax.enable_x64(True):
        errs = _likelihood_errors(jnp.asarray(logits), jnp.asarray(label), jnp.asarray(target))
        assert np.all(np.asarray(errs) < 1e-10), errs


# ----------------------------------------------------------------------------- diagonal GGN / EF and KFAC


@pytest.mark.parametrize("fisher", C.FISHERS)
def test_diag_matches_brute_force(mlp_case, fisher):
    (curv, ll), (h, ll_ref) = mlp_case["diag", fisher], mlp_case["brute", fisher]
    np.testing.assert_allclose(ravel_pytree(curv.h)[0], jnp.diag(h), rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(ll, ll_ref, rtol=1e-12)
    np.testing.assert_allclose(mlp_case["kfac", "ggn"][1], mlp_case["brute", "ggn"][1], rtol=1e-12)


def test_kfac_one_example_is_exact_block():
    """For one example, A ⊗ G is the exact GGN block of every dense layer (EF: same code, other output vectors)."""
    params = MLP.init(jax.random.PRNGKey(3))
    x, y = make_data(jax.random.PRNGKey(4), MLP, 1)
    idx = index_tree(params)
    curv, _ = C.curvature(MLP, params, x, y, kind="kfac")
    h, _ = brute_curvature(MLP, params, x, y, "ggn")
    for name, (a, g) in curv.factors.items():
        i = layer_index(idx, name)
        np.testing.assert_allclose(np.kron(a, g), h[np.ix_(i, i)], atol=1e-12)
    # the parameter outside the layers gets its exact diagonal
    np.testing.assert_allclose(curv.diag["temp"]["s"], h[idx["temp"]["s"], idx["temp"]["s"]], rtol=1e-12)


def test_kfac_dense_factors_by_hand(mlp_case):
    """Output layer over 7 examples: A = (1/N) Σ ã ãᵀ, G = Σ_n s² Λ_n (the output is scaled by s)."""
    params, x = mlp_case["params"], mlp_case["x"]
    (curv, _) = mlp_case["kfac", "ggn"]
    h = jnp.tanh(x @ params["dense_0"]["w"] + params["dense_0"]["b"])
    h = jnp.tanh(h @ params["dense_1"]["w"] + params["dense_1"]["b"])
    at = jnp.concatenate([h, jnp.ones((7, 1))], 1)
    p = jax.nn.softmax(MLP.apply(params, x))
    lam = sum(jnp.diag(pn) - jnp.outer(pn, pn) for pn in p) * params["temp"]["s"] ** 2
    np.testing.assert_allclose(curv.factors["dense_2"][0], at.T @ at / 7, rtol=1e-12)
    np.testing.assert_allclose(curv.factors["dense_2"][1], lam, atol=1e-12)
    # the diagonal of A ⊗ G is not the exact diagonal for N > 1, but the bias block of G is: diag(G) = diag GGN of b
    np.testing.assert_allclose(jnp.diag(curv.factors["dense_2"][1]), mlp_case["diag", "ggn"][0].h["dense_2"]["b"], rtol=1e-10)


def explicit_patches(x, kh, kw):
    n, hh, ww, _ = x.shape
    rows = [np.asarray(x[i, r : r + kh, c : c + kw, :]).reshape(-1) for i in range(n) for r in range(hh - kh + 1) for c in range(ww - kw + 1)]
    return np.array(rows)


def test_conv_curvature_by_hand():
    """Conv net: the diagonal against brute force; KFAC's A from explicit patches, G from brute-force Jacobians."""
    params = CNN.init(jax.random.PRNGKey(0))
    x, y = make_data(jax.random.PRNGKey(1), CNN, 3)
    h, _ = brute_curvature(CNN, params, x, y, "ggn")
    diag, _ = C.curvature(CNN, params, x, y, kind="diag")
    np.testing.assert_allclose(ravel_pytree(diag.h)[0], jnp.diag(h), rtol=1e-10, atol=1e-13)
    curv, _ = C.curvature(CNN, params, x, y, kind="kfac")
    a, g = curv.factors["conv"]
    patches = np.concatenate([explicit_patches(x, 2, 2), np.ones((27, 1))], 1)
    np.testing.assert_allclose(a, patches.T @ patches / 3, rtol=1e-12)
    # G = (1/T) Σ_n Σ_k Σ_t g gᵀ, g = ∂(L_n e_k)ᵀ f_n / ∂s_t at the conv output s
    s = CNN_CONV(params, x)
    ls = Likelihood().hessian_sqrt(CNN.apply(params, x))
    jac = jax.vmap(jax.jacrev(lambda sn: CNN_HEAD(params, sn[None])[0]))(s)  # (N, C, 3, 3, 3)
    gk = jnp.einsum("nck,nchwj->nkhwj", ls, jac).reshape(-1, 3)
    np.testing.assert_allclose(g, gk.T @ gk / 9, rtol=1e-10, atol=1e-14)


@pytest.mark.parametrize(
    "spec,strides,padding,rhs_dil",
    [
        (("NCHW", "IHWO", "NHWC"), (2, 1), "VALID", (2, 1)),
        (("NHWC", "WHIO", "NCHW"), (1, 1), ((1, 0), (2, 1)), (1, 2)),
    ],
)
def test_conv_input_rows_reproduce_the_op(spec, strides, padding, rhs_dil):
    """input_rows(a) @ w.reshape(-1, n) == output_rows(conv(a, w)) for several layouts."""
    lhs, rhs, _ = spec
    x = jax.random.normal(jax.random.PRNGKey(0), (2, 3, 7, 6) if lhs == "NCHW" else (2, 7, 6, 3))
    sizes = {"H": 3, "W": 2, "I": 3, "O": 4}
    w = jax.random.normal(jax.random.PRNGKey(1), tuple(sizes[c] for c in rhs))

    def conv(w_, x_):
        return jax.lax.conv_general_dilated(x_, w_, strides, padding, rhs_dilation=rhs_dil, dimension_numbers=spec)

    params = {"c": {"w": w, "b": jnp.zeros(4)}}
    out, acts, tp, bad = taps.tapped_apply(lambda p, xx: conv(p["c"]["w"], xx), params, x, ["c"], strict=True)
    s = conv(w, x)
    np.testing.assert_array_equal(out, s)
    np.testing.assert_allclose(taps.input_rows(tp["c"], acts["c"]) @ w.reshape(-1, 4), taps.output_rows(tp["c"], s), rtol=1e-10, atol=1e-12)


def _token_net():
    """3 tokens x 2 features -> a dense layer per token written as dot_general(w, x) inside jit -> tanh -> mean -> dense."""
    layers = (Layer("tok", "dense", 2, 4), Layer("out", "dense", 4, 3, prunable=False))

    def init(key):
        k1, k2 = jax.random.split(key)
        return {"tok": {"w": jax.random.normal(k1, (2, 4)), "b": jnp.full(4, 0.1)}, "out": {"w": jax.random.normal(k2, (4, 3)), "b": jnp.zeros(3)}}

    @jax.jit
    def token_op(w, x):  # (o, b, t): the weight is the lhs of dot_general
        return jax.lax.dot_general(w.astype(x.dtype), x, (((0,), (2,)), ((), ())))

    def apply(p, x):
        h = jnp.tanh(jnp.transpose(token_op(p["tok"]["w"], x), (1, 2, 0)) + p["tok"]["b"])
        return h.mean(1) @ p["out"]["w"] + p["out"]["b"]

    return Network("tokens", init, apply, layers, (3, 2), 3), token_op


TOKENS, TOKEN_OP = _token_net()


def test_dense_layer_with_token_axis():
    """Per-token dense layer (T = 3 positions, weight as lhs, inside jit): taps, exact diagonal and KFAC's A."""
    params = TOKENS.init(jax.random.PRNGKey(0))
    x, y = make_data(jax.random.PRNGKey(1), TOKENS, 4)
    out, acts, tp, _ = taps.tapped_apply(TOKENS.apply, params, x, ["tok", "out"], strict=True)
    np.testing.assert_allclose(out, TOKENS.apply(params, x), rtol=1e-12)
    s = TOKEN_OP(params["tok"]["w"], x)
    assert tp["tok"].w_index == 0 and tp["tok"].out_shape == s.shape
    rows = taps.input_rows(tp["tok"], acts["tok"])
    np.testing.assert_allclose(rows @ params["tok"]["w"], taps.output_rows(tp["tok"], s), rtol=1e-12)
    assert taps.rows_per_example(tp["tok"], acts["tok"].shape, 4) == 3
    diag, _ = C.curvature(TOKENS, params, x, y, kind="diag")
    h, _ = brute_curvature(TOKENS, params, x, y, "ggn")
    np.testing.assert_allclose(ravel_pytree(diag.h)[0], jnp.diag(h), rtol=1e-10, atol=1e-13)
    kron, _ = C.curvature(TOKENS, params, x, y, kind="kfac")
    at = np.concatenate([np.asarray(x).reshape(-1, 2), np.ones((12, 1))], 1)
    np.testing.assert_allclose(kron.factors["tok"][0], at.T @ at / 4, rtol=1e-12)


def test_untappable_layer_gets_the_exact_diagonal():
    """A dense layer whose weight is scaled before use cannot be tapped: KFAC warns and gives it its exact diagonal."""
    net = MLP._replace(apply=lambda p, x: MLP.apply({**p, "dense_0": {**p["dense_0"], "w": 2.0 * p["dense_0"]["w"]}}, x))
    params = MLP.init(jax.random.PRNGKey(0))
    x, y = make_data(jax.random.PRNGKey(1), MLP, 5)
    _, _, tp, bad = taps.tapped_apply(net.apply, params, x, ["dense_0", "dense_1"])
    assert set(tp) == {"dense_1"} and "'mul'" in bad["dense_0"]
    with pytest.raises(taps.Untappable, match="dense_0.*'mul'"):
        taps.tapped_apply(net.apply, params, x, ["dense_0"], strict=True)
    twice = LIN2._replace(apply=lambda p, x: x @ p["dense_0"]["w"] + x @ p["dense_0"]["w"])
    with pytest.raises(ValueError, match="more than one"):
        taps.tapped_apply(twice.apply, LIN2.init(jax.random.PRNGKey(0)), jnp.ones((2, 3)), ["dense_0"], strict=True)
    h, _ = brute_curvature(net, params, x, y, "ggn")
    idx = index_tree(params)
    with pytest.warns(UserWarning, match="dense_0"):
        kron, _ = C.curvature(net, params, x, y, kind="kfac")
    assert set(kron.factors) == {"dense_1", "dense_2"} and set(kron.diag) == {"dense_0", "temp"}
    for leaf in ("w", "b"):
        np.testing.assert_allclose(kron.diag["dense_0"][leaf], np.diag(h)[idx["dense_0"][leaf]], rtol=1e-10)
    with pytest.warns(UserWarning, match="dense_0"):
        diag, _ = C.curvature(net, params, x, y, kind="diag")
    np.testing.assert_allclose(ravel_pytree(diag.h)[0], jnp.diag(h), rtol=1e-10, atol=1e-13)


# ----------------------------------------------------------------------------- prior structures


def test_prior_structures_expand_by_hand():
    net = nets.mlp([3, 4, 2])
    params = {**net.init(jax.random.PRNGKey(0)), "ln": {"scale": jnp.ones(4), "shift": jnp.zeros(4)}}
    leaves = jax.tree.leaves
    for s, n_hyper in [("scalar", 1), ("layer", 2 + 2), ("node", 4 + 2 + 2), ("unit", 4 + 4 + 5 + 2 + 2), ("parameter", 3 * 4 + 4 + 4 * 2 + 2 + 8)]:
        prior = L.prior_precision(net, params, s, init=2.0)
        assert sum(np.size(v) for v in leaves(prior.log_prec)) == n_hyper
        for p, t in zip(leaves(prior.precision(params)), leaves(params)):
            assert p.shape == t.shape
            np.testing.assert_allclose(p, 2.0)
    prior = L.prior_precision(net, params, "unit")
    u, v = jnp.arange(4.0) / 10, jnp.arange(4.0) / 7
    prec = L.PriorPrecision({**prior.log_prec, "dense_0": {"in": u, "out": v}}, "unit", prior.layers).precision(params)
    np.testing.assert_allclose(prec["dense_0"]["w"], np.exp(u[:3, None] + v[None, :]))
    np.testing.assert_allclose(prec["dense_0"]["b"], np.exp(u[3] + v))
    prior = L.prior_precision(net, params, "node")
    prec = L.PriorPrecision({**prior.log_prec, "dense_0": v}, "node", prior.layers).precision(params)
    np.testing.assert_allclose(prec["dense_0"]["w"], np.exp(np.broadcast_to(v, (3, 4))))
    np.testing.assert_allclose(prec["dense_0"]["b"], np.exp(v))


# ----------------------------------------------------------------------------- log marginal likelihood


@pytest.mark.parametrize("kind", C.KINDS)
def test_log_marglik_matches_dense_formula(mlp_case, kind):
    """ln p(D|θ*) + ½ ln|P| − ½ θᵀPθ − ½ ln|H + P| with dense matrices and slogdet, every prior structure."""
    params = mlp_case["params"]
    curv, ll = mlp_case[kind, "ggn"]
    h_full, ll_ref = mlp_case["brute", "ggn"]
    h = np.diag(np.diag(h_full)) if kind == "diag" else kfac_dense(curv, params)
    theta = ravel_pytree(params)[0]
    for structure in L.STRUCTURES:
        prior = random_prior(MLP, params, structure, jax.random.PRNGKey(len(structure)))
        post = laplace_post(MLP, params, prior, curv, ll)
        p = ravel_pytree(prior.precision(params))[0]
        exact = ll_ref + 0.5 * jnp.sum(jnp.log(p)) - 0.5 * jnp.sum(p * theta**2) - 0.5 * np.linalg.slogdet(h + np.diag(p))[1]
        got = L.log_marglik(post)
        if kind == "diag" or structure in ("scalar", "layer"):
            np.testing.assert_allclose(got, exact, rtol=1e-10)
        else:  # KFAC with a non-isotropic prior per layer: eigenbasis approximation, ln|H + P| overestimated
            assert exact - 5.0 < got <= exact + 1e-9
        # the posterior-precision diagonal (OPD's P_ii) is the diagonal of H + P
        np.testing.assert_allclose(ravel_pytree(L.posterior_precision(post))[0], np.diag(h) + p, rtol=1e-10)


def linear_gaussian(n=30, d=3, out=1, sigma=0.6, orthogonal=False, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d))
    if orthogonal:  # columns orthogonal to each other and to the intercept: X̃ᵀX̃ is diagonal
        q, _ = np.linalg.qr(np.concatenate([np.ones((n, 1)), x], 1))
        x = q[:, 1:] * np.sqrt(n) * np.array([1.0, 2.0, 0.5])[:d]
    y = x @ rng.normal(size=(d, out)) + 0.3 + sigma * rng.normal(size=(n, out))
    return x, (y[:, 0] if out == 1 else y), sigma


def exact_evidence_and_posterior(x, y, prior_prec_w, prior_prec_b, sigma):
    """theory.savage_dickey (closed form, independent of this package): ln p(y) = Σ_outputs ln N(y_k; 0, σ²I + X̃ S0 X̃ᵀ),
    the posterior mean as params, and S_N (X̃ = [X, 1], S0 = diag(1 / prior precisions))."""
    xt = np.concatenate([x, np.ones((len(x), 1))], 1)
    s0 = 1.0 / np.concatenate([np.broadcast_to(prior_prec_w, (x.shape[1],)), [prior_prec_b]])
    ys = y.reshape(len(x), -1)
    ev = sum(savage_dickey.log_evidence(xt, ys[:, k], sigma**2, np.zeros(xt.shape[1]), s0) for k in range(ys.shape[1]))
    m, sn = zip(*(savage_dickey.posterior(xt, ys[:, k], sigma**2, np.zeros(xt.shape[1]), s0) for k in range(ys.shape[1])))
    m = np.stack(m, 1)
    return ev, {"dense_0": {"w": jnp.asarray(m[:-1]), "b": jnp.asarray(m[-1])}}, sn[0]


@pytest.mark.parametrize("net", [LIN1, LIN2], ids=["1 output", "2 outputs"])
def test_kfac_laplace_is_exact_on_linear_gaussian(net):
    x, y, sigma = linear_gaussian(out=net.out_dim)
    ev, params, _ = exact_evidence_and_posterior(x, y, 2.5, 2.5, sigma)
    curv, ll = C.curvature(net, params, x, y, Likelihood("gaussian", sigma), kind="kfac", batch_size=7)
    for structure in ("scalar", "layer"):
        post = laplace_post(net, params, L.prior_precision(net, params, structure, 2.5), curv, ll, Likelihood("gaussian", sigma))
        np.testing.assert_allclose(L.log_marglik(post), ev, rtol=1e-10)


def test_diag_laplace_is_exact_on_orthogonal_linear_gaussian():
    """With X̃ᵀX̃ diagonal the diagonal GGN is the exact Hessian: exact for any per-parameter prior."""
    x, y, sigma = linear_gaussian(orthogonal=True)
    pw, pb = np.array([0.5, 3.0, 1.5]), 0.8
    ev, params, _ = exact_evidence_and_posterior(x, y, pw, pb, sigma)
    curv, ll = C.curvature(LIN1, params, x, y, Likelihood("gaussian", sigma), kind="diag")
    lp = {"dense_0": {"w": jnp.log(jnp.asarray(pw))[:, None], "b": jnp.log(jnp.array([pb]))}}
    prior = L.PriorPrecision(lp, "parameter", ("dense_0",))
    post = laplace_post(LIN1, params, prior, curv, ll, Likelihood("gaussian", sigma))
    np.testing.assert_allclose(L.log_marglik(post), ev, rtol=1e-10)


def test_online_marglik_finds_the_evidence_maximising_prior():
    """MAP + online prior learning on linear-Gaussian data reaches argmax_δ of the exact evidence."""
    x, y, sigma = linear_gaussian(n=40, seed=3)
    grid = np.exp(np.linspace(-4, 3, 701))
    best = grid[np.argmax([exact_evidence_and_posterior(x, y, d, d, sigma)[0] for d in grid])]
    post = L.laplace(
        LIN1, priors.Gaussian(learn="scalar"), (x, y), likelihood=Likelihood("gaussian", sigma), curvature="kfac", epochs=300,
        batch_size=40, lr=0.05, marglik_every=20, marglik_burnin=0, hyper_steps=50, progress=False,
    )
    np.testing.assert_allclose(np.exp(post.precision.log_prec), best, rtol=0.03)
    assert np.all(np.diff(post.history["log_marglik"][-5:]) > -1e-3)
    # the evidence at the learned prior equals the exact evidence there (Laplace is exact here)
    ev, _, _ = exact_evidence_and_posterior(x, y, np.exp(post.precision.log_prec), np.exp(post.precision.log_prec), sigma)
    np.testing.assert_allclose(L.log_marglik(post), ev, rtol=1e-3)


# ----------------------------------------------------------------------------- posterior: samples, variances, predictive


@pytest.mark.parametrize("kind,structure", [("diag", "parameter"), ("kfac", "scalar"), ("kfac", "unit")])
def test_sampling_map_has_the_posterior_covariance(mlp_case, kind, structure):
    """The noise -> sample map M (linear) satisfies M Mᵀ = (H + P)⁻¹ (KFAC: of its eigenbasis approximation)."""
    params = mlp_case["params"]
    curv, ll = mlp_case[kind, "ggn"]
    post = laplace_post(MLP, params, random_prior(MLP, params, structure, jax.random.PRNGKey(5)), curv, ll)
    theta, unravel = ravel_pytree(params)
    eig = L._eig(curv) if kind == "kfac" else None
    m = jax.jacfwd(lambda z: ravel_pytree(L._noise_to_deviation(post, eig, unravel(z)))[0])(jnp.zeros_like(theta))
    cov = m @ m.T
    np.testing.assert_allclose(np.diag(cov), ravel_pytree(L.marginal_variance(post))[0], rtol=1e-9)
    if structure in ("scalar", "parameter"):
        h = kfac_dense(curv, params) if kind == "kfac" else np.diag(ravel_pytree(curv.h)[0])
        p = ravel_pytree(post.precision.precision(params))[0]
        np.testing.assert_allclose(cov, np.linalg.inv(h + np.diag(p)), atol=1e-10)


def test_predictive_and_samples_on_linear_gaussian():
    x, y, sigma = linear_gaussian()
    _, params, sn = exact_evidence_and_posterior(x, y, 2.0, 2.0, sigma)
    curv, ll = C.curvature(LIN1, params, x, y, Likelihood("gaussian", sigma), kind="kfac", batch_size=7)
    post = laplace_post(LIN1, params, L.prior_precision(LIN1, params, "scalar", 2.0), curv, ll, Likelihood("gaussian", sigma))
    xs, key, s = jnp.asarray(x[:4]), jax.random.key(0), 4000
    # linear in the parameters: the GLM and the sampled-network predictive coincide draw for draw
    f = post.predict(xs, key, s)
    np.testing.assert_allclose(f, post.predict(xs, key, s, linearized=False), atol=1e-10)
    mean, var = f.mean(0), f.var(0) + sigma**2
    xt = np.concatenate([x[:4], np.ones((4, 1))], 1)
    np.testing.assert_allclose(mean[:, 0], LIN1.apply(params, xs)[:, 0], atol=0.02)
    np.testing.assert_allclose(var[:, 0], np.einsum("ni,ij,nj->n", xt, sn, xt) + sigma**2, rtol=0.05)
    draws = post.sample_params(key, s)
    np.testing.assert_allclose(np.cov(np.asarray(draws["dense_0"]["w"][:, :, 0]).T), sn[:3, :3], atol=0.01)


# ----------------------------------------------------------------------------- training loop and errors


def test_laplace_fit_runs_and_is_reproducible(mlp_case):
    x, y = mlp_case["x"], mlp_case["y"]
    kw = dict(epochs=6, batch_size=3, marglik_every=3, marglik_burnin=4, hyper_steps=5, progress=False)
    p1 = L.laplace(MLP, priors.Gaussian(learn="unit"), (x, y), **kw)
    p2 = L.laplace(MLP, priors.Gaussian(learn="unit"), (x, y), **kw)
    assert np.isnan(p1.history["log_marglik"][0]) and np.isfinite(p1.history["log_marglik"][1])
    assert isinstance(p1.curvature, C.Kron) and "temp" in p1.curvature.diag
    for a, b in zip(jax.tree.leaves(p1), jax.tree.leaves(p2), strict=True):
        np.testing.assert_array_equal(a, b)


def test_bad_input_raises(mlp_case):
    params, x, y = mlp_case["params"], mlp_case["x"], mlp_case["y"]
    with pytest.raises(ValueError, match="prior structure"):
        L.prior_precision(MLP, params, "blockwise")
    with pytest.raises(ValueError, match="init"):
        L.prior_precision(MLP, params, "scalar", init=-1.0)
    with pytest.raises(ValueError, match="curvature"):
        L.laplace(MLP, priors.Gaussian(learn="layer"), (x, y), curvature="full", progress=False)
    with pytest.raises(ValueError, match="fisher"):
        C.curvature(MLP, params, x, y, fisher="mc")
    with pytest.raises(ValueError, match="likelihood"):
        C.curvature(MLP, params, x, y, "poisson")
    with pytest.raises(ValueError, match="noise"):
        C.curvature(MLP, params, x, y, Likelihood("gaussian", -1.0))
    with pytest.raises(ValueError, match="labels"):
        C.curvature(MLP, params, x, y + 3)
    with pytest.raises(ValueError, match="NaN"):
        C.curvature(MLP, params, x.at[0, 0].set(jnp.nan), y)
    with pytest.raises(ValueError, match="x must have shape"):
        C.curvature(MLP, params, x[:, :2], y)
    with pytest.raises(ValueError, match="y must"):
        C.curvature(MLP, params, x, y[:5])
    with pytest.raises(ValueError, match="batch_size"):
        L.laplace(MLP, priors.Gaussian(learn="layer"), (x, y), batch_size=0, progress=False)
    with pytest.raises(ValueError, match="n must be"):
        laplace_post(MLP, params, L.prior_precision(MLP, params), *mlp_case["diag", "ggn"]).sample_params(jax.random.key(0), 0)


# ----------------------------------------------------------------------------- the suite's architectures

ARCHS = {
    "lenet": lambda: nets.lenet5((8, 8, 1), 3),
    "mixer": lambda: nets.mixer((8, 8, 1), 3, patch=4, width=8, depth=1),
    "resnet": lambda: nets.resnet((8, 8, 1), 3, depth=8),
    "vit": lambda: nets.vit((8, 8, 1), 3, patch=4, width=8, depth=1, heads=2),
}
UNTAPPED = {"lenet": set(), "mixer": set(), "resnet": set(), "vit": {"block0_attn"}}  # attention heads: kind "attention"


@pytest.mark.parametrize("arch", [pytest.param(a, marks=() if a == "lenet" else pytest.mark.slow) for a in ARCHS])
def test_architectures_tap_based_diagonal_equals_per_example(arch):
    """On the suite's networks every dense/conv layer is tapped and the tap-based exact diagonal equals per-example VJPs."""
    net = ARCHS[arch]()
    params = net.init(jax.random.PRNGKey(0))
    x, y = make_data(jax.random.PRNGKey(1), net, 5)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        tp = C.tappable(net, params, x)
        diag, ll = C.curvature(net, params, x, y, kind="diag")
    assert {l.name for l in net.layers} - set(tp) == UNTAPPED[arch]
    ref, ll_ref = C._per_example_diag(net, Likelihood(), "ggn", tuple(params), params, x, y)
    np.testing.assert_allclose(ravel_pytree(diag.h)[0], ravel_pytree(ref)[0], rtol=1e-9, atol=1e-14)
    np.testing.assert_allclose(ll, ll_ref, rtol=1e-12)


def test_optimize_prior_returns_the_best_iterate_it_reached():
    """Adam on the log precision overshoots at a large rate; optimize_prior returns the best iterate seen, whose
    ln p(D | h) equals the maximum over the iterates replayed here step by step (not the last iterate)."""
    import optax

    x, y, sigma = linear_gaussian(n=30, seed=4)
    _, params, _ = exact_evidence_and_posterior(x, y, 1.0, 1.0, sigma)
    lik = Likelihood("gaussian", sigma)
    curv, ll = C.curvature(LIN1, params, x, y, lik, kind="diag")
    start = L.prior_precision(LIN1, params, "layer", 50.0)
    post = laplace_post(LIN1, params, start, curv, ll, lik, n=30)
    steps, lr = 25, 1.5
    lp, opt = start.log_prec, optax.adam(lr)
    state, values = opt.init(lp), []
    objective = lambda v: -L.log_marglik(post, L.PriorPrecision(v, "layer", start.layers)) / 30  # noqa: E731
    for _ in range(steps + 1):
        values.append(-float(objective(lp)) * 30)
        g = jax.grad(objective)(lp)
        updates, state = opt.update(g, state, lp)
        lp = optax.apply_updates(lp, updates)
    values = values[:steps + 1]
    assert values[-1] < max(values) - 1e-6  # the last iterate is not the best one here
    got = L.optimize_prior(post, steps=steps, lr=lr)
    np.testing.assert_allclose(float(L.log_marglik(got)), max(values), rtol=1e-10)
