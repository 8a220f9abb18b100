"""Prior inclusion probabilities of node indicators: fixed, per layer, or the theory-driven choice.

Theory-driven choice (Jantre, Bhattacharya & Maiti 2023, as in their code for MLP/LeNet; docs/priors.md). Layers
``l = 0..L`` of the network in order, ``k_l + 1`` the size of a node's incoming group in layer
``l`` (fan-in + bias) and ``k_{l+1}`` its number of nodes; ``L`` is the number of node-prunable
(hidden) layers and ``n`` the training-set size:

    u_l = (L+1)² [ln n + ln(L+1) + ln(k_l+1) + ln k_{l+1}]                      (every layer)
    v_l = (k_l+1)² + Σ_m ln(k_m+1) + L + ln k_{l+1} + ln n + ln Σ_j u_j
    −ln π_{l+1} = ln k_{l+1} + 10⁻⁹ (k_l+1) v_l                                (prunable layers)

For the 784-400-400-10 MLP with n = 60000 this gives π ≈ 1.54e-3 and 2.34e-3.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from sparsebnn.nets import Network


def _sizes(fan_ins: Sequence[int], n_nodes: Sequence[int], n_data: int) -> tuple[np.ndarray, np.ndarray, int]:
    k_in, k_out = np.asarray(fan_ins, float), np.asarray(n_nodes, float)
    if k_in.ndim != 1 or k_in.shape != k_out.shape or k_in.size == 0:
        raise ValueError(f"fan_ins and n_nodes must be equal-length non-empty sequences; got {fan_ins}, {n_nodes}")
    if np.any(k_in < 1) or np.any(k_out < 1):
        raise ValueError(f"fan_ins and n_nodes must be >= 1; got {fan_ins}, {n_nodes}")
    if isinstance(n_data, bool) or not isinstance(n_data, (int, np.integer)) or n_data < 1:
        raise ValueError(f"n_data must be a positive integer; got {n_data!r}")
    return k_in, k_out, int(n_data)


def theory_u(fan_ins: Sequence[int], n_nodes: Sequence[int], n_data: int, n_prunable: int | None = None) -> np.ndarray:
    """``u_l`` for every layer ``l = 0..L`` (``n_prunable = L`` defaults to ``len(fan_ins) - 1``)."""
    k_in, k_out, n = _sizes(fan_ins, n_nodes, n_data)
    L = len(k_in) - 1 if n_prunable is None else int(n_prunable)
    return (L + 1) ** 2 * (math.log(n) + math.log(L + 1) + np.log(k_in + 1) + np.log(k_out))


def theory_inclusion(fan_ins: Sequence[int], n_nodes: Sequence[int], n_data: int,
                     prunable: Sequence[bool] | None = None) -> np.ndarray:
    """π of every layer from the formula above (NaN for layers that are not prunable).

    ``fan_ins[l]`` and ``n_nodes[l]`` describe layer ``l`` (its incoming group has ``fan_in + 1``
    entries); by default every layer but the last is prunable.
    """
    k_in, k_out, n = _sizes(fan_ins, n_nodes, n_data)
    prunable = np.arange(len(k_in)) < len(k_in) - 1 if prunable is None else np.asarray(prunable, bool)
    L = int(prunable.sum())
    u = theory_u(fan_ins, n_nodes, n, L)
    v = (k_in + 1) ** 2 + np.log(k_in + 1).sum() + L + np.log(k_out) + math.log(n) + math.log(u.sum())
    pi = np.exp(-(np.log(k_out) + 1e-9 * (k_in + 1) * v))
    return np.where(prunable, pi, np.nan)


def inclusion_probs(net: Network, n_data: int | None, pi: float | str | Mapping[str, float] = "theory") -> dict[str, float]:
    """Prior inclusion probability ``{layer: π_l}`` of every node-prunable layer of ``net``.

    ``pi``: a float in (0, 1) for every layer, a mapping ``{layer name: π}`` covering the
    prunable layers, or ``"theory"`` (needs ``n_data``, the training-set size).
    """
    names = [layer.name for layer in net.prunable_layers]
    if isinstance(pi, str):
        if pi != "theory":
            raise ValueError(f"pi must be a probability, a dict per layer, or 'theory'; got {pi!r}")
        if n_data is None:
            raise ValueError("pi='theory' needs n_data, the number of training examples")
        values = theory_inclusion([layer.fan_in for layer in net.layers], [layer.n_nodes for layer in net.layers],
                                  n_data, [layer.prunable for layer in net.layers])
        out = {layer.name: float(p) for layer, p in zip(net.layers, values) if layer.prunable}
    elif isinstance(pi, Mapping):
        missing = set(names) - set(pi)
        if missing:
            raise ValueError(f"pi has no inclusion probability for layers {sorted(missing)}")
        out = {name: float(pi[name]) for name in names}
    else:
        out = {name: pi for name in names}
    for name, p in out.items():
        try:
            ok = 0.0 < float(p) < 1.0
        except (TypeError, ValueError):
            ok = False
        if not ok:
            raise ValueError(f"pi for layer {name!r} must lie in (0, 1); got {p!r}")
        out[name] = float(p)
    return out
