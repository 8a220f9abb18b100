"""Layer taps: the inputs and output-gradients of each layer's dense or conv op, for any ``Network``.

Kronecker-factored curvature needs, per layer, the op's input rows ``a`` (dense inputs, conv
patches) and the gradients ``g`` of the outputs w.r.t. the op's output ``s = op(a, W)``. A
``Network`` only exposes ``apply(params, x)``, so we trace it to a jaxpr, find the one
``dot_general`` or ``conv_general_dilated`` that consumes ``params[layer]["w"]`` (through
``jit`` calls and dtype conversions), and re-evaluate the jaxpr recording that op's other
operand and adding a zero *probe* to its output: the gradient w.r.t. the probe is ``g``
(the idea of kfac-jax's automatic layer registration).

Requirements (checked per layer; :func:`tapped_apply` reports the layers that fail and why): the
weight leaf feeds exactly one such op directly, its output nodes are its last axis, and every
other axis is contracted (dense) or it is the kernel of an ungrouped convolution with the
output-feature axis last (HWIO-like). The bias ``params[layer]["b"]`` is assumed to be added to
that op's output (the ``nets`` convention for layers of kind ``"dense"`` and ``"conv"``).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from jax.extend.core import ClosedJaxpr, Literal

class Untappable(ValueError):
    """A layer's weight is not used by exactly one plain dense or conv op (KFAC cannot handle it)."""


_PASS = ("convert_element_type", "copy", "copy_p", "optimization_barrier")
# call primitives -> the param holding the inner jaxpr (custom_jvp_call: the conv of sparsebnn.nets)
_CALLS = {"jit": "jaxpr", "pjit": "jaxpr", "closed_call": "call_jaxpr", "core_call": "call_jaxpr", "remat": "jaxpr",
          "remat2": "jaxpr", "checkpoint": "jaxpr", "custom_jvp_call": "call_jaxpr"}


class Tap(NamedTuple):
    """Where a layer's weight is used: the op, its parameters and which operand is the weight."""

    kind: str  # "dense" (dot_general) | "conv" (conv_general_dilated)
    eqn_params: dict
    w_index: int  # operand position of the weight
    w_shape: tuple[int, ...]
    out_shape: tuple[int, ...]
    node_axis: int  # axis of the op's output that indexes the layer's nodes
    batch_axis: int | None  # conv: the output's example axis (rows are grouped per example); dense: None


def _weight_paths(params: dict, layer_names) -> dict[int, str]:
    """Flat-leaf index (in ``tree_flatten((params, x))`` order) of each layer's ``w``."""
    leaves = jax.tree_util.tree_flatten_with_path((params, 0))[0]
    out = {}
    for i, (path, _) in enumerate(leaves):
        keys = [getattr(k, "key", getattr(k, "idx", None)) for k in path]
        if len(keys) == 3 and keys[0] == 0 and keys[1] in layer_names and keys[2] == "w":
            out[i] = keys[1]
    missing = set(layer_names) - set(out.values())
    if missing:
        raise ValueError(f"params has no 'w' leaf for layer(s) {sorted(missing)}")
    return out


def _check_tap(layer: str, eqn, w_index: int) -> Tap:
    prim = eqn.primitive.name
    w_aval = eqn.invars[w_index].aval
    out_shape = tuple(eqn.outvars[0].aval.shape)
    nd = len(w_aval.shape)
    if prim == "dot_general":
        (lc, rc), (lb, rb) = eqn.params["dimension_numbers"]
        wc, wb = (lc, lb) if w_index == 0 else (rc, rb)
        if len(wb) or sorted(wc) != list(range(nd - 1)):
            raise Untappable(
                f"layer {layer!r}: KFAC needs its weight to contract every axis but the last (output nodes) "
                f"in a plain matmul; got contracting axes {tuple(wc)}, batch axes {tuple(wb)} of a weight of "
                f"shape {tuple(w_aval.shape)}"
            )
        n_batch = len(lb)
        n_free_lhs = len(eqn.invars[0].aval.shape) - len(lc) - n_batch
        node_axis = n_batch if w_index == 0 else n_batch + n_free_lhs
        return Tap("dense", dict(eqn.params), w_index, tuple(w_aval.shape), out_shape, node_axis, None)
    dn = eqn.params["dimension_numbers"]
    if w_index != 1 or dn.rhs_spec[0] != nd - 1:
        raise Untappable(f"layer {layer!r}: KFAC needs a conv kernel with output features on its last axis")
    if eqn.params["feature_group_count"] != 1 or eqn.params["batch_group_count"] != 1:
        raise Untappable(f"layer {layer!r}: KFAC does not support grouped/depthwise convolutions")
    return Tap("conv", dict(eqn.params), 1, tuple(w_aval.shape), out_shape, dn.out_spec[1], dn.out_spec[0])


