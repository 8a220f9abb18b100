"""sparsebnn.rates: the log-log slope against scipy and exact power laws; its bootstrap interval."""

import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats

from sparsebnn import rates


def test_ols_slope_is_exact_on_a_power_law_and_matches_scipy():
    n = np.repeat([500.0, 2000.0, 8000.0], 3)
    assert rates.ols_slope(n, 3.0 * n**-0.45) == pytest.approx(-0.45, abs=1e-12)
    y = np.exp(np.random.default_rng(0).normal(size=n.size)) * n**-0.5
    assert rates.ols_slope(n, y) == pytest.approx(stats.linregress(np.log(n), np.log(y)).slope, rel=1e-12)


@given(st.lists(st.floats(-3, 3), min_size=6, max_size=6), st.floats(-2, 2))
def test_ols_slope_matches_linregress(noise, b):
    n = np.array([100.0, 100.0, 1000.0, 1000.0, 10000.0, 10000.0])
    y = np.exp(b * np.log(n) + np.asarray(noise))
    assert rates.ols_slope(n, y) == pytest.approx(stats.linregress(np.log(n), np.log(y)).slope, rel=1e-9, abs=1e-9)


def test_bootstrap_interval_covers_the_slope_and_needs_replicates():
    rng = np.random.default_rng(1)
    n = np.repeat([500.0, 1000.0, 2000.0, 4000.0, 8000.0], 4)
    y = 2.0 * n**-0.5 * np.exp(0.05 * rng.normal(size=n.size))
    slope, lo, hi = rates.fit_slope(n, y, n_boot=4000)
    assert lo < slope < hi and lo < -0.5 < hi and hi < 0
    assert hi - lo < 0.2
    # the same seed gives the same interval
    assert rates.fit_slope(n, y, n_boot=4000) == (slope, lo, hi)
    # one replicate per n: nothing to resample
    s1, lo1, hi1 = rates.fit_slope(n[::4], y[::4])
    assert np.isfinite(s1) and np.isnan(lo1) and np.isnan(hi1)


@pytest.mark.parametrize("n, y, match", [
    ([1.0, 2.0], [1.0], "equal length"),
    ([10.0, 10.0], [1.0, 2.0], "two distinct n"),
    ([10.0, 20.0], [1.0, -2.0], "finite and positive"),
    ([10.0, 20.0], [1.0, np.nan], "finite and positive"),
])
def test_slope_rejects_bad_input(n, y, match):
    with pytest.raises(ValueError, match=match):
        rates.fit_slope(n, y)


def test_fit_slope_rejects_bad_level_and_boot():
    with pytest.raises(ValueError, match="level"):
        rates.fit_slope([1.0, 2.0], [1.0, 2.0], level=1.5)
    with pytest.raises(ValueError, match="n_boot"):
        rates.fit_slope([1.0, 2.0], [1.0, 2.0], n_boot=0)
