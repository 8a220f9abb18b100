"""Compaction: turn node masks into a smaller dense network, and measure what that buys.

Node masks are ``dict[layer_name, bool array (n_nodes,)]`` (True = keep) over prunable layers.
``compact(net, params, masks)`` drops every pruned node's incoming group (``w[..., j]``, ``b[j]``)
and every parameter entry that reads node ``j`` (the next layer's input rows or channels, the
flattened columns ``p·C + j`` after a conv → dense flatten, a head's value rows of an attention
output projection), as listed by the network's wiring (:func:`sparsebnn.nets.consumers`). Since
every activation has ``act(0) = 0``, the result computes exactly what the masked network
``net.apply(nets.scale_nodes(params, masks), x)`` computes, with fewer parameters and FLOPs.

Layers with ``prunable=False`` cannot be compacted (the output layer, and layers whose channels
are tied by residual additions: ResNet ``stem``/``block{k}_b``, ViT/Mixer residual-stream
projections); masks for them raise a ValueError.

**FLOPs** (:func:`flops`) are counted per example as 2 × the multiply–accumulates of every
matrix product and convolution in the forward pass (dense and conv layers, attention scores and
attention-weighted values, token mixing), read off the traced program: a dot product of length
``k`` costs ``2k``; a k×k conv with ``c_in`` input channels costs ``2·k²·c_in`` per output element.
Bias adds, activations, normalisation, pooling and softmax are not counted.
"""

from __future__ import annotations

import functools
import math
import time
from collections.abc import Mapping, Sequence

import jax
import jax.numpy as jnp
import numpy as np

from . import nets
from .nets import Network, Params


def _keep_indices(net: Network, masks: Mapping) -> dict[str, np.ndarray]:
    """Validate masks; return the kept node indices of each masked layer."""
    if not isinstance(masks, Mapping):
        raise ValueError(f"masks must be a dict of layer name -> bool array; got {type(masks).__name__}")
    wiring = nets.consumers(net)
    keep = {}
    for name, mask in masks.items():
        layer = net.layer(name)
        if not layer.prunable:
            raise ValueError(
                f"masks[{name!r}]: layer {name!r} of {net.name!r} is not prunable (the output layer, or channels tied by a "
                f"residual connection) and cannot be compacted; prunable layers: {[l.name for l in net.prunable_layers]}"
            )
        if name not in wiring:
            raise ValueError(f"masks[{name!r}]: the wiring of {net.name!r} does not say which parameters read layer {name!r}")
        try:
            mask = np.asarray(mask)
        except jax.errors.TracerArrayConversionError:
            raise ValueError(
                f"masks[{name!r}] is traced; compaction changes shapes, so call it outside jit/vmap with concrete masks"
            ) from None
        if mask.dtype != np.bool_ or mask.shape != (layer.n_nodes,):
            raise ValueError(
                f"masks[{name!r}] must be a bool array of shape ({layer.n_nodes},); got {mask.dtype} {mask.shape}"
            )
        keep[name] = np.flatnonzero(mask)
    return keep


def _take(leaf, idx: np.ndarray, n: int, axis: int, inner: int, where: str):
    """Keep nodes ``idx`` along ``axis`` of ``leaf``, whose entries there are laid out (outer, n, inner).

    Concrete arrays are cut on the host with NumPy (compaction is a one-off); traced ones with jax.numpy.
    """
    xp = jnp if isinstance(leaf, jax.core.Tracer) else np
    leaf = leaf if xp is jnp else np.asarray(leaf)
    shape = leaf.shape
    axis = axis % leaf.ndim
    size = shape[axis]
    if (n == 0 and size) or (n and size % (n * inner)):
        raise ValueError(f"{where}: axis of size {size} does not hold {n} nodes × {inner}; params do not match the network")
    outer = size // (n * inner) if n else 0
    grouped = leaf.reshape(*shape[:axis], outer, n, inner, *shape[axis + 1 :])
    kept = xp.take(grouped, idx, axis=axis + 1)
    return kept.reshape(*shape[:axis], outer * len(idx) * inner, *shape[axis + 1 :])


