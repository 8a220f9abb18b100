"""Multi-layer perceptron: ``widths = [d_in, h_1, ..., h_{L}, d_out]``."""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp

from .base import Layer, Network, activation


def _dense_init(key: jax.Array, fan_in: int, fan_out: int) -> dict:
    """He-normal weights (fan-in scaling), zero bias."""
    w = jax.random.normal(key, (fan_in, fan_out)) * jnp.sqrt(2.0 / fan_in)
    return {"w": w, "b": jnp.zeros((fan_out,))}


def mlp(widths: Sequence[int], act: str = "relu", name: str = "mlp") -> Network:
    """A fully connected network; layers are named ``dense_0 ... dense_{L}``; the last is not prunable.

    Input of shape ``(batch, d_in)`` (or anything that flattens to it).
    """
    widths = [int(w) for w in widths]
    if len(widths) < 2 or min(widths) < 1:
        raise ValueError(f"widths must list at least input and output sizes, all >= 1; got {widths}")
    f = activation(act)
    n = len(widths) - 1
    names = [f"dense_{i}" for i in range(n)]
    layers = tuple(
        Layer(names[i], "dense", widths[i], widths[i + 1], prunable=i < n - 1) for i in range(n)
    )

    def init(key: jax.Array) -> dict:
        keys = jax.random.split(key, n)
        return {names[i]: _dense_init(keys[i], widths[i], widths[i + 1]) for i in range(n)}

    def apply(params: dict, x: jax.Array) -> jax.Array:
        h = x.reshape(x.shape[0], -1)
        for i in range(n):
            p = params[names[i]]
            h = h @ p["w"] + p["b"]
            if i < n - 1:
                h = f(h)
        return h

    return Network(name, init, apply, layers, (widths[0],), widths[-1])
