"""The BMR-vs-exact experiment and its figure, end to end in --quick mode."""

import pandas as pd
import pytest

from experiments import bmr_exact
from paper_figures import bmr_vs_exact


def test_quick_run_table_and_figure(tmp_path, capsys):
    table = bmr_exact.main(["--quick", "--out", str(tmp_path / "results"), "--n-models", "25"])
    out = capsys.readouterr().out
    assert "largest |ΔF - exact|" in out
    saved = pd.read_csv(tmp_path / "results" / "bmr_exact.csv")
    assert len(saved) == len(table) and saved["model"].nunique() == 25
    assert set(saved["kind"]) == set(bmr_exact.KINDS)
    assert (saved["abs_err"] <= 1e-8 * saved["exact"].abs() + 1e-10).all()
    # Resuming does no new work and returns the same rows.
    again = bmr_exact.main(["--out", str(tmp_path / "results"), "--n-models", "25"])
    assert "already done" in capsys.readouterr().out
    pd.testing.assert_frame_equal(again.reset_index(drop=True), saved, check_dtype=False)

    paths = bmr_vs_exact.main(["--results", str(tmp_path / "results"), "--out", str(tmp_path / "figures")])
    assert sorted(p.suffix for p in paths) == [".pdf", ".png"] and all(p.stat().st_size > 0 for p in paths)
    assert bmr_vs_exact.make(tmp_path / "nothing", tmp_path / "figures") == []


def test_plot_rejects_bad_tables():
    with pytest.raises(ValueError, match="lacks columns"):
        bmr_vs_exact.plot(pd.DataFrame({"kind": ["shrink"]}))
    with pytest.raises(ValueError, match="empty"):
        bmr_vs_exact.plot(pd.DataFrame(columns=["kind", "delta_f", "exact", "abs_err"]))
