"""SVI vs NUTS experiment: the quick run end to end, resume, figures, and its pure helpers against exact answers."""

from __future__ import annotations

import itertools
import warnings

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import integrate, stats

from experiments import svi_vs_nuts as exp
from paper_figures import svi_vs_nuts as fig
from sparsebnn.diagnostics import DiagnosticsWarning


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("svi_vs_nuts")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always", DiagnosticsWarning)
        table = exp.main(["--quick", "--out", str(out)])
    flagged = [w for w in caught if issubclass(w.category, DiagnosticsWarning)]
    return out, table, flagged


def test_quick_run_table(quick):
    out, table, flagged = quick
    assert len(table) == 1
    row = table.iloc[0]
    assert row["prior"] == "ss-ig" and row["dataset"] == "teacher1d"
    assert (not row["nuts_ok"]) == bool(flagged)  # a failed run is flagged loudly, never silently
    assert row["nuts_ok"] == (str(row["nuts_problems"]) in ("", "nan"))
    assert 0 <= row["pred_tv"] <= 1 and row["pred_kl"] >= 0
    assert np.isfinite([row["nuts_rmse"], row["svi_rmse"], row["nuts_nll"], row["svi_nll"]]).all()
    assert row["weight_sd_ratio"] > 0 and np.isfinite(row["weight_mean_gap"])
    assert 0 <= row["active_nuts"] <= 4 and 0 <= row["active_svi"] <= 4 and 0 <= row["active_count_tv"] <= 1
    assert 0 <= row["incl_agree"] <= 1 and 0 <= row["bmr_prune_agree_nuts_gauss"] <= 1
    assert row["bmr_n_sd"] >= 1 and row["bmr_n_weights"] == 13
    assert row["nuts_wall_s"] > 0 and row["nuts_ess_per_s"] > 0 and row["svi_steps_per_s"] > 0
    for name in exp.DETAILS:
        assert not pd.read_csv(out / f"svi_vs_nuts_{name}.csv").empty, name
    inc = pd.read_csv(out / "svi_vs_nuts_inclusion.csv")
    counts = inc[inc["kind"] == "count"]
    np.testing.assert_allclose(counts["nuts"].sum(), 1.0, atol=1e-9)
    np.testing.assert_allclose(counts["svi"].sum(), 1.0, atol=1e-9)


def test_quick_run_resumes_and_makes_figures(quick, tmp_path):
    out, table, _ = quick
    again = exp.main(["--quick", "--out", str(out)])  # everything done: nothing recomputed
    assert len(again) == 1 and again["nuts_wall_s"].iloc[0] == table["nuts_wall_s"].iloc[0]
    paths = fig.make(out, tmp_path / "figs")
    assert {p.name for p in paths} == {f"svi_vs_nuts_{n}.{s}" for n in fig.PLOTS for s in ("pdf", "png")}
    assert all(p.stat().st_size > 0 for p in paths)
    assert fig.make(tmp_path / "nothing", tmp_path / "figs2") == []


# ----------------------------------------------------------------------------- helpers vs exact answers


@given(st.lists(st.floats(0, 1), min_size=0, max_size=6))
def test_poisson_binomial_matches_enumeration(p):
    pmf = exp.poisson_binomial(np.array(p))
    brute = np.zeros(len(p) + 1)
    for z in itertools.product([0, 1], repeat=len(p)):
        brute[sum(z)] += np.prod([q if b else 1 - q for q, b in zip(p, z)])
    np.testing.assert_allclose(pmf, brute, atol=1e-12)


def test_mixture_quantiles():
    f = np.array([[0.0, 1.0], [0.0, 3.0]])  # column 0: one Gaussian; column 1: two components
    lo = exp.mixture_quantiles(f, 0.5, 0.05)
    assert lo[0] == pytest.approx(stats.norm.ppf(0.05, 0, 0.5), abs=1e-9)
    cdf = 0.5 * (stats.norm.cdf(lo[1], 1, 0.5) + stats.norm.cdf(lo[1], 3, 0.5))
    assert cdf == pytest.approx(0.05, abs=1e-9)


def test_predictive_agreement_exact():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(50, 7, 3))
    same = exp.predictive_agreement("classification", logits, logits, None)
    assert same == {"pred_tv": 0.0, "pred_kl": 0.0}
    # regression: two predictive Gaussians with equal variance v: TV = 2Φ(|Δ| / (2√v)) − 1, KL = Δ² / (2v)
    a = np.zeros((2, 1, 1)) + np.array([-0.1, 0.1])[:, None, None]  # mean 0, var 0.01
    b = a + 0.3
    r = exp.predictive_agreement("regression", a, b, noise=0.2)
    v = 0.01 + 0.04
    assert r["pred_kl"] == pytest.approx(0.09 / (2 * v), rel=1e-9)
    assert r["pred_tv"] == pytest.approx(2 * stats.norm.cdf(0.3 / (2 * np.sqrt(v))) - 1, abs=1e-6)
    # classification TV and KL by definition
    p, q = np.array([[0.2, 0.8]]), np.array([[0.5, 0.5]])
    r = exp.predictive_agreement("classification", np.log(p)[None], np.log(q)[None], None)
    assert r["pred_tv"] == pytest.approx(0.3) and r["pred_kl"] == pytest.approx(np.sum(p * np.log(p / q)))


@given(st.floats(-3, 3), st.floats(0.05, 4), st.floats(-3, 3), st.floats(0.05, 4))
def test_gaussian_tv_matches_quadrature(m1, v1, m2, v2):
    lo = min(m1 - 12 * v1**0.5, m2 - 12 * v2**0.5)
    hi = max(m1 + 12 * v1**0.5, m2 + 12 * v2**0.5)
    gap = lambda y: abs(stats.norm.pdf(y, m1, v1**0.5) - stats.norm.pdf(y, m2, v2**0.5))
    want = 0.5 * integrate.quad(gap, lo, hi, points=[m1, m2], limit=200, epsabs=1e-11)[0]
    assert float(exp.gaussian_tv(m1, v1, m2, v2)) == pytest.approx(want, abs=1e-7)


def test_moment_gaps():
    rng = np.random.default_rng(1)
    a = rng.normal(size=(4000, 3)) * [1.0, 2.0, 0.0]
    b = rng.normal(size=(4000, 3)) * [0.5, 1.0, 1.0] + [1.0, 2.0, 0.0]
    gap, ratio = exp.moment_gaps(a, b)  # the third column has no NUTS spread and is skipped
    assert gap == pytest.approx(1.0, abs=0.1) and ratio == pytest.approx(0.5, abs=0.05)


def test_bad_dataset_name():
    with pytest.raises(ValueError, match="unknown dataset"):
        exp.load("mnist", 0, 10)
