"""MLP-Mixer (Tolstikhin et al. 2021): patches → linear embedding → ``depth`` mixer blocks → layer norm → mean over tokens → head.

Block ``i`` on tokens ``x`` of shape (batch, n_tokens, width)::

    x = x + tok2_i(gelu(tok1_i(LN(x)ᵀ)))ᵀ     # token mixing: dense over the token axis, per channel
    x = x + ch2_i(gelu(ch1_i(LN(x))))         # channel mixing: dense over the channel axis, per token

Prunable groups: the hidden units of both MLPs, ``block{i}_tok1`` (fan-in ``n_tokens``) and
``block{i}_ch1`` (fan-in ``width``); compaction drops the matching rows of ``block{i}_tok2`` /
``block{i}_ch2``. Not prunable: ``embed``, ``block{i}_tok2`` (its nodes are the tokens),
``block{i}_ch2`` (residual-stream channels, tied across blocks by the residual additions) and
``head``. Layer norms are per-token and stateless.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import jax
import jax.numpy as jnp

from ._layers import (
    as_batch,
    check_image_shape,
    conv_init,
    dense,
    dense_init,
    initializer,
    layer_norm,
    layer_norm_init,
    n_patches,
    patch_embed,
)
from ._base import Layer, Network
from ._wiring import Slot, wire

_LECUN = math.sqrt(0.5)  # he_normal scale giving variance 1 / fan_in


def mixer(
    in_shape: Sequence[int],
    n_out: int,
    patch: int = 4,
    width: int = 64,
    depth: int = 4,
    token_hidden: int | None = None,
    channel_hidden: int | None = None,
    name: str = "mixer",
) -> Network:
    """An MLP-Mixer (module docstring); ``token_hidden`` defaults to ``width // 2``, ``channel_hidden`` to ``4 · width``."""
    in_shape = check_image_shape(in_shape)
    n_tok = n_patches(in_shape, int(patch))
    patch, width, depth, n_out = int(patch), int(width), int(depth), int(n_out)
    token_hidden = max(width // 2, 1) if token_hidden is None else int(token_hidden)
    channel_hidden = 4 * width if channel_hidden is None else int(channel_hidden)
    if min(width, depth, token_hidden, channel_hidden, n_out) < 1:
        raise ValueError(
            f"width, depth, token_hidden, channel_hidden, n_out must be >= 1; got {width}, {depth}, {token_hidden}, {channel_hidden}, {n_out}"
        )
    c_in = in_shape[2]

    layers = [Layer("embed", "conv", patch * patch * c_in, width, prunable=False)]
    for i in range(depth):
        layers += [
            Layer(f"block{i}_tok1", "dense", n_tok, token_hidden),
            Layer(f"block{i}_tok2", "dense", token_hidden, n_tok, prunable=False),
            Layer(f"block{i}_ch1", "dense", width, channel_hidden),
            Layer(f"block{i}_ch2", "dense", channel_hidden, width, prunable=False),
        ]
    layers.append(Layer("head", "dense", width, n_out, prunable=False))

    template = {"embed": conv_init(patch, c_in, width, _LECUN)}
    for i in range(depth):
        template[f"block{i}_ln1"] = layer_norm_init(width)
        template[f"block{i}_tok1"] = dense_init(n_tok, token_hidden)
        template[f"block{i}_tok2"] = dense_init(token_hidden, n_tok, _LECUN)
        template[f"block{i}_ln2"] = layer_norm_init(width)
        template[f"block{i}_ch1"] = dense_init(width, channel_hidden)
        template[f"block{i}_ch2"] = dense_init(channel_hidden, width, _LECUN)
    template["ln"] = layer_norm_init(width)
    template["head"] = dense_init(width, n_out, _LECUN)
    init = initializer(template)

    @jax.jit
    def apply(params: dict, x: jax.Array) -> jax.Array:
        h = patch_embed(params["embed"], as_batch(x, in_shape), patch)
        for i in range(depth):
            u = jnp.swapaxes(layer_norm(params[f"block{i}_ln1"], h), 1, 2)  # (batch, width, n_tok)
            u = dense(params[f"block{i}_tok2"], jax.nn.gelu(dense(params[f"block{i}_tok1"], u)))
            h = h + jnp.swapaxes(u, 1, 2)
            u = jax.nn.gelu(dense(params[f"block{i}_ch1"], layer_norm(params[f"block{i}_ln2"], h)))
            h = h + dense(params[f"block{i}_ch2"], u)
        return dense(params["head"], layer_norm(params["ln"], h).mean(axis=1))

    net = Network(name, init, apply, tuple(layers), in_shape, n_out)
    wiring = {}
    for i in range(depth):
        wiring[f"block{i}_tok1"] = (Slot((f"block{i}_tok2", "w")),)
        wiring[f"block{i}_ch1"] = (Slot((f"block{i}_ch2", "w")),)
    return wire(net, wiring)
