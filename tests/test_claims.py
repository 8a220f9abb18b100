"""experiments.claims: verdicts from intervals, on synthetic results tables with known answers."""

import numpy as np
import pandas as pd
import pytest

from experiments import claims


@pytest.mark.parametrize("mean,lo,hi,op,thr,want", [
    (0.95, 0.92, 0.98, ">=", 0.9, "holds"), (0.8, 0.7, 0.85, ">=", 0.9, "does not hold"),
    (0.9, 0.85, 0.95, ">=", 0.9, "inconclusive"), (0.5, np.nan, np.nan, "<", 1.0, "holds"),
    (np.nan, np.nan, np.nan, "<", 1.0, "not measured"), (-0.02, -0.03, -0.01, "<=", 0.0, "holds")])
def test_verdict(mean, lo, hi, op, thr, want):
    assert claims.verdict(mean, lo, hi, op, thr) == want


def _bmr_table():
    rows = []
    for seed in range(3):
        common = dict(dataset="digits", net="mlp", seed=seed)
        rows.append(dict(common, method="bmr", reduction="iterative", round=0, pruned_fraction=0.0, accuracy=0.9,
                         ece=0.1, train_time=1.0))
        rows.append(dict(common, method="bmr", reduction="iterative", round=5, pruned_fraction=0.95 + 0.01 * seed,
                         accuracy=0.96 - 0.001 * seed, ece=0.02, train_time=10.0 + seed))
        rows.append(dict(common, method="flat-map", reduction="none", round=0, pruned_fraction=0.0,
                         accuracy=0.965 - 0.001 * seed, ece=0.03, train_time=2.0))
        for m, ece, t in (("flat-ff", 0.05, 8.0), ("tiered-hs", 0.04 + 0.01 * seed, 30.0)):
            for red in ("none", "one-shot"):
                rows.append(dict(common, method=m, reduction=red, round=0, pruned_fraction=0.0 if red == "none" else 0.5,
                                 accuracy=0.95, ece=ece, train_time=t))
    return pd.DataFrame(rows)


def test_bmr_claims_on_a_synthetic_table(tmp_path):
    _bmr_table().to_csv(tmp_path / "stochastic_bmr.csv", index=False)
    out = claims.check(tmp_path)
    bmr = out[out["paper"] == claims.BMR].set_index("measure")
    assert bmr.loc["pruned fraction", "verdict"] == "holds" and bmr.loc["pruned fraction", "n_seeds"] == 3
    np.testing.assert_allclose(bmr.loc["pruned fraction", "value"], 0.96)
    assert bmr.loc["accuracy − MAP accuracy", "verdict"] == "holds"  # 0.005 below MAP on every seed
    np.testing.assert_allclose(bmr.loc["accuracy − MAP accuracy", "value"], -0.005)
    assert bmr.loc["ECE − Flat-FF ECE", "verdict"] == "holds"
    assert bmr.loc["train time / tiered-HS train time", "verdict"] == "holds"
    # every other paper's table is missing: said, with the command to run
    missing = out[out["paper"] != claims.BMR]
    assert set(missing["verdict"]) == {"not measured"} and missing["note"].str.contains("python -m experiments").all()
    text = claims.to_markdown(out)
    assert "| **holds** |" in text and "not measured" in text


def test_main_writes_claims_files(tmp_path):
    _bmr_table().to_csv(tmp_path / "stochastic_bmr.csv", index=False)
    table = claims.main(["--out", str(tmp_path)])
    assert (tmp_path / "claims.md").read_text().startswith("# The papers' claims")
    assert len(pd.read_csv(tmp_path / "claims.csv")) == len(table)
