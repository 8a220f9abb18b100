"""One-shot and iterative BMR of a network's Gaussian posterior (sparsebnn.reduction)."""

from __future__ import annotations


import jax
import numpy as np
import optax
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import special, stats

from sparsebnn import bmr, data, nets, priors, prune
from sparsebnn.infer import laplace, posterior_precision, svi
from sparsebnn.posterior import GaussianFactors
from sparsebnn.reduction import pruned_fraction, reduce, stochastic_bmr
NET = nets.mlp([3, 4, 2])  # dense_0 (prunable), dense_1 (output)


def random_factors(rng, net=NET, spike_frac=0.0, dtype=np.float64):
    shapes = jax.eval_shape(net.init, jax.random.key(0))

    def draw(fn):
        return {layer.name: {k: fn(tuple(shapes[layer.name][k].shape)).astype(dtype) for k in ("w", "b")}
                for layer in net.layers}

    mean = draw(lambda s: rng.normal(0, 1, s))
    var = draw(lambda s: np.exp(rng.uniform(-4, 1, s)))
    pv = draw(lambda s: np.exp(rng.uniform(-1, 1, s)) * (rng.random(s) >= spike_frac))
    return GaussianFactors(mean, var, pv)


def flat(tree):
    return np.concatenate([np.ravel(x) for x in jax.tree_util.tree_leaves(tree)])


def savage_dickey(f):
    """ln q(0) − ln p(0) per coordinate by scipy (0 where the prior is already a spike)."""
    def one(m, v, pv):
        spike = pv == 0
        out = stats.norm.logpdf(0, m, np.sqrt(v)) - stats.norm.logpdf(0, 0, np.sqrt(np.where(spike, 1, pv)))
        return np.where(spike, 0.0, out)

    return jax.tree_util.tree_map(one, f.mean, f.var, f.prior_var)


def zeta_reference(df, n_iter=4):
    """Marković et al.'s Beta–Bernoulli iteration (docs/bmr.md) in plain numpy/scipy (df = +inf for coordinates already pruned)."""
    zeta = 0.0
    for _ in range(n_iter):
        q = special.expit(zeta - df)
        zeta = special.digamma(1 + q.sum()) - special.digamma(1 + (1 - q).sum())
    return zeta


@given(seed=st.integers(0, 2**31 - 1), margin=st.floats(-3, 3), spikes=st.sampled_from([0.0, 0.3]))
def test_weight_threshold_is_savage_dickey_and_exact_reduced_posterior(seed, margin, spikes):
    rng = np.random.default_rng(seed)
    with jax.enable_x64(True):
        f = random_factors(rng, spike_frac=spikes)
        red = reduce(f, NET, margin=margin)
        ref = savage_dickey(f)
        np.testing.assert_allclose(flat(red.delta_f), flat(ref), rtol=1e-10, atol=1e-10)
        for k in ("w", "b"):
            free = f.prior_var["dense_0"][k] > 0
            want = free & (ref["dense_0"][k] <= margin)
            np.testing.assert_array_equal(red.keep["dense_0"][k], want)
            np.testing.assert_array_equal(red.keep["dense_1"][k], f.prior_var["dense_1"][k] > 0)  # output: never newly pruned
            # reduced posterior = bmr.reduced_posterior with the spike on the pruned coordinates
            pv = np.where(free, f.prior_var["dense_0"][k], 1.0)
            rm, rv = bmr.reduced_posterior(f.mean["dense_0"][k], f.var["dense_0"][k], 0.0, pv, 0.0,
                                           np.where(want, pv, 0.0))
            np.testing.assert_allclose(red.mean["dense_0"][k], np.where(free, rm, 0.0), rtol=1e-12, atol=1e-300)
            np.testing.assert_allclose(red.var["dense_0"][k], np.where(free, rv, 0.0), rtol=1e-12, atol=1e-300)
        # ΔF of the spike agrees with the general BMR formula too
        free = f.prior_var["dense_0"]["w"] > 0
        general = bmr.delta_f(f.mean["dense_0"]["w"][free], f.var["dense_0"]["w"][free], 0.0,
                              f.prior_var["dense_0"]["w"][free], 0.0, 0.0)
        np.testing.assert_allclose(np.asarray(red.delta_f["dense_0"]["w"])[free], general, rtol=1e-9, atol=1e-9)


