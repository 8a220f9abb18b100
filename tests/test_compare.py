"""The main comparison and its figures, end to end in --quick mode (MLP, three methods)."""

import numpy as np
import pandas as pd
import pytest

from experiments import compare
from paper_figures import compare as figs


@pytest.fixture(scope="module")
def quick(tmp_path_factory):
    out = tmp_path_factory.mktemp("compare")
    table = compare.main(["--quick", "--out", str(out / "results"), "--nets", "mlp", "--methods", "map", "ss-gl",
                          "laplace-opd", "--steps", "60", "--opd-sparsity", "0.8", "--opd-node-sparsity", "0.5"])
    return out, table


def test_quick_table(quick, capsys):
    out, table = quick
    saved = pd.read_csv(out / "results" / "compare.csv")
    assert len(saved) == len(table) == 4  # map, ss-gl, laplace-opd x {weights, nodes}
    assert set(saved["method"]) == {"map", "ss-gl", "laplace-opd"}
    for col in ("accuracy", "nll", "ece", "weight_sparsity", "compression_ratio", "flops_ratio", "wall_time_s",
                "jax", "summary"):
        assert col in saved and saved[col].notna().all(), col
    by = {(r.method, r.pruning): r for r in saved.itertuples()}
    assert by["map", "none"].weight_sparsity == 0 and by["map", "none"].flops_ratio == 1
    # OPD prunes exactly the stated fraction of all layer parameters (the MLP has only layers) ...
    assert by["laplace-opd", "opd-weight"].weight_sparsity == pytest.approx(0.8, abs=1e-3)
    # ... and half of all hidden nodes, ranked together (no layer emptied), so the compacted network is cheaper.
    node = saved[saved["pruning"] == "opd-node"].iloc[0]
    assert node["nodes_kept"] == 0.5 and node["nodes_kept/dense_0"] > 0 and node["nodes_kept/dense_1"] > 0
    assert 0 < node["flops_ratio"] < 1
    assert ((saved["accuracy"] > 0.1) & (saved["accuracy"] <= 1)).all()
    # Per-run posterior summaries.
    ss = saved[saved["method"] == "ss-gl"].iloc[0]
    with np.load(out / "results" / ss["summary"]) as d:
        assert d["first_layer"].shape == (64, 16)
        assert {"absmean/dense_0", "absmean/dense_2", "history/step", "history/val_accuracy",
                "history/nodes_kept", "history/nodes_kept/dense_0", "history/nodes_kept/dense_1",
                "nodes_kept/dense_0"} <= set(d.files)
        assert np.all(d["absmean/dense_1"] >= 0) and d["absmean/dense_1"].shape == (16 * 16,)
    # Resume: nothing recomputed, same table.
    again = compare.main(["--quick", "--out", str(out / "results"), "--nets", "mlp", "--methods", "map", "ss-gl",
                          "laplace-opd", "--steps", "60"])
    assert "already done" in capsys.readouterr().out
    pd.testing.assert_frame_equal(again.reset_index(drop=True), saved, check_dtype=False)


def test_figures(quick, tmp_path):
    out, _ = quick
    paths = figs.make(out / "results", tmp_path)
    stems = {p.stem for p in paths}
    assert {"compare_metrics", "compare_pruned", "compare_cost", "compare_cdf", "compare_first_layer",
            "compare_training"} <= stems
    assert all(p.stat().st_size > 0 for p in paths)
    assert figs.make(tmp_path / "nothing", tmp_path) == []


def test_creg_plot_and_labels():
    table = pd.DataFrame({"net": ["mlp", "mlp"], "method": ["ss-ghs", "ss-ghs"], "c_reg": ["1.0", "fan_in"],
                          "pruning": ["indicator"] * 2, "accuracy": [0.9, 0.92]})
    table["nodes_kept/dense_0"], table["nodes_kept/dense_1"] = [0.5, 0.75], [0.25, 1.0]
    assert list(figs.keyed(table)["label"]) == [r"SS-GHS $c{=}1$", r"SS-GHS $c{=}k_l{+}1$"]
    fig = figs.plot_creg(table)
    assert len(fig.axes) == 2


def test_bad_net():  # nets.build's errors: tests/test_nets.py
    with pytest.raises(SystemExit):
        compare.main(["--nets", "alexnet"])


def test_a_collapsed_run_is_flagged_in_the_row_the_summary_and_the_figure(tmp_path, monkeypatch, capsys):
    """Quick scale: MAP pruned of every node of its first layer (a constant predictor) is flagged, not a result."""
    from experiments import all as reproduce

    def prune_all(post, config):
        nodes = {l.name: np.arange(l.n_nodes) < (0 if l.name == "dense_0" else l.n_nodes) for l in post.net.prunable_layers}
        return "all", nodes, nodes

    monkeypatch.setitem(compare.RECIPES, "map", compare.Method(compare.fit_map, (compare.no_pruning, prune_all), True))
    table = compare.main(["--quick", "--out", str(tmp_path), "--nets", "mlp", "--methods", "map", "--steps", "60"])
    saved = pd.read_csv(tmp_path / "compare.csv").set_index("pruning")
    assert not saved.loc["none", "collapsed"] and pd.isna(saved.loc["none", "collapse_reason"])
    assert saved.loc["all", "collapsed"]
    assert saved.loc["all", "collapse_reason"].startswith("pruned every node of dense_0; accuracy")
    printed = capsys.readouterr().out
    assert "1/1: pruned every node of dense_0" in printed  # the experiment's own summary
    summary = reproduce.summarise(pd.read_csv(tmp_path / "compare.csv")).set_index("pruning")
    assert summary.loc["none", "collapsed"] == "" and summary.loc["all", "collapsed"].startswith(
        "1/1: pruned every node of dense_0; accuracy")
    assert "pruned every node of dense_0" in reproduce.to_markdown(summary.reset_index())
    t = figs.keyed(table.assign(pruning="none", collapsed=table["collapsed"].astype(bool)).iloc[1:])
    fig = figs.plot_metrics(t)
    assert any(a.get_gid() == "collapsed" for ax in fig.axes for a in ax.lines)
    assert "collapsed run (reason in the summary)" in [x.get_text() for x in fig.legends[0].get_texts()]
