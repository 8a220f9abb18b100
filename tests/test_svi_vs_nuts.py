"""SVI vs NUTS experiment: the quick run end to end, resume, figures (its measures: test_agreement.py)."""

from __future__ import annotations

import shutil
import warnings

import numpy as np
import pandas as pd
import pytest

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
    # the figures carry only runs whose reference passed: force the verdict both ways on a copy of the tables
    for ok in (True, False):
        copy = tmp_path / f"ok_{ok}"
        copy.mkdir()
        for name in exp.DETAILS:
            shutil.copy(out / f"svi_vs_nuts_{name}.csv", copy)
        table.assign(nuts_ok=ok).to_csv(copy / exp.TABLE, index=False)
        paths = fig.make(copy, tmp_path / f"figs_{ok}")
        want = {f"svi_vs_nuts_{n}.{s}" for n in fig.PLOTS for s in ("pdf", "png")} if ok else set()
        assert {p.name for p in paths} == want
        assert all(p.stat().st_size > 0 for p in paths)
    assert fig.make(tmp_path / "nothing", tmp_path / "figs2") == []


def test_figures_keep_only_passing_references():
    runs = pd.DataFrame({"dataset": ["a", "a", "b"], "widths": ["[1, 4, 1]"] * 3, "prior": ["x", "y", "x"],
                         "seed": 0, "nuts_ok": [True, False, True]})
    detail = pd.DataFrame({"dataset": ["a", "a", "a", "b"], "widths": ["[1, 4, 1]"] * 4, "prior": ["x", "x", "y", "x"],
                           "seed": 0, "value": [1.0, 2.0, 3.0, 4.0]})
    assert fig.passing(detail, runs)["value"].tolist() == [1.0, 2.0, 4.0]
    assert fig.passing(detail, None).equals(detail)


def test_bad_dataset_name():
    with pytest.raises(ValueError, match="unknown dataset"):
        exp.load("mnist", 0, 10)


def test_full_grid_sampler_settings_per_prior():
    configs = exp.grid(False, 0, ["gaussian", "horseshoe", "ss-ig"])
    assert len(configs) == 9 and all(c["samples"] == 1000 and c["chains"] == 4 for c in configs)
    for c in configs:
        want = exp.SAMPLER.get((c["prior"], c["dataset"]), dict(warmup=500, target_accept=0.99, max_tree_depth=8))
        assert {k: c[k] for k in want} == want
        assert c.get("dense_mass", False) == ((c["prior"], c["dataset"]) == ("horseshoe", "teacher1d"))
    assert all("target_accept" not in c for c in exp.grid(True, 0, ["horseshoe"]))  # --quick keeps NUTS's defaults
