"""python -m experiments.spam --quick: the SpaM grid runs, resumes, and its figures build."""

from __future__ import annotations

import numpy as np
import pandas as pd

from experiments import spam
from paper_figures import spam as fig
from sparsebnn import prune


def test_quick_spam_grid_and_figures(tmp_path):
    table = spam.main(["--quick", "--out", str(tmp_path), "--structures", "parameter"])
    saved = pd.read_csv(tmp_path / "spam.csv")
    assert len(saved) == len(table) == len(prune.CRITERIA) * 2 * len(spam.QUICK["sparsities"])
    assert set(saved["structure"]) == {"parameter"} and set(saved["criterion"]) == set(prune.CRITERIA)
    assert set(saved["structured"]) == {False, True}
    assert saved["accuracy"].between(0, 1).all() and np.isfinite(saved["log_marglik"]).all()
    # unstructured masks reach the target sparsity over the layers' parameters exactly (up to rounding)
    un = saved[~saved["structured"]]
    np.testing.assert_allclose(un["weight_sparsity"], un["sparsity"], atol=1e-3)
    st = saved[saved["structured"]]
    assert (st["weight_sparsity"] > 0).all()
    assert saved["dense_accuracy"].min() > 0.5  # the quick MAP has learnt something
    # resume: a second run computes nothing new
    again = spam.main(["--quick", "--out", str(tmp_path), "--structures", "parameter"])
    assert len(again) == len(saved)
    paths = fig.make(tmp_path, tmp_path / "figs")
    assert {p.name for p in paths} == {"spam_structures_mlp.pdf", "spam_structures_mlp.png",
                                       "spam_criteria_mlp.pdf", "spam_criteria_mlp.png"}
    assert fig.best_structure(saved) == "parameter"
    assert fig.make(tmp_path / "absent", tmp_path / "figs") == []
