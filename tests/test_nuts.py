"""Reference NUTS: exactness on a conjugate model, exact indicator handling, diagnostics (SBC: test_sbc.py)."""

from __future__ import annotations

import warnings

import numpyro  # noqa: F401  (before arviz, see sparsebnn.diagnostics)
import arviz as az
import jax
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from sparsebnn import nets, priors
from sparsebnn.diagnostics import DiagnosticsWarning, diagnose
from sparsebnn.infer import NUTSOptions, batched_sampler, kde_log_density_at_zero, nuts, to_datatree
from sparsebnn.model import BNN
from sparsebnn.likelihood import Likelihood
from theory import savage_dickey as sd

Z = 4.5  # |z| bound for Monte Carlo checks (two-sided p ≈ 7e-6 per check)


def ess(draws: np.ndarray) -> np.ndarray:
    """Bulk ESS per trailing element of ``(chains, draws, ...)`` draws."""
    dt = az.from_dict({"posterior": {"v": draws}})
    return np.asarray(az.ess(dt, method="bulk")["v"].values)


# ----------------------------------------------------------------------------- conjugate regression (float64)


@pytest.fixture(scope="module")
def conjugate():
    """NUTS on y = Xw + b + ε with a per-weight Gaussian prior, against the exact posterior (float64)."""
    with jax.enable_x64(True):
        rng = np.random.default_rng(3)
        n, k, noise = 25, 3, 0.7
        var_w, var_b = np.array([[0.5], [2.0], [1.0]]), np.array([4.0])
        X = rng.normal(size=(n, k))
        y = X @ np.array([0.8, -0.3, 0.0]) + 0.5 + noise * rng.normal(size=n)
        prior = priors.Gaussian(variance={"dense_0": {"w": var_w, "b": var_b}})
        post = nuts(nets.mlp([k, 1]), prior, (X, y), likelihood=Likelihood("gaussian", noise), num_warmup=300,
                    num_samples=400, num_chains=4, seed=0)
        params = post.sample_params(n=None)
        draws = np.concatenate([np.asarray(params["dense_0"]["w"])[..., 0], np.asarray(params["dense_0"]["b"])], axis=1)
        delta_f = post.delta_f()
        sdr = post.savage_dickey()
    X1 = np.hstack([X, np.ones((n, 1))])
    prior_var = np.concatenate([var_w[:, 0], var_b])
    mean, cov = sd.posterior(X1, y, noise**2, np.zeros(k + 1), prior_var)
    exact_sd = np.array([sd.savage_dickey(X1, y, noise**2, np.zeros(k + 1), prior_var, [i]) for i in range(k + 1)])
    chains = draws.reshape(post.num_chains, -1, k + 1)
    flat = lambda t: np.concatenate([np.asarray(t["dense_0"]["w"])[:, 0], np.asarray(t["dense_0"]["b"])])
    return dict(post=post, draws=draws, ess=ess(chains), mean=mean, var=np.diag(cov), prior_var=prior_var,
                delta_f=flat(delta_f), savage_dickey=flat(sdr), exact_sd=exact_sd)


def test_conjugate_posterior_matches_exact(conjugate):
    c = conjugate
    assert c["draws"].dtype == np.float64
    m, v, e = c["mean"], c["var"], c["ess"]
    z_mean = (c["draws"].mean(0) - m) / np.sqrt(v / e)
    z_var = (c["draws"].var(0, ddof=1) - v) / (v * np.sqrt(2 / e))
    assert np.all(np.abs(z_mean) < Z), z_mean
    assert np.all(np.abs(z_var) < Z), z_var


def test_conjugate_run_passes_diagnostics(conjugate):
    post = conjugate["post"]
    assert post.ok, post.problems
    d = post.diagnostics
    assert d.max_rhat <= 1.01 and d.min_ess_bulk >= 400 and d.divergences == 0 and min(d.bfmi) >= 0.3
    assert {"posterior", "sample_stats"} <= set(post.trace.children)
    stats_ = post.trace["sample_stats"]
    for name in ("diverging", "energy", "lp", "n_steps", "tree_depth", "step_size", "acceptance_rate"):
        assert name in stats_, name
    assert post.trace["posterior"].sizes["chain"] == 4 and post.trace["posterior"].sizes["draw"] == 400
    assert post.ess_per_s > 0 and post.ess_per_1k_grad > 0 and post.n_leapfrog >= 1600
    assert post.predict(np.zeros((5, 3)), n_samples=None).shape == (1600, 5, 1)
    assert post.predict(np.zeros((5, 3))).shape == (32, 5, 1)  # the contract's default number of draws


