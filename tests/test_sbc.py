"""sparsebnn.sbc: rank statistics and the uniformity test; (slow) the SBC experiment calibrates NUTS."""

import math

import numpy as np
import pandas as pd
import pytest
from scipy import stats

from sparsebnn import sbc


def test_sbc_rank_statistics():
    rng = np.random.default_rng(0)
    ranks = rng.integers(0, 100, size=500)
    chi2, p, counts = sbc.chi2_uniform(ranks, 100)
    want = stats.chisquare(np.bincount(ranks // 10, minlength=10))
    assert counts.sum() == 500 and chi2 == pytest.approx(want.statistic) and p == pytest.approx(want.pvalue)
    assert sbc.chi2_uniform(np.full(500, 3), 100)[1] < 1e-10  # all in one bin: not uniform
    with pytest.raises(ValueError, match="ranks"):
        sbc.chi2_uniform(np.array([100]), 100)
    with pytest.raises(ValueError, match="bins"):
        sbc.chi2_uniform(ranks, 100, bins=7)
    # ties (discrete quantities) are broken uniformly: rank of 1 among {0, 1, 1, 2} is 1 or 2 or 3
    got = {sbc.rank(np.array([0.0, 1.0, 1.0, 2.0]), 1.0, np.random.default_rng(i)) for i in range(200)}
    assert got == {1, 2, 3}
    table = pd.DataFrame({"quantity": ["a"] * 500 + ["b"] * 500,
                          "rank": np.concatenate([ranks, np.full(500, 3)])})
    summary = sbc.uniformity(table, 100)
    assert list(summary["passed"]) == [True, False]


def test_uniformity_corrects_for_the_number_of_quantities():
    """Bonferroni: a p-value between alpha / K and alpha passes with K quantities, not with one."""
    counts = [85] + [50] * 9  # χ² = (9 · 3.5² + 31.5²) / 53.5 = 20.6 on 9 d.o.f.: p ≈ 0.015
    ranks = np.repeat(np.arange(10) * 10, counts)
    one = sbc.uniformity(pd.DataFrame({"quantity": "a", "rank": ranks}), 100, alpha=0.05)
    p = one["p_value"].item()
    assert p == pytest.approx(stats.chi2.sf((9 * 3.5**2 + 31.5**2) / 53.5, 9), rel=1e-12)
    assert 0.05 / 20 < p < 0.05 and not one["passed"].item()
    many = pd.DataFrame({"quantity": np.repeat([f"q{i}" for i in range(20)], len(ranks)),
                         "rank": np.tile(ranks, 20)})
    assert sbc.uniformity(many, 100, alpha=0.05)["passed"].all()
    with pytest.raises(ValueError, match="alpha"):
        sbc.uniformity(many, 100, alpha=0.0)


@pytest.mark.slow
def test_sbc_horseshoe_ranks_are_uniform(tmp_path):
    """Talts et al. (2018): ranks of prior draws among posterior draws are uniform for an exact sampler
    (python -m experiments.sbc with 100 simulations: the NUTS reference on a tiny horseshoe BNN)."""
    from experiments import sbc as experiment

    summary = experiment.main(["--n-sims", "100", "--prior", "horseshoe", "--out", str(tmp_path)])
    ranks = pd.read_csv(tmp_path / "sbc_ranks.csv")
    assert summary["n_sims"].min() == 100
    assert summary["passed"].all(), summary[~summary["passed"]]
    assert math.isclose(len(summary), ranks["quantity"].nunique())


def test_spike_slab_quantities_are_relabelling_invariant():
    """SS priors are ranked on functionals of the draws that no relabelling of the hidden nodes changes."""
    import jax

    from experiments import sbc as experiment
    from sparsebnn import invariants

    model = experiment.make_model("ss-gl")
    x = experiment.inputs()
    draws = [experiment.prior_draw(model, x, k) for k in jax.random.split(jax.random.key(0), 6)]
    sites = {k: np.stack([d[0][k] for d in draws]) for k in draws[0][0]}
    y = draws[0][1]
    perm = {"dense_0": np.array([2, 0, 1])}
    moved = jax.vmap(lambda s: invariants.permute_sites(model.net, s, perm))(sites)
    a = experiment.quantities(model, sites, len(x), (x, y))
    b = experiment.quantities(model, {k: np.asarray(v) for k, v in moved.items()}, len(x), (x, y))
    assert set(a) == {"log_lik", "active.dense_0", "norm.dense_0[0]", "norm.dense_0[1]", "norm.dense_0[2]",
                      "dense_0.lambda2", "dense_1.lambda2", "f(-1.5)", "f(+0.0)", "f(+1.5)"}
    for k in a:
        np.testing.assert_allclose(a[k], b[k], rtol=1e-5, atol=1e-6, err_msg=k)
    with pytest.raises(ValueError, match="data"):
        experiment.quantities(model, sites, len(x))
    with pytest.raises(ValueError, match="prior must be one of"):
        experiment.make_model("laplace")


@pytest.mark.slow
@pytest.mark.parametrize("prior", ["ss-ig", "ss-gl", "ss-ghs"])
def test_sbc_spike_slab_ranks_are_uniform(tmp_path, prior):
    """SBC of the reference (indicators summed out, drawn exactly) on 1-3-1 with each spike-and-slab prior:
    ranks of the relabelling-invariant quantities are uniform (100 simulations, Bonferroni over quantities)."""
    from experiments import sbc as experiment

    summary = experiment.main(["--n-sims", "100", "--prior", prior, "--out", str(tmp_path)])
    assert summary["n_sims"].min() == 100
    assert summary["passed"].all(), summary[~summary["passed"]]
