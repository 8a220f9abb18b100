"""Multi-layer perceptron: ``widths = [d_in, h_1, ..., h_{L}, d_out]``."""

from __future__ import annotations

from collections.abc import Sequence

import jax

from ._layers import as_batch, dense, dense_init, initializer
from ._base import Layer, Network, activation
from ._wiring import Slot, wire


def mlp(widths: Sequence[int], act: str = "relu", name: str = "mlp") -> Network:
    """A fully connected network; layers are named ``dense_0 ... dense_{L}``; the last is not prunable.

    Input of shape ``(batch, d_in)`` (or anything that flattens to it). He-normal weights, zero biases.
    Node ``j`` of ``dense_i`` is read by row ``j`` of ``dense_{i+1}``'s weight.
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

    init = initializer({names[i]: dense_init(widths[i], widths[i + 1]) for i in range(n)})

    @jax.jit
    def apply(params: dict, x: jax.Array) -> jax.Array:
        h = as_batch(x, (widths[0],))
        for i in range(n):
            h = dense(params[names[i]], h)
            if i < n - 1:
                h = f(h)
        return h

    net = Network(name, init, apply, layers, (widths[0],), widths[-1])
    return wire(net, {names[i]: (Slot((names[i + 1], "w")),) for i in range(n - 1)})
