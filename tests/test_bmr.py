"""sparsebnn.bmr against exact answers: conjugate regression (theory.savage_dickey), quadrature,
exact rational arithmetic, and its own identities."""

from decimal import Decimal, localcontext
from fractions import Fraction

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import assume, given
from hypothesis import strategies as st
from scipy import integrate, special, stats

from sparsebnn import bmr, nets
from theory import savage_dickey as sd


# (|ΔF - exact|, |exact|) for every exact-regression check run in this process; summarised at the end
# of the module (visible with ``pytest -s``), which is how the thorough run's largest error is reported.
_ERRORS: list[tuple[float, float]] = []


@pytest.fixture(autouse=True, scope="module")
def x64():
    with jax.enable_x64(True):
        yield
    if _ERRORS:
        err, ref = np.array(_ERRORS).T
        big = ref > 1e-3
        print(
            f"\n[test_bmr] {len(err)} exact-regression checks: max |ΔF - exact| = {err.max():.3g} "
            f"(at |exact| = {ref[err.argmax()]:.3g}); max relative error (|exact| > 1e-3) = "
            f"{(err[big] / ref[big]).max() if big.any() else 0:.3g}; max error / tolerance = "
            f"{(err / (1e-8 * ref + 1e-10)).max():.3g}"
        )


# ---------------------------------------------------------------------------------------------
# strategies
# ---------------------------------------------------------------------------------------------


@st.composite
def problems(draw, correlated=None, max_k=8, max_n=30):
    """A conjugate regression with varying size, conditioning (cond(X) ≤ 1e4), noise and prior."""
    k = draw(st.integers(1, max_k))
    n = draw(st.integers(1, max_n))
    cond = 10.0 ** draw(st.floats(0, 4))
    noise_var = 10.0 ** draw(st.floats(-4, 2))
    corr = draw(st.booleans()) if correlated is None else correlated
    rng = np.random.default_rng(draw(st.integers(0, 2**32 - 1)))
    prior_range = (1e-1, 1e1) if corr else (1e-2, 1e2)
    return sd.random_regression(rng, k, n, cond, noise_var, corr, prior_range), rng


def log_uniform(lo, hi):
    return st.floats(lo, hi).map(lambda e: 10.0**e)


def reals(lo, hi):
    # XLA on CPU flushes subnormal numbers to zero, so they are not drawn.
    return st.floats(lo, hi, allow_subnormal=False)


means = reals(-5, 5)
variances = log_uniform(-3, 3)


@st.composite
def scalar_cases(draw, spike=None, var_exp=(-3.0, 3.0), mean=means):
    """(μ, s², m0, s0², m̃, s̃²) with a positive reduced precision; s̃² = 0 (spike) in about 1/4 of cases."""
    var = log_uniform(*var_exp)
    pm, pv, m0, v0, rm = draw(mean), draw(var), draw(mean), draw(var), draw(mean)
    is_spike = draw(st.integers(0, 3)) == 0 if spike is None else spike
    rv = 0.0 if is_spike else v0 * 10.0 ** draw(st.floats(-6, 2))
    assume(rv == 0 or 1 / pv + 1 / rv - 1 / v0 > 1e-8 / pv)
    return pm, pv, m0, v0, rm, rv


def _d_condition(pv, v0, rv):
    """d = a + r - ar and its relative condition: 1 unless a, r > 1, where d = 1 - (a-1)(r-1) can cancel."""
    a, r = pv / v0, rv / v0
    d = a + r - a * r
    return d, (1 + (a - 1) * (r - 1)) / d if (a > 1 and r > 1) else 1.0


def _std_scale(pm, pv, m0, v0, rm, rv):
    """The size of the terms ΔF is made of: an error scale for comparisons (a condition number)."""
    a, r = pv / v0, rv / v0
    d, kappa = _d_condition(pv, v0, rv)
    z, v, u = (pm - m0) ** 2 / v0, (rm - m0) ** 2 / v0, (pm - rm) ** 2 / v0
    return 1 + (u + r * z + a * v) / d * kappa + kappa + abs(np.log(d))


# ---------------------------------------------------------------------------------------------
# exact conjugate regression
# ---------------------------------------------------------------------------------------------


def _exact_close(df, exact):
    """|ΔF - exact| <= 1e-8 |exact| + 1e-10 (the floor covers ΔF ≈ 0, where only rounding is left)."""
    assert np.isfinite(df)
    _ERRORS.append((abs(df - exact), abs(exact)))
    assert abs(df - exact) <= 1e-8 * abs(exact) + 1e-10, (df, exact, abs(df - exact))


