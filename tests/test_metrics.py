import math
import sys
import types
from fractions import Fraction

import numpy as np
import pandas as pd
import pytest
from hypothesis import given
from hypothesis import strategies as st
from scipy import stats
from sklearn.metrics import accuracy_score, brier_score_loss, log_loss, mean_squared_error

from sparsebnn import metrics


def softmax(a, axis=-1):
    e = np.exp(a - a.max(axis=axis, keepdims=True))
    return e / e.sum(axis=axis, keepdims=True)


def draw(seed, s, n, c, scale=3.0):
    rng = np.random.default_rng(seed)
    return rng.normal(0, scale, (s, n, c)), rng.integers(0, c, n)


shapes = dict(seed=st.integers(0, 2**32 - 1), s=st.integers(1, 5), n=st.integers(1, 30), c=st.integers(2, 6))


# ----------------------------------------------------------------------------- classification: hand-computed values


def test_hand_computed_classification():
    probs = np.array([[0.9, 0.1], [0.9, 0.1], [0.4, 0.6], [0.6, 0.4]])
    y = np.array([0, 1, 1, 0])
    assert metrics.accuracy(probs, y) == 0.75
    # Brier: 0.1² + 0.1², 0.9² + 0.9², 0.4² + 0.4², 0.4² + 0.4²
    assert metrics.brier(probs, y) == pytest.approx((0.02 + 1.62 + 0.32 + 0.32) / 4)
    # confidences 0.9, 0.9, 0.6, 0.6 with correct 1, 0, 1, 1: bins (0.8, 0.9] and (0.5, 0.6]
    assert metrics.ece(probs, y) == pytest.approx(0.5 * 0.4 + 0.5 * 0.4)
    assert metrics.ece(probs, y, n_bins=1) == pytest.approx(abs(0.75 - 0.75))
    # equal mass, 2 bins: {0.6, 0.6} -> |1 - 0.6|, {0.9, 0.9} -> |0.5 - 0.9|
    assert metrics.ece(probs, y, n_bins=2, binning="mass") == pytest.approx(0.5 * 0.4 + 0.5 * 0.4)
    # NLL of a two-sample mixture: p(y_n) = mean of the samples' probabilities
    logits = np.log(np.array([[[0.5, 0.5], [0.2, 0.8]], [[0.9, 0.1], [0.6, 0.4]]]))
    assert metrics.nll(logits, [0, 1]) == pytest.approx(-(np.log(0.7) + np.log(0.6)) / 2)
    np.testing.assert_allclose(metrics.predictive_probs(logits), [[0.7, 0.3], [0.4, 0.6]])


def test_ece_bin_edges_are_right_closed():
    # a confidence exactly on an edge (0.6) belongs to the bin below it, (0.5, 0.6]
    probs = np.array([[0.6, 0.4], [0.55, 0.45], [0.65, 0.35]])
    y = np.array([0, 1, 0])
    # bin (0.5, 0.6]: conf {0.6, 0.55}, acc 1/2 -> |0.5 - 0.575| * 2/3 ; bin (0.6, 0.7]: |1 - 0.65| / 3
    assert metrics.ece(probs, y) == pytest.approx(0.075 * 2 / 3 + 0.35 / 3)


def ece_width_exact(conf, correct, n_bins):
    """Equal-width ECE in rational arithmetic: bins ((b-1)/M, b/M] of the value a confidence stands for,
    the edge k/M when it is the double nearest k/M (``float(Fraction(k, M))`` is correctly rounded),
    else its exact value."""
    total, gaps = len(conf), {}
    for c, ok in zip(conf, correct):
        edge = [Fraction(k, n_bins) for k in range(n_bins + 1) if float(Fraction(k, n_bins)) == c]
        r = edge[0] if edge else Fraction(c)
        b = max(math.ceil(r * n_bins), 1)  # bin ((b-1)/M, b/M], 1-based, 0 in the first
        gaps[b] = gaps.get(b, 0) + int(ok) - Fraction(c)
    return sum(abs(g) for g in gaps.values()) / total


