"""sparsebnn.recovery: node matching, node activations and node signal against brute force; teacher choice."""

import jax
import numpy as np
import pytest

from sparsebnn import data, nets, recovery


def _relu_features(rng, n, k):
    x = rng.normal(size=(n, 4))
    return np.maximum(x @ rng.normal(size=(4, k)) + 0.1, 0.0)


def test_match_nodes_counts_permuted_rescaled_nodes_as_true_positives():
    rng = np.random.default_rng(0)
    teacher = _relu_features(rng, 3000, 3)
    junk = np.maximum(rng.normal(size=(3000, 1)), 0)  # unrelated to any teacher node
    student = np.concatenate([2.5 * teacher[:, [2, 0, 1]], junk], axis=1)
    m = recovery.match_nodes(student, teacher)
    assert (m["tp"], m["fp"], m["fn"]) == (3, 1, 0) and m["corr"] == pytest.approx(1.0)
    m = recovery.match_nodes(student[:, :2], teacher)  # one teacher node missed
    assert (m["tp"], m["fp"], m["fn"]) == (2, 0, 1)
    # a duplicated node is a false positive, a constant (dead) node too
    dup = np.concatenate([teacher, teacher[:, :1], np.zeros((3000, 1))], axis=1)
    assert recovery.match_nodes(dup, teacher) == {"tp": 3, "fp": 2, "fn": 0, "corr": pytest.approx(1.0)}
    assert recovery.match_nodes(np.zeros((3000, 0)), teacher)["fn"] == 3
    # a weakly correlated node falls below the threshold
    noisy = teacher[:, :1] + 3 * teacher[:, :1].std() * rng.normal(size=(3000, 1))
    assert recovery.match_nodes(noisy, teacher[:, :1])["tp"] == 0
    assert recovery.match_nodes(noisy, teacher[:, :1], min_corr=0.1)["tp"] == 1


def test_match_nodes_rejects_bad_input():
    with pytest.raises(ValueError, match="same N"):
        recovery.match_nodes(np.zeros((5, 2)), np.zeros((4, 2)))
    with pytest.raises(ValueError, match="finite"):
        recovery.match_nodes(np.full((5, 2), np.nan), np.zeros((5, 2)))


def test_node_activations_are_the_hidden_layer_outputs():
    net = nets.mlp([4, 6, 5, 1])
    params = net.init(jax.random.key(0))
    x = np.random.default_rng(0).normal(size=(9, 4)).astype(np.float32)
    w = {k: (np.asarray(v["w"], np.float64), np.asarray(v["b"], np.float64)) for k, v in params.items()}
    h1 = np.maximum(x @ w["dense_0"][0] + w["dense_0"][1], 0)
    h2 = np.maximum(h1 @ w["dense_1"][0] + w["dense_1"][1], 0)
    acts = recovery.node_activations(net, params, x)
    np.testing.assert_allclose(acts["dense_0"], h1, rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(acts["dense_1"], h2, rtol=1e-5, atol=1e-6)


def _teacher_signal_by_hand(t, x):
    """Delta_j of every active node by zeroing its incoming group in float64 NumPy and re-running the ReLU net."""
    names = list(t.params)
    ws = [(np.asarray(t.params[k]["w"], np.float64), np.asarray(t.params[k]["b"], np.float64)) for k in names]

    def eta(ws):
        h = np.asarray(x, np.float64)
        for i, (w, b) in enumerate(ws):
            h = h @ w + b
            h = np.maximum(h, 0) if i < len(ws) - 1 else h
        return h[:, 0]

    f0, out = eta(ws), {}
    for li, layer in enumerate(names[:-1]):
        vals = []
        for j in np.flatnonzero(t.masks[layer]):
            off = [(w.copy(), b.copy()) for w, b in ws]
            off[li][0][:, j] = 0
            off[li][1][j] = 0
            vals.append(np.mean((eta(off) - f0) ** 2))
        out[layer] = np.array(vals)
    return out


def test_node_signal_matches_brute_force_and_the_last_layer_closed_form(exact_matmul):
    t = data.teacher(10, p=4, widths=(6, 5), active=(3, 2), noise=0.5, seed=1).teacher
    x = np.random.default_rng(0).normal(size=(500, 4)).astype(np.float32)
    got = recovery.node_signal(t.net, t.params, t.masks, x)
    want = _teacher_signal_by_hand(t, x)
    assert list(got) == list(t.masks)
    for layer in want:
        np.testing.assert_allclose(got[layer], want[layer], rtol=2e-4, atol=1e-7)
    # last hidden layer: switching node j off removes exactly v_j h_j(x) from the output
    h = recovery.node_activations(t.net, t.params, x)["dense_1"]
    v = np.asarray(t.params["dense_2"]["w"], np.float64)[:, 0]
    j = np.flatnonzero(t.masks["dense_1"])
    np.testing.assert_allclose(got["dense_1"], np.mean((h[:, j] * v[j]) ** 2, axis=0), rtol=2e-4)
    assert recovery.min_signal_ratio(t, x) == pytest.approx(min(a.min() for a in want.values()) / 0.25, rel=2e-4)
    with pytest.raises(ValueError, match="x must be"):
        recovery.node_signal(t.net, t.params, t.masks, np.full((3, 4), np.nan))


def test_choose_teacher_seed_returns_the_first_seed_meeting_the_signal_condition():
    shape = dict(p=5, widths=(8, 8), active=(2, 1), noise=0.5)  # the contraction experiment's --quick teacher
    x = recovery.signal_check_x(shape["p"])
    ratio = lambda seed: recovery.min_signal_ratio(recovery.teacher(**shape, seed=seed), x)  # noqa: E731
    seed = recovery.choose_teacher_seed(**shape, min_signal=0.1, start=5)
    assert seed > 5 and ratio(seed) >= 0.1 and all(ratio(s) < 0.1 for s in range(5, seed))
    assert recovery.choose_teacher_seed(**shape, min_signal=0.0, start=5) == 5
    with pytest.raises(ValueError, match="min_signal"):
        recovery.choose_teacher_seed(**shape, min_signal=-1.0)
    with pytest.raises(ValueError, match="no teacher seed"):
        recovery.choose_teacher_seed(**shape, min_signal=1e6, tries=2)