def _drop(reg, rng):
    k = len(reg.prior_mean)
    drop = rng.random(k) < rng.uniform(0, 1)
    value = rng.normal(size=drop.sum()) * rng.choice([0.0, 1.0])
    red_mean, red_cov = reg.prior_mean.copy(), reg.prior_cov.copy()
    red_mean[drop] = value
    red_cov[drop, :] = 0
    red_cov[:, drop] = 0
    return drop, value, red_mean, red_cov


def _shrink(reg, rng):
    k = len(reg.prior_mean)
    f = np.sqrt(rng.uniform(0, 1, k) * (rng.random(k) < 0.8))  # some exactly 0: spikes
    red_cov = f[:, None] * reg.prior_cov * f[None, :]
    red_mean = reg.prior_mean + rng.normal(size=k) * np.sqrt(np.diag(reg.prior_cov)) * rng.choice([0.0, 1.0])
    return red_mean, red_cov


@given(problems())
def test_full_cov_drop_subset_is_exact_log_bayes_factor(case):
    reg, rng = case
    drop, value, red_mean, red_cov = _drop(reg, rng)
    post_mean, post_cov = sd.posterior(*reg)
    df = float(bmr.delta_f_mvn(post_mean, post_cov, reg.prior_mean, reg.prior_cov, red_mean, red_cov))
    _exact_close(df, sd.log_bayes_factor(*reg, reg.prior_mean, reg.prior_cov, drop, value))


@given(problems())
def test_full_cov_shrink_is_exact_log_bayes_factor(case):
    reg, rng = case
    red_mean, red_cov = _shrink(reg, rng)
    post_mean, post_cov = sd.posterior(*reg)
    df = float(bmr.delta_f_mvn(post_mean, post_cov, reg.prior_mean, reg.prior_cov, red_mean, red_cov))
    exact = sd.log_bayes_factor(*reg, red_mean, red_cov)
    _exact_close(df, exact)


@given(problems())
def test_per_coordinate_delta_f_is_exact_savage_dickey(case):
    """Spike on one coordinate with the exact marginal posterior == the exact SD log ratio (any prior);
    for an independent prior that is also the exact log Bayes factor of dropping it."""
    reg, rng = case
    post_mean, post_cov = sd.posterior(*reg)
    value = rng.normal() * rng.choice([0.0, 1.0])
    df = bmr.delta_f(post_mean, np.diag(post_cov), reg.prior_mean, np.diag(reg.prior_cov), value, 0.0)
    i = int(rng.integers(len(post_mean)))
    _exact_close(float(df[i]), sd.savage_dickey(*reg, [i], value))
    if not np.any(reg.prior_cov - np.diag(np.diag(reg.prior_cov))):
        exact = sd.log_evidence(*reg, drop=[i], drop_value=value) - sd.log_evidence(*reg)
        _exact_close(float(df[i]), exact)


@given(problems(correlated=False))
def test_per_coordinate_delta_f_any_reduced_prior_is_exact(case):
    """Changing one coordinate's (independent) prior: ΔF depends only on its exact marginal."""
    reg, rng = case
    k = len(reg.prior_mean)
    i = int(rng.integers(k))
    post_mean, post_cov = sd.posterior(*reg)
    red_mean, red_cov = reg.prior_mean.copy(), reg.prior_cov.copy()
    red_mean[i] += rng.normal() * np.sqrt(red_cov[i, i])
    red_cov[i, i] *= 10.0 ** rng.uniform(-8, 0) * (rng.random() < 0.8)
    df = float(bmr.delta_f(post_mean[i], post_cov[i, i], reg.prior_mean[i], reg.prior_cov[i, i], red_mean[i], red_cov[i, i]))
    exact = sd.log_bayes_factor(*reg, red_mean, red_cov)
    _exact_close(df, exact)
    # Its reduced posterior is the exact marginal of the reduced model.
    mean, var = bmr.reduced_posterior(post_mean[i], post_cov[i, i], reg.prior_mean[i], reg.prior_cov[i, i], red_mean[i], red_cov[i, i])
    ex_mean, ex_cov = sd.posterior(*reg[:3], red_mean, red_cov) if red_cov[i, i] > 0 else sd.posterior(*reg, drop=[i], drop_value=red_mean[i])
    np.testing.assert_allclose(float(mean), ex_mean[i], rtol=1e-8, atol=1e-10 * (1 + abs(ex_mean[i])))
    np.testing.assert_allclose(float(var), ex_cov[i, i], rtol=1e-7, atol=1e-14 * post_cov[i, i])