def test_fitted_gaussian_bmr_matches_savage_dickey(conjugate):
    """ΔF from the Gaussian fitted to the draws = exact Savage–Dickey ratio (Gaussian marginals), within MC error."""
    c = conjugate
    m, v, e = c["mean"], c["var"], c["ess"]
    # delta method for ΔF = ln N(0; m̂, v̂) − ln p(0) with Var m̂ = v/ESS, Var v̂ = 2v²/ESS
    sd_df = np.sqrt((m**2 / v + 0.5 * (1 - m**2 / v) ** 2) / e)
    assert np.all(np.abs(c["delta_f"] - c["exact_sd"]) < Z * sd_df), (c["delta_f"], c["exact_sd"])


def test_kde_savage_dickey_matches_exact(conjugate):
    """The KDE estimate targets the exact ratio smoothed by the kernel; its noise is √(R(K) / (ESS h p_h(0)))."""
    c = conjugate
    x = c["draws"]
    m, v, e = c["mean"], c["var"], c["ess"]
    iqr = np.subtract(*np.percentile(x, [75, 25], axis=0)) / 1.349
    h = 0.9 * np.minimum(x.std(0, ddof=1), iqr) * len(x) ** -0.2
    smoothed = stats.norm.logpdf(0, m, np.sqrt(v + h**2)) - stats.norm.logpdf(0, 0, np.sqrt(c["prior_var"]))
    noise = np.sqrt(1 / (2 * np.sqrt(np.pi)) / (e * h * stats.norm.pdf(0, m, np.sqrt(v + h**2))))
    est = c["savage_dickey"]
    far = np.isnan(est)  # zero in the far tail: no estimate, and the exact density there is indeed tiny
    assert far.sum() < len(est)
    assert np.all((len(x) * 2 * h * stats.norm.pdf(0, m, np.sqrt(v)))[far] < 20)
    assert np.all(np.abs(est - smoothed)[~far] < Z * noise[~far] + 0.02), (est, smoothed)
    assert np.all(np.abs(smoothed - c["exact_sd"])[~far] < 0.05)  # kernel smoothing bias is small here


def test_kde_log_density_at_zero_matches_scipy():
    rng = np.random.default_rng(0)
    x = rng.standard_t(4, size=(400, 3)) * np.array([0.5, 1.0, 3.0]) + np.array([0.2, -1.0, 4.0])
    got = kde_log_density_at_zero(x)
    for j in range(3):
        iqr = np.subtract(*np.percentile(x[:, j], [75, 25])) / 1.349
        h = 0.9 * min(x[:, j].std(ddof=1), iqr) * 400**-0.2
        want = stats.gaussian_kde(x[:, j], bw_method=h / x[:, j].std(ddof=1)).logpdf(0.0)[0]
        assert got[j] == pytest.approx(want, rel=1e-9, abs=1e-9)
    with pytest.raises(ValueError, match="2 draws"):
        kde_log_density_at_zero(np.zeros((1, 2)))


def test_failed_run_is_flagged_loudly_and_runs_are_reproducible():
    rng = np.random.default_rng(0)
    X = rng.normal(size=(25, 3)).astype(np.float32)
    y = (X[:, 0] + 0.5 * rng.normal(size=25)).astype(np.float32)
    kw = dict(likelihood=Likelihood("gaussian", 0.5), num_warmup=10, num_samples=10, num_chains=2, seed=7)
    with pytest.warns(DiagnosticsWarning, match="diagnostics FAILED"):
        a = nuts(nets.mlp([3, 1]), priors.Gaussian(), (X, y), **kw)
    assert not a.ok and any("ESS" in p for p in a.problems)
    with warnings.catch_warnings():
        warnings.simplefilter("error", DiagnosticsWarning)
        b = nuts(nets.mlp([3, 1]), priors.Gaussian(), (X, y), warn=False, **kw)
    for k in a.samples:
        np.testing.assert_array_equal(a.samples[k], b.samples[k])


# ----------------------------------------------------------------------------- node indicators


