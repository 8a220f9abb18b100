"""Pruning masks: one representation, told apart and converted here only.

* a **node mask** of a node-prunable layer is a bool vector ``(n_nodes,)``: which nodes are kept
  (node ``j`` is its incoming group ``(w[..., j], b[j])``);
* a **weight mask** of a layer is ``{"w": bool like w, "b": bool like b}``: which coordinates are kept.

A masks dict ``{layer: mask}`` may mix both kinds, one per layer. Applying a mask sets what it
drops to exactly zero (for a node: its whole incoming group, which silences it since every
activation of the suite has ``act(0) = 0``).
"""

from __future__ import annotations

from collections.abc import Mapping

import jax
import jax.numpy as jnp

from sparsebnn.nets import Network, Params, scale_nodes


def is_weight_mask(mask) -> bool:
    """Whether one layer's mask is a weight mask (``{"w", "b"}``) rather than a node mask (a vector)."""
    return isinstance(mask, Mapping)


def split(masks: Mapping) -> tuple[dict, dict]:
    """``(node masks, weight masks)`` of a mixed masks dict."""
    nodes = {k: m for k, m in masks.items() if not is_weight_mask(m)}
    weights = {k: m for k, m in masks.items() if is_weight_mask(m)}
    return nodes, weights


def check_nodes(net: Network, nodes: Mapping) -> None:
    """ValueError unless every node mask names a node-prunable layer of ``net`` and has its shape."""
    for name, m in nodes.items():
        layer = net.layer(name)
        if not layer.prunable:
            raise ValueError(f"layer {name!r} is the output layer: its nodes are never pruned")
        if jnp.shape(m) != (layer.n_nodes,):
            raise ValueError(f"node mask of layer {name!r} must have shape ({layer.n_nodes},); got {jnp.shape(m)}")


def to_weights(net: Network, masks: Mapping, like: Params | None = None) -> Params:
    """Weight masks ``{layer: {"w", "b"}}`` of every layer of ``masks`` (node masks broadcast over their groups).

    With ``like`` (a params pytree) the result is a full bool mask shaped like ``like``: True wherever
    ``masks`` says nothing (other layers, parameters outside layers).
    """
    nodes, weights = split(masks)
    check_nodes(net, nodes)
    shapes = like if like is not None else jax.eval_shape(net.init, jax.random.key(0))
    out = {k: {c: jnp.asarray(m[c], bool) for c in ("w", "b")} for k, m in weights.items()}
    for name, m in nodes.items():
        m = jnp.asarray(m, bool)
        out[name] = {c: jnp.broadcast_to(m, jnp.shape(shapes[name][c])) for c in ("w", "b")}
    if like is None:
        return out
    full = jax.tree_util.tree_map(lambda t: jnp.ones(jnp.shape(t), bool), like)
    return {**full, **out}


def to_nodes(net: Network, keep: Params) -> dict:
    """Node masks of the node-prunable layers from weight masks: a node is kept while any entry of its group is.

    NumPy in, NumPy out (no compilation); JAX arrays work too (inside ``jit``).
    """
    out = {}
    for layer in net.prunable_layers:
        k = keep[layer.name]
        out[layer.name] = k["w"].reshape(-1, layer.n_nodes).any(axis=0) | k["b"]
    return out


def apply(params: Params, masks: Mapping) -> Params:
    """``params`` with everything ``masks`` drops set to zero (node masks scale their groups, weight masks multiply)."""
    nodes, weights = split(masks)
    out = scale_nodes(params, {k: jnp.asarray(m, params[k]["b"].dtype) for k, m in nodes.items()})
    for name, m in weights.items():
        out[name] = {c: out[name][c] * jnp.asarray(m[c], out[name][c].dtype) for c in out[name]}
    return out


__all__ = ["apply", "check_nodes", "is_weight_mask", "split", "to_nodes", "to_weights"]