@given(problems())
def test_reduced_posterior_mvn_is_exact_posterior_of_reduced_model(case):
    reg, rng = case
    post_mean, post_cov = sd.posterior(*reg)
    if rng.random() < 0.5:
        drop, value, red_mean, red_cov = _drop(reg, rng)
        ex_mean, ex_cov = sd.posterior(*reg, drop=drop, drop_value=value)
    else:
        red_mean, red_cov = _shrink(reg, rng)
        ex_mean, ex_cov = sd.posterior(*reg[:3], red_mean, red_cov)
    mean, cov = bmr.reduced_posterior_mvn(post_mean, post_cov, reg.prior_mean, reg.prior_cov, red_mean, red_cov)
    scale = np.sqrt(np.diag(post_cov))
    np.testing.assert_allclose(np.asarray(mean), ex_mean, rtol=1e-7, atol=1e-9 * (np.abs(ex_mean).max() + scale.max()))
    np.testing.assert_allclose(np.asarray(cov), ex_cov, rtol=1e-6, atol=1e-9 * np.abs(post_cov).max())
    spikes = np.diag(red_cov) == 0
    assert np.array_equal(np.asarray(mean)[spikes], red_mean[spikes])  # exactly the spike
    assert not np.asarray(cov)[spikes].any()


# ---------------------------------------------------------------------------------------------
# identities
# ---------------------------------------------------------------------------------------------


@given(scalar_cases())
def test_no_reduction_gives_zero(case):
    pm, pv, m0, v0, _, _ = case
    assert float(bmr.delta_f(pm, pv, m0, v0, m0, v0)) == 0.0  # exactly
    mean, var = bmr.reduced_posterior(pm, pv, m0, v0, m0, v0)
    np.testing.assert_allclose([float(mean), float(var)], [pm, pv], rtol=1e-14, atol=1e-14 * (abs(m0) + abs(pm)))


@given(st.integers(1, 6), st.integers(0, 2**32 - 1))
def test_mvn_matches_precision_form_for_any_gaussian_posterior(k, seed):
    """For an arbitrary (approximate) posterior, even wider than the prior, and an invertible reduced
    prior inside the full one, ΔF equals the precision formula of docs/bmr.md evaluated with numpy."""
    rng = np.random.default_rng(seed)

    def spd(scale):
        q = np.linalg.qr(rng.normal(size=(k, k)))[0]
        return q @ np.diag(scale * 10.0 ** rng.uniform(-1, 1, k)) @ q.T

    S0 = spd(1.0)
    S = spd(10.0 ** rng.uniform(-2, 1))
    L0 = np.linalg.cholesky(S0)
    St = L0 @ np.diag(rng.uniform(0.05, 1, k)) @ L0.T  # S̃ ⪯ S0, so the reduced precision is > 0
    mu, m0, mt = rng.normal(size=(3, k))
    P, P0, Pt = (np.linalg.inv(x) for x in (S, S0, St))
    Pr = P + Pt - P0
    mr = np.linalg.solve(Pr, P @ mu + Pt @ mt - P0 @ m0)
    logdet = lambda x: np.linalg.slogdet(x)[1]  # noqa: E731
    ref = 0.5 * (logdet(P) + logdet(Pt) - logdet(Pr) - logdet(P0)) - 0.5 * (
        mu @ P @ mu + mt @ Pt @ mt - m0 @ P0 @ m0 - mr @ Pr @ mr
    )
    assert abs(float(bmr.delta_f_mvn(mu, S, m0, S0, mt, St)) - ref) <= 1e-9 * (1 + abs(ref))
    mean, cov = bmr.reduced_posterior_mvn(mu, S, m0, S0, mt, St)
    np.testing.assert_allclose(np.asarray(cov), np.linalg.inv(Pr), rtol=1e-8, atol=1e-12)
    np.testing.assert_allclose(np.asarray(mean), mr, rtol=1e-8, atol=1e-10)


@given(problems())
def test_no_reduction_gives_zero_mvn(case):
    reg, _ = case
    post_mean, post_cov = sd.posterior(*reg)
    args = (post_mean, post_cov, reg.prior_mean, reg.prior_cov, reg.prior_mean, reg.prior_cov)
    assert abs(float(bmr.delta_f_mvn(*args))) <= 1e-10
    mean, cov = bmr.reduced_posterior_mvn(*args)
    np.testing.assert_allclose(np.asarray(cov), post_cov, rtol=1e-8, atol=1e-10 * np.abs(post_cov).max())


