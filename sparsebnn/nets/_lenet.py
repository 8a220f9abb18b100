"""LeNet-style convolutional networks: [conv k×k → act → 2×2 pool] × C → flatten → [dense → act] × H → dense.

Layers are ``conv_0 … conv_{C-1}`` (filters prunable), ``dense_0 … dense_{H-1}`` (units prunable)
and the output ``dense_H`` (not prunable). Inputs are NHWC images ``(batch, h, w, c)`` or their
flat rows ``(batch, h·w·c)``. Filter ``j`` of the last conv is read by the flattened columns
``p·C + j`` of ``dense_0`` (one per spatial position ``p``; NHWC flattening puts channels fastest).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax

from ._layers import POOLS, as_batch, check_image_shape, conv, conv_init, dense, dense_init, initializer
from ._base import Layer, Network, activation
from ._wiring import Slot, wire

PADDINGS = ("VALID", "SAME")


def _feature_side(side: int, n_convs: int, kernel: int, padding: str) -> int:
    for _ in range(n_convs):
        side = (side - kernel + 1 if padding == "VALID" else side) // 2
    return side


def convnet(
    in_shape: Sequence[int],
    n_out: int,
    channels: Sequence[int],
    hidden: Sequence[int],
    kernel: int = 5,
    pool: str = "max",
    act: str = "relu",
    padding: str | None = None,
    name: str = "convnet",
) -> Network:
    """A LeNet-style network (module docstring).

    ``padding``: ``"VALID"`` (as in Caffe/LeCun), ``"SAME"``, or ``None`` = VALID when the input is
    large enough for every conv + pool, else SAME (e.g. 8×8 digits). He-normal weights, zero biases.
    """
    height, width, c_in = check_image_shape(in_shape)
    channels, hidden = [int(c) for c in channels], [int(h) for h in hidden]
    if not channels or min(channels + hidden) < 1 or int(n_out) < 1:
        raise ValueError(f"need >= 1 conv layer and positive sizes; got channels={channels}, hidden={hidden}, n_out={n_out}")
    if pool not in POOLS:
        raise ValueError(f"unknown pool {pool!r}; choose one of {sorted(POOLS)}")
    if int(kernel) < 1:
        raise ValueError(f"kernel must be >= 1; got {kernel}")
    if padding is None:
        fits = min(_feature_side(s, len(channels), kernel, "VALID") for s in (height, width)) >= 1
        padding = "VALID" if fits else "SAME"
    if padding not in PADDINGS:
        raise ValueError(f"unknown padding {padding!r}; choose one of {PADDINGS} or None")
    side_h, side_w = (_feature_side(s, len(channels), kernel, padding) for s in (height, width))
    if min(side_h, side_w) < 1:
        raise ValueError(f"in_shape {tuple(in_shape)} is too small for {len(channels)} conv+pool stages with padding={padding!r}")
    f, pool_fn, n_out = activation(act), POOLS[pool], int(n_out)

    conv_names = [f"conv_{i}" for i in range(len(channels))]
    dense_names = [f"dense_{i}" for i in range(len(hidden) + 1)]
    c_prev = [c_in] + channels[:-1]
    flat = side_h * side_w * channels[-1]
    d_in = [flat] + hidden
    d_out = hidden + [n_out]
    layers = tuple(Layer(n, "conv", kernel * kernel * c, k) for n, c, k in zip(conv_names, c_prev, channels)) + tuple(
        Layer(n, "dense", i, o, prunable=n != dense_names[-1])
        for n, i, o in zip(dense_names, d_in, d_out)
    )
    in_shape = (height, width, c_in)

    template = {n: conv_init(kernel, c, o) for n, c, o in zip(conv_names, c_prev, channels)}
    template.update({n: dense_init(i, o) for n, i, o in zip(dense_names, d_in, d_out)})
    init = initializer(template)

    @jax.jit
    def apply(params: dict, x: jax.Array) -> jax.Array:
        h = as_batch(x, in_shape)
        for n in conv_names:
            h = pool_fn(f(conv(params[n], h, padding=padding)))
        h = h.reshape(h.shape[0], h.shape[1] * h.shape[2] * h.shape[3])
        for n in dense_names[:-1]:
            h = f(dense(params[n], h))
        return dense(params[dense_names[-1]], h)

    net = Network(name, init, apply, layers, in_shape, n_out)
    readers = conv_names[1:] + dense_names
    return wire(net, {n: (Slot((r, "w")),) for n, r in zip(conv_names + dense_names[:-1], readers)})


def lenet5_caffe(in_shape: Sequence[int], n_out: int = 10, act: str = "relu", padding: str | None = None) -> Network:
    """LeNet-5-Caffe: conv 20 5×5 → max-pool → conv 50 5×5 → max-pool → fc 500 → out (431,080 parameters on MNIST)."""
    return convnet(in_shape, n_out, (20, 50), (500,), 5, "max", act, padding, name="lenet5_caffe")


def lenet5(in_shape: Sequence[int], n_out: int = 10, act: str = "tanh", padding: str | None = None) -> Network:
    """Classic LeNet-5 (LeCun et al. 1998): conv 6 5×5 → avg-pool → conv 16 5×5 → avg-pool → fc 120 → fc 84 → out.

    C3 is fully connected to S2 (no sparse connection table) and the output is a dense layer (no RBF):
    61,706 parameters on 32×32×1 inputs.
    """
    return convnet(in_shape, n_out, (6, 16), (120, 84), 5, "avg", act, padding, name="lenet5")