@given(seed=st.integers(0, 2**31 - 1), lo=st.floats(-2, 2), hi=st.floats(0, 3))
def test_pruning_is_never_undone_and_monotone_in_margin(seed, lo, hi):
    rng = np.random.default_rng(seed)
    f = random_factors(rng, spike_frac=0.4, dtype=np.float32)
    a, b = reduce(f, NET, margin=lo), reduce(f, NET, margin=lo + hi)
    for x, y, pv in zip(flat(a.keep), flat(b.keep), flat(f.prior_var)):
        assert not (x and pv == 0)  # a spike stays a spike
        assert y or not x  # a larger margin keeps a superset
    for level in ("weight", "node"):
        for rule in ("threshold", "beta_bernoulli"):
            red = reduce(f, NET, rule=rule, level=level)
            assert not np.any(flat(red.keep) & (flat(f.prior_var) == 0))
            # feeding the reduction back (spikes where pruned) changes nothing more under the same posterior
            again = reduce(GaussianFactors(f.mean, f.var, jax.tree_util.tree_map(lambda k, v: np.where(k, v, 0.0), red.keep, f.prior_var)),
                           NET, rule=rule, level=level)
            assert np.all(flat(again.keep) <= flat(red.keep))


def test_node_level_is_the_group_sum_and_matches_full_covariance_bmr():
    rng = np.random.default_rng(1)
    with jax.enable_x64(True):
        f = random_factors(rng)
        red = reduce(f, NET, level="node", margin=0.5)
        ref = savage_dickey(f)
        group = ref["dense_0"]["w"].sum(axis=0) + ref["dense_0"]["b"]
        np.testing.assert_array_equal(red.node_keep["dense_0"], group <= 0.5)
        np.testing.assert_array_equal(red.keep["dense_0"]["w"], np.broadcast_to(group <= 0.5, (3, 4)))
        np.testing.assert_array_equal(red.keep["dense_0"]["b"], group <= 0.5)
        assert flat(red.keep["dense_1"]).all()
        # the group ΔF is the ΔF of dropping the whole group under the (diagonal) full-covariance formula
        j = 2
        m = np.append(f.mean["dense_0"]["w"][:, j], f.mean["dense_0"]["b"][j])
        v = np.append(f.var["dense_0"]["w"][:, j], f.var["dense_0"]["b"][j])
        p = np.append(f.prior_var["dense_0"]["w"][:, j], f.prior_var["dense_0"]["b"][j])
        exact = bmr.delta_f_mvn(m, np.diag(v), np.zeros(4), np.diag(p), np.zeros(4), np.zeros((4, 4)))
        np.testing.assert_allclose(group[j], exact, rtol=1e-9)


def test_beta_bernoulli_rule_matches_the_reference_iteration():
    rng = np.random.default_rng(2)
    net = nets.mlp([20, 30, 25, 3])
    with jax.enable_x64(True):
        f = random_factors(rng, net=net, spike_frac=0.2)
        red = reduce(f, net, rule="beta_bernoulli")
        df = savage_dickey(f)
        for layer in net.layers[:-1]:
            d = np.concatenate([np.ravel(df[layer.name][k]) for k in ("w", "b")])
            spike = np.concatenate([np.ravel(f.prior_var[layer.name][k]) == 0 for k in ("w", "b")])
            zeta = zeta_reference(np.where(spike, np.inf, d))
            keep = np.concatenate([np.ravel(red.keep[layer.name][k]) for k in ("w", "b")])
            np.testing.assert_array_equal(keep, (d <= zeta) & ~spike)
        # without spikes the pooled layer gives bmr.beta_bernoulli_zeta's threshold exactly
        f0 = GaussianFactors(f.mean, f.var, jax.tree_util.tree_map(lambda v: np.where(v == 0, 1.0, v), f.prior_var))
        red0 = reduce(f0, net, rule="beta_bernoulli", level="node")
        for layer in net.prunable_layers:
            g = bmr.node_delta_f(savage_dickey(f0), layer)
            np.testing.assert_array_equal(red0.node_keep[layer.name], np.asarray(g) <= float(bmr.beta_bernoulli_zeta(g)))