@given(scalar_cases(spike=True))
def test_spike_is_savage_dickey_and_continuous(case):
    """red_var = 0 is ln q(m̃) - ln p(m̃) exactly, and ΔF(red_var = t) → ΔF(0) linearly as t → 0."""
    pm, pv, m0, v0, rm, _ = case
    df0 = float(bmr.delta_f(pm, pv, m0, v0, rm, 0.0))
    sdr = stats.norm(pm, np.sqrt(pv)).logpdf(rm) - stats.norm(m0, np.sqrt(v0)).logpdf(rm)
    assert abs(df0 - sdr) <= 1e-12 * _std_scale(pm, pv, m0, v0, rm, 0.0)
    # |dΔF/dr| at r = s̃²/s0² = 0 is at most (1 + |1-a|/a)(1 + u²/a + v²) + z²/a.
    a = pv / v0
    z2, v2, u2 = (pm - m0) ** 2 / v0, (rm - m0) ** 2 / v0, (pm - rm) ** 2 / v0
    slope = (1 + abs(1 - a) / a) * (1 + u2 / a + v2) + z2 / a
    gaps = []
    for r in (1e-6, 1e-9, 1e-12):
        gap = abs(float(bmr.delta_f(pm, pv, m0, v0, rm, r * v0)) - df0)
        assert gap <= 2 * r * slope + 1e-12 * _std_scale(pm, pv, m0, v0, rm, 0.0)
        gaps.append(gap)
    mean, var = bmr.reduced_posterior(pm, pv, m0, v0, rm, 0.0)
    assert float(mean) == rm and float(var) == 0.0


@given(problems())
def test_continuity_mvn_as_reduced_cov_vanishes(case):
    reg, rng = case
    drop, value, red_mean, spike_cov = _drop(reg, rng)
    post_mean, post_cov = sd.posterior(*reg)
    base = (post_mean, post_cov, reg.prior_mean, reg.prior_cov, red_mean)
    df0 = float(bmr.delta_f_mvn(*base, spike_cov))
    t_cov = spike_cov + np.diag(np.where(drop, np.diag(reg.prior_cov), 0.0))
    ts = (1e-8, 1e-12, 1e-16, 1e-20)  # the slope can be ~1e10 nats when the data are strong
    gaps = [abs(float(bmr.delta_f_mvn(*base, spike_cov + t * (t_cov - spike_cov))) - df0) for t in ts]
    assert gaps[-1] <= 1e-8 * (1 + abs(df0)) and gaps[-1] <= gaps[0] + 1e-12 * (1 + abs(df0))


@given(st.integers(1, 6).flatmap(lambda k: st.lists(scalar_cases(), min_size=k, max_size=k)))
def test_group_delta_f_is_sum_for_diagonal_posterior(cases):
    pm, pv, m0, v0, rm, rv = (np.array(c) for c in zip(*cases))
    per_weight = bmr.delta_f(pm, pv, m0, v0, rm, rv)
    mvn = bmr.delta_f_mvn(pm, np.diag(pv), m0, np.diag(v0), rm, np.diag(rv))
    scale = sum(_std_scale(*c) for c in cases)
    assert abs(float(mvn) - float(per_weight.sum())) <= 1e-11 * scale
    # Grouping by an explicit index == numpy's bincount of the members.
    rng = np.random.default_rng(len(cases))
    index = rng.integers(0, 3, len(cases))
    np.testing.assert_allclose(bmr.group_delta_f(per_weight, index, 3), np.bincount(index, np.asarray(per_weight), 3), rtol=1e-14)


def test_node_delta_f_follows_node_groups():
    net = nets.mlp([4, 5, 3, 2])
    params = net.init(jax.random.PRNGKey(0))
    prior_var = {name: {"w": 1.0, "b": 2.0} for name in params}
    df = bmr.delta_f(params, jax.tree_util.tree_map(lambda x: 0.1 + 0 * x, params), 0.0, prior_var)
    for layer in net.layers:
        manual = df[layer.name]["w"].sum(axis=0) + df[layer.name]["b"]
        np.testing.assert_allclose(bmr.node_delta_f(df, layer), manual, rtol=1e-13)
        index = np.broadcast_to(np.arange(layer.n_nodes), df[layer.name]["w"].shape)
        np.testing.assert_allclose(bmr.group_delta_f(df[layer.name]["w"], index, layer.n_nodes), df[layer.name]["w"].sum(0), rtol=1e-13)
    # Each leaf used its own prior variance.
    np.testing.assert_allclose(df["dense_0"]["b"], bmr.delta_f(params["dense_0"]["b"], 0.1, 0.0, 2.0))


