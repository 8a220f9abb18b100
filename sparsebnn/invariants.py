"""What a BNN posterior identifies: functionals invariant to relabelling hidden nodes, and a canonical node order.

    q = invariant_quantities(model, samples, x, y)   # {name: (chains, draws, k)}: diagnose these
    s = canonical_sites(model, draw, n_data)          # one draw's sites with hidden nodes in canonical order

The likelihood of a network is unchanged when the nodes of a hidden layer are permuted (with the rows
of every parameter that reads them, :attr:`Network.consumers`), and the priors here are exchangeable
over a layer's nodes, so the posterior is invariant under the group of node permutations ``P``:
``p(P θ | y) = p(θ | y)``. Chains in different relabelled copies of a mode disagree on every weight
but agree on every invariant functional ``g(P θ) = g(θ)``; R-hat and ESS are meaningful for those:

* the per-draw log-likelihood ``ℓ(θ) = Σ_i ln p(y_i | x_i, θ)``;
* the predictive, the network output ``f(x; θ)`` at fixed probe inputs;
* the number of active nodes ``Σ_j z_j`` per layer (spike-and-slab priors);
* the sorted incoming norms ``sort_j ‖(W[..., j], b_j)‖₂`` of each hidden layer's effective weights;
* scalar sites (noise sd, per-layer scales), which no permutation touches.

The canonical order sorts each hidden layer's nodes by (effective incoming norm, then raw slab norm)
descending and permutes every site consistently (the layer's columns, per-node sites such as
``"L.z"`` or ``"L.tau"``, the consuming rows of the next layer), so that per-node summaries of
different chains (and of SVI) refer to the same node. Incoming norms do not depend on the order of
the previous layer, so every layer's permutation is read off the original draw.
"""

from __future__ import annotations

from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np
from numpyro.infer.util import log_likelihood as _numpyro_log_likelihood

from sparsebnn import sites
from sparsebnn.nets import Network, Params, consumers, node_groups

N_PROBES = 5


# ----------------------------------------------------------------------------- permutations


def _permute_axis(a: jax.Array, perm: jax.Array, axis: int, inner: int = 1) -> jax.Array:
    """``a`` with the nodes along ``axis`` (laid out ``(outer, n_nodes, inner)``) reordered by ``perm``."""
    n = perm.shape[0]
    shape = a.shape
    size = shape[axis]
    outer = size // (n * inner)
    if outer * n * inner != size:
        raise ValueError(f"axis {axis} of size {size} does not hold {n} nodes × {inner}")
    axis = axis % a.ndim
    b = a.reshape(shape[:axis] + (outer, n, inner) + shape[axis + 1:])
    return jnp.take(b, perm, axis=axis + 1).reshape(shape)


def _readers(net: Network) -> dict[tuple, list]:
    """``{(layer, "w"): [(source layer, slot), ...]}``: which parameter leaves read which layer's nodes."""
    out: dict[tuple, list] = {}
    if not net.prunable_layers:
        return out
    for src, slots in consumers(net).items():
        for s in slots:
            out.setdefault(tuple(s.path), []).append((src, s))
    return out


def permute_params(net: Network, params: Params, perms: Mapping[str, jax.Array]) -> Params:
    """Effective parameters with the nodes of each layer in ``perms`` reordered (``new[j] = old[perm[j]]``).

    The layer's ``w`` (last axis) and ``b`` and every consuming slot are permuted, so
    ``net.apply(permute_params(net, p, perms), x) == net.apply(p, x)``.
    """
    out = jax.tree_util.tree_map(lambda a: a, params)
    for L, perm in perms.items():
        out[L] = {"w": jnp.take(out[L]["w"], perm, axis=-1), "b": jnp.take(out[L]["b"], perm, axis=-1)}
    for path, readers in _readers(net).items():
        for src, slot in readers:
            if src not in perms:
                continue
            leaf = out
            for k in path[:-1]:
                leaf = leaf[k]
            leaf[path[-1]] = _permute_axis(leaf[path[-1]], jnp.asarray(perms[src]), slot.axis, slot.inner)
    return out


def permute_sites(net: Network, values: Mapping[str, jax.Array], perms: Mapping[str, jax.Array]) -> dict:
    """One draw's site values with the nodes of each layer in ``perms`` reordered, consistently with
    :func:`permute_params`: a site ``"L.<name>"`` shaped like ``L``'s weight matrix is permuted like the
    weights (its columns by ``perms[L]``, its consuming axis by the permutation of the layer it reads),
    one shaped ``(n_nodes,)`` (bias, indicator ``z``, per-node scale) like the bias; scalars are kept."""
    layers = {layer.name: layer for layer in net.layers}
    shapes = jax.eval_shape(net.init, jax.random.key(0))
    readers = _readers(net)
    out = {}
    for name, v in values.items():
        v = jnp.asarray(v)
        L = name.split(".", 1)[0] if "." in name else None
        if L not in layers:
            out[name] = v
            continue
        w_shape = tuple(shapes[L]["w"].shape)
        if v.shape == w_shape:
            if L in perms:
                v = jnp.take(v, jnp.asarray(perms[L]), axis=-1)
            for src, slot in readers.get((L, "w"), []):
                if src in perms:
                    v = _permute_axis(v, jnp.asarray(perms[src]), slot.axis, slot.inner)
        elif v.shape == (layers[L].n_nodes,) and L in perms:
            v = jnp.take(v, jnp.asarray(perms[L]), axis=-1)
        out[name] = v
    return out


