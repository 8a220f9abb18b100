"""Compaction: compacted network == masked network (every architecture, property test for MLPs),
FLOPs and parameter counts against hand counts, latency/compare, and every error path."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given
from hypothesis import strategies as st

from sparsebnn import compact as cp
from sparsebnn import nets

DIGITS, MNIST = (8, 8, 1), (28, 28, 1)


@functools.cache
def small(name: str):
    """Test-sized networks with at least two prunable layers each."""
    return {
        "mlp": lambda: nets.mlp([64, 12, 9, 10]),
        "lenet5_caffe": lambda: nets.lenet5_caffe(DIGITS),
        "lenet5": lambda: nets.lenet5((16, 16, 1), padding="SAME"),
        "vit": lambda: nets.vit(DIGITS, 10, patch=2, width=12, depth=2, heads=3, mlp_hidden=10),
        "mixer": lambda: nets.mixer(DIGITS, 10, patch=2, width=8, depth=2, token_hidden=6, channel_hidden=10),
        "resnet": lambda: nets.resnet(DIGITS, 10, depth=8, widths=(4, 6, 8)),
    }[name]()


ARCHS = ["mlp", "lenet5_caffe", "lenet5", "vit", "mixer", "resnet"]


def random_params(net, seed, samples=None):
    """NumPy float64 N(0, 0.5²) draws of every leaf, so zero-initialised biases and Fixup branches matter too."""
    rng = np.random.default_rng(seed)
    shape = () if samples is None else (samples,)
    shapes = jax.eval_shape(net.init, jax.random.PRNGKey(0))
    return jax.tree_util.tree_map(lambda s: 0.5 * rng.normal(size=(*shape, *s.shape)), shapes)


def random_masks(net, seed, empty_layer=None):
    """Keep each node with probability 1/2 (at least one per layer); ``empty_layer`` loses every node."""
    rng = np.random.default_rng(seed)
    masks = {}
    for layer in net.prunable_layers:
        m = rng.random(layer.n_nodes) < 0.5
        m[rng.integers(layer.n_nodes)] = True
        masks[layer.name] = m & (layer.name != empty_layer)
    return masks


@pytest.mark.parametrize("arch", ARCHS)
def test_compacted_equals_masked_on_posterior_samples(arch):
    """Random masks, parameters with a leading sample axis (3 samples), float64: outputs agree to rounding."""
    net = small(arch)
    with jax.enable_x64(True):
        params = random_params(net, seed=0, samples=3)
        x = np.random.default_rng(1).normal(size=(5, *net.in_shape))
        masked_apply = jax.jit(lambda p, m: jax.vmap(net.apply, in_axes=(0, None))(nets.scale_nodes(p, m), x))
        empty = net.prunable_layers[0].name
        for masks in (random_masks(net, 2), random_masks(net, 3, empty_layer=empty)):
            small_net, small_params = cp.compact(net, params, masks)
            ref = masked_apply(params, masks)
            out = jax.jit(jax.vmap(small_net.apply, in_axes=(0, None)))(small_params, x)
            assert out.dtype == jnp.float64
            np.testing.assert_allclose(out, ref, rtol=1e-10, atol=1e-10 * float(jnp.abs(ref).max()))
            assert nets.n_params(small_params) < nets.n_params(params)
            for layer in small_net.layers:  # metadata describes the compacted parameters
                w = small_params[layer.name]["w"]
                assert w.shape[-1] == layer.n_nodes and math.prod(w.shape[1:-1]) == layer.fan_in
                if layer.name in masks:
                    assert layer.n_nodes == masks[layer.name].sum()
        assert small_net.layer(empty).n_nodes == 0


def _numpy_mlp(params, widths, x):
    h = x
    for i in range(len(widths) - 1):
        h = h @ params[f"dense_{i}"]["w"] + params[f"dense_{i}"]["b"]
        h = np.maximum(h, 0) if i < len(widths) - 2 else h
    return h


@given(
    widths=st.lists(st.integers(1, 6), min_size=1, max_size=3),
    bits=st.lists(st.booleans(), min_size=18, max_size=18),
    seed=st.integers(0, 2**16),
)
def test_mlp_compaction_property(widths, bits, seed):
    """Any MLP, any masks: the compacted network (NumPy forward) equals the masked one, and the counts add up."""
    widths = [3, *widths, 2]
    net = nets.mlp(widths)
    rng = np.random.default_rng(seed)
    params = {f"dense_{i}": {"w": rng.normal(size=(a, b)), "b": rng.normal(size=b)} for i, (a, b) in enumerate(zip(widths, widths[1:]))}
    masks, k = {}, 0
    for layer in net.prunable_layers:
        masks[layer.name] = np.array(bits[k : k + layer.n_nodes])
        k += layer.n_nodes
    with jax.enable_x64(True):
        small_net, small_params = cp.compact(net, params, masks)
    small_params = jax.tree_util.tree_map(np.asarray, small_params)
    kept = [widths[0]] + [int(masks[f"dense_{i}"].sum()) for i in range(len(widths) - 2)] + [widths[-1]]
    x = rng.normal(size=(4, widths[0]))
    masked = {n: {"w": p["w"] * masks.get(n, 1), "b": p["b"] * masks.get(n, 1)} for n, p in params.items()}
    np.testing.assert_allclose(_numpy_mlp(small_params, kept, x), _numpy_mlp(masked, widths, x), rtol=1e-12, atol=1e-12)
    assert [(l.fan_in, l.n_nodes) for l in small_net.layers] == list(zip(kept, kept[1:]))
    assert nets.n_params(small_params) == sum(a * b + b for a, b in zip(kept, kept[1:]))


def test_all_kept_is_the_identity_and_compaction_composes():
    net = small("lenet5_caffe")
    params = jax.tree_util.tree_map(lambda a: a.astype(np.float32), random_params(net, seed=4))
    everything = {l.name: np.ones(l.n_nodes, bool) for l in net.prunable_layers}
    same_net, same = cp.compact(net, params, everything)
    assert jax.tree_util.tree_all(jax.tree_util.tree_map(np.array_equal, params, same))
    assert same_net.layers == net.layers
    # compacting twice == compacting once with the combined masks
    m1, m2 = random_masks(net, 5), None
    net1, p1 = cp.compact(net, params, m1)
    m2 = random_masks(net1, 6)
    net2, p2 = cp.compact(net1, p1, m2)
    combined = {}
    for name, a in m1.items():
        c = np.zeros_like(a)
        c[np.flatnonzero(a)[m2[name]]] = True
        combined[name] = c
    net12, p12 = cp.compact(net, params, combined)
    assert net2.layers == net12.layers
    assert jax.tree_util.tree_all(jax.tree_util.tree_map(np.array_equal, p2, p12))
    # the compacted network's init draws parameters of the compacted shapes
    shapes = lambda t: jax.tree_util.tree_map(jnp.shape, t)  # noqa: E731
    assert shapes(jax.eval_shape(net2.init, jax.random.PRNGKey(0))) == shapes(p2)


def test_mlp_and_lenet_counts_match_hand_counts():
    mlp = nets.mlp([784, 400, 400, 10])
    assert cp.flops(mlp) == 2 * (784 * 400 + 400 * 400 + 400 * 10) == 955_200
    keep = {"dense_0": np.arange(400) < 40, "dense_1": np.arange(400) % 10 == 0}
    small_mlp, p = cp.compact(mlp, mlp.init(jax.random.PRNGKey(0)), keep)
    assert nets.n_params(p) == 784 * 40 + 40 + 40 * 40 + 40 + 40 * 10 + 10 == 33_450
    assert cp.flops(small_mlp) == 2 * (784 * 40 + 40 * 40 + 40 * 10) == 66_720

    # LeNet-5-Caffe on MNIST: conv1 24x24 outputs x 25 MACs x 20, conv2 8x8 x (25*20) x 50, fc 800x500, out 500x10
    lenet = nets.lenet5_caffe(MNIST)
    assert cp.flops(lenet) == 2 * (576 * 25 * 20 + 64 * 500 * 50 + 800 * 500 + 500 * 10) == 4_586_000
    keep = {"conv_0": np.arange(20) < 5, "conv_1": np.arange(50) < 10, "dense_0": np.arange(500) < 50}
    small_lenet, p = cp.compact(lenet, lenet.init(jax.random.PRNGKey(0)), keep)
    assert nets.n_params(p) == (25 * 5 + 5) + (25 * 5 * 10 + 10) + (16 * 10 * 50 + 50) + (50 * 10 + 10) == 9_950
    assert cp.flops(small_lenet) == 2 * (576 * 25 * 5 + 64 * 125 * 10 + 160 * 50 + 50 * 10) == 321_000
    assert [l.fan_in for l in small_lenet.layers] == [25, 125, 160, 50]


def test_flops_of_attention_mixer_and_resnet_match_formulas():
    n, d, heads, dh, m, p2c = 16, 12, 3, 4, 10, 4  # digits, patch 2: 16 tokens of 2*2*1 pixels
    block = n * d * 3 * dh * heads + 2 * heads * n * n * dh + n * heads * dh * d + 2 * n * d * m
    assert cp.flops(small("vit")) == 2 * (n * p2c * d + 2 * block + d * 10)
    d, t, c = 8, 6, 10
    assert cp.flops(small("mixer")) == 2 * (n * p2c * d + 2 * (2 * d * n * t + 2 * n * d * c) + d * 10)
    # resnet depth 8, widths (4, 6, 8) on 8x8: stem; one block per stage (stride 2 in stages 2, 3); head
    convs = [(64, 1, 4), (64, 4, 4), (64, 4, 4), (16, 4, 6), (16, 6, 6), (4, 6, 8), (4, 8, 8)]
    assert cp.flops(small("resnet")) == 2 * (sum(hw * 9 * i * o for hw, i, o in convs) + 8 * 10)


def test_latency_and_compare():
    net = nets.mlp([64, 200, 200, 10])
    params = net.init(jax.random.PRNGKey(0))
    x = jnp.ones((32, 64))
    assert cp.latency(net, params, x, repeats=3) > 0
    masks = {"dense_0": np.arange(200) < 20, "dense_1": np.arange(200) < 20}
    row = cp.compare(net, params, masks, x, repeats=3)
    assert row["params_dense"] == nets.n_params(params)
    assert row["params_compact"] == 64 * 20 + 20 + 20 * 20 + 20 + 20 * 10 + 10
    assert row["flops_ratio"] == (64 * 20 + 20 * 20 + 20 * 10) / (64 * 200 + 200 * 200 + 200 * 10)
    assert row["latency_ratio"] == row["latency_compact_s"] / row["latency_dense_s"]
    assert row["compression"] == row["params_dense"] / row["params_compact"]
    assert row["max_abs_diff"] < 1e-4
    with pytest.raises(ValueError, match="repeats"):
        cp.latency(net, params, x, repeats=0)
    a, b = cp.latencies([(net, params), (net, params)], x, repeats=30)  # the same network twice, interleaved
    assert a > 0 and b > 0 and len(cp.latencies([(net, params)], x, repeats=1)) == 1


def test_bad_masks_and_params_raise_clear_errors():
    net = small("mlp")
    params = net.init(jax.random.PRNGKey(0))
    ok = np.ones(12, bool)
    with pytest.raises(ValueError, match="no layer 'dense_9'"):
        cp.compact(net, params, {"dense_9": ok})
    with pytest.raises(ValueError, match="'dense_2' .* is not prunable"):
        cp.compact(net, params, {"dense_2": np.ones(10, bool)})
    with pytest.raises(ValueError, match=r"bool array of shape \(12,\)"):
        cp.compact(net, params, {"dense_0": np.ones(11, bool)})
    with pytest.raises(ValueError, match=r"bool array of shape \(12,\)"):
        cp.compact(net, params, {"dense_0": np.ones(12)})
    with pytest.raises(ValueError, match="masks must be a dict"):
        cp.compact(net, params, [ok])
    with pytest.raises(ValueError, match="traced"):
        jax.jit(lambda m: cp.compact(net, params, {"dense_0": m}))(jnp.asarray(ok))
    with pytest.raises(ValueError, match="has 5 nodes"):
        cp.compact(net, {**params, "dense_0": {"w": jnp.ones((64, 5)), "b": jnp.ones(5)}}, {"dense_0": ok})
    with pytest.raises(ValueError, match="no {'w', 'b'} entry"):
        cp.compact(net, {k: v for k, v in params.items() if k != "dense_1"}, {"dense_0": ok})
    # residual adds tie the channels of ResNet block outputs: those layers cannot be compacted
    res = small("resnet")
    with pytest.raises(ValueError, match="'block0_b' .* residual"):
        cp.compact(res, res.init(jax.random.PRNGKey(0)), {"block0_b": np.ones(4, bool)})
    # a network built by hand carries no wiring
    bare = nets.Network("bare", net.init, lambda p, x: x, net.layers, net.in_shape, net.out_dim)
    with pytest.raises(ValueError, match="carries no wiring"):
        cp.compact(bare, params, {"dense_0": ok})
    with pytest.raises(ValueError, match="not prunable layers"):
        nets.wire(net, {"dense_2": (nets.Slot(("dense_3", "w")),)})
    with pytest.raises(ValueError, match="bad slot"):
        nets.wire(net, {"dense_0": (nets.Slot(("dense_1", "w"), axis=0),)})