@pytest.mark.filterwarnings("ignore::scipy.integrate.IntegrationWarning")  # quad's own roundoff notice
@given(scalar_cases(var_exp=(-1.5, 1.5), mean=reals(-3, 3)))
def test_matches_numerical_integration(case):
    """ΔF == ln ∫ q(w) p̃(w) / p(w) dw by adaptive quadrature (red_var > 0)."""
    pm, pv, m0, v0, rm, rv = case
    assume(rv > 1e-4 * v0)
    prec = 1 / pv + 1 / rv - 1 / v0
    centre = (pm / pv + rm / rv - m0 / v0) / prec  # only where to centre the quadrature
    width = 1 / np.sqrt(prec)
    def log_normal(w, m, v):
        return -0.5 * ((w - m) ** 2 / v + np.log(2 * np.pi * v))

    def h(w):  # ln q(w) + ln p̃(w) - ln p(w)
        return log_normal(w, pm, pv) + log_normal(w, rm, rv) - log_normal(w, m0, v0)

    h0 = h(centre)
    # In units of the reduced posterior's width the integrand is exp(-t²/2): ±20 loses < e⁻²⁰⁰.
    val, _ = integrate.quad(lambda t: np.exp(h(centre + width * t) - h0), -20, 20, epsabs=0, epsrel=1e-12, limit=200)
    numeric = h0 + np.log(width * val)
    assert abs(float(bmr.delta_f(pm, pv, m0, v0, rm, rv)) - numeric) <= 1e-9 * (1 + abs(numeric))


def _exact_rational_delta_f(pm, pv, m0, v0, rm, rv) -> float:
    """ΔF from the precision form of docs/bmr.md in exact rational arithmetic (logs to 50 digits)."""
    pm, pv, m0, v0, rm = (Fraction(x) for x in (pm, pv, m0, v0, rm))
    pi, pi0 = 1 / pv, 1 / v0
    if rv == 0:  # ln q(m̃) - ln p(m̃)
        ratio, quad = pi / pi0, pi * (rm - pm) ** 2 - pi0 * (rm - m0) ** 2
    else:
        pit = 1 / Fraction(rv)
        pired = pi + pit - pi0
        mred = (pi * pm + pit * rm - pi0 * m0) / pired
        ratio = pi * pit / (pi0 * pired)
        quad = pi * pm**2 + pit * rm**2 - pi0 * m0**2 - pired * mred**2
    with localcontext() as ctx:
        ctx.prec = 50
        log = Decimal(ratio.numerator).ln() - Decimal(ratio.denominator).ln()
        return float(log / 2 - Decimal(quad.numerator) / Decimal(quad.denominator) / 2)


@given(scalar_cases(var_exp=(-30.0, 30.0), mean=reals(-1e10, 1e10)))
def test_extreme_inputs_finite_and_accurate(case):
    """Variances 1e-30…1e30 (float64): finite, and equal to exact rational arithmetic up to rounding."""
    df = bmr.delta_f(*case)
    mean, var = bmr.reduced_posterior(*case)
    assert np.isfinite(float(df)) and np.isfinite(float(mean)) and np.isfinite(float(var))
    exact = _exact_rational_delta_f(*case)
    assert abs(float(df) - exact) <= 1e-12 * _std_scale(*case), (float(df), exact)


@given(scalar_cases(var_exp=(-2.0, 2.0)))
def test_float32_agrees_with_float64(case):
    c32 = tuple(np.float32(x) for x in case)
    c64 = tuple(np.float64(x) for x in c32)  # the same numbers, so only arithmetic differs
    df32 = bmr.delta_f(*c32)
    assert df32.dtype == jnp.float32
    scale = _std_scale(*c64)
    assert abs(float(df32) - float(bmr.delta_f(*c64))) <= 50 * np.finfo(np.float32).eps * scale
    m32, v32 = bmr.reduced_posterior(*c32)
    m64, v64 = bmr.reduced_posterior(*c64)
    assert abs(float(v32) - float(v64)) <= 50 * np.finfo(np.float32).eps * float(v64) * _d_condition(*c64[1::2])[1]


@given(problems(max_k=4, max_n=10, correlated=False))
def test_float32_agrees_with_float64_mvn(case):
    reg, rng = case
    post_mean, post_cov = sd.posterior(*reg)
    assume(np.linalg.cond(post_cov) < 1e3)
    red_mean, red_cov = _shrink(reg, rng)
    args = tuple(np.asarray(a, np.float32) for a in (post_mean, post_cov, reg.prior_mean, reg.prior_cov, red_mean, red_cov))
    df32 = bmr.delta_f_mvn(*args)
    df64 = bmr.delta_f_mvn(*(a.astype(np.float64) for a in args))
    assert df32.dtype == jnp.float32
    scale = 1 + abs(float(df64)) + np.linalg.cond(args[1].astype(np.float64)) * np.linalg.cond(args[3].astype(np.float64))
    assert abs(float(df32) - float(df64)) <= 1e-5 * scale