def test_ece_edges_are_exactly_k_over_m():
    # conf 23/30 is on the edge of (22/30, 23/30]; linspace put the edge one ulp below it (bin 23/30..24/30)
    probs = np.array([[23 / 30, 7 / 30], [0.75, 0.25]])
    y = np.array([0, 1])
    assert metrics.ece(probs, y, n_bins=30) == pytest.approx(abs(1 - 23 / 30 - 0.75) / 2, abs=1e-15)
    assert metrics.ece(probs, y, n_bins=30) == pytest.approx(float(ece_width_exact(probs.max(1), probs.argmax(1) == y, 30)))


def edge_confidences(n_bins, ks, others):
    """Rows whose top-class confidence is exactly each of ``k/M`` (as a double) and ``others`` (>= 1/M)."""
    conf = np.array([k / n_bins for k in ks] + list(others))
    rest = (1.0 - conf[:, None]) / (n_bins + 1) * np.ones((1, n_bins + 1))  # each < 1/M <= conf
    return np.hstack([conf[:, None], rest])


@given(n_bins=st.integers(1, 60), data=st.data())
def test_ece_width_matches_exact_rational_binning(n_bins, data):
    ks = data.draw(st.lists(st.integers(1, n_bins), max_size=12))
    others = data.draw(st.lists(st.floats(1 / n_bins, 1.0), max_size=12))
    if not ks and not others:
        ks = [n_bins]
    probs = edge_confidences(n_bins, ks, others)
    assert np.array_equal(probs.max(1), np.array([k / n_bins for k in ks] + others))
    y = np.array(data.draw(st.lists(st.integers(0, 1), min_size=len(probs), max_size=len(probs))))
    exact = ece_width_exact(probs.max(1), probs.argmax(1) == y, n_bins)
    assert metrics.ece(probs, y, n_bins) == pytest.approx(float(exact), rel=1e-12, abs=1e-15)


