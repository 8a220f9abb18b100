"""A small Vision Transformer (Dosovitskiy et al. 2021), pre-norm, mean-pooled (no class token).

Image → non-overlapping ``patch``×``patch`` patches → linear embedding (``embed``, a stride-``patch``
conv) + learned positions (``pos``) → ``depth`` blocks → layer norm (``ln``) → mean over tokens →
``head``. Block ``i``::

    x = x + proj_i(MHA_i(LN(x)))          # layers block{i}_attn, block{i}_proj
    x = x + fc2_i(gelu(fc1_i(LN(x))))     # layers block{i}_fc1, block{i}_fc2

Prunable groups (output nodes on the last axis, as everywhere):

* ``block{i}_attn`` (kind ``"attention"``): one node per **head**. ``w`` has shape
  ``(width, 3, head_dim, heads)`` — the head's query, key and value projections — and ``b`` has
  shape ``(heads,)``: a value bias shared by the head's ``head_dim`` value channels (the only
  q/k/v bias; equivalently an offset of the head's output, since attention weights sum to one).
  Zeroing a head's group makes its value vectors zero, hence its output zero; compaction drops
  the head and the matching ``head_dim`` rows of ``block{i}_proj``. Fan-in ``3·width·head_dim``.
* ``block{i}_fc1``: the MLP hidden units (GELU(0) = 0); compaction drops rows of ``block{i}_fc2``.

Not prunable: ``embed``, ``block{i}_proj``, ``block{i}_fc2`` and ``head`` write into the residual
stream (or the classes), whose channels are tied across blocks by the residual additions.
Layer norms and positions are per-token and stateless (no batch statistics).
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
    Normal,
    dense_init,
    he_normal,
    initializer,
    layer_norm,
    layer_norm_init,
    n_patches,
    patch_embed,
)
from ._base import Layer, Network
from ._wiring import Slot, wire

_LECUN = math.sqrt(0.5)  # he_normal scale giving variance 1 / fan_in


def attention(p: dict, h: jax.Array) -> jax.Array:
    """Multi-head self-attention of tokens ``h`` (batch, n, width) → concatenated head outputs (batch, n, heads·head_dim)."""
    qkv = jnp.einsum("bnd,dtkh->tbnhk", h, p["w"])
    q, k, v = qkv[0], qkv[1], qkv[2] + p["b"][:, None]
    scores = jnp.einsum("bqhk,bshk->bhqs", q, k) / math.sqrt(p["w"].shape[2])
    out = jnp.einsum("bhqs,bshk->bqhk", jax.nn.softmax(scores, axis=-1), v)
    return out.reshape(*out.shape[:2], out.shape[2] * out.shape[3])


def vit(
    in_shape: Sequence[int],
    n_out: int,
    patch: int = 4,
    width: int = 64,
    depth: int = 4,
    heads: int = 4,
    mlp_hidden: int | None = None,
    name: str = "vit",
) -> Network:
    """A Vision Transformer (module docstring); ``mlp_hidden`` defaults to ``4 · width``; ``heads`` must divide ``width``."""
    in_shape = check_image_shape(in_shape)
    n_tok = n_patches(in_shape, int(patch))
    patch, width, depth, heads, n_out = int(patch), int(width), int(depth), int(heads), int(n_out)
    mlp_hidden = 4 * width if mlp_hidden is None else int(mlp_hidden)
    if min(width, depth, heads, mlp_hidden, n_out) < 1:
        raise ValueError(f"width, depth, heads, mlp_hidden, n_out must be >= 1; got {width}, {depth}, {heads}, {mlp_hidden}, {n_out}")
    if width % heads:
        raise ValueError(f"heads must divide width; got width={width}, heads={heads}")
    dh, c_in = width // heads, in_shape[2]

    layers = [Layer("embed", "conv", patch * patch * c_in, width, prunable=False)]
    for i in range(depth):
        layers += [
            Layer(f"block{i}_attn", "attention", 3 * width * dh, heads),
            Layer(f"block{i}_proj", "dense", width, width, prunable=False),
            Layer(f"block{i}_fc1", "dense", width, mlp_hidden),
            Layer(f"block{i}_fc2", "dense", mlp_hidden, width, prunable=False),
        ]
    layers.append(Layer("head", "dense", width, n_out, prunable=False))

    template = {"embed": conv_init(patch, c_in, width, _LECUN), "pos": Normal((n_tok, width), 0.02)}
    for i in range(depth):
        template[f"block{i}_ln1"] = layer_norm_init(width)
        template[f"block{i}_attn"] = {"w": he_normal((width, 3, dh, heads), width, _LECUN), "b": Normal((heads,))}
        template[f"block{i}_proj"] = dense_init(width, width, _LECUN)
        template[f"block{i}_ln2"] = layer_norm_init(width)
        template[f"block{i}_fc1"] = dense_init(width, mlp_hidden)
        template[f"block{i}_fc2"] = dense_init(mlp_hidden, width, _LECUN)
    template["ln"] = layer_norm_init(width)
    template["head"] = dense_init(width, n_out, _LECUN)
    init = initializer(template)

    @jax.jit
    def apply(params: dict, x: jax.Array) -> jax.Array:
        h = patch_embed(params["embed"], as_batch(x, in_shape), patch) + params["pos"]
        for i in range(depth):
            h = h + dense(params[f"block{i}_proj"], attention(params[f"block{i}_attn"], layer_norm(params[f"block{i}_ln1"], h)))
            u = jax.nn.gelu(dense(params[f"block{i}_fc1"], layer_norm(params[f"block{i}_ln2"], h)))
            h = h + dense(params[f"block{i}_fc2"], u)
        return dense(params["head"], layer_norm(params["ln"], h).mean(axis=1))

    net = Network(name, init, apply, tuple(layers), in_shape, n_out)
    wiring = {}
    for i in range(depth):
        wiring[f"block{i}_attn"] = (Slot((f"block{i}_proj", "w"), -2, inner=dh),)
        wiring[f"block{i}_fc1"] = (Slot((f"block{i}_fc2", "w")),)
    return wire(net, wiring)