@pytest.mark.parametrize("indicators", ["gibbs", "enumerate"])
def test_indicators_recover_the_prior_under_a_flat_likelihood(indicators):
    """With an uninformative likelihood the posterior is the prior: P(z_j = 1) = π, ε ~ N(0, 1)."""
    pi = 0.3
    x, y = np.zeros((1, 1), np.float32), np.zeros(1, np.float32)
    post = nuts(nets.mlp([1, 2, 1]), priors.SpikeSlabIG(pi=pi), (x, y), likelihood=Likelihood("gaussian", 1e4),
                num_warmup=200, num_samples=800, num_chains=2, indicators=indicators, seed=1, warn=False)
    z = post.samples["dense_0.z"].astype(float)
    freq, e = z.reshape(-1, 2).mean(0), ess(z)
    assert np.all(np.abs(freq - pi) < Z * np.sqrt(pi * (1 - pi) / e)), (freq, e)
    incl = post.inclusion_probs()["dense_0"]
    if indicators == "enumerate":  # Rao–Blackwellised: p(z | θ, y) = π exactly when y carries no information
        np.testing.assert_allclose(incl, pi, atol=1e-4)
    else:
        np.testing.assert_allclose(incl, freq)
    eps = post.samples["dense_0.w_decentered"]
    assert np.all(np.abs(eps.reshape(-1, 2).mean(0)) < Z * np.sqrt(1 / ess(eps).ravel()))
    lbf = post.node_log_bayes_factors()["dense_0"]
    assert np.all(np.abs(lbf) < 1.0)  # no evidence either way


@settings(max_examples=6, deadline=None)
@given(st.integers(1, 3), st.integers(1, 3), st.integers(0, 2**31 - 1))
def test_nested_enumeration_is_the_joint_one(k1, k2, seed):
    """``log_joints`` (one vmap per indicator site) equals ``ln p(y, z = c, θ)`` evaluated configuration by
    configuration in the order of ``config_matrix`` (float64), whatever the layer widths."""
    from numpyro import handlers
    from numpyro.infer.util import potential_energy
    from sparsebnn.infer._nuts import init_params, log_joints, split_sites, target

    with jax.enable_x64(True):
        rng = np.random.default_rng(seed)
        x, y = rng.normal(size=(7, 2)), rng.normal(size=7)
        model = BNN(nets.mlp([2, k1, k2, 1], act="tanh"), priors.SpikeSlabIG(pi=0.3, centered=False),
                    Likelihood("gaussian", 0.5))
        t = target(model, NUTSOptions(), x[:1], y[:1])
        assert t.config_matrix.shape == (2 ** (k1 + k2), k1 + k2)
        u = init_params(t, model, 1, "dispersed", jax.random.key(seed % 1000), len(x), x[:1], y[:1])
        got = np.asarray(log_joints(t, u, x, y))
        want = [-float(potential_energy(handlers.condition(t.fn, data=split_sites(t, row)), (x, y), {}, u))
                for row in t.config_matrix]
        np.testing.assert_allclose(got, want, rtol=1e-12, atol=1e-10)


@pytest.mark.slow
def test_gibbs_and_enumeration_agree_on_informative_data():
    """Two exact schemes for the indicators give the same posterior of the number of active nodes."""
    rng = np.random.default_rng(0)
    x = rng.uniform(-2, 2, size=(20, 1)).astype(np.float32)
    y = (np.tanh(2 * x[:, 0]) + 0.2 * rng.normal(size=20)).astype(np.float32)
    runs = {}
    for ind in ("gibbs", "enumerate"):
        post = nuts(nets.mlp([1, 2, 1], act="tanh"), priors.SpikeSlabIG(pi=0.5), (x, y), likelihood=Likelihood("gaussian", 0.2), num_warmup=500, num_samples=2000, num_chains=4, indicators=ind, seed=2, warn=False)
        k = post.samples["dense_0.z"].sum(-1).astype(float)  # (chains, draws): active nodes, permutation-free
        runs[ind] = (np.stack([(k == j).mean() for j in range(3)]), np.stack([ess(k == j) for j in range(3)]))
    (pa, ea), (pb, eb) = runs["gibbs"], runs["enumerate"]
    se = np.sqrt(pa * (1 - pa) / np.maximum(ea, 1) + pb * (1 - pb) / np.maximum(eb, 1)) + 1e-3
    assert np.all(np.abs(pa - pb) < Z * se), (pa, pb, ea, eb)


# ----------------------------------------------------------------------------- diagnostics


def _trace(post, **stats_):
    stats_.setdefault("diverging", np.zeros(post.shape[:2], bool))
    return to_datatree({"a": post}, stats_)


