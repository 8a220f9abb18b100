"""experiments.all (the one-command reproduction), experiments.bench_scaling and its figure."""

from __future__ import annotations

import json

import numpy as np
import pandas as pd
from scipy import stats
import pytest

from experiments import all as reproduce
from experiments import bench_scaling, registry
from paper_figures import benchmarks
from sparsebnn import nets
from sparsebnn.cli import main as cli_main
from sparsebnn.results import ResultsStore

# ----------------------------------------------------------------------------- summary tables


def test_markdown_and_latex_formatting_exact():
    df = pd.DataFrame({"prior": ["ss_ig", "a&b"], "accuracy": [0.91234567, np.nan]})
    assert reproduce.to_markdown(df) == "| prior | accuracy |\n|---|---|\n| ss_ig | 0.9123 |\n| a&b |  |"
    tex = reproduce.to_latex(df, "50% of x_y")
    assert r"\caption{50\% of x\_y}" in tex and r"\begin{tabular}{lr}" in tex
    assert r"ss\_ig & 0.9123 \\" in tex and r"a\&b &  \\" in tex


def test_summarise_groups_config_and_averages_over_seeds(tmp_path):
    store = ResultsStore(tmp_path / "t.csv")
    for seed in (0, 1):
        for prior in ("gaussian", "ss-ig"):
            acc = {"gaussian": 0.8, "ss-ig": 0.9}[prior] + 0.02 * seed
            # row-level string column "criterion" is a key too; "steps" is constant config: dropped
            store.add(dict(prior=prior, steps=10, seed=seed), [dict(criterion=c, accuracy=acc, ok=True) for c in "ab"])
    table = reproduce.summarise(pd.read_csv(tmp_path / "t.csv"))
    assert list(table.columns) == ["prior", "criterion", "n_seeds", "accuracy", "accuracy_lo", "accuracy_hi"]
    assert len(table) == 4 and set(table["n_seeds"]) == {2}
    got = table.set_index(["prior", "criterion"])
    np.testing.assert_allclose(got.loc[("gaussian", "a"), "accuracy"], 0.81)
    np.testing.assert_allclose(got.loc[("ss-ig", "b"), "accuracy"], 0.91)
    half = stats.t.ppf(0.975, 1) * np.std([0.8, 0.82], ddof=1) / np.sqrt(2)  # the 95 % t interval over the 2 seeds
    np.testing.assert_allclose(got.loc[("gaussian", "a"), ["accuracy_lo", "accuracy_hi"]], [0.81 - half, 0.81 + half])


def test_write_summary_only_existing_tables(tmp_path):
    pd.DataFrame({"method": ["x", "y"], "ratio": [1.5, 2.0]}).to_csv(tmp_path / "bench_laplace.csv", index=False)
    md, tex = reproduce.write_summary(tmp_path)
    text = md.read_text()
    assert "bench_laplace" in text and "| x | 1 | 1.5 |" in text and "svi_sparsity" not in text
    assert r"\begin{table}" in tex.read_text()


# ----------------------------------------------------------------------------- selection and running


def test_select_and_invocations():
    names = [e.name for e in registry.select(None, None, bench=False)]
    assert "compare" in names and not any(n.startswith("bench_") for n in names)
    assert "bench_scaling" in [e.name for e in registry.select(None, None, bench=True)]
    assert [e.name for e in registry.select(["sbc", "spam"], ["spam"], False)] == ["sbc"]
    with pytest.raises(ValueError, match="--only"):
        registry.select(["nope"], None, False)
    exp = registry.BY_NAME["spam"]
    assert registry.invocations(exp, "full", quick=True) == (("--quick",),)
    assert all("--dataset" in a for a in registry.invocations(exp, "full", quick=False))
    with pytest.raises(ValueError, match="scale"):
        registry.invocations(exp, "gpu", quick=False)


def test_run_all_reports_missing_and_failed_and_goes_on(tmp_path, capsys):
    exps = [registry.Experiment("no_such_experiment", "x"),
            registry.Experiment("bmr_exact", "bad flag", cpu=(("--no-such-flag",),))]
    status = reproduce.run_all(exps, out=tmp_path, scale="cpu")
    assert status == {"no_such_experiment": "missing", "bmr_exact": "failed"}
    out = capsys.readouterr().out
    assert "MISSING" in out and "FAILED" in out and "--no-such-flag" in out


def test_whole_pipeline_quick_resumes(tmp_path, capfd):
    """``experiments.all --quick``: every experiment's table and log, the figures and the summary; a rerun
    through the console script resumes (nothing recomputed)."""
    res, figs = tmp_path / "results", tmp_path / "figures"
    argv = ["--quick", "--out", str(res), "--figures", str(figs)]
    assert reproduce.main(argv) == 0
    chosen = registry.select(None, None, bench=False)
    for exp in chosen:
        assert (res / "logs" / f"{exp.name}.log").exists(), exp.name
        for name in registry.tables(exp):
            assert (res / name).exists(), name
    assert len(list(figs.glob("*.pdf"))) >= 5 and list(figs.glob("*.png"))
    text = (res / "summary.md").read_text()
    assert all(e.name in text for e in chosen) and (res / "summary.tex").exists()
    stamps = {json.loads(p.read_text())["experiment"] for p in (res / ".reproduce").glob("*.json")}
    assert stamps == {e.name for e in chosen}
    capfd.readouterr()
    assert cli_main(["reproduce", *argv]) == 0  # the console script (a child process), resuming
    out = capfd.readouterr().out
    assert out.count("done earlier") == len(chosen) and "running" not in out