def ece_reference(probs, y, n_bins, binning):
    """A plain loop over bins, written independently of the library."""
    conf, pred = probs.max(1), probs.argmax(1)
    n = len(y)
    if binning == "width":
        members = [[i for i in range(n) if b / n_bins < conf[i] <= (b + 1) / n_bins] for b in range(n_bins)]
    else:
        order = sorted(range(n), key=lambda i: (conf[i], i))  # ties keep index order
        sizes = [n // n_bins + (1 if b < n % n_bins else 0) for b in range(n_bins)]  # differ by at most one
        start = np.concatenate([[0], np.cumsum(sizes)])
        members = [order[start[b] : start[b + 1]] for b in range(n_bins)]
    total = 0.0
    for m in members:
        if m:
            acc = np.mean([pred[i] == y[i] for i in m])
            total += len(m) / n * abs(acc - np.mean(conf[m]))
    return total


@given(**shapes, n_bins=st.integers(1, 25), binning=st.sampled_from(metrics.BINNINGS))
def test_ece_matches_loop_reference_and_bounds(seed, s, n, c, n_bins, binning):
    logits, y = draw(seed, s, n, c)
    probs = metrics.predictive_probs(logits)
    e = metrics.ece(probs, y, n_bins, binning)
    assert e == pytest.approx(ece_reference(probs, y, n_bins, binning), abs=1e-12)
    assert 0.0 <= e <= 1.0
    # one bin: |accuracy - mean confidence|; one point per equal-mass bin: mean |correct - confidence|
    assert metrics.ece(probs, y, 1, binning) == pytest.approx(abs(metrics.accuracy(probs, y) - probs.max(1).mean()))
    correct = probs.argmax(1) == y
    assert metrics.ece(probs, y, n, "mass") == pytest.approx(np.mean(np.abs(correct - probs.max(1))))


# ----------------------------------------------------------------------------- classification: identities vs references


@given(**shapes)
def test_single_sample_nll_is_cross_entropy(seed, s, n, c):
    logits, y = draw(seed, 1, n, c)
    ref = log_loss(y, softmax(logits[0]), labels=np.arange(c))
    assert metrics.nll(logits, y) == pytest.approx(ref, rel=1e-9)
    assert metrics.nll(logits[0], y) == pytest.approx(ref, rel=1e-9)  # (N, C) is S = 1


@given(**shapes, shift=st.floats(-50, 50))
def test_nll_identities(seed, s, n, c, shift):
    logits, y = draw(seed, s, n, c)
    val = metrics.nll(logits, y)
    probs = metrics.predictive_probs(logits)
    assert val == pytest.approx(-np.mean(np.log(probs[np.arange(n), y])), rel=1e-9)
    # identical samples = one sample; per-row constants are irrelevant (log-probabilities up to a constant)
    assert metrics.nll(np.repeat(logits[:1], 3, axis=0), y) == pytest.approx(metrics.nll(logits[:1], y), rel=1e-9)
    offsets = np.random.default_rng(seed).normal(0, 5, (s, n, 1)) + shift
    assert metrics.nll(logits + offsets, y) == pytest.approx(val, rel=1e-9, abs=1e-12)
    # Jensen: the mixture is never worse than the average single-sample NLL
    assert val <= np.mean([metrics.nll(l, y) for l in logits]) + 1e-12


def test_nll_is_stable_for_extreme_logits():
    logits = np.array([[[1000.0, -1000.0]], [[-1000.0, 1000.0]]])
    assert metrics.nll(logits, [0]) == pytest.approx(np.log(2))
    assert metrics.nll(np.array([[0.0, -np.inf]]), [0]) == 0.0  # log-probabilities with an exact zero


@given(**shapes)
def test_accuracy_and_brier_match_sklearn(seed, s, n, c):
    logits, y = draw(seed, s, n, c)
    probs = metrics.predictive_probs(logits)
    assert metrics.accuracy(probs, y) == accuracy_score(y, probs.argmax(1))
    b = metrics.brier(probs, y)
    assert 0.0 <= b <= 2.0
    if c == 2:  # sklearn's binary Brier is mean (p_1 - y)²; the two-class sum counts it twice
        assert b == pytest.approx(2 * brier_score_loss(y, probs[:, 1], pos_label=1), rel=1e-9)
    onehot = np.eye(c)[y]
    assert b == pytest.approx(np.mean([np.sum((probs[i] - onehot[i]) ** 2) for i in range(n)]), rel=1e-9)


# ----------------------------------------------------------------------------- regression


def test_hand_computed_regression():
    means = np.array([[1.0, 2.0], [3.0, 2.0]])  # S = 2, N = 2; predictive means (2, 2)
    y = np.array([2.0, 0.0])
    assert metrics.rmse(means, y) == pytest.approx(np.sqrt((0 + 4) / 2))
    ref = -np.mean([np.log(0.5 * stats.norm.pdf(2, 1, 1) + 0.5 * stats.norm.pdf(2, 3, 1)),
                    np.log(stats.norm.pdf(0, 2, 1))])
    assert metrics.gaussian_nll(means, y, 1.0) == pytest.approx(ref)


@given(seed=st.integers(0, 2**32 - 1), s=st.integers(1, 5), n=st.integers(1, 20), d=st.integers(1, 3))
def test_regression_matches_scipy(seed, s, n, d):
    rng = np.random.default_rng(seed)
    mu, y = rng.normal(size=(s, n, d)), rng.normal(size=(n, d))
    sig = rng.uniform(0.3, 2.0, (s, 1, 1))  # one noise scale per sample
    pdf = np.prod(stats.norm.pdf(y, mu, sig), axis=2)  # (S, N), independent outputs
    assert metrics.gaussian_nll(mu, y, sig) == pytest.approx(-np.mean(np.log(pdf.mean(0))), rel=1e-9)
    assert metrics.rmse(mu, y) == pytest.approx(np.sqrt(mean_squared_error(y, mu.mean(0))), rel=1e-9)
    if s == 1:
        assert metrics.gaussian_nll(mu, y, 0.7) == pytest.approx(-stats.norm.logpdf(y, mu[0], 0.7).sum(1).mean())
    # (S, N, 1) outputs against (N,) targets: the nets' output convention
    assert metrics.gaussian_nll(mu[..., :1], y[:, 0], sig) == pytest.approx(metrics.gaussian_nll(mu[..., 0], y[:, 0], sig[..., 0]))
    assert metrics.rmse(mu[..., :1], y[:, 0]) == pytest.approx(metrics.rmse(mu[..., 0], y[:, 0]))


# ----------------------------------------------------------------------------- sparsity and cost


def test_sparsity_and_compression():
    params = {"a": {"w": np.array([[0.0, 1.0], [2.0, 0.0]]), "b": np.zeros(2)}, "ln": np.array([1.0, -1.0])}
    assert metrics.weight_sparsity(params) == pytest.approx(4 / 8)
    assert metrics.compression_ratio(params) == pytest.approx(8 / 4)
    assert metrics.compression_ratio({"w": np.zeros(3)}) == float("inf")
    assert metrics.node_sparsity({"h0": np.array([True, False, True, True]), "h1": np.array([0, 0, 1])}) == {
        "h0": 0.75, "h1": pytest.approx(1 / 3)}
    assert metrics.flops_ratio(25, 100) == 0.25


# ----------------------------------------------------------------------------- evaluate


def test_evaluate_classification_row():
    logits, y = draw(0, 4, 50, 3)
    masks = {"dense_0": np.array([1, 0, 1, 0], bool), "dense_1": np.array([1, 1], bool)}
    params = {"dense_0": {"w": np.array([[1.0, 0.0]]), "b": np.zeros(2)}}
    row = metrics.evaluate(logits, y, params=params, masks=masks, model="mlp", method="bmr", seed=3)
    assert list(row)[:3] == ["model", "method", "seed"]
    probs = metrics.predictive_probs(logits)
    assert row["n"] == 50 and row["n_samples"] == 4
    assert row["accuracy"] == metrics.accuracy(probs, y) and row["nll"] == metrics.nll(logits, y)
    assert row["brier"] == metrics.brier(probs, y)
    assert row["ece"] == metrics.ece(probs, y, 10, "width") and row["ece_mass"] == metrics.ece(probs, y, 20, "mass")
    assert row["n_params"] == 4 and row["weight_sparsity"] == 0.75 and row["compression_ratio"] == 4.0
    assert row["nodes_kept"] == pytest.approx(4 / 6) and row["nodes_kept/dense_0"] == 0.5
    assert row["nodes_kept/dense_1"] == 1.0
    table = pd.DataFrame([row, metrics.evaluate(logits[:1], y, model="map")])
    assert table.shape[0] == 2 and np.isnan(table.loc[1, "weight_sparsity"])


def test_evaluate_regression_row():
    rng = np.random.default_rng(1)
    mu, y = rng.normal(size=(3, 20, 1)), rng.normal(size=20)
    row = metrics.evaluate(mu, y, task="regression", noise_std=0.5)
    assert row["rmse"] == metrics.rmse(mu, y) and row["nll"] == metrics.gaussian_nll(mu, y, 0.5)
    assert row["n"] == 20 and row["n_samples"] == 3
    assert "nll" not in metrics.evaluate(mu, y, task="regression")


def test_evaluate_flops_calls_compact(monkeypatch):
    """FLOPs are counted by sparsebnn.compact.flops (owned by the compaction module), not here."""
    fake = types.ModuleType("sparsebnn.compact")
    fake.flops = lambda net: {"dense": 1000, "small": 150}[net]
    monkeypatch.setitem(sys.modules, "sparsebnn.compact", fake)
    logits, y = draw(0, 1, 5, 2)
    row = metrics.evaluate(logits, y, net="dense", compact_net="small", latency_ms=1.5)
    assert (row["flops"], row["flops_dense"], row["flops_ratio"], row["latency_ms"]) == (150, 1000, 0.15, 1.5)
    with pytest.raises(ValueError, match="both net and compact_net"):
        metrics.evaluate(logits, y, net="dense")


# ----------------------------------------------------------------------------- bad input


GOOD_P = np.array([[0.7, 0.3], [0.2, 0.8]])


@pytest.mark.parametrize(
    "call, match",
    [
        (lambda: metrics.accuracy(GOOD_P, [0, 2]), r"labels must lie in \[0, 2\)"),
        (lambda: metrics.accuracy(GOOD_P, [0, -1]), "labels must lie"),
        (lambda: metrics.accuracy(GOOD_P, [0.5, 1]), "integer class labels"),
        (lambda: metrics.accuracy(GOOD_P, [np.nan, 1]), "integer class labels"),
        (lambda: metrics.accuracy(GOOD_P, [0, 1, 1]), r"y must have shape \(2,\)"),
        (lambda: metrics.accuracy(GOOD_P[0], [0]), r"shape \(N, C\)"),
        (lambda: metrics.brier(GOOD_P * 1.1, [0, 1]), "sum to 1"),
        (lambda: metrics.brier(np.array([[1.2, -0.2], [0.5, 0.5]]), [0, 1]), "non-negative"),
        (lambda: metrics.ece(np.array([[np.nan, 0.5], [0.5, 0.5]]), [0, 1]), "NaN"),
        (lambda: metrics.ece(GOOD_P, [0, 1], n_bins=0), "n_bins"),
        (lambda: metrics.ece(GOOD_P, [0, 1], n_bins=2.5), "n_bins"),
        (lambda: metrics.ece(GOOD_P, [0, 1], binning="quantile"), "binning"),
        (lambda: metrics.ece(np.zeros((0, 2)), []), "at least one"),
        (lambda: metrics.nll(np.zeros((2, 3, 4, 5)), [0]), r"shape \(S, N, C\)"),
        (lambda: metrics.nll(np.zeros((2, 3, 1)), [0, 0, 0]), "C >= 2"),
        (lambda: metrics.nll(np.full((1, 2, 2), np.nan), [0, 1]), "NaN"),
        (lambda: metrics.nll(np.full((1, 1, 2), -np.inf), [0]), "-inf for every class"),
        (lambda: metrics.nll(np.zeros((1, 2, 2)), [0, 3]), "labels must lie"),
        (lambda: metrics.predictive_probs(np.array([[[np.inf, 0.0]]])), r"\+inf"),
        (lambda: metrics.rmse(np.zeros((2, 3)), np.zeros(4)), "means must have shape"),
        (lambda: metrics.rmse(np.zeros(3), np.zeros(3)), "means must have shape"),
        (lambda: metrics.rmse(np.zeros((2, 3)), np.array([0, np.nan, 0])), "y contains"),
        (lambda: metrics.rmse(np.full((2, 3), np.nan), np.zeros(3)), "means contains"),
        (lambda: metrics.gaussian_nll(np.zeros((2, 3)), np.zeros(3), -1.0), "noise_std must be > 0"),
        (lambda: metrics.gaussian_nll(np.zeros((2, 3)), np.zeros(3), np.nan), "noise_std contains"),
        (lambda: metrics.gaussian_nll(np.zeros((2, 3)), np.zeros(3), np.ones(2)), "does not broadcast"),
        (lambda: metrics.weight_sparsity({}), "no parameters"),
        (lambda: metrics.weight_sparsity({"w": np.array([np.nan])}), "NaN"),
        (lambda: metrics.compression_ratio({"w": np.zeros(0)}), "no parameters"),
        (lambda: metrics.node_sparsity({}), "non-empty dict"),
        (lambda: metrics.node_sparsity({"h": np.ones((2, 2))}), r"masks\['h'\] must be a non-empty 1-d"),
        (lambda: metrics.node_sparsity({"h": np.array([0.5, 1.0])}), "booleans or 0/1"),
        (lambda: metrics.flops_ratio(10, 0), "dense_flops"),
        (lambda: metrics.flops_ratio(-1, 10), "compact_flops"),
        (lambda: metrics.flops_ratio(np.nan, 10), "compact_flops"),
        (lambda: metrics.evaluate(np.zeros((1, 2, 2)), [0, 1], task="ranking"), "task"),
        (lambda: metrics.evaluate(np.zeros((1, 2, 2)), [0, 5]), "labels must lie"),
        (lambda: metrics.evaluate(np.zeros((1, 2)), np.zeros(3), task="regression"), "means must have shape"),
    ],
)
def test_bad_input_raises(call, match):
    with pytest.raises(ValueError, match=match):
        call()


# ----------------------------------------------------------------------------- collapse


@pytest.mark.parametrize("k, n, c", [(0, 10, 10), (1, 10, 10), (3, 10, 10), (20, 100, 10), (60, 100, 2), (360, 360, 10),
                                     (45, 359, 10)])
def test_chance_pvalue_is_the_one_sided_binomial_test(k, n, c):
    want = stats.binomtest(k, n, 1 / c, alternative="greater").pvalue
    assert metrics.chance_pvalue(k / n, n, c) == pytest.approx(want, rel=1e-12, abs=1e-300)


def test_collapse_reason_hand_made_cases():
    # 0.095 on 360 digits: chance (k = 34, p ≈ 0.6)
    assert metrics.collapse_reason(0.095, 360, 10).startswith("accuracy 0.095 not above chance 0.100 (binomial p = 0.6")
    assert metrics.collapse_reason(0.97, 360, 10) == ""
    # 0.19 is far above chance on 360 points (p ≈ 1e-6) but lost 90 % of MAP's margin: 1 - 0.09 / 0.87
    assert metrics.collapse_reason(0.19, 360, 10) == ""
    assert metrics.collapse_reason(0.19, 360, 10, reference_accuracy=0.97) == (
        "lost 90% of the reference's margin over chance (accuracy 0.190 vs 0.970)")
    assert metrics.collapse_reason(0.60, 360, 10, reference_accuracy=0.97) == ""  # lost 43 %: kept
    assert metrics.collapse_reason(0.5, 360, 10, reference_accuracy=0.08) == ""  # a reference at chance gives no margin
    kept = {"conv_0": 0.5, "conv_1": 0.0, "dense_0": 0.0}
    units = {"conv_0": "filter", "conv_1": "filter", "dense_0": "node"}
    assert metrics.collapse_reason(0.089, 360, 10, nodes_kept=kept, units=units).split("; ")[:2] == [
        "pruned every filter of conv_1", "pruned every node of dense_0"]
    assert metrics.collapse_reason(1.0, 10, 2, nodes_kept={"dense_0": 0.0}) == "pruned every node of dense_0"
    assert "p = 0.011" in metrics.collapse_reason(0.9, 10, 2)  # 9 of 10: p = 11 / 1024, not below 0.01
    # 6 of 10 right between two classes is no evidence of learning (p = 0.377)
    assert "binomial p = 0.38" in metrics.collapse_reason(0.6, 10, 2)


@pytest.mark.parametrize("kwargs, match", [
    (dict(accuracy=1.2), "accuracy"), (dict(accuracy=float("nan")), "accuracy"), (dict(n=0), "n must"),
    (dict(n=2.5), "n must"), (dict(n_classes=1), "n_classes"), (dict(alpha=0.0), "alpha"),
    (dict(max_margin_loss=1.0), "max_margin_loss")])
def test_collapse_reason_bad_input(kwargs, match):
    args = dict(accuracy=0.5, n=10, n_classes=10) | kwargs
    with pytest.raises(ValueError, match=match):
        metrics.collapse_reason(args.pop("accuracy"), args.pop("n"), args.pop("n_classes"), **args)


def test_collapse_columns_of_an_evaluate_row():
    rng = np.random.default_rng(0)
    y = rng.integers(0, 10, 200)
    good = metrics.evaluate(np.eye(10)[y][None] * 5.0, y, masks={"conv_0": np.ones(4, bool)})
    assert good["n_classes"] == 10
    assert metrics.collapse_columns(good) == {"collapsed": False, "collapse_reason": ""}
    empty = metrics.evaluate(np.zeros((1, 200, 10)), y, masks={"conv_0": np.zeros(4, bool), "dense_0": np.ones(3, bool)})
    flags = metrics.collapse_columns(empty, units={"conv_0": "filter"})
    assert flags["collapsed"] and flags["collapse_reason"].startswith("pruned every filter of conv_0; accuracy")
    with pytest.raises(ValueError, match="classification row"):
        metrics.collapse_columns(metrics.evaluate(np.zeros((1, 5)), np.zeros(5), task="regression"))