def _eval(jaxpr, consts, args, tags: dict, probes, taps: dict, acts: dict, bad: dict) -> list:
    """Evaluate ``jaxpr``; ``tags`` maps vars holding a layer weight to the layer name.

    Taps found go to ``taps``/``acts``; layers whose weight is used any other way go to ``bad``
    (with the reason) and are evaluated untouched.
    """
    env: dict[Any, Any] = {}

    def read(v):
        return v.val if isinstance(v, Literal) else env[v]

    def bind(eqn, invals):
        with eqn.ctx.manager:
            return eqn.primitive.bind(*invals, **eqn.primitive.get_bind_params(eqn.params))

    for v, val in zip(jaxpr.constvars, consts):
        env[v] = val
    for v, val in zip(jaxpr.invars, args):
        env[v] = val
    for eqn in jaxpr.eqns:
        tagged = [(i, tags[v]) for i, v in enumerate(eqn.invars) if not isinstance(v, Literal) and v in tags]
        invals = [read(v) for v in eqn.invars]
        prim = eqn.primitive.name
        if not tagged:
            ans = bind(eqn, invals)
        elif prim in ("dot_general", "conv_general_dilated") and len(tagged) == 1:
            w_index, layer = tagged[0]
            ans = bind(eqn, invals)
            if layer in taps:
                bad[layer] = "its weight feeds more than one op"
            else:
                try:
                    taps[layer] = _check_tap(layer, eqn, w_index)
                    acts[layer] = invals[1 - w_index]
                except Untappable as e:
                    bad[layer] = str(e)
            if probes is not None and layer in probes:
                ans = ans + probes[layer]
        elif prim in _PASS and len(eqn.invars) == 1:
            ans = bind(eqn, invals)
            tags[eqn.outvars[0]] = tagged[0][1]
        elif prim in _CALLS:
            inner = eqn.params[_CALLS[prim]]
            inner_jaxpr, inner_consts = (inner.jaxpr, inner.consts) if isinstance(inner, ClosedJaxpr) else (inner, ())
            inner_tags = {inner_jaxpr.invars[i]: layer for i, layer in tagged}
            ans = _eval(inner_jaxpr, inner_consts, invals, inner_tags, probes, taps, acts, bad)
        else:
            ans = bind(eqn, invals)
            for _, layer in tagged:
                bad[layer] = f"its weight enters a {prim!r} op"
        if eqn.primitive.multiple_results:
            for v, val in zip(eqn.outvars, ans):
                env[v] = val
        else:
            env[eqn.outvars[0]] = ans
    return [read(v) for v in jaxpr.outvars]


def trace(apply, params: dict, x: jax.Array, layer_names) -> tuple[ClosedJaxpr, dict[int, str]]:
    """The jaxpr of ``apply(params, x)`` and the flat-input positions of the layers' weights."""
    spec = jax.tree.map(lambda a: jax.ShapeDtypeStruct(jnp.shape(a), jnp.result_type(a)), (params, x))
    return jax.make_jaxpr(apply)(*spec), _weight_paths(params, tuple(layer_names))