def _shrink(net: Network, params: Params, keep: dict[str, np.ndarray]) -> Params:
    wiring = nets.consumers(net)
    out = jax.tree_util.tree_map(lambda x: x, params)  # fresh containers, shared leaves
    for name, idx in keep.items():
        n = net.layer(name).n_nodes
        for leaf in ("w", "b"):
            out[name][leaf] = _take(out[name][leaf], idx, n, -1, 1, f"params[{name!r}][{leaf!r}]")
        for slot in wiring[name]:
            node = out
            for key in slot.path[:-1]:
                node = node[key]
            where = "params" + "".join(f"[{k!r}]" for k in slot.path)
            node[slot.path[-1]] = _take(node[slot.path[-1]], idx, n, slot.axis, slot.inner, where)
    return jax.tree_util.tree_map(jnp.asarray, out)


def _check_params(net: Network, params: Params) -> None:
    if not isinstance(params, Mapping):
        raise ValueError(f"params must be a dict pytree (nets.base contract); got {type(params).__name__}")
    for layer in net.layers:
        if not isinstance(params.get(layer.name), Mapping) or not {"w", "b"} <= set(params[layer.name]):
            raise ValueError(f"params has no {{'w', 'b'}} entry for layer {layer.name!r} of {net.name!r}")
        w, b = params[layer.name]["w"], params[layer.name]["b"]
        if w.shape[-1] != layer.n_nodes or b.shape[-1] != layer.n_nodes:
            raise ValueError(
                f"params[{layer.name!r}] has {w.shape[-1]} nodes (w {w.shape}, b {b.shape}); the network has {layer.n_nodes}"
            )


def compact(net: Network, params: Params, masks: Mapping) -> tuple[Network, Params]:
    """The smaller dense network equal to ``net.apply(nets.scale_nodes(params, masks), ·)``.

    ``masks`` maps prunable layer names to bool arrays of shape ``(n_nodes,)`` (True = keep); layers
    not listed keep all their nodes. Masks must be concrete (shapes depend on them), not traced.
    Returns ``(small_net, small_params)``. ``small_net`` shares ``apply`` and the wiring with ``net``
    (every apply reads its sizes from the parameters), lists the narrower layers, and its ``init``
    draws ``net.init`` and keeps the surviving entries. ``params`` may carry leading batch axes
    (stacked posterior samples): all samples share the masks. A layer may lose all its nodes.
    """
    keep = _keep_indices(net, masks)
    _check_params(net, params)
    small_params = _shrink(net, params, keep)
    init = jax.jit(lambda key: _shrink(net, net.init(key), keep))
    shapes = jax.eval_shape(init, jax.random.PRNGKey(0))
    layers = tuple(
        layer._replace(n_nodes=shapes[layer.name]["w"].shape[-1], fan_in=math.prod(shapes[layer.name]["w"].shape[:-1]))
        for layer in net.layers
    )
    return net._replace(init=init, layers=layers), small_params