def test_reduce_runs_under_jit():
    f = random_factors(np.random.default_rng(3), dtype=np.float32)
    eager = reduce(f, NET, rule="beta_bernoulli", level="node")
    jitted = jax.jit(lambda f: reduce(f, NET, rule="beta_bernoulli", level="node"))(f)
    for a, b in zip(jax.tree_util.tree_leaves(eager), jax.tree_util.tree_leaves(jitted)):
        np.testing.assert_array_equal(a, b)


def bad(f, field, layer="dense_0", k="w", value=None):
    tree = jax.tree_util.tree_map(np.array, getattr(f, field))
    tree[layer][k] = value(tree[layer][k])
    return f._replace(**{field: tree})


@pytest.mark.parametrize(
    "change,kwargs,match",
    [
        (None, dict(rule="nope"), "rule"),
        (None, dict(level="filter"), "level"),
        (None, dict(n_iter=-1), "n_iter"),
        (None, dict(margin=float("nan")), "margin"),
        (("mean", lambda a: a[:2]), {}, r"mean\['dense_0'\]\['w'\] must have shape"),
        (("var", lambda a: -a), {}, "var must be > 0"),
        (("var", lambda a: a * np.nan), {}, "var contains NaN"),
        (("prior_var", lambda a: a - 10), {}, "prior_var must be >= 0"),
    ],
)
def test_bad_input_raises(change, kwargs, match):
    f = random_factors(np.random.default_rng(0), dtype=np.float32)
    if change is not None:
        f = bad(f, change[0], value=change[1])
    with pytest.raises(ValueError, match=match):
        reduce(f, NET, **kwargs)


def test_bad_structure_raises():
    f = random_factors(np.random.default_rng(0), dtype=np.float32)
    with pytest.raises(ValueError, match="layers"):
        reduce(f._replace(mean={"dense_0": f.mean["dense_0"]}), NET)
    with pytest.raises(ValueError, match="GaussianFactors"):
        reduce(tuple(f)[:2], NET)
    with pytest.raises(ValueError, match="GaussianFactors"):
        reduce(object(), NET)


# ----------------------------------------------------------------------------- posteriors


def digits_subset(n=300):
    d = data.digits()
    return d.train.x[:n], d.train.y[:n], d.test


def test_laplace_factors_give_the_opd_score_plus_a_log_volume_term():
    """For a Laplace posterior, ΔF = −½ ln(P_h / P) − ½ P θ² = −½ ln(P_h / P) − ½ OPD (SpaM's score)."""
    x, y, _ = digits_subset()
    net = nets.mlp([64, 8, 10])
    post = laplace(net, priors.Gaussian(learn="node"), (x, y), curvature="diag", epochs=3, marglik_burnin=1,
                   marglik_every=1, hyper_steps=5, progress=False)
    f = post.gaussian_factors()
    red = reduce(f, net)
    P = posterior_precision(post)
    P0 = post.precision.precision(post.params)
    opd = prune.opd(post.params, P)
    for layer in net.layers:
        for k in ("w", "b"):
            want = -0.5 * np.log(P0[layer.name][k] / P[layer.name][k]) - 0.5 * opd[layer.name][k]
            np.testing.assert_allclose(red.delta_f[layer.name][k], want, rtol=2e-4, atol=1e-4)


# ----------------------------------------------------------------------------- iterative BMR


def test_without_pruning_it_is_exactly_svi():
    """With nothing pruned the iterative loop is the suite's SVI step for step (same seed, same draws)."""
    x, y, _ = digits_subset()
    net = nets.mlp([64, 8, 10])
    kw = dict(batch_size=32, seed=3)
    ref = svi(net, priors.Gaussian(0.5), (x, y), num_steps=30, chunk_size=10, progress=False, **kw)
    run = stochastic_bmr(net, (x, y), prior=priors.Gaussian(0.5), margin=1e30, warmup_steps=10, steps_per_round=10,
                         rounds=2, **kw)
    assert [r["pruned_fraction"] for r in run.history] == [0.0, 0.0, 0.0]
    for k in ref.params:
        np.testing.assert_allclose(run.posterior.params[k], ref.params[k], rtol=1e-4, atol=1e-5)
    np.testing.assert_allclose(run.posterior.losses, ref.losses, rtol=1e-4)
    assert not any(v.is_deleted() for v in run.posterior.guide.init_params.values())  # the loop donates copies only