_jit_delta_f = jax.jit(bmr.delta_f)
_vmap_delta_f = jax.jit(jax.vmap(bmr.delta_f))
_jit_reduced = jax.jit(bmr.reduced_posterior)
_vmap_mvn = jax.jit(jax.vmap(bmr.delta_f_mvn))


@given(st.lists(scalar_cases(), min_size=8, max_size=8))
def test_jit_and_vmap_match_eager(cases):
    args = [np.array(c) for c in zip(*cases)]
    eager = np.asarray(bmr.delta_f(*args))
    np.testing.assert_allclose(_jit_delta_f(*args), eager, rtol=1e-13, atol=1e-13)
    np.testing.assert_allclose(_vmap_delta_f(*args), eager, rtol=1e-13, atol=1e-13)
    for got, want in zip(_jit_reduced(*args), bmr.reduced_posterior(*args)):
        np.testing.assert_allclose(got, want, rtol=1e-13, atol=1e-300)


@given(st.integers(0, 2**32 - 1))
def test_jit_and_vmap_match_eager_mvn(seed):
    rng = np.random.default_rng(seed)
    batch = []
    for _ in range(3):
        reg = sd.random_regression(rng, 3, int(rng.integers(1, 8)), 10 ** rng.uniform(0, 3), 10 ** rng.uniform(-2, 1))
        post_mean, post_cov = sd.posterior(*reg)
        red_mean, red_cov = _shrink(reg, rng)
        batch.append((post_mean, post_cov, reg.prior_mean, reg.prior_cov, red_mean, red_cov))
    stacked = [np.stack(a) for a in zip(*batch)]
    eager = np.array([float(bmr.delta_f_mvn(*b)) for b in batch])
    np.testing.assert_allclose(_vmap_mvn(*stacked), eager, rtol=1e-12, atol=1e-12)
    np.testing.assert_allclose(bmr.delta_f_mvn(*stacked), eager, rtol=1e-12, atol=1e-12)  # batch axes broadcast


def test_pytrees():
    post_mean = {"a": jnp.array([0.5, -1.0]), "b": {"c": jnp.array(2.0)}}
    post_var = {"a": jnp.array([0.1, 0.2]), "b": {"c": jnp.array(0.3)}}
    df = bmr.delta_f(post_mean, post_var, 0.0, 1.0)
    assert jax.tree_util.tree_structure(df) == jax.tree_util.tree_structure(post_mean)
    np.testing.assert_allclose(df["b"]["c"], bmr.delta_f(2.0, 0.3, 0.0, 1.0))
    mean, var = bmr.reduced_posterior(post_mean, post_var, 0.0, 1.0, 0.0, 0.5)
    assert jax.tree_util.tree_structure(var) == jax.tree_util.tree_structure(post_mean)
    with pytest.raises(ValueError, match="post_var: pytree structure"):
        bmr.delta_f(post_mean, {"a": 1.0}, 0.0, 1.0)


# ---------------------------------------------------------------------------------------------
# pruning rules
# ---------------------------------------------------------------------------------------------


def _zeta_reference(df, n_iter):
    df = np.concatenate([np.ravel(x) for x in df])
    zeta = 0.0
    for _ in range(n_iter):
        q = special.expit(zeta - df)
        zeta = special.digamma(1 + q.sum()) - special.digamma(1 + (1 - q).sum())
    return zeta