# ----------------------------------------------------------------------------- invariant functionals


def node_norms(net: Network, params: Params) -> dict[str, jax.Array]:
    """``{layer: (n_nodes,)}`` incoming L2 norms ``‖(W[..., j], b_j)‖₂`` of every hidden (prunable) layer."""
    return {layer.name: jnp.linalg.norm(node_groups(params, layer), axis=1) for layer in net.prunable_layers}


def sorted_node_norms(net: Network, params: Params) -> dict[str, jax.Array]:
    """:func:`node_norms` sorted in decreasing order: invariant to node permutations (and sign flips)."""
    return {k: -jnp.sort(-v) for k, v in node_norms(net, params).items()}


def canonical_perms(net: Network, params: Params, raw: Params | None = None) -> dict[str, jax.Array]:
    """Per hidden layer the permutation sorting its nodes by effective incoming norm, decreasing; ties
    (nodes switched off, norm 0) broken by the norm of ``raw`` (the slab weights before the indicators)."""
    eff = node_norms(net, params)
    tie = node_norms(net, raw) if raw is not None else {k: jnp.zeros_like(v) for k, v in eff.items()}
    return {k: jnp.lexsort((-tie[k], -eff[k])) for k in eff}


def canonical_params(net: Network, params: Params) -> Params:
    """One draw's effective parameters with every hidden layer's nodes in canonical (decreasing-norm) order."""
    return permute_params(net, params, canonical_perms(net, params))


def canonical_sites(model, draw: Mapping[str, jax.Array], n_data: int | None = None) -> dict:
    """One draw of a :class:`~sparsebnn.model.BNN`'s sites with hidden nodes in canonical order
    (:func:`canonical_perms` of its effective parameters, ties by the slab with every indicator on)."""
    params = model.params(draw, n_data)
    on = {k: (jnp.ones_like(v) if sites.indicator_layer(k) is not None else v) for k, v in draw.items()}
    raw = model.params(on, n_data) if any(sites.indicator_layer(k) is not None for k in draw) else None
    return permute_sites(model.net, draw, canonical_perms(model.net, params, raw))


def log_likelihood(model, draws: Mapping[str, jax.Array], x, y) -> jax.Array:
    """``ℓ_s = Σ_i ln p(y_i | x_i, θ_s)`` per draw of ``draws`` (site values with one leading draw axis)."""
    ll = _numpyro_log_likelihood(model, dict(draws), jnp.asarray(x), jnp.asarray(y), batch_ndims=1)["y"]
    return ll.reshape(ll.shape[0], -1).sum(-1)


def active_nodes(draws: Mapping[str, np.ndarray]) -> dict[str, np.ndarray]:
    """``{layer: Σ_j z_j}`` per draw from the indicator sites ``"L.z"`` (leading axes kept)."""
    return {layer: jnp.sum(jnp.asarray(v, jnp.int32), axis=-1) for layer, v in sites.by_layer(dict(draws)).items()}


def probe_inputs(net: Network, x, n: int = N_PROBES) -> np.ndarray:
    """``n`` fixed probe inputs: an even grid over the training range for 1-D inputs, else ``n`` training
    inputs evenly spaced by index."""
    x = np.asarray(x)
    if n < 1 or len(x) < 1:
        raise ValueError(f"need n >= 1 probes and at least one input; got n={n}, {len(x)} inputs")
    if int(np.prod(net.in_shape)) == 1:
        flat = x.reshape(len(x), -1)[:, 0]
        return np.linspace(flat.min(), flat.max(), n, dtype=x.dtype).reshape((n, *net.in_shape))
    return x[np.linspace(0, len(x) - 1, min(n, len(x))).round().astype(int)]


def invariant_quantities(model, samples: Mapping[str, np.ndarray], x, y, probes=None,
                         n_data: int | None = None) -> dict[str, np.ndarray]:
    """Relabelling-invariant functionals of every draw, each ``(chains, draws, k)`` (module docstring):
    ``"log_lik"``, ``"f"`` (outputs at ``probes``, default :func:`probe_inputs`), ``"active.L"``,
    ``"norm.L"`` (sorted) and every scalar site."""
    lead = next(iter(samples.values())).shape[:2]
    flat = {k: jnp.asarray(np.asarray(v).reshape((-1,) + np.shape(v)[2:])) for k, v in samples.items()}
    n_data = len(x) if n_data is None else n_data
    probes = probe_inputs(model.net, x) if probes is None else np.asarray(probes)

    @jax.jit
    def per_draw(s):
        p = model.params(s, n_data)
        return model.net.apply(p, jnp.asarray(probes)).reshape(-1), sorted_node_norms(model.net, p)

    f, norms = jax.lax.map(per_draw, flat, batch_size=256)
    out = {"log_lik": np.asarray(log_likelihood(model, flat, x, y))[:, None], "f": np.asarray(f)}
    out.update({f"active.{k}": np.asarray(v)[:, None] for k, v in active_nodes(flat).items()})
    out.update({f"norm.{k}": np.asarray(v) for k, v in norms.items()})
    out.update({k: np.asarray(v)[:, None] for k, v in flat.items() if v.ndim == 1})
    return {k: np.asarray(v, np.float64).reshape(lead + (-1,)) for k, v in out.items()}


__all__ = ["active_nodes", "canonical_params", "canonical_perms", "canonical_sites", "invariant_quantities",
           "log_likelihood", "node_norms", "permute_params", "permute_sites", "probe_inputs", "sorted_node_norms"]