@pytest.fixture(scope="module")
def iterative_run():
    x, y, test = digits_subset()
    net = nets.mlp([64, 16, 10])
    return net, test, stochastic_bmr(net, (x, y), test=(test.x, test.y), warmup_steps=100, steps_per_round=50,
                                     rounds=3, batch_size=32, optimizer=optax.adam(1e-2), eval_samples=4, seed=1)


def test_iterative_bmr_records_every_round(iterative_run):
    net, _, run = iterative_run
    hist = run.history
    assert [r["round"] for r in hist] == [0, 1, 2, 3] and [r["step"] for r in hist] == [100, 150, 200, 250]
    frac = [r["pruned_fraction"] for r in hist]
    assert frac[0] == 0 and frac[-1] > 0.2 and np.all(np.diff(frac) >= 0)
    assert {"accuracy", "nll", "ece", "ece_mass", "brier", "nodes_kept", "weight_sparsity", "train_time"} <= set(hist[-1])
    assert hist[-1]["accuracy"] > 0.5 and np.all(np.diff([r["train_time"] for r in hist]) > 0)
    assert frac[-1] == pruned_fraction(run.keep, net)
    assert hist[-1]["nodes_kept"] == np.mean(run.node_keep["dense_0"])
    assert len(run.posterior.losses) == 250 and run.compile_time > 0


def test_iterative_bmr_moves_pruned_weights_to_the_spike(iterative_run):
    net, test, run = iterative_run
    assert np.all(run.keep["dense_1"]["w"]) and np.all(run.keep["dense_1"]["b"])  # the output layer is never pruned
    # the posterior's prior is the spike where pruned: draws are exactly 0 there, without any mask
    draws = run.posterior.sample_params(jax.random.key(0), 3)
    w = np.asarray(draws["dense_0"]["w"])
    assert np.all(w[:, ~run.keep["dense_0"]["w"]] == 0) and np.all(w[:, run.keep["dense_0"]["w"]] != 0)
    np.testing.assert_array_equal(run.posterior.predict(test.x[:5]), run.posterior.predict(test.x[:5], masks=run.keep))
    df = flat(run.posterior.delta_f())
    assert np.all(df[~flat(run.keep)] == 0)
    # a fresh reduction of the final posterior keeps every spike (pruning is never undone)
    red = reduce(run.posterior.gaussian_factors(), net)
    assert np.all(flat(red.keep) <= flat(run.keep))


def test_node_level_beta_bernoulli():
    x, y, _ = digits_subset()
    net = nets.mlp([64, 16, 10])
    run = stochastic_bmr(net, (x, y), rule="beta_bernoulli", level="node", warmup_steps=100, steps_per_round=50,
                         rounds=2, batch_size=32, optimizer=optax.adam(1e-2))
    nodes = run.node_keep["dense_0"]
    np.testing.assert_array_equal(run.keep["dense_0"]["w"], np.broadcast_to(nodes, (64, 16)))
    np.testing.assert_array_equal(run.keep["dense_0"]["b"], nodes)
    assert "accuracy" not in run.history[-1]  # no test set given: training rows only
    assert run.history[-1]["pruned_fraction"] == pruned_fraction(run.keep, net)


