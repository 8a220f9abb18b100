"""The shared description of a network: pure init/apply plus layer and node-group metadata.

Convention (every architecture follows it, every prior, BMR group and pruning criterion reads it):

* ``params`` is a dict pytree. A *prunable layer* named ``layer.name`` owns
  ``params[layer.name] = {"w": W, "b": b}`` where the **last axis of both indexes the layer's
  output nodes** (units, conv filters). Dense: ``W.shape == (fan_in, n_nodes)``;
  conv (HWIO): ``W.shape == (kh, kw, c_in, n_nodes)``.
* The incoming group of node ``j`` is ``(W[..., j], b[j])``: ``fan_in + 1`` numbers.
  Multiplying a node's group by an indicator ``z_j`` (or zeroing it) switches the node off,
  because every activation used satisfies ``act(0) = 0``.
* Parameters that belong to no layer (layer norms, embeddings, ...) sit elsewhere in ``params``;
  priors treat them as plain Gaussian weights.
* ``layer.prunable`` is False for the output layer: its nodes are the classes / targets.
* ``net.consumers`` (the *wiring*) says which parameters read each prunable layer's nodes, so
  that compaction can drop a pruned node's outgoing entries too (see :class:`Slot`).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Callable, NamedTuple

import jax
import jax.numpy as jnp

Params = dict[str, Any]

ACTIVATIONS: dict[str, Callable] = {
    "relu": jax.nn.relu,
    "tanh": jnp.tanh,
    "gelu": jax.nn.gelu,
    "silu": jax.nn.silu,
    "leaky_relu": jax.nn.leaky_relu,
    "elu": jax.nn.elu,
}


def activation(name: str) -> Callable:
    """Look up an activation by name (all satisfy act(0) = 0, so a zeroed node stays silent)."""
    try:
        return ACTIVATIONS[name]
    except KeyError:
        raise ValueError(f"unknown activation {name!r}; choose one of {sorted(ACTIVATIONS)}") from None


class Layer(NamedTuple):
    """A prunable layer: ``params[name] = {"w", "b"}`` with output nodes on the last axis."""

    name: str
    kind: str  # "dense" | "conv"
    fan_in: int  # incoming weights per node, bias excluded
    n_nodes: int
    prunable: bool = True  # node-prunable; False for the output layer


class Slot(NamedTuple):
    """Axis ``axis`` (negative) of the leaf at key path ``path`` reads a layer's nodes.

    Along that axis the entries are laid out as ``(outer, n_nodes, inner)`` in C order:
    dense → dense and conv → conv have ``outer = inner = 1``; conv → flatten → dense has
    ``outer`` = spatial positions; attention heads → output projection has ``inner`` = head dim.
    Negative axes make the same slots work on parameters with leading sample axes.
    """

    path: tuple[str, ...]
    axis: int = -2
    inner: int = 1


Consumers = Mapping[str, tuple[Slot, ...]]


class Network(NamedTuple):
    """A pure-function network.

    ``init(key) -> params``; ``apply(params, x) -> outputs`` on a batch ``x`` of shape
    ``(batch, *in_shape)``, returning ``(batch, out_dim)`` (logits or regression means).
    ``consumers`` pairs each prunable layer with the slots that read its nodes (attach with
    :func:`sparsebnn.nets.wire`, read with :func:`sparsebnn.nets.consumers`); a tuple so that the
    network stays hashable (usable as a static argument of ``jax.jit``).
    """

    name: str
    init: Callable[[jax.Array], Params]
    apply: Callable[[Params, jax.Array], jax.Array]
    layers: tuple[Layer, ...]
    in_shape: tuple[int, ...]
    out_dim: int
    consumers: tuple[tuple[str, tuple[Slot, ...]], ...] = ()

    def layer(self, name: str) -> Layer:
        for layer in self.layers:
            if layer.name == name:
                return layer
        raise ValueError(f"network {self.name!r} has no layer {name!r}; layers: {[l.name for l in self.layers]}")

    @property
    def prunable_layers(self) -> tuple[Layer, ...]:
        return tuple(layer for layer in self.layers if layer.prunable)


def node_groups(params: Params, layer: Layer) -> jax.Array:
    """The incoming groups of a layer's nodes as a ``(n_nodes, fan_in + 1)`` matrix (weights, then bias)."""
    p = params[layer.name]
    w = p["w"].reshape(-1, layer.n_nodes)
    return jnp.concatenate([w, p["b"][None, :]], axis=0).T


def scale_nodes(params: Params, layer_scales: dict[str, jax.Array]) -> Params:
    """Multiply each listed layer's node groups by a per-node factor (``(n_nodes,)``, broadcast over the last axis).

    With 0/1 factors this applies node masks; with relaxed indicators it is the spike-and-slab product z_j w_j.
    """
    out = dict(params)
    for name, s in layer_scales.items():
        out[name] = {"w": params[name]["w"] * s, "b": params[name]["b"] * s}
    return out


def n_params(params: Params) -> int:
    """Total number of scalar parameters in a pytree."""
    return int(sum(x.size for x in jax.tree_util.tree_leaves(params)))