@given(st.lists(reals(-50, 50), min_size=24, max_size=24), st.integers(0, 6), reals(-2, 2))
def test_pruning_rules(values, n_iter, margin):
    df = np.array(values)
    np.testing.assert_array_equal(bmr.threshold_rule(df, margin), df <= margin)
    tree = {"w": df[: len(df) // 2], "b": df[len(df) // 2 :]}
    zeta = float(bmr.beta_bernoulli_zeta(tree, n_iter))
    assert abs(zeta - _zeta_reference(list(tree.values()), n_iter)) <= 1e-10 * (1 + abs(zeta))
    keep = bmr.beta_bernoulli_rule(tree, n_iter)
    np.testing.assert_array_equal(np.concatenate([keep["w"], keep["b"]]), df <= zeta)


@given(st.lists(reals(-50, 50), min_size=24, max_size=24), st.lists(st.booleans(), min_size=24, max_size=24),
       st.integers(0, 6))
def test_beta_bernoulli_zeta_with_spikes(values, spiked, n_iter):
    """Coordinates already at the spike count as pruned (q = 0) whatever their ΔF; none spiked = the plain ζ."""
    df, spike = np.array(values), np.array(spiked)
    tree, stree = {"w": df[:10], "b": df[10:]}, {"w": spike[:10], "b": spike[10:]}
    zeta = float(bmr.beta_bernoulli_zeta_spiked(tree, stree, n_iter))
    assert abs(zeta - _zeta_reference([np.where(spike, np.inf, df)], n_iter)) <= 1e-10 * (1 + abs(zeta))
    none = jax.tree_util.tree_map(np.zeros_like, stree)
    assert float(bmr.beta_bernoulli_zeta_spiked(tree, none, n_iter)) == float(bmr.beta_bernoulli_zeta(tree, n_iter))
    jitted = jax.jit(bmr.beta_bernoulli_zeta_spiked, static_argnums=2)(tree, stree, n_iter)
    assert float(jitted) == zeta
    with pytest.raises(ValueError, match="spike must be a pytree shaped like df"):
        bmr.beta_bernoulli_zeta_spiked(tree, {"w": spike[:10]}, n_iter)
    with pytest.raises(ValueError, match="df contains NaN"):
        bmr.beta_bernoulli_zeta_spiked({"w": np.array([np.nan, 0.0])}, {"w": np.array([False, True])})
    # NaN or inf at a spiked coordinate is ignored (its ΔF is not used)
    assert np.isfinite(float(bmr.beta_bernoulli_zeta_spiked({"w": np.array([np.inf, 0.0])}, {"w": np.array([True, False])})))


@given(scalar_cases(spike=True, var_exp=(-30.0, 30.0)))
def test_spike_delta_f_is_savage_dickey(case):
    """The cheap spike ΔF: ln q(0) − ln p(0) for a zero-mean prior, equal to delta_f's general form."""
    pm, pv, _, v0, _, _ = case
    got = float(bmr.spike_delta_f(pm, pv, v0))
    sdr = stats.norm(pm, np.sqrt(pv)).logpdf(0.0) - stats.norm(0.0, np.sqrt(v0)).logpdf(0.0)
    scale = _std_scale(pm, pv, 0.0, v0, 0.0, 0.0)
    assert abs(got - sdr) <= 1e-12 * scale
    assert abs(got - float(bmr.delta_f(pm, pv, 0.0, v0))) <= 1e-12 * scale


def test_spike_delta_f_pytrees_and_bad_input():
    mean = {"a": np.array([0.1, -2.0]), "b": np.array([[0.5]])}
    got = bmr.spike_delta_f(mean, 0.3, {"a": np.array([1.0, 2.0]), "b": np.array([[4.0]])})
    want = bmr.delta_f(mean, 0.3, 0.0, {"a": np.array([1.0, 2.0]), "b": np.array([[4.0]])})
    for a, b in zip(jax.tree_util.tree_leaves(got), jax.tree_util.tree_leaves(want), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-13)
    for kwargs, match in ((dict(post_var=-1.0), "post_var must be > 0"), (dict(prior_var=0.0), "prior_var must be > 0"),
                          (dict(post_mean=np.nan), "post_mean contains NaN"),
                          (dict(prior_var=np.ones(3), post_mean=np.ones(2)), "prior_var: shape")):
        args = dict(post_mean=0.1, post_var=0.5, prior_var=1.0) | kwargs
        with pytest.raises(ValueError, match=match):
            bmr.spike_delta_f(**args)


def test_beta_bernoulli_extremes():
    assert bool(bmr.beta_bernoulli_rule(-np.ones(100) * 20).all())  # clearly needed weights are kept
    assert not bool(bmr.beta_bernoulli_rule(np.ones(100) * 20).any())  # clearly redundant ones pruned
    assert float(bmr.beta_bernoulli_zeta(np.ones(5), n_iter=0)) == 0.0  # ψ(1) - ψ(1)


# ---------------------------------------------------------------------------------------------
# bad input
# ---------------------------------------------------------------------------------------------

_OK = dict(post_mean=0.3, post_var=0.5, prior_mean=0.0, prior_var=1.0, red_mean=0.0, red_var=0.0)


@pytest.mark.parametrize(
    "bad, match",
    [
        (dict(post_var=-1.0), "post_var must be > 0"),
        (dict(post_var=0.0), "post_var must be > 0"),
        (dict(prior_var=0.0), "prior_var must be > 0"),
        (dict(red_var=-1e-3), "red_var must be >= 0"),
        (dict(post_mean=np.nan), "post_mean contains NaN"),
        (dict(red_mean=np.inf), "red_mean contains inf"),
        (dict(prior_var=np.array([1.0, np.nan])), "prior_var contains NaN"),
        (dict(post_var=10.0, red_var=100.0), "red_var: the reduced posterior precision"),
        (dict(post_mean=np.zeros(3), post_var=np.ones(2)), "post_var: shape"),
        (dict(post_mean=np.zeros(3), red_var=np.zeros((2, 2))), "red_var: shape"),
    ],
)
def test_bad_input_raises(bad, match):
    kwargs = {**_OK, **bad}
    for fn in (bmr.delta_f, bmr.reduced_posterior):
        with pytest.raises(ValueError, match=match):
            fn(**kwargs)


def _mvn_ok(k=2):
    return dict(post_mean=np.zeros(k), post_cov=0.5 * np.eye(k), prior_mean=np.zeros(k), prior_cov=np.eye(k),
                red_mean=np.zeros(k), red_cov=np.diag([0.0] + [0.5] * (k - 1)))


@pytest.mark.parametrize(
    "bad, match",
    [
        (dict(post_cov=np.array([[1.0, 2.0], [2.0, 1.0]])), "post_cov must be positive definite"),
        (dict(prior_cov=-np.eye(2)), "prior_cov must be positive definite"),
        (dict(red_cov=np.diag([-1.0, 0.5])), "red_cov must be positive semi-definite"),
        (dict(red_cov=np.array([[0.5, 0.1], [0.0, 0.5]])), "red_cov must be symmetric"),
        (dict(red_cov=np.diag([0.0, 100.0]), post_cov=np.diag([0.5, 10.0])), "red_cov: the reduced posterior precision"),
        (dict(post_mean=np.zeros(3)), "post_cov: trailing shape"),
        (dict(prior_cov=np.eye(3)), "prior_cov: trailing shape"),
        (dict(red_mean=np.zeros((4, 2)), post_mean=np.zeros((3, 2))), "red_mean: shape"),
        (dict(post_cov=np.zeros(2)), "post_cov must have at least 2"),
        (dict(post_mean=np.array([0.0, np.nan])), "post_mean contains NaN"),
    ],
)
def test_bad_input_raises_mvn(bad, match):
    kwargs = {**_mvn_ok(), **bad}
    for fn in (bmr.delta_f_mvn, bmr.reduced_posterior_mvn):
        with pytest.raises(ValueError, match=match):
            fn(**kwargs)


def test_bad_input_groups_and_rules():
    net = nets.mlp([3, 2, 1])
    df = bmr.delta_f(net.init(jax.random.PRNGKey(0)), 0.1, 0.0, 1.0)
    with pytest.raises(ValueError, match="group_index: shape"):
        bmr.group_delta_f(np.zeros(3), np.zeros(2, int), 2)
    with pytest.raises(ValueError, match="group_index must lie in"):
        bmr.group_delta_f(np.zeros(3), np.array([0, 1, 2]), 2)
    with pytest.raises(ValueError, match="group_index must hold integers"):
        bmr.group_delta_f(np.zeros(3), np.zeros(3), 2)
    with pytest.raises(ValueError, match="n_groups"):
        bmr.group_delta_f(np.zeros(3), np.zeros(3, int), 0)
    with pytest.raises(ValueError, match="df contains NaN"):
        bmr.group_delta_f(np.array([0.0, np.nan]), np.zeros(2, int), 1)
    with pytest.raises(ValueError, match="no entry for layer"):
        bmr.node_delta_f({"other": df["dense_0"]}, net.layers[0])
    with pytest.raises(ValueError, match="nodes on the last axis"):
        bmr.node_delta_f(df, nets.Layer("dense_0", "dense", 3, 5))
    with pytest.raises(ValueError, match="df contains NaN"):
        bmr.threshold_rule(np.array([np.nan]))
    with pytest.raises(ValueError, match="n_iter"):
        bmr.beta_bernoulli_rule(np.zeros(3), n_iter=-1)


def test_invalid_input_under_jit_is_nan_not_a_number():
    """Value checks are skipped under jit; invalid variances and reduced precisions give NaN."""
    bad = [
        dict(_OK, post_var=10.0, red_var=100.0),
        dict(_OK, post_var=-0.5, red_var=0.5),
        dict(_OK, prior_var=-1.0),
        dict(_OK, red_var=-0.1),
    ]
    for kwargs in bad:
        assert np.isnan(float(jax.jit(bmr.delta_f)(**kwargs)))
        assert np.isnan(jax.jit(bmr.reduced_posterior)(**kwargs)).all()
    mvn = dict(_mvn_ok(), red_cov=np.diag([0.0, 100.0]), post_cov=np.diag([0.5, 10.0]))
    assert np.isnan(float(jax.jit(bmr.delta_f_mvn)(**mvn)))
