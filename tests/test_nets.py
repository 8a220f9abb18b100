"""Architectures: metadata follows the contract in nets.base, shapes on digits/MNIST/CIFAR, jit and vmap,
layer functions against NumPy references, MAP/Adam training on scikit-learn digits, bad input."""

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.datasets import load_digits

from sparsebnn import nets
from sparsebnn.nets import _layers
from sparsebnn.nets._vit import attention

DIGITS, MNIST, CIFAR = (8, 8, 1), (28, 28, 1), (32, 32, 3)


@functools.cache
def small(name: str, shape=DIGITS):
    """Test-sized networks (full-size LeNets); cached, so jit caches carry over between tests."""
    patch = 4
    return {
        "mlp": lambda: nets.mlp([math.prod(shape), 64, 10]),
        "lenet5_caffe": lambda: nets.lenet5_caffe(shape),
        "lenet5": lambda: nets.lenet5(shape),
        "vit": lambda: nets.vit(shape, 10, patch=patch, width=32, depth=1, heads=4, mlp_hidden=64),
        "mixer": lambda: nets.mixer(shape, 10, patch=patch, width=32, depth=1, token_hidden=16, channel_hidden=64),
        "resnet": lambda: nets.resnet(shape, 10, depth=8, widths=(4, 8, 16)),
    }[name]()


ARCHS = ["mlp", "lenet5_caffe", "lenet5", "vit", "mixer", "resnet"]


def full(name: str, shape):
    """Paper-sized networks (only traced, never run, in these tests)."""
    patch = 2 if shape == DIGITS else 4
    return {
        "mlp": lambda: nets.mlp([math.prod(shape), 400, 400, 10]),
        "lenet5_caffe": lambda: nets.lenet5_caffe(shape),
        "lenet5": lambda: nets.lenet5(shape),
        "vit": lambda: nets.vit(shape, 10, patch=patch, width=64, depth=4, heads=4),
        "mixer": lambda: nets.mixer(shape, 10, patch=patch, width=64, depth=4),
        "resnet": lambda: nets.resnet(shape, 10, depth=20),
    }[name]()


@pytest.mark.parametrize("shape", [DIGITS, MNIST, CIFAR])
@pytest.mark.parametrize("arch", ARCHS)
def test_metadata_follows_the_contract(arch, shape):
    net = full(arch, shape)
    params = jax.eval_shape(net.init, jax.random.PRNGKey(0))
    out = jax.eval_shape(net.apply, params, jax.ShapeDtypeStruct((3, *shape), jnp.float32))
    assert out.shape == (3, 10) and net.out_dim == 10 and net.in_shape in (shape, (math.prod(shape),))
    assert not net.layers[-1].prunable and net.prunable_layers
    wiring = nets.consumers(net)
    assert set(wiring) == {layer.name for layer in net.prunable_layers}
    for layer in net.layers:
        w, b = params[layer.name]["w"], params[layer.name]["b"]
        assert w.shape[-1] == layer.n_nodes and b.shape == (layer.n_nodes,)
        assert math.prod(w.shape[:-1]) == layer.fan_in
        assert layer.kind in ("dense", "conv", "attention")
        groups = jax.eval_shape(lambda p: nets.node_groups(p, layer), params)
        assert groups.shape == (layer.n_nodes, layer.fan_in + 1)
    for name, slots in wiring.items():  # every reader axis holds a whole number of node blocks
        for slot in slots:
            leaf = params[slot.path[0]][slot.path[1]]
            assert leaf.shape[slot.axis] % (net.layer(name).n_nodes * slot.inner) == 0