def test_one_shot_tracking_of_a_horseshoe_posterior():
    """iterative=False: nothing fed back; each round reports the one-shot reduction. Its SVI posterior (non-centred
    tiered horseshoe) gives, through gaussian_factors, the posterior's own BMR (SVIPosterior.delta_f)."""
    x, y, _ = digits_subset()
    net = nets.mlp([64, 16, 10])
    hs = stochastic_bmr(net, (x, y), prior=priors.RegularizedHorseshoe(tiered=True), iterative=False,
                        warmup_steps=50, steps_per_round=50, rounds=1, batch_size=32)
    assert len(hs.history) == 2 and "dense_0.lambda.loc" in hs.posterior.params
    f = hs.posterior.gaussian_factors()
    assert float(f.prior_var["dense_0"]["w"][0, 0]) == 1.0  # non-centred ε ~ N(0, 1)
    red = reduce(f, net)
    np.testing.assert_allclose(flat(red.delta_f), flat(hs.posterior.delta_f()), rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(flat(red.keep), flat(hs.keep))
    assert hs.history[-1]["pruned_fraction"] == pruned_fraction(red.keep, net) > 0


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(prior=priors.RegularizedHorseshoe()), "iterative BMR needs"),
        (dict(prior=priors.RegularizedHorseshoe(centered=True), iterative=False), "BMR needs a fixed Gaussian"),
        (dict(rule="x"), "rule"),
        (dict(rounds=-1), "rounds"),
        (dict(steps_per_round=0), "steps_per_round"),
        (dict(batch_size=10_000), "batch_size"),
        (dict(margin=float("inf")), "margin"),
    ],
)
def test_stochastic_bmr_bad_arguments(kwargs, match):
    x, y, _ = digits_subset(50)
    with pytest.raises(ValueError, match=match):
        stochastic_bmr(nets.mlp([64, 4, 10]), (x, y), **{"batch_size": 16, **kwargs})


# ----------------------------------------------------------------------------- experiments


def test_quick_experiment_rows_resume_and_figures(tmp_path):
    import pandas as pd

    from experiments import stochastic_bmr as exp
    from paper_figures import stochastic_bmr as fig

    args = ["--quick", "--out", str(tmp_path), "--methods", "bmr", "flat-map", "tiered-hs"]
    table = exp.main(args)
    saved = pd.read_csv(tmp_path / "stochastic_bmr.csv")
    assert len(saved) == len(table) == (exp.QUICK["rounds"] + 1) + 1 + 2
    it = saved[saved["method"] == "bmr"].sort_values("round")
    assert list(it["reduction"].unique()) == ["iterative"] and it["pruned_fraction"].is_monotonic_increasing
    hs = saved[saved["method"] == "tiered-hs"].set_index("reduction")
    assert hs.loc["none", "pruned_fraction"] == 0 and hs.loc["one-shot", "pruned_fraction"] >= 0
    assert saved["accuracy"].between(0, 1).all() and saved[["nll", "ece"]].notna().all().all()
    assert saved.loc[saved["method"] == "flat-map", "accuracy"].item() > 0.8
    assert len(exp.main(args)) == len(saved)  # resumed: nothing recomputed
    assert set(exp.summary(saved)["method"]) == {"bmr", "flat-map", "tiered-hs"}
    paths = fig.make(tmp_path, tmp_path / "figs")
    assert {p.name for p in paths} == {"stochastic_bmr_metrics.pdf", "stochastic_bmr_metrics.png",
                                       "stochastic_bmr_rounds.pdf", "stochastic_bmr_rounds.png"}
    assert fig.make(tmp_path / "absent", tmp_path) == []


@pytest.mark.slow
def test_quick_benchmark_runs(tmp_path):
    from experiments import bench_bmr

    table = bench_bmr.main(["--quick", "--out", str(tmp_path), "--repeats", "3", "--n-params", "100000"])
    passes = table[table["kind"] == "pass"]
    assert len(passes) == 4 and (passes["ratio"] > 0).all()
    assert set(table.loc[table["kind"] == "final", "name"]) == {"bmr", "tiered-hs"}


@pytest.mark.slow
def test_nuts_fitted_gaussian_goes_through_the_same_reduction():
    from sparsebnn.infer import nuts

    rng = np.random.default_rng(0)
    x = rng.normal(size=(40, 2))
    y = (x[:, 0] > 0).astype(np.int32)
    net = nets.mlp([2, 3, 2])
    post = nuts(net, priors.Gaussian(1.0), (x, y), num_warmup=100, num_samples=100, num_chains=1, warn=False)
    red = reduce(post.gaussian_factors(), net)
    np.testing.assert_allclose(flat(red.delta_f), flat(post.delta_f()), rtol=1e-4, atol=1e-5)
    assert red.keep["dense_1"]["w"].all()
