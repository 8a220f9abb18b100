"""Intervals over seeds against scipy and by hand."""

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats

from sparsebnn.intervals import paired_difference, summarise, t_interval


@given(st.lists(st.floats(-1e3, 1e3), min_size=2, max_size=12), st.sampled_from([0.8, 0.9, 0.95, 0.99]))
def test_t_interval_is_scipys(values, level):
    m, lo, hi = t_interval(values, level)
    v = np.asarray(values)
    if v.std() == 0:
        assert lo == hi == m
        return
    want = stats.t.interval(level, len(v) - 1, loc=v.mean(), scale=stats.sem(v))
    np.testing.assert_allclose([m, lo, hi], [v.mean(), *want], rtol=1e-9, atol=1e-9)


def test_one_seed_has_no_interval_and_nans_are_dropped():
    assert np.isnan(t_interval([0.7])[1]) and t_interval([0.7])[0] == 0.7
    assert t_interval([1.0, np.nan, 3.0])[0] == 2.0
    with pytest.raises(ValueError, match="level"):
        t_interval([1.0, 2.0], 1.5)


def test_summarise_and_paired_difference_by_hand():
    t = pd.DataFrame({"net": ["mlp"] * 6, "method": ["a", "a", "a", "b", "b", "b"], "seed": [0, 1, 2] * 2,
                      "acc": [0.90, 0.80, 0.85, 0.88, 0.779, 0.831]})
    s = summarise(t, ["net", "method"], ["acc"])
    a = s[s["method"] == "a"].iloc[0]
    assert a["n_seeds"] == 3 and a["acc"] == pytest.approx(0.85)
    want = stats.t.interval(0.95, 2, loc=0.85, scale=stats.sem([0.90, 0.80, 0.85]))
    assert (a["acc_lo"], a["acc_hi"]) == pytest.approx(want)
    d = paired_difference(t, ["net"], "method", "a", "b", "acc").iloc[0]
    diffs = np.array([0.02, 0.021, 0.019])  # paired by seed: far tighter than the unpaired spread
    assert d["n_seeds"] == 3 and d["diff"] == pytest.approx(diffs.mean())
    assert (d["diff_lo"], d["diff_hi"]) == pytest.approx(stats.t.interval(0.95, 2, loc=diffs.mean(), scale=stats.sem(diffs)))
    assert d["diff_lo"] > 0  # a is better on every seed: the paired interval excludes 0
    with pytest.raises(ValueError, match="no columns"):
        summarise(t, ["dataset"], ["acc"])
