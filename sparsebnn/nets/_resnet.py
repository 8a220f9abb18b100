"""ResNet for CIFAR-sized images (He et al. 2016, §4.2): ResNet-20/32/44/56/110 = ``resnet(depth=6n+2)``.

3×3 conv stem (``stem``) → stages of ``n`` basic blocks with widths ``widths`` (16, 32, 64), the
first block of every later stage striding by 2 → global average pool → ``head``. Basic block ``k``::

    u = act(conv_a(h))                          # layer block{k}_a: prunable filters
    h = act(shortcut(h) + conv_b(u))            # layer block{k}_b: not prunable

The shortcut is the parameter-free option A: identity, subsampled ``[::2, ::2]`` and zero-padded in
channels where the stage changes. All 3×3 convs pad by one pixel on each side (as in the original).

**Prunable groups.** Only the inner filters of each residual branch (``block{k}_a``): filter ``j``
is read by input channel ``j`` of ``block{k}_b`` only, so compaction removes both. The outputs of
``stem`` and ``block{k}_b`` are added to the residual stream, which ties channel ``j`` of every
block in a stage (and, through the zero-padded shortcut, of later stages): removing one such
filter does not remove the channel, so these layers are marked ``prunable=False`` and
``compact`` refuses masks for them. ``head`` is the output layer.

**Normalisation in a Bayesian setting.** There is no batch norm. BatchNorm's running mean and
variance are state updated outside the likelihood (not parameters with a prior), and in training
mode its batch statistics make each prediction depend on the other inputs in the batch; with
weights sampled from a posterior (``vmap`` over samples) the statistics would also have to be
recomputed per sample. It would break exact node pruning too: removing a channel would change
statistics that other channels share. Instead the network is normalisation-free with
Fixup-style initialisation (Zhang, Dauphin & Ma 2019): ``conv_b`` starts at zero, so each block
starts as the identity, and ``conv_a`` is He-initialised and scaled by ``L^{-1/2}`` (``L``
residual blocks, two convs per branch). Fixup's scalar biases and multipliers are omitted: every
conv has its own per-filter bias, which sits inside the node group, so a zeroed filter is silent
and ``apply`` is a pure function of ``(params, x)``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp

from ._layers import Normal, as_batch, check_image_shape, conv, conv_init, dense, dense_init, initializer
from ._base import Layer, Network, activation
from ._wiring import Slot, wire

_PAD = ((1, 1), (1, 1))


def _shortcut(h: jax.Array, stride: int, c_out: int) -> jax.Array:
    """Option A: subsample by ``stride`` and zero-pad channels up to ``c_out``."""
    h = h[:, ::stride, ::stride, :]
    return jnp.pad(h, ((0, 0), (0, 0), (0, 0), (0, c_out - h.shape[-1])))


def resnet(
    in_shape: Sequence[int],
    n_out: int,
    depth: int = 20,
    widths: Sequence[int] = (16, 32, 64),
    act: str = "relu",
    name: str | None = None,
) -> Network:
    """A CIFAR ResNet of ``depth = 2·len(widths)·n + 2`` layers (module docstring); ``resnet(depth=20)`` is ResNet-20."""
    in_shape = check_image_shape(in_shape)
    widths, depth, n_out = [int(w) for w in widths], int(depth), int(n_out)
    per_stage = 2 * len(widths)
    if not widths or min(widths) < 1 or n_out < 1:
        raise ValueError(f"widths and n_out must be positive; got widths={widths}, n_out={n_out}")
    if depth < per_stage + 2 or (depth - 2) % per_stage:
        raise ValueError(f"depth must be {per_stage}·n + 2 with n >= 1 for {len(widths)} stages; got {depth}")
    if widths != sorted(widths):
        raise ValueError(f"widths must be non-decreasing (the option-A shortcut pads channels); got {widths}")
    f, c_in = activation(act), in_shape[2]
    n = (depth - 2) // per_stage
    # (c_in, c_out, stride) of every block
    blocks = [
        (widths[max(s - 1, 0)] if b == 0 else widths[s], widths[s], 2 if (b == 0 and s > 0) else 1)
        for s in range(len(widths))
        for b in range(n)
    ]
    strides = [st for _, _, st in blocks]
    scale = len(blocks) ** -0.5

    layers = [Layer("stem", "conv", 9 * c_in, widths[0], prunable=False)]
    for k, (ci, co, _) in enumerate(blocks):
        layers += [Layer(f"block{k}_a", "conv", 9 * ci, co), Layer(f"block{k}_b", "conv", 9 * co, co, prunable=False)]
    layers.append(Layer("head", "dense", widths[-1], n_out, prunable=False))

    template = {"stem": conv_init(3, c_in, widths[0])}
    for k, (ci, co, _) in enumerate(blocks):
        template[f"block{k}_a"] = conv_init(3, ci, co, scale)
        template[f"block{k}_b"] = {"w": Normal((3, 3, co, co)), "b": Normal((co,))}
    template["head"] = dense_init(widths[-1], n_out, math.sqrt(0.5))
    init = initializer(template)

    @jax.jit
    def apply(params: dict, x: jax.Array) -> jax.Array:
        h = f(conv(params["stem"], as_batch(x, in_shape), padding=_PAD))
        for k, stride in enumerate(strides):
            u = f(conv(params[f"block{k}_a"], h, stride, _PAD))
            u = conv(params[f"block{k}_b"], u, 1, _PAD)
            h = f(_shortcut(h, stride, u.shape[-1]) + u)
        return dense(params["head"], h.mean(axis=(1, 2)))

    net = Network(name or f"resnet{depth}", init, apply, tuple(layers), in_shape, n_out)
    return wire(net, {f"block{k}_a": (Slot((f"block{k}_b", "w")),) for k in range(len(blocks))})