def test_parameter_counts_match_hand_counts():
    count = lambda net: nets.n_params(jax.eval_shape(net.init, jax.random.PRNGKey(0)))  # noqa: E731
    assert count(nets.mlp([784, 400, 400, 10])) == 784 * 400 + 400 + 400 * 400 + 400 + 400 * 10 + 10 == 478_410
    # LeNet-5-Caffe on MNIST: 28 -conv5-> 24 -pool-> 12 -conv5-> 8 -pool-> 4; 4*4*50 = 800 inputs to fc 500
    assert count(nets.lenet5_caffe(MNIST)) == (25 * 20 + 20) + (25 * 20 * 50 + 50) + (800 * 500 + 500) + (5000 + 10) == 431_080
    # classic LeNet-5 on 32x32: 32 -> 28 -> 14 -> 10 -> 5; 5*5*16 = 400 inputs to fc 120
    assert count(nets.lenet5((32, 32, 1))) == 156 + (25 * 6 * 16 + 16) + (400 * 120 + 120) + (120 * 84 + 84) + 850 == 61_706
    # digits (8x8) is too small for VALID convs: SAME padding, 8 -> 4 -> 2, 2*2*50 = 200 inputs to fc 500
    assert nets.lenet5_caffe(DIGITS).layer("dense_0").fan_in == 200
    assert nets.lenet5_caffe(MNIST, padding="SAME").layer("dense_0").fan_in == 7 * 7 * 50
    # ResNet-20 on CIFAR (option-A shortcuts, conv biases, no batch norm): 0.27M as in He et al.
    convs = [(3, 16)] + [(16, 16)] * 6 + [(16, 32)] + [(32, 32)] * 5 + [(32, 64)] + [(64, 64)] * 5
    assert count(nets.resnet(CIFAR, 10)) == sum(9 * i * o + o for i, o in convs) + 64 * 10 + 10 == 269_034


def test_init_draws_the_documented_distributions():
    net = nets.mlp([784, 400, 10])
    p = net.init(jax.random.PRNGKey(0))
    w = np.asarray(p["dense_0"]["w"])
    assert abs(w.std() / math.sqrt(2 / 784) - 1) < 0.01 and abs(w.mean()) < 1e-3
    assert not np.any(np.asarray(p["dense_0"]["b"]))
    assert np.array_equal(w, np.asarray(net.init(jax.random.PRNGKey(0))["dense_0"]["w"]))  # same seed, same numbers
    res = nets.resnet(CIFAR, 10, depth=20).init(jax.random.PRNGKey(1))
    assert not np.any(np.asarray(res["block4_b"]["w"]))  # Fixup: residual branches start at zero
    a = np.asarray(res["block4_a"]["w"])  # stage 2: 32 input channels
    assert abs(a.std() / (math.sqrt(2 / (9 * 32)) / 3) - 1) < 0.05  # He init scaled by L^{-1/2}, L = 9 blocks
    vit = nets.vit(DIGITS, 10, patch=2, width=16, depth=1, heads=2).init(jax.random.PRNGKey(2))
    assert np.all(np.asarray(vit["block0_ln1"]["scale"]) == 1) and vit["pos"].shape == (16, 16)


def test_attention_matches_numpy_reference():
    rng = np.random.default_rng(0)
    b, n, d, dh, heads = 2, 5, 6, 3, 4
    p = {"w": rng.normal(size=(d, 3, dh, heads)), "b": rng.normal(size=heads)}
    h = rng.normal(size=(b, n, d))
    ref = np.zeros((b, n, heads, dh))
    for i in range(b):
        for j in range(heads):
            q, k, v = (h[i] @ p["w"][:, t, :, j] for t in range(3))
            v = v + p["b"][j]
            s = q @ k.T / math.sqrt(dh)
            a = np.exp(s - s.max(1, keepdims=True))
            ref[i, :, j] = (a / a.sum(1, keepdims=True)) @ v
    with jax.enable_x64(True):
        out = attention(jax.tree_util.tree_map(jnp.asarray, p), jnp.asarray(h))
    np.testing.assert_allclose(np.asarray(out), ref.reshape(b, n, heads * dh), rtol=1e-12, atol=1e-12)


