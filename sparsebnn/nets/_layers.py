"""Stateless building blocks shared by the architectures: initial-value templates, layer functions, input checks.

Every layer function reads its sizes from the parameter shapes, never from a closure, so one
``apply`` serves a network and its compacted (narrower) version alike.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable
from typing import NamedTuple

import jax
import jax.numpy as jnp
from jax import lax

_DIMS = ("NHWC", "HWIO", "NHWC")


class Normal(NamedTuple):
    """An initial value: ``mean + std · N(0, 1)`` of shape ``shape`` (``std = 0``: the constant ``mean``)."""

    shape: tuple[int, ...]
    std: float = 0.0
    mean: float = 0.0


def draw(key: jax.Array, template) -> dict:
    """Draw a parameter pytree from a template whose leaves are :class:`Normal`.

    All Gaussian leaves come from one ``jax.random.normal`` call (cut and reshaped in template
    order), which keeps compilation of ``init`` fast however many layers there are.
    """
    leaves, tree = jax.tree_util.tree_flatten(template, is_leaf=lambda v: isinstance(v, Normal))
    sizes = [math.prod(v.shape) if v.std else 0 for v in leaves]
    z = jax.random.normal(key, (sum(sizes),))
    out, start = [], 0
    for v, size in zip(leaves, sizes):
        if v.std:
            out.append(v.mean + v.std * z[start : start + size].reshape(v.shape))
        else:
            out.append(jnp.full(v.shape, v.mean, dtype=z.dtype))
        start += size
    return jax.tree_util.tree_unflatten(tree, out)


def initializer(template) -> Callable[[jax.Array], dict]:
    """``init(key) = draw(key, template)``, jitted."""
    return jax.jit(lambda key: draw(key, template))


def he_normal(shape: tuple[int, ...], fan_in: int, scale: float = 1.0) -> Normal:
    """N(0, scale² · 2 / fan_in) weights (He et al. 2015); ``scale = √½`` gives variance 1 / fan_in."""
    return Normal(tuple(shape), scale * math.sqrt(2.0 / fan_in))


def dense_init(fan_in: int, fan_out: int, scale: float = 1.0) -> dict:
    """Dense layer ``{"w": (fan_in, fan_out), "b": (fan_out,)}``: He-normal weights, zero bias."""
    return {"w": he_normal((fan_in, fan_out), fan_in, scale), "b": Normal((fan_out,))}


def conv_init(kernel: int, c_in: int, c_out: int, scale: float = 1.0) -> dict:
    """Conv layer ``{"w": (k, k, c_in, c_out) HWIO, "b": (c_out,)}``: He-normal weights, zero bias."""
    return {"w": he_normal((kernel, kernel, c_in, c_out), kernel * kernel * c_in, scale), "b": Normal((c_out,))}


def layer_norm_init(d: int) -> dict:
    return {"scale": Normal((d,), mean=1.0), "bias": Normal((d,))}


def dense(p: dict, h: jax.Array) -> jax.Array:
    """``h @ w + b`` over the last axis of ``h``."""
    return h @ p["w"] + p["b"]


def conv(p: dict, h: jax.Array, stride: int = 1, padding: str = "SAME") -> jax.Array:
    """2-D convolution of an NHWC batch with HWIO weights, plus bias."""
    return _conv(h, p["w"], stride, padding) + p["b"]


@functools.partial(jax.custom_jvp, nondiff_argnums=(2, 3))
def _conv(h: jax.Array, w: jax.Array, stride: int, padding: str) -> jax.Array:
    """``lax.conv_general_dilated`` (NHWC, HWIO) whose tangent, on CPU, is the patch product of :func:`_conv_patches`.

    Why: XLA:CPU runs the transposed convolutions of the backward pass 10-20x slower inside a loop
    (``lax.scan``, as in every training driver; jax-ml/jax#12868) than outside one. The tangent
    ``conv(dh, w) + conv(h, dw)`` written as ``patches(dh) @ W + patches(h) @ dW`` transposes to
    slices, pads and matmuls, which stay fast in loops. The primal (and the tangent elsewhere) is
    the backend's convolution.
    """
    return lax.conv_general_dilated(h, w, (stride, stride), padding, dimension_numbers=_DIMS)


def _conv_patches(h: jax.Array, w: jax.Array, stride: int, padding) -> jax.Array:
    """The same convolution as ``patches(h) @ w.reshape(k·k·c_in, c_out)`` (im2col by strided slices)."""
    kh, kw, c_in, c_out = w.shape
    pads = lax.padtype_to_pads(h.shape[1:3], (kh, kw), (stride, stride), padding) if isinstance(padding, str) \
        else tuple(padding)
    h = jnp.pad(h, ((0, 0), *pads, (0, 0)))
    n, height, width, _ = h.shape
    ho, wo = (height - kh) // stride + 1, (width - kw) // stride + 1
    cols = [lax.slice(h, (0, i, j, 0), (n, i + (ho - 1) * stride + 1, j + (wo - 1) * stride + 1, c_in),
                      (1, stride, stride, 1)) for i in range(kh) for j in range(kw)]
    return jnp.concatenate(cols, axis=-1) @ w.reshape(kh * kw * c_in, c_out)


@_conv.defjvp
def _conv_jvp(stride, padding, primals, tangents):
    h, w = primals
    dh, dw = tangents
    tangent = lambda h, w, dh, dw: _conv_patches(dh, w, stride, padding) + _conv_patches(h, dw, stride, padding)
    backend = lambda h, w, dh, dw: _conv.fun(dh, w, stride, padding) + _conv.fun(h, dw, stride, padding)
    return _conv(h, w, stride, padding), lax.platform_dependent(h, w, dh, dw, cpu=tangent, default=backend)


def max_pool(h: jax.Array, k: int = 2) -> jax.Array:
    """k×k max pooling with stride k (VALID) on NHWC."""
    return lax.reduce_window(h, -jnp.inf, lax.max, (1, k, k, 1), (1, k, k, 1), "VALID")


def avg_pool(h: jax.Array, k: int = 2) -> jax.Array:
    """k×k average pooling with stride k (VALID) on NHWC."""
    return lax.reduce_window(h, 0.0, lax.add, (1, k, k, 1), (1, k, k, 1), "VALID") / (k * k)


POOLS = {"max": max_pool, "avg": avg_pool}


def layer_norm(p: dict, h: jax.Array, eps: float = 1e-6) -> jax.Array:
    """Per-token normalisation over the last axis (stateless: no batch statistics)."""
    mu = h.mean(-1, keepdims=True)
    var = ((h - mu) ** 2).mean(-1, keepdims=True)
    return (h - mu) * lax.rsqrt(var + eps) * p["scale"] + p["bias"]


def check_image_shape(in_shape, name: str = "in_shape") -> tuple[int, int, int]:
    """Validate an image shape ``(height, width, channels)``."""
    shape = tuple(int(s) for s in in_shape)
    if len(shape) != 3 or min(shape) < 1:
        raise ValueError(f"{name} must be (height, width, channels) with positive sizes; got {tuple(in_shape)}")
    return shape


def as_batch(x: jax.Array, in_shape: tuple[int, ...]) -> jax.Array:
    """Reshape a batch to ``(batch, *in_shape)``; accepts flat ``(batch, prod(in_shape))`` rows too."""
    size = math.prod(in_shape)
    if x.ndim < 1 or math.prod(x.shape[1:]) != size:
        raise ValueError(
            f"x must have shape (batch, *{tuple(in_shape)}) or (batch, {size}); got {tuple(x.shape)}"
        )
    return x.reshape((x.shape[0], *in_shape))


def patch_embed(p: dict, x: jax.Array, patch: int) -> jax.Array:
    """Non-overlapping ``patch``×``patch`` patches projected to tokens: NHWC → ``(batch, n_tokens, width)``."""
    h = conv(p, x, stride=patch, padding="VALID")
    return h.reshape(h.shape[0], -1, h.shape[-1])


def n_patches(in_shape: tuple[int, int, int], patch: int) -> int:
    """Number of tokens; the image sides must be multiples of ``patch``."""
    height, width, _ = in_shape
    if patch < 1 or height % patch or width % patch:
        raise ValueError(f"patch must be a positive divisor of the image sides {height}x{width}; got {patch}")
    return (height // patch) * (width // patch)