def tapped_apply(apply, params: dict, x: jax.Array, layer_names, probes: dict | None = None, strict: bool = False):
    """``(outputs, acts, taps, bad)``: ``apply(params, x)`` with ``probes[l]`` added to layer ``l``'s op output.

    ``taps[l]`` is the static :class:`Tap` of each tappable layer and ``acts[l]`` its op's
    non-weight operand; ``bad[l]`` says why a listed layer cannot be tapped (``strict``: raise
    :class:`Untappable` instead).
    """
    closed, wpos = trace(apply, params, x, layer_names)
    flat = jax.tree_util.tree_leaves((params, x))
    tags = {closed.jaxpr.invars[i]: name for i, name in wpos.items()}
    taps: dict[str, Tap] = {}
    acts: dict[str, jax.Array] = {}
    bad: dict[str, str] = {}
    (out,) = _eval(closed.jaxpr, closed.consts, flat, tags, probes, taps, acts, bad)
    for name in layer_names:
        if name not in taps and name not in bad:
            bad[name] = "its weight is not used by any dense or conv op"
    for name in bad:
        taps.pop(name, None)
        acts.pop(name, None)
    if strict and bad:
        raise Untappable("; ".join(f"layer {k!r}: {v}" for k, v in bad.items()))
    return out, acts, taps, bad


def input_rows(tap: Tap, a: jax.Array) -> jax.Array:
    """The op's inputs as ``(rows, fan_in)``, columns ordered like ``w.reshape(-1, n_nodes)``.

    Dense: the free axes of ``a`` (in order) become rows. Conv: the patch seen by each output
    position, rows ordered example-major. Rows match :func:`output_rows` of the op's output.
    """
    p = tap.eqn_params
    if tap.kind == "dense":
        (lc, rc), _ = p["dimension_numbers"]
        ac, wc = (rc, lc) if tap.w_index == 0 else (lc, rc)
        order = [ac[i] for i in np.argsort(wc)]
        free = [d for d in range(a.ndim) if d not in ac]
        return jnp.transpose(a, free + order).reshape(-1, int(np.prod(tap.w_shape[:-1])))
    dn = p["dimension_numbers"]
    spatial = [tap.w_shape[d] for d in dn.rhs_spec[2:]]
    patches = jax.lax.conv_general_dilated_patches(
        a, spatial, p["window_strides"], p["padding"], p["lhs_dilation"], p["rhs_dilation"], dn,
    )
    patches = jnp.moveaxis(patches, (dn.out_spec[0], dn.out_spec[1]), (0, -1))
    rows = patches.reshape(-1, a.shape[dn.lhs_spec[1]], *spatial)  # features ordered (in-channel, *spatial)
    w_axes = [dn.rhs_spec[1], *dn.rhs_spec[2:]]  # weight axis of each feature dimension
    rows = jnp.transpose(rows, [0] + [1 + i for i in np.argsort(w_axes)])
    return rows.reshape(rows.shape[0], -1)


def output_rows(tap: Tap, s: jax.Array) -> jax.Array:
    """An array shaped like the op's output as ``(rows, n_nodes)`` (nodes last; conv: example axis first)."""
    if tap.batch_axis is None:
        s = jnp.moveaxis(s, tap.node_axis, -1)
    else:
        s = jnp.moveaxis(s, (tap.batch_axis, tap.node_axis), (0, -1))
    return s.reshape(-1, s.shape[-1])


def rows_per_example(tap: Tap, a_shape: tuple[int, ...], n_examples: int) -> int:
    """Rows (positions) per example; raises :class:`Untappable` if rows are not grouped by example."""
    t, r = divmod(int(np.prod(tap.out_shape)) // tap.out_shape[tap.node_axis], n_examples)
    if r:
        raise Untappable(f"op output {tap.out_shape} does not split into {n_examples} examples")
    if t > 1 and tap.kind == "dense":
        (lc, rc), _ = tap.eqn_params["dimension_numbers"]
        ac = rc if tap.w_index == 0 else lc
        if 0 in ac or a_shape[0] != n_examples:
            raise Untappable("dense op with positions whose input's first axis is not the example axis")
    return t