def test_layer_norm_and_pooling_match_numpy():
    rng = np.random.default_rng(1)
    h = rng.normal(size=(2, 4, 4, 3))
    p = {"scale": rng.normal(size=3), "bias": rng.normal(size=3)}
    ref = (h - h.mean(-1, keepdims=True)) / np.sqrt(h.var(-1, keepdims=True) + 1e-6) * p["scale"] + p["bias"]
    with jax.enable_x64(True):
        np.testing.assert_allclose(np.asarray(_layers.layer_norm(p, jnp.asarray(h))), ref, rtol=1e-12)
        blocks = h.reshape(2, 2, 2, 2, 2, 3)
        np.testing.assert_allclose(np.asarray(_layers.max_pool(jnp.asarray(h))), blocks.max((2, 4)))
        np.testing.assert_allclose(np.asarray(_layers.avg_pool(jnp.asarray(h))), blocks.mean((2, 4)), rtol=1e-12)


@settings(max_examples=25, deadline=None)
@given(n=st.integers(1, 3), side=st.integers(4, 9), c_in=st.integers(1, 3), c_out=st.integers(1, 3),
       kernel=st.integers(1, 4), stride=st.integers(1, 3), padding=st.sampled_from(["SAME", "VALID", ((1, 2), (0, 1))]),
       seed=st.integers(0, 2**16))
def test_conv_derivatives_are_the_convolutions(n, side, c_in, c_out, kernel, stride, padding, seed):
    """The conv's custom tangent (patch products on CPU) equals autodiff of lax.conv_general_dilated: value,
    gradient, JVP, Hessian-vector product and vmapped gradient, in float64."""
    def lax_conv(h, w):
        return jax.lax.conv_general_dilated(h, w, (stride, stride), padding, dimension_numbers=_layers._DIMS)

    with jax.enable_x64(True):
        k = jax.random.split(jax.random.key(seed), 4)
        h = jax.random.normal(k[0], (n, side, side + 1, c_in), jnp.float64)
        w = jax.random.normal(k[1], (kernel, kernel, c_in, c_out), jnp.float64)
        dh, dw = jax.random.normal(k[2], h.shape, jnp.float64), jax.random.normal(k[3], w.shape, jnp.float64)
        ours = lambda h, w: jnp.sum(jnp.sin(_layers._conv(h, w, stride, padding)))  # noqa: E731
        ref = lambda h, w: jnp.sum(jnp.sin(lax_conv(h, w)))  # noqa: E731
        pairs = [(jax.grad(ours, (0, 1))(h, w), jax.grad(ref, (0, 1))(h, w)),
                 (jax.jvp(ours, (h, w), (dh, dw)), jax.jvp(ref, (h, w), (dh, dw))),
                 (jax.jvp(lambda w: jax.grad(ours, 1)(h, w), (w,), (dw,)),
                  jax.jvp(lambda w: jax.grad(ref, 1)(h, w), (w,), (dw,))),
                 (jax.vmap(jax.grad(ours, 1), (None, 0))(h, jnp.stack([w, -2 * w])),
                  jax.vmap(jax.grad(ref, 1), (None, 0))(h, jnp.stack([w, -2 * w])))]
        for got, want in pairs:
            for a, b in zip(jax.tree.leaves(got), jax.tree.leaves(want)):
                np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-10, atol=1e-10)