@pytest.mark.slow
def test_whole_pipeline_quick_with_benchmarks(tmp_path):
    """Every experiment's --quick mode, benchmarks included, then every figure and the summary."""
    res, figs = tmp_path / "results", tmp_path / "figures"
    assert reproduce.main(["--quick", "--bench", "--out", str(res), "--figures", str(figs)]) == 0
    for exp in registry.EXPERIMENTS:
        for name in registry.tables(exp):
            assert (res / name).exists(), name
    assert (figs / "bench_scaling.pdf").exists()


# ----------------------------------------------------------------------------- bench_scaling


@pytest.mark.parametrize("target", [10, 100, 1_000, 12_345, 10**5, 10**6, 10**7])
@pytest.mark.parametrize("d_in,d_out", [(64, 10), (4, 1)])
def test_width_for_is_smallest_width_reaching_target(target, d_in, d_out):
    count = lambda h: h * h + (d_in + 2 + d_out) * h + d_out  # noqa: E731
    h = bench_scaling.width_for(target, d_in, d_out)
    assert count(h) >= target and (h == 1 or count(h - 1) < target)


@pytest.mark.parametrize("h", [1, 3, 17])
def test_width_formula_matches_network(h):
    import jax

    params = nets.mlp([64, h, h, 10]).init(jax.random.PRNGKey(0))
    assert nets.n_params(params) == h * h + 76 * h + 10


def _fake_bench_table() -> pd.DataFrame:
    rows = [dict(measure=m, n_params=n, ratio=r * n**0.1, seconds=1e-3, baseline_seconds=1e-3)
            for m, r in (("svi-gaussian", 3.0), ("bmr-weight", 1.5), ("laplace-kfac-ggn", 5.0)) for n in (1e3, 1e4, 1e5)]
    rows += [dict(measure="nuts", n_params=n, ratio=50.0, ess_per_s=10.0 / n) for n in (1e2, 1e3)]
    return pd.DataFrame(rows)


def test_benchmark_figure(tmp_path):
    assert benchmarks.make(tmp_path, tmp_path / "figs") == []
    _fake_bench_table().to_csv(tmp_path / "bench_scaling.csv", index=False)
    paths = benchmarks.make(tmp_path, tmp_path / "figs")
    assert [p.suffix for p in paths] == [".pdf", ".png"] and all(p.stat().st_size > 0 for p in paths)


def test_bench_scaling_rejects_bad_sizes(tmp_path, capsys):
    with pytest.raises(SystemExit):
        bench_scaling.main(["--sizes", "0", "--out", str(tmp_path)])
    assert "argument --sizes: must be a parameter count >= 10; got 0" in capsys.readouterr().err
    with pytest.raises(SystemExit):
        bench_scaling.main(["--batch", "5000", "--out", str(tmp_path)])
    assert f"argument --batch: must be an integer in [1, {bench_scaling.N_DATA}]" in capsys.readouterr().err


@pytest.mark.slow
def test_bench_scaling_quick_table(tmp_path):
    table = bench_scaling.main(["--quick", "--out", str(tmp_path)])
    assert set(table["measure"]) >= {"svi-gaussian", "bmr-weight", "bmr-node", "laplace-kfac-ggn", "nuts"}
    assert np.all(np.isfinite(table["ratio"])) and np.all(table["ratio"] > 0)


def test_summary_pairs_arms_with_map_by_seed(tmp_path):
    """Δ accuracy: each arm (a method with its reduction) minus MAP on the same seed; arm-specific settings
    (a method's own learning rate) do not split cells."""
    rows = []
    for seed in range(3):
        rows += [dict(method="flat-map", reduction="none", lr=0.01, seed=seed, round=0, accuracy=0.95 + 0.01 * seed),
                 dict(method="bmr", reduction="iterative", lr=0.003, seed=seed, round=1, accuracy=0.94 + 0.01 * seed),
                 dict(method="bmr", reduction="iterative", lr=0.003, seed=seed, round=0, accuracy=0.5)]
    df = pd.DataFrame(rows)
    df["config_key"] = [json.dumps(dict(method=r.method, lr=r.lr, seed=r.seed)) for r in df.itertuples()]
    kept, keys = reproduce.view(df, "stochastic_bmr.csv")
    assert set(kept["accuracy"]) - {0.5} == set(kept["accuracy"])  # only each run's last round
    table = reproduce.summarise(kept, keys=keys).set_index("method")
    np.testing.assert_allclose(table.loc["bmr", ["Δ accuracy", "Δ accuracy_lo", "Δ accuracy_hi"]], [-0.01] * 3, atol=1e-12)
    assert np.isnan(table.loc["flat-map", "Δ accuracy"])


@pytest.mark.slow  # 45 s of compiling on CPU; run on the device by the GPU check
def test_bench_gpu_quick_table(tmp_path):
    """The accelerator check runs end to end on whatever JAX runs on; every measurement is a finite ratio."""
    from experiments import bench_gpu

    table = bench_gpu.main(["--quick", "--out", str(tmp_path)])
    assert (tmp_path / "bench_gpu.csv").exists()
    assert set(table["what"]) == {"svi/adam", "scaling", "compile reuse", "bmr/elementwise", "compare mnist5k"}
    assert np.isfinite(table["value"]).all() and (table["value"] > 0).all()
    assert table["device"].nunique() == 1