def _macs(jaxpr) -> int:
    """Multiply–accumulates of every dot_general and conv_general_dilated in a jaxpr (recursively)."""
    total = 0
    for eqn in jaxpr.eqns:
        prim = eqn.primitive.name
        if prim == "dot_general":
            (contract, _), _ = eqn.params["dimension_numbers"]
            lhs = eqn.invars[0].aval.shape
            total += math.prod(eqn.outvars[0].aval.shape) * math.prod(lhs[i] for i in contract)
        elif prim == "conv_general_dilated":
            rhs = eqn.invars[1].aval.shape
            out_feature_dim = eqn.params["dimension_numbers"].rhs_spec[0]
            total += math.prod(eqn.outvars[0].aval.shape) * (math.prod(rhs) // max(rhs[out_feature_dim], 1))
        elif prim == "while":
            raise ValueError("flops: the forward pass contains a while loop, whose trip count is unknown")
        times = eqn.params.get("length", 1) if prim == "scan" else 1
        subs = [_macs(j) for j in _subjaxprs(eqn.params)]
        if subs:
            total += times * (max(subs) if prim == "cond" else sum(subs))
    return total


def _subjaxprs(params: Mapping):
    for value in params.values():
        for v in value if isinstance(value, (tuple, list)) else (value,):
            if hasattr(v, "eqns"):
                yield v
            elif hasattr(getattr(v, "jaxpr", None), "eqns"):
                yield v.jaxpr


def flops(net: Network) -> int:
    """Forward-pass FLOPs per example: 2 × multiply–accumulates of all matrix products and convolutions (module docstring)."""
    shapes = jax.eval_shape(net.init, jax.random.PRNGKey(0))
    x = jax.ShapeDtypeStruct((1, *net.in_shape), jax.tree_util.tree_leaves(shapes)[0].dtype)
    return 2 * _macs(jax.make_jaxpr(net.apply)(shapes, x).jaxpr)


def latency(net: Network, params: Params, batch: jax.Array, repeats: int = 20) -> float:
    """Median wall-clock seconds of one jitted ``net.apply(params, batch)`` over ``repeats`` calls.

    ``batch`` is an input batch ``(batch_size, *net.in_shape)``; compilation and one warm-up call are excluded.

    Each call is timed to ``block_until_ready``, so it includes dispatch and the whole computation.
    """
    return latencies([(net, params)], batch, repeats)[0]


def latencies(models: Sequence[tuple[Network, Params]], batch: jax.Array, repeats: int = 20) -> list[float]:
    """:func:`latency` of several ``(net, params)`` on one ``batch``, their calls interleaved (round-robin), so
    none gains from running after the others (warm caches, clock boost): two identical networks get ratio ≈ 1."""
    if int(repeats) < 1:
        raise ValueError(f"repeats must be >= 1; got {repeats}")
    batch = jnp.asarray(batch)
    calls = [functools.partial(jax.jit(net.apply), params) for net, params in models]
    for call in calls:
        jax.block_until_ready(call(batch))
    times = [[] for _ in calls]
    for _ in range(int(repeats)):
        for call, t in zip(calls, times):
            t0 = time.perf_counter()
            jax.block_until_ready(call(batch))
            t.append(time.perf_counter() - t0)
    return [float(np.median(t)) for t in times]


def compare(net: Network, params: Params, masks: Mapping, batch: jax.Array, repeats: int = 20) -> dict:
    """One tidy row: parameter count, FLOPs and latency of the dense and the compacted network, and their ratios.

    ``max_abs_diff`` is the largest difference between the compacted outputs and the masked dense outputs on ``batch``.
    """
    small_net, small_params = compact(net, params, masks)
    masked = nets.scale_nodes(params, {k: jnp.asarray(v) for k, v in masks.items()})
    diff = jnp.max(jnp.abs(jax.jit(net.apply)(masked, batch) - jax.jit(small_net.apply)(small_params, batch)))
    dense_s, compact_s = latencies([(net, params), (small_net, small_params)], batch, repeats)
    row = {
        "params_dense": nets.n_params(params),
        "params_compact": nets.n_params(small_params),
        "flops_dense": flops(net),
        "flops_compact": flops(small_net),
        "latency_dense_s": dense_s,
        "latency_compact_s": compact_s,
        "max_abs_diff": float(diff),
    }
    row["compression"] = row["params_dense"] / max(row["params_compact"], 1)
    row["flops_ratio"] = row["flops_compact"] / row["flops_dense"]
    row["latency_ratio"] = row["latency_compact_s"] / row["latency_dense_s"]
    return row