@pytest.mark.parametrize("arch", ARCHS)
def test_apply_under_jit_and_vmap(arch, exact_matmul):
    net = small(arch)
    x = jax.random.normal(jax.random.PRNGKey(0), (4, *DIGITS))
    samples = [net.init(k) for k in jax.random.split(jax.random.PRNGKey(1), 3)]  # 3 parameter samples
    stacked = jax.tree_util.tree_map(lambda *a: jnp.stack(a), *samples)

    @jax.jit
    def both(stacked, x):
        over_samples = jax.vmap(net.apply, in_axes=(0, None))(stacked, x.reshape(4, -1))  # flat rows accepted
        p = jax.tree_util.tree_map(lambda a: a[0], stacked)
        one_by_one = jax.vmap(lambda xi: net.apply(p, xi[None])[0])(x)  # no batch statistics
        return over_samples, one_by_one

    over_samples, one_by_one = both(stacked, x)
    for s, p in enumerate(samples):
        np.testing.assert_allclose(over_samples[s], net.apply(p, x), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(one_by_one, over_samples[0], rtol=1e-5, atol=1e-5)


@functools.cache
def digits():
    """sklearn digits, 80/20 split (seed 0), pixels standardised with training statistics."""
    x, y = load_digits(return_X_y=True)
    perm = np.random.default_rng(0).permutation(len(y))
    x, y = x[perm].astype(np.float32), y[perm]
    n_train = int(0.8 * len(y))
    mu, sd = x[:n_train].mean(0), x[:n_train].std(0)
    x = (x - mu) / np.where(sd > 0, sd, 1.0)
    return jnp.asarray(x[:n_train]), jnp.asarray(y[:n_train]), jnp.asarray(x[n_train:]), jnp.asarray(y[n_train:])


# arch: (steps, learning rate, batch size, accuracy floor); floors leave a margin below the measured accuracy
TRAIN = {
    "mlp": (100, 1e-2, 1437, 0.95),
    "lenet5_caffe": (100, 1e-3, 32, 0.85),
    "lenet5": (150, 3e-3, 64, 0.9),
    "vit": (200, 3e-3, 64, 0.85),
    "mixer": (200, 3e-3, 64, 0.85),
    "resnet": (150, 1e-2, 64, 0.85),
}


@pytest.mark.parametrize("arch", ARCHS)
def test_map_adam_learns_digits(arch):
    steps, lr, batch, floor = TRAIN[arch]
    x_train, y_train, x_test, y_test = digits()
    net = small(arch)
    opt = optax.adam(lr)

    def loss(p, xb, yb):
        return optax.softmax_cross_entropy_with_integer_labels(net.apply(p, xb), yb).mean()

    @jax.jit
    def step(p, state, i):
        idx = jax.random.randint(jax.random.fold_in(jax.random.PRNGKey(1), i), (batch,), 0, x_train.shape[0])
        updates, state = opt.update(jax.grad(loss)(p, x_train[idx], y_train[idx]), state, p)
        return optax.apply_updates(p, updates), state

    # A Python loop over one jitted step: on CPU, XLA runs convolutions inside lax.scan markedly slower.
    params = net.init(jax.random.PRNGKey(0))
    state = opt.init(params)
    for i in range(steps):
        params, state = step(params, state, i)
    accuracy = float((net.apply(params, x_test).argmax(-1) == y_test).mean())
    assert accuracy >= floor, f"{arch}: test accuracy {accuracy:.3f} < {floor}"


def test_bad_input_raises_clear_errors():
    net = small("lenet5_caffe")
    p = jax.eval_shape(net.init, jax.random.PRNGKey(0))
    with pytest.raises(ValueError, match=r"x must have shape"):
        jax.eval_shape(net.apply, p, jax.ShapeDtypeStruct((2, 63), jnp.float32))
    with pytest.raises(ValueError, match="in_shape"):
        nets.lenet5_caffe((28, 28))
    with pytest.raises(ValueError, match="too small"):
        nets.lenet5_caffe(DIGITS, padding="VALID")
    with pytest.raises(ValueError, match="padding"):
        nets.lenet5_caffe(MNIST, padding="valid")
    with pytest.raises(ValueError, match="pool"):
        nets.convnet(MNIST, 10, (4,), (8,), pool="median")
    with pytest.raises(ValueError, match="activation"):
        nets.convnet(MNIST, 10, (4,), (8,), act="sigmoid")
    with pytest.raises(ValueError, match="channels"):
        nets.convnet(MNIST, 10, (), (8,))
    with pytest.raises(ValueError, match="patch"):
        nets.vit(MNIST, 10, patch=3)
    with pytest.raises(ValueError, match="heads must divide width"):
        nets.vit(MNIST, 10, width=30, heads=4)
    with pytest.raises(ValueError, match="width, depth"):
        nets.mixer(MNIST, 10, depth=0)
    with pytest.raises(ValueError, match="depth must be"):
        nets.resnet(CIFAR, 10, depth=21)
    with pytest.raises(ValueError, match="non-decreasing"):
        nets.resnet(CIFAR, 10, widths=(32, 16, 8))


# ----------------------------------------------------------------------------- nets.build


def same_network(a: nets.Network, b: nets.Network, x: np.ndarray, run: bool) -> None:
    """Same metadata and wiring, the same parameters from the same key, and (``run``) the same outputs."""
    assert (a.name, a.layers, a.in_shape, a.out_dim, a.consumers) == (b.name, b.layers, b.in_shape, b.out_dim, b.consumers)
    pa, pb = a.init(jax.random.key(0)), b.init(jax.random.key(0))
    assert jax.tree_util.tree_structure(pa) == jax.tree_util.tree_structure(pb)
    for u, v in zip(jax.tree_util.tree_leaves(pa), jax.tree_util.tree_leaves(pb)):
        np.testing.assert_array_equal(u, v)
    if run:
        np.testing.assert_array_equal(a.apply(pa, x), b.apply(pb, x))
    else:  # traced only (compiling every architecture at every size would cost a minute)
        assert jax.eval_shape(a.apply, pa, x) == jax.eval_shape(b.apply, pb, x)


def fake_dataset(image_shape, out_dim=10, name="images"):
    """What nets.build reads from a sparsebnn.data.Dataset."""
    from types import SimpleNamespace

    in_dim = math.prod(image_shape) if image_shape else 7
    return SimpleNamespace(name=name, in_dim=in_dim, out_dim=out_dim, image_shape=image_shape)


@pytest.mark.parametrize("shape", [DIGITS, MNIST])
@pytest.mark.parametrize("name, options, direct", [
    ("mlp", dict(hidden=[16, 8]), lambda s: nets.mlp([math.prod(s), 16, 8, 10])),
    ("mlp", dict(hidden=(5,), act="tanh", name="m"), lambda s: nets.mlp([math.prod(s), 5, 10], act="tanh", name="m")),
    ("lenet5", {}, lambda s: nets.lenet5(s, 10)),
    ("lenet5", dict(padding="SAME"), lambda s: nets.lenet5(s, 10, padding="SAME")),
    ("lenet5_caffe", {}, lambda s: nets.lenet5_caffe(s, 10)),
    ("vit", dict(patch=2, width=32, depth=2, heads=4), lambda s: nets.vit(s, 10, patch=2, width=32, depth=2, heads=4)),
    ("mixer", dict(patch=2, width=32, depth=2), lambda s: nets.mixer(s, 10, patch=2, width=32, depth=2)),
    ("resnet", dict(depth=8, widths=(4, 8, 16)), lambda s: nets.resnet(s, 10, depth=8, widths=(4, 8, 16))),
])
def test_build_is_the_named_builder_sized_for_the_dataset(name, options, direct, shape):
    net = nets.build(name, fake_dataset(shape), **options)
    x = np.random.default_rng(0).normal(size=(3, *shape)).astype(np.float32)
    same_network(net, direct(shape), x, run=shape == DIGITS and name in ("mlp", "lenet5"))


def test_build_options_are_explicit():
    """LeNet-5's padding is VALID on 28x28 by default and SAME only when asked: different networks."""
    ds = fake_dataset(MNIST)
    valid, same = nets.build("lenet5", ds), nets.build("lenet5", ds, padding="SAME")
    assert valid.layers[2].fan_in != same.layers[2].fan_in  # the flattened conv features differ
    regression = fake_dataset(None, out_dim=1, name="regression")
    assert nets.build("mlp", regression, hidden=[3]).layers[-1].n_nodes == 1


def test_build_rejects_bad_input():
    with pytest.raises(ValueError, match="unknown net"):
        nets.build("alexnet", fake_dataset(DIGITS))
    with pytest.raises(ValueError, match="needs image data"):
        nets.build("lenet5", fake_dataset(None, name="breast_cancer"))
    with pytest.raises(ValueError, match="hidden"):
        nets.build("mlp", fake_dataset(DIGITS))
    with pytest.raises(ValueError, match=r"takes no option\(s\) \['hidden'\]"):
        nets.build("lenet5", fake_dataset(DIGITS), hidden=[8])
    with pytest.raises(ValueError, match="n_out"):
        nets.build("vit", fake_dataset(DIGITS), n_out=3)
