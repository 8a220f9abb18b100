"""Tests for theory.contraction: hand-computed rates, monotonicity, exact Hellinger distances."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from scipy import integrate

from sparsebnn.nets import Layer, Network
from sparsebnn.nets import mlp
from sparsebnn.priors import inclusion_probs
from theory.contraction import (
    Architecture,
    architecture,
    contraction_rate,
    hellinger,
    hellinger_sq,
    inclusion_log_prob,
    mass_outside,
    r_terms,
    rate_slope,
    u_terms,
)

# ----------------------------------------------------------------------------- hand-computed cases


def test_u_terms_by_hand():
    u = u_terms((784, 400, 400, 10), 60000)
    ln = math.log
    expected = [
        9 * (ln(60000) + ln(3) + ln(785) + ln(400)),
        9 * (ln(60000) + ln(3) + ln(401) + ln(400)),
        9 * (ln(60000) + ln(3) + ln(401) + ln(10)),
    ]
    np.testing.assert_allclose(u, expected, rtol=1e-14)


def test_inclusion_matches_reference_values():
    """docs/priors.md: about 1.5e-3 and 2.3e-3 (the values of Jantre et al.'s code) for 784-400-400-10 with n = 60000."""
    pi = np.exp(inclusion_log_prob((784, 400, 400, 10), 60000))
    assert pi.shape == (2,)
    np.testing.assert_allclose(pi, [1.5e-3, 2.3e-3], rtol=0.03)


def test_inclusion_by_hand():
    ln = math.log
    n = 10.0
    u0 = 4 * (ln(n) + ln(2) + ln(3) + ln(3))  # widths (2, 3, 1): L = 1
    u1 = 4 * (ln(n) + ln(2) + ln(4) + ln(1))
    v0 = 3**2 + (ln(3) + ln(4)) + 1 + ln(3) + ln(n) + ln(u0 + u1)
    expected = -(ln(3) + 1e-9 * 3 * v0)
    np.testing.assert_allclose(inclusion_log_prob((2, 3, 1), n), [expected], rtol=1e-15)


def test_inclusion_agrees_with_the_prior_api():
    """Same numbers as the priors' own per-layer dict for the same network (one implementation)."""
    by_layer = inclusion_probs(mlp([20, 50, 30, 1]), 5000, "theory")
    np.testing.assert_allclose(
        np.exp(inclusion_log_prob((20, 50, 30, 1), 5000)), [by_layer["dense_0"], by_layer["dense_1"]], rtol=1e-14
    )


def _r_by_hand(n, pi, xi=0.0, x_bound=1.0):
    """widths (2, 3, 1), active (2,), bounds (1.5, 2), slab sd 0.5; written out from the README."""
    ln = math.log
    s = [2, 2, 1]
    b = [1.5, 2.0]
    sigma0 = 0.5
    p = [s[1] * (s[0] + 1), s[2] * (s[1] + 1)]  # 6, 3
    g = (2 * (s[0] + 1) * b[0]) * (2 * (s[1] + 1) * b[1])
    sig = [b[l] / (2 * x_bound * g * 2 * math.sqrt(n * ln(2 * sum(p)))) for l in range(2)]
    c = [ln(sigma0 / sig[l]) + b[l] ** 2 / sigma0**2 - 0.5 for l in range(2)]
    r0 = (p[0] * c[0] + 2 * ln(1 / pi) + (3 - 2) * ln(1 / (1 - pi))) / n
    r1 = p[1] * c[1] / n
    u = [4 * (ln(n) + ln(2) + ln(3) + ln(3)), 4 * (ln(n) + ln(2) + ln(4) + ln(1))]
    return [r0, r1], math.sqrt((r0 + r1 + xi) * sum(u))


def test_r_terms_and_rate_by_hand():
    arch = dict(widths=(2, 3, 1), active=(2,), bounds=(1.5, 2.0), slab_scale=0.5)
    r_expected, eps_expected = _r_by_hand(100.0, 0.25)
    np.testing.assert_allclose(r_terms(n=100.0, pi=0.25, **arch), r_expected, rtol=1e-13)
    np.testing.assert_allclose(contraction_rate(n=100.0, pi=0.25, **arch), eps_expected, rtol=1e-13)
    _, eps_xi = _r_by_hand(100.0, 0.25, xi=0.3)
    np.testing.assert_allclose(contraction_rate(n=100.0, xi=0.3, pi=0.25, **arch), eps_xi, rtol=1e-13)
    _, eps_x = _r_by_hand(100.0, 0.25, x_bound=4.0)
    np.testing.assert_allclose(contraction_rate(n=100, pi=0.25, input_bound=4.0, **arch), eps_x, rtol=1e-13)
    # the theory-driven pi is the default
    pi_theory = float(np.exp(inclusion_log_prob((2, 3, 1), 100.0))[0])
    _, eps_theory = _r_by_hand(100.0, pi_theory)
    np.testing.assert_allclose(contraction_rate(n=100.0, **arch), eps_theory, rtol=1e-12)


def test_rate_broadcasts_over_n():
    arch = ((20, 50, 50, 1), (5, 3), 3.0)
    ns = np.array([[500.0, 5000.0], [50000.0, 1e6]])
    eps = contraction_rate(*arch, ns)
    assert eps.shape == (2, 2)
    for idx in np.ndindex(2, 2):
        np.testing.assert_allclose(eps[idx], contraction_rate(*arch, ns[idx]), rtol=1e-14)
    assert r_terms(*arch, ns).shape == (2, 2, 3) and u_terms(arch[0], ns).shape == (2, 2, 3)
    assert inclusion_log_prob(arch[0], ns).shape == (2, 2, 2)


def test_single_output_linear_model():
    """L = 0: no hidden layer, no selection term, u_0 = ln n + ln(k_0+1) + ln k_1."""
    n = 1000.0
    eps = contraction_rate((4, 1), (), 1.0, n, slab_scale=1.0)
    p, g = 5, 2 * 5 * 1.0
    c = math.log(2 * g * math.sqrt(n * math.log(2 * p))) + 1.0 - 0.5
    u = math.log(n) + math.log(5) + math.log(1)
    np.testing.assert_allclose(eps, math.sqrt(p * c / n * u), rtol=1e-13)
    assert inclusion_log_prob((4, 1), n).shape == (0,)


def test_rate_slope_is_a_log_log_difference_and_tends_to_minus_half():
    arch = ((20, 50, 50, 1), (5, 3), 3.0)
    e1, e2 = contraction_rate(*arch, 500.0), contraction_rate(*arch, 50000.0)
    np.testing.assert_allclose(rate_slope(*arch, 500.0, 50000.0), math.log(e2 / e1) / math.log(100.0), rtol=1e-13)
    assert -0.5 < rate_slope(*arch, 500.0, 50000.0) < -0.4
    # eps_n^2 ~ polylog(n) / n: the slope tends to -1/2 from above like 1/ln n
    assert abs(rate_slope(*arch, 1e40, 1e41) + 0.5) < 0.02


def test_fixed_pi_and_fan_in():
    arch = ((20, 50, 50, 1), (5, 3), 3.0)
    # the tiny fixed pi = 1e-4 costs more per active node than the theory pi (about 1/k_l here)
    assert contraction_rate(*arch, 5000.0, pi=1e-4) > contraction_rate(*arch, 5000.0)
    assert contraction_rate(*arch, 5000.0, pi=[1e-4, 1e-4]) == contraction_rate(*arch, 5000.0, pi=1e-4)
    # wider layers at fixed active nodes: slower rate
    wide = contraction_rate((20, 400, 400, 1), (5, 3), 3.0, 5000.0)
    assert wide > contraction_rate(*arch, 5000.0)


def test_xi_floors_the_rate():
    """With xi > 0 the product form gives eps_n >= sqrt(xi sum u_l), which grows like sqrt(ln n)."""
    arch = ((20, 50, 50, 1), (5, 3), 3.0)
    for n in (1e3, 1e6, 1e12):
        assert contraction_rate(*arch, n, 0.01) >= math.sqrt(0.01 * u_terms(arch[0], n).sum())
    assert contraction_rate(*arch, 1e30, 0.01) > contraction_rate(*arch, 1e6, 0.01)


# ----------------------------------------------------------------------------- monotonicity


@st.composite
def architectures(draw):
    depth = draw(st.integers(1, 3))
    k_in = draw(st.integers(1, 1000))
    hidden = [draw(st.integers(1, 1000)) for _ in range(depth)]
    k_out = draw(st.integers(1, 10))
    active = [draw(st.integers(1, k)) for k in hidden]
    bounds = [draw(st.floats(1.0, 100.0)) for _ in range(depth + 1)]
    return Architecture((k_in, *hidden, k_out), tuple(active), tuple(bounds))


pis = st.one_of(st.none(), st.floats(1e-8, 0.49))
slab_scales = st.floats(0.1, 10.0)


@given(architectures(), st.integers(16, 10**9), st.floats(1.01, 100.0), pis, slab_scales)
def test_rate_decreases_in_n(arch, n, factor, pi, slab):
    """Proved for xi = 0 and n >= 12 (README); the d ln eps / d ln n bound is checked too."""
    m = math.ceil(n * factor)
    assert contraction_rate(*arch, m, pi=pi, slab_scale=slab) < contraction_rate(*arch, n, pi=pi, slab_scale=slab)
    bound = 0.5 * ((2 + 1 / math.log(n)) / math.log(n) - 1)  # sup of d ln eps / d ln n over [n, m]
    assert rate_slope(*arch, n, m, pi=pi, slab_scale=slab) <= bound


@given(architectures(), st.data(), st.integers(2, 10**9), pis, slab_scales)
def test_rate_increases_in_active_nodes(arch, data, n, pi, slab):
    layer = data.draw(st.integers(0, len(arch.active) - 1))
    assume(arch.active[layer] < arch.widths[layer + 1])
    more = list(arch.active)
    more[layer] += data.draw(st.integers(1, arch.widths[layer + 1] - arch.active[layer]))
    kw = dict(pi=pi, slab_scale=slab)
    assert contraction_rate(arch.widths, more, arch.bounds, n, **kw) > contraction_rate(*arch, n, **kw)
    assert np.all(r_terms(arch.widths, more, arch.bounds, n, **kw) >= r_terms(*arch, n, **kw))


@given(architectures(), st.data(), st.integers(2, 10**9), pis, slab_scales)
def test_rate_increases_in_widths(arch, data, n, pi, slab):
    layer = data.draw(st.integers(0, len(arch.widths) - 1))  # input, hidden or output width
    wider = list(arch.widths)
    wider[layer] += data.draw(st.integers(1, 1000))
    kw = dict(pi=pi, slab_scale=slab)
    assert contraction_rate(wider, arch.active, arch.bounds, n, **kw) > contraction_rate(*arch, n, **kw)


@given(architectures(), st.data(), st.integers(2, 10**9), pis, slab_scales)
def test_rate_increases_in_bounds(arch, data, n, pi, slab):
    layer = data.draw(st.integers(0, len(arch.bounds) - 1))
    larger = list(arch.bounds)
    larger[layer] *= data.draw(st.floats(1.01, 10.0))
    kw = dict(pi=pi, slab_scale=slab)
    assert contraction_rate(arch.widths, arch.active, larger, n, **kw) > contraction_rate(*arch, n, **kw)


@given(architectures(), st.integers(2, 10**9), pis, slab_scales)
def test_terms_are_positive_and_pi_below_one_over_width(arch, n, pi, slab):
    assert np.all(r_terms(*arch, n, pi=pi, slab_scale=slab) > 0)
    assert np.all(u_terms(arch.widths, n) > 0)
    log_pi = inclusion_log_prob(arch.widths, n)
    assert np.all(log_pi <= -np.log(arch.widths[1:-1]))  # pi_{l} <= 1 / k_l
    assert np.all(np.isfinite(log_pi))


# ----------------------------------------------------------------------------- architecture()


def test_architecture_of_a_sparse_teacher():
    net = mlp([3, 5, 4, 1])
    rng = np.random.default_rng(0)
    params = {f"dense_{i}": {"w": rng.normal(size=(a, b)), "b": np.zeros(b)} for i, (a, b) in enumerate([(3, 5), (5, 4), (4, 1)])}
    params["dense_0"]["w"][:, 1:3] = 0.0  # 2 of 5 nodes off
    params["dense_1"]["w"][:, 0] = 0.0  # 1 of 4 nodes off (bias is 0)
    params["dense_1"]["w"][:, 1] = 0.0
    params["dense_1"]["b"][1] = 0.5  # a bias alone keeps a node on
    params["dense_2"]["w"][0, 0] = -7.5
    arch = architecture(net, params)
    assert arch.widths == (3, 5, 4, 1) and arch.active == (3, 3)
    assert arch.bounds[2] == 7.5 and all(b >= 1.0 for b in arch.bounds)
    assert np.isfinite(contraction_rate(*arch, 1000.0))


def test_architecture_rejects_non_mlps():
    conv = Network("c", None, None, (Layer("c0", "conv", 9, 4), Layer("d", "dense", 4, 1, False)), (3, 3, 1), 1)
    with pytest.raises(ValueError, match="dense"):
        architecture(conv, {})
    skip = Network("s", None, None, (Layer("a", "dense", 3, 4), Layer("b", "dense", 5, 1, False)), (3,), 1)
    with pytest.raises(ValueError, match="fan-in"):
        architecture(skip, {})


# ----------------------------------------------------------------------------- rate bad inputs

GOOD = dict(widths=(20, 50, 50, 1), active=(5, 3), bounds=3.0, n=1000.0)


@pytest.mark.parametrize(
    "change, match",
    [
        (dict(widths=(20,)), "widths"),
        (dict(widths=(20, 0, 50, 1)), "widths"),
        (dict(widths=(20, 50.5, 50, 1)), "widths"),
        (dict(widths=[[20, 50], [50, 1]]), "widths"),
        (dict(widths=("a", "b", "c", "d")), "widths"),
        (dict(active=(5,)), "active"),
        (dict(active=(0, 3)), "active"),
        (dict(active=(51, 3)), "active"),
        (dict(bounds=(3.0, 3.0)), "bounds"),
        (dict(bounds=0.5), "bounds"),
        (dict(bounds=np.nan), "bounds"),
        (dict(bounds="big"), "bounds"),
        (dict(n=1.0), "n"),
        (dict(n=100.5), "n"),
        (dict(n=-5.0), "n"),
        (dict(n=np.inf), "n"),
        (dict(n=[100.0, np.nan]), "n"),
        (dict(xi=-0.1), "xi"),
        (dict(xi=np.nan), "xi"),
        (dict(xi=[0.1, 0.2]), "xi"),
        (dict(pi=0.0), "pi"),
        (dict(pi=1.0), "pi"),
        (dict(pi=[0.1, 0.2, 0.3]), "pi"),
        (dict(slab_scale=0.0), "slab_scale"),
        (dict(slab_scale=-1.0), "slab_scale"),
        (dict(input_bound=0.5), "input_bound"),
        (dict(input_bound=[2.0, 3.0]), "input_bound"),
    ],
)
def test_rate_bad_inputs_raise(change, match):
    with pytest.raises(ValueError, match=match):
        contraction_rate(**{**GOOD, **change})


def test_other_bad_inputs_raise():
    with pytest.raises(ValueError, match="n1 and n2"):
        rate_slope((20, 50, 1), (5,), 3.0, 500.0, 500.0)
    with pytest.raises(ValueError, match="underflows"):
        inclusion_log_prob((20000, 50, 1), 500)
    with pytest.raises(ValueError, match="n"):
        u_terms((20, 50, 1), 0.5)


# ----------------------------------------------------------------------------- Hellinger distance


def _hellinger_sq_quad(a, b, sigma):
    """1 - int sqrt(N(y; a, s^2) N(y; b, s^2)) dy by numerical integration."""
    norm = 1.0 / (sigma * math.sqrt(2 * math.pi))
    f = lambda y: norm * math.exp(-((y - a) ** 2 + (y - b) ** 2) / (4 * sigma**2))  # sqrt of the density product
    mid = 0.5 * (a + b)
    bc = integrate.quad(f, -np.inf, mid, epsabs=1e-13, epsrel=1e-12)[0]
    bc += integrate.quad(f, mid, np.inf, epsabs=1e-13, epsrel=1e-12)[0]
    return 1.0 - bc


@given(st.floats(-50, 50), st.floats(1e-2, 1e2), st.integers(0, 2**31 - 1))
def test_hellinger_shift_closed_form(delta, sigma, seed):
    with jax.enable_x64(True):
        truth = np.random.default_rng(seed).normal(size=16) * 3.0
        d2 = hellinger_sq(truth + delta, truth, sigma)
        np.testing.assert_allclose(d2, -math.expm1(-(delta**2) / (8 * sigma**2)), rtol=1e-9, atol=1e-15)  # atol: (t + delta) - t rounds


@given(
    st.lists(st.tuples(st.floats(-5, 5), st.floats(-5, 5)), min_size=3, max_size=3),
    st.floats(0.2, 5.0),
)
def test_hellinger_matches_numerical_integration(pairs, sigma):
    a, b = map(np.array, zip(*pairs))
    with jax.enable_x64(True):
        d2 = float(hellinger_sq(a, b, sigma))
    expected = np.mean([_hellinger_sq_quad(ai, bi, sigma) for ai, bi in pairs])
    np.testing.assert_allclose(d2, expected, rtol=1e-7, atol=1e-11)


@given(st.integers(0, 2**31 - 1), st.floats(0.05, 5.0))
def test_hellinger_properties(seed, sigma):
    rng = np.random.default_rng(seed)
    truth = rng.normal(size=7)
    draws = truth + rng.normal(size=(5, 7))
    with jax.enable_x64(True):
        d2 = hellinger_sq(draws, truth, sigma)
        assert d2.shape == (5,)
        assert np.all((d2 >= 0) & (d2 < 1))
        np.testing.assert_allclose(d2, hellinger_sq(truth, draws, sigma), rtol=1e-14)  # symmetric
        np.testing.assert_allclose(d2, [hellinger_sq(d, truth, sigma) for d in draws], rtol=1e-14)
        np.testing.assert_allclose(hellinger(draws, truth, sigma), np.sqrt(d2), rtol=1e-14)
        assert float(hellinger_sq(truth, truth, sigma)) == 0.0
        # a larger noise makes the models harder to tell apart
        assert np.all(hellinger_sq(draws, truth, 2 * sigma) <= d2)


def test_hellinger_jits_and_is_accurate_for_tiny_differences():
    with jax.enable_x64(True):
        pred, truth = jnp.array([1e-9, -2e-9]), jnp.zeros(2)
        d2 = jax.jit(hellinger_sq)(pred, truth, 1.0)
        np.testing.assert_allclose(d2, np.mean(np.array([1e-18, 4e-18]) / 8), rtol=1e-12)
        np.testing.assert_allclose(d2, hellinger_sq(pred, truth, 1.0), rtol=1e-15)


@pytest.mark.parametrize(
    "pred, truth, sigma, match",
    [
        (np.zeros((3, 4)), np.zeros(5), 1.0, "last"),
        (np.zeros((3, 4)), np.zeros((2, 4)), 1.0, "broadcast"),
        (np.float64(1.0), np.zeros(4), 1.0, "last axis"),
        (np.zeros(0), np.zeros(0), 1.0, "non-empty"),
        (np.zeros(4), np.zeros(4), 0.0, "noise_scale"),
        (np.zeros(4), np.zeros(4), -1.0, "noise_scale"),
        (np.zeros(4), np.zeros(4), np.ones(4), "noise_scale"),
        (np.array([0.0, np.nan]), np.zeros(2), 1.0, "pred"),
        (np.zeros(2), np.array([np.nan, 0.0]), 1.0, "truth"),
    ],
)
def test_hellinger_bad_inputs_raise(pred, truth, sigma, match):
    with pytest.raises(ValueError, match=match):
        hellinger_sq(pred, truth, sigma)


# ----------------------------------------------------------------------------- mass outside a ball


def test_mass_outside_by_hand():
    d = jnp.array([0.1, 0.2, 0.3, 0.4])
    assert float(mass_outside(d, 0.25)) == 0.5
    assert float(mass_outside(d, 0.3)) == 0.25  # strictly outside
    assert float(mass_outside(d, 0.0)) == 1.0 and float(mass_outside(d, 1.0)) == 0.0
    np.testing.assert_array_equal(mass_outside(d[None, :], jnp.array([0.05, 0.35])), [1.0, 0.25])
    np.testing.assert_array_equal(mass_outside(jnp.stack([d, 2 * d]), jnp.array([0.25, 0.25])), [0.5, 0.75])
    np.testing.assert_array_equal(jax.jit(mass_outside)(d, 0.25), 0.5)


@given(st.lists(st.floats(0.0, 10.0, allow_subnormal=False), min_size=32, max_size=32), st.floats(0.0, 10.0))
def test_mass_outside_matches_numpy(dists, radius):
    """(XLA on CPU flushes subnormals to zero, hence no subnormal distances.)"""
    with jax.enable_x64(True):
        out = mass_outside(np.array(dists), radius)
    np.testing.assert_allclose(out, np.mean(np.array(dists) > radius), rtol=1e-12)


@pytest.mark.parametrize(
    "dists, radius, match",
    [
        (np.zeros(0), 0.1, "dists"),
        (np.float64(0.3), 0.1, "dists"),
        (np.array([0.1, -0.2]), 0.1, "dists"),
        (np.array([0.1, np.nan]), 0.1, "dists"),
        (np.array([0.1, 0.2]), -0.1, "radius"),
        (np.array([0.1, 0.2]), np.nan, "radius"),
        (np.zeros((3, 4)), np.ones(2), "radius"),
    ],
)
def test_mass_outside_bad_inputs_raise(dists, radius, match):
    with pytest.raises(ValueError, match=match):
        mass_outside(dists, radius)


# ----------------------------------------------------------------------------- the README's perturbation lemma


@given(st.integers(0, 2**31 - 1), st.integers(1, 3), st.floats(1.0, 5.0))
def test_perturbation_lemma(seed, depth, x_bound):
    """|eta_theta(x) - eta_theta'(x)| <= X sum_l (delta_l / B_l) prod_m (s_m + 1) B_m (README, step 3),
    for ReLU networks whose entries (of both theta and theta') are bounded by B_l and differ by <= delta_l."""
    rng = np.random.default_rng(seed)
    s = rng.integers(1, 7, depth + 2)
    bound = rng.uniform(1.0, 3.0, depth + 1)
    delta = bound * rng.uniform(0.0, 1.0, depth + 1)
    theta, theta2 = [], []
    for l in range(depth + 1):
        w = rng.uniform(-bound[l], bound[l], (s[l] + 1, s[l + 1]))  # last row: bias
        w2 = np.clip(w + rng.uniform(-delta[l], delta[l], w.shape), -bound[l], bound[l])
        theta.append(w)
        theta2.append(w2)

    def eta(params, x):
        h = x
        for l, w in enumerate(params):
            h = h @ w[:-1] + w[-1]
            h = np.maximum(h, 0.0) if l < depth else h
        return h

    x = rng.uniform(-x_bound, x_bound, (64, s[0]))
    x[0] = x_bound * rng.choice([-1.0, 1.0], s[0])  # a corner of the cube
    gap = np.max(np.abs(eta(theta, x) - eta(theta2, x)))
    lip = x_bound * np.sum(delta / bound) * np.prod((s[:-1] + 1) * bound)
    assert gap <= lip * (1 + 1e-12)