def test_diagnose_flags_each_failure():
    rng = np.random.default_rng(0)
    good = rng.normal(size=(4, 500, 3))
    energy = rng.normal(size=(4, 500))
    d = diagnose(_trace(good, energy=energy))
    assert d.ok and d.max_rhat < 1.01 and d.min_ess_bulk > 400 and d.n_draws == 2000

    shifted = good.copy()
    shifted[0] += 1.0
    assert any("R-hat" in p for p in diagnose(_trace(shifted)).problems)

    sticky = np.cumsum(rng.normal(size=(4, 500, 1)), axis=1)  # random walk: tiny ESS
    assert any("ESS" in p for p in diagnose(_trace(sticky)).problems)

    div = np.zeros((4, 500), bool)
    div[1, 7] = True
    d = diagnose(_trace(good, diverging=div))
    assert d.divergences == 1 and any("divergent" in p for p in d.problems)
    hot = np.zeros((4, 500), int)
    hot[2, 9] = 2  # replica exchange: divergences of the hotter replicas fail the run too
    assert diagnose(_trace(good, hot_divergences=hot)).problems == ("2 divergent transitions in the hotter replicas",)

    walk = np.cumsum(rng.normal(size=(4, 500)), axis=1) * 0.05  # energy barely changes between draws: low E-BFMI
    assert any("E-BFMI" in p for p in diagnose(_trace(good, energy=walk)).problems)

    const = np.concatenate([good, np.ones((4, 500, 1))], axis=2)  # an indicator stuck at 1: no R-hat, not a failure
    d = diagnose(_trace(const))
    assert d.ok and d.constant == 1


def test_diagnose_rejects_bad_input():
    with pytest.raises(ValueError, match="posterior"):
        diagnose(az.from_dict({"sample_stats": {"energy": np.zeros((2, 10))}}))
    with pytest.raises(ValueError, match="4 draws"):
        diagnose(az.from_dict({"posterior": {"a": np.zeros((2, 3))}}))
    with pytest.raises(ValueError, match="max_rhat"):
        diagnose(az.from_dict({"posterior": {"a": np.zeros((2, 10))}}), max_rhat=0.9)


# ----------------------------------------------------------------------------- validation


@pytest.fixture(scope="module")
def tiny():
    x, y = np.zeros((4, 2), np.float32), np.zeros(4, np.float32)
    return nets.mlp([2, 2, 1]), x, y


@pytest.mark.parametrize("kw, match", [
    (dict(indicators="relax"), "indicators"),
    (dict(indicators="auto", max_enumerate=0), "max_enumerate"),
    (dict(chain_method="threads"), "chain_method"),
    (dict(target_accept=1.0), "target_accept"),
    (dict(num_samples=2), "num_samples"),
    (dict(num_warmup=-1), "num_warmup"),
    (dict(num_chains=0), "num_chains"),
    (dict(chain_method="parallel", num_chains=64), "set_host_device_count"),
    (dict(chain_method="vectorized", num_chains=2, indicators="gibbs"), "vectorized"),
    (dict(indicators="enumerate", max_enumerate=2), "max_enumerate"),
    (dict(init="random"), "init"),
    (dict(init={"dense_0.nope": 1.0}), "not latent sites"),
    (dict(init={"dense_1.w_decentered": np.full((2, 1), np.nan)}), "support"),
    (dict(init={"dense_1.w_decentered": np.zeros(3)}), "shape"),
])
def test_bad_arguments_raise(tiny, kw, match):
    net, x, y = tiny
    with pytest.raises(ValueError, match=match):
        nuts(net, priors.SpikeSlabIG(pi=0.5), (x, y), likelihood=Likelihood("gaussian", 1.0), **kw)


def test_bad_model_arguments_raise(tiny):
    net, x, y = tiny
    model = BNN(net, priors.Gaussian(), Likelihood("gaussian", 1.0))
    with pytest.raises(ValueError, match="only the data"):
        nuts(model, priors.Gaussian(), (x, y))
    with pytest.raises(ValueError, match="net must be"):
        nuts("mlp", priors.Gaussian(), (x, y))
    with pytest.raises(ValueError, match="prior must be"):
        nuts(net, "gaussian", (x, y))
    with pytest.raises(ValueError, match="x must have shape"):
        nuts(net, priors.Gaussian(), (np.zeros((4, 3)), y), likelihood=Likelihood("gaussian", 1.0))
    with pytest.raises(ValueError, match="NaN"):
        nuts(net, priors.Gaussian(), (np.full((4, 2), np.nan), y), likelihood=Likelihood("gaussian", 1.0))
    with pytest.raises(ValueError, match="indicators"):
        batched_sampler(BNN(net, priors.SpikeSlabIG(pi=0.5), Likelihood("gaussian", 1.0)), x, y, NUTSOptions(indicators="gibbs"))
    with pytest.raises(ValueError, match="thinning"):
        NUTSOptions(thinning=0)


def test_bayes_factors_need_indicators(conjugate):
    with pytest.raises(ValueError, match="spike-and-slab"):
        conjugate["post"].node_log_bayes_factors()
