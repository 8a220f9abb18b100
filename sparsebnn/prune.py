"""Pruning: importance scores, masks at target sparsities, and masked fine-tuning.

Scores are pytrees shaped like ``params``; a **low score means prune first**.

* ``opd``       s_i = P_ii θ_i², P the posterior precision diagonal (SpaM's optimal posterior damage)
* ``magnitude`` |θ_i|
* ``random``    uniform noise
* ``snip``      |g_i θ_i|, g = ∇_θ of the mean negative log-likelihood on a batch (Lee et al. 2019);
                at a trained network g is only the prior's pull plus the optimiser's residual noise,
                so post hoc SNIP degrades well before magnitude pruning (genuine, not a bug)
* ``grasp``     θ_i (H g)_i, H the Hessian of that loss at temperature T (default 200, as in Wang et
                al. 2020's code). Wang et al. remove the largest −θ ⊙ Hg, i.e. the lowest of this score:
                −2 θ_i (Hg)_i is the first-order change of ‖g‖² when θ_i is removed, so GraSP removes
                the weights whose removal most *increases* the gradient norm (gradient flow at
                initialisation). On a trained network that is what most undoes the fit: applied
                post hoc without fine-tuning, GraSP falls far below random pruning already at 20 %
                (genuine behaviour of the criterion, not a sign error; tests/test_prune.py checks both)
* ``synflow``   θ_i ∂R/∂θ_i with R = 1ᵀ f(1; |θ|) (Tanaka et al. 2020), iterated ``n_iter``
                times with the exponential schedule when a target sparsity is given (data-free;
                with layer norms the network is not linear in |θ| there, as in the original code)

**Unstructured** masks (:func:`weight_mask`) prune the exact number ``round(s · n)`` of lowest
scores globally over all parameters of the network's layers (``w`` and ``b``, output layer
included); parameters outside layers are never pruned. **Structured** masks (:func:`node_mask`)
sum scores over each node's incoming group ``(w[..., j], b[j])`` (``nets.node_groups``) and drop
the ``round(s · n_nodes)`` lowest nodes of every prunable layer (``scope="layer"``) or of all prunable
layers ranked together (``scope="global"``); at least one node of every layer is kept and the
output layer's nodes are never pruned. Node masks are ``{layer: bool (n_nodes,)}``, the form the
compaction module consumes; :func:`sparsebnn.masks.to_weights` turns them into weight masks.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from functools import partial

import jax
import jax.numpy as jnp
import numpy as np

from sparsebnn.data import as_training
from sparsebnn.infer import LaplacePosterior, map_train, posterior_precision
from sparsebnn.likelihood import Likelihood
from sparsebnn.nets import Network, Params, node_groups

SPARSITIES = (0.2, 0.4, 0.6, 0.7, 0.8, 0.9, 0.95, 0.99)
CRITERIA = ("opd", "magnitude", "random", "snip", "grasp", "synflow")


# ----------------------------------------------------------------------------- scores


def opd(params: Params, post_precision: Params) -> Params:
    """Optimal posterior damage ``P_ii θ_i²`` (``post_precision``: the diagonal of H + P, like params)."""
    _same_tree(post_precision, params, "post_precision")
    return jax.tree.map(lambda p, t: p * t**2, post_precision, params)


def magnitude(params: Params) -> Params:
    """``|θ_i|``."""
    return jax.tree.map(jnp.abs, params)


def random(key: jax.Array, params: Params) -> Params:
    """Uniform(0, 1) scores: a random ranking."""
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(key, len(leaves))
    return jax.tree.unflatten(tree, [jax.random.uniform(k, t.shape, t.dtype) for k, t in zip(keys, leaves)])


def _nll(net, lik, temperature, params, x, y):
    f = net.apply(params, x)
    return -jnp.mean(lik.log_prob(f / temperature if lik.kind == "categorical" else f, y))


@partial(jax.jit, static_argnames=("net", "lik"))
def _snip(net, lik, params, x, y):
    g = jax.grad(partial(_nll, net, lik, 1.0))(params, x, y)
    return jax.tree.map(lambda gi, t: jnp.abs(gi * t), g, params)


@partial(jax.jit, static_argnames=("net", "lik", "temperature"))
def _grasp(net, lik, temperature, params, x, y):
    loss = partial(_nll, net, lik, temperature)
    g = jax.lax.stop_gradient(jax.grad(loss)(params, x, y))
    hg = jax.jvp(lambda p: jax.grad(loss)(p, x, y), (params,), (g,))[1]
    return jax.tree.map(jnp.multiply, params, hg)


def snip(net: Network, params: Params, data, likelihood: Likelihood | str | None = None) -> Params:
    """SNIP ``|g ⊙ θ|`` with ``g = ∇_θ`` of the mean negative log-likelihood on ``data = (x, y)``."""
    tr = as_training(data, net, likelihood)
    return _snip(net, tr.likelihood, params, jnp.asarray(tr.x), jnp.asarray(tr.y))


def grasp(
    net: Network, params: Params, data, likelihood: Likelihood | str | None = None, temperature: float = 200.0,
) -> Params:
    """GraSP ``θ ⊙ Hg`` (prune the lowest), ``g`` and ``H`` of the mean NLL of ``data`` with the logits
    divided by ``temperature`` (200 in Wang et al.'s code; regression ignores it)."""
    if not (math.isfinite(temperature) and temperature > 0):
        raise ValueError(f"temperature must be a finite number > 0; got {temperature}")
    tr = as_training(data, net, likelihood)
    return _grasp(net, tr.likelihood, float(temperature), params, jnp.asarray(tr.x), jnp.asarray(tr.y))


@partial(jax.jit, static_argnames=("net", "n_iter", "iterative"))
def _synflow(net, params, sparsity, n_iter, iterative):
    flags = _flags(net, params)
    dtype = jax.tree.leaves(params)[0].dtype
    absp = jax.tree.map(jnp.abs, params)
    ones = jnp.ones((1, *net.in_shape), dtype)

    def score(mask):
        p = jax.tree.map(jnp.multiply, absp, mask)
        g = jax.grad(lambda q: jnp.sum(net.apply(q, ones)))(p)
        return jax.tree.map(lambda gi, pi, m: jnp.where(m > 0, gi * pi, -jnp.inf), g, p, mask)

    mask = jax.tree.map(jnp.ones_like, params)
    if not iterative:
        return score(mask)

    def body(k, carry):
        mask, _ = carry
        s = score(mask)
        target = jnp.where(k + 1 == n_iter, sparsity, 1.0 - (1.0 - sparsity) ** ((k + 1) / n_iter))
        return jax.tree.map(lambda m: m.astype(dtype), _weight_mask(flags, s, target)), s

    return jax.lax.fori_loop(0, n_iter, body, (mask, score(mask)))[1]


def synflow(net: Network, params: Params, sparsity: float | None = None, n_iter: int = 100) -> Params:
    """SynFlow scores. With a target ``sparsity``: ``n_iter`` rounds of pruning to
    ``1 − (1 − s)^(k/n_iter)``, returning the last round's scores with earlier-pruned entries at ``−inf``
    (so ``weight_mask(scores, sparsity)`` is the iterative SynFlow mask). Without: one-shot scores
    (use these for structured masks).
    """
    if int(n_iter) < 1:
        raise ValueError(f"n_iter must be >= 1; got {n_iter}")
    if sparsity is not None:
        _check_sparsity(sparsity)
    return _synflow(net, params, 0.0 if sparsity is None else float(sparsity), int(n_iter), sparsity is not None)


def scores(
    criterion: str,
    net: Network,
    params: Params,
    *,
    posterior: LaplacePosterior | None = None,
    data=None,
    likelihood: Likelihood | str | None = None,
    key: jax.Array | None = None,
    sparsity: float | None = None,
) -> Params:
    """Scores by name (:data:`CRITERIA`): ``opd`` needs ``posterior`` (its MAP must be ``params``),
    ``snip``/``grasp`` need ``data = (x, y)``, ``random`` needs ``key``; ``synflow`` iterates to ``sparsity`` if given."""
    if criterion not in CRITERIA:
        raise ValueError(f"criterion must be one of {CRITERIA}; got {criterion!r}")
    if criterion == "opd":
        if posterior is None:
            raise ValueError("criterion 'opd' needs posterior= (a LaplacePosterior)")
        return opd(params, posterior_precision(posterior))
    if criterion == "magnitude":
        return magnitude(params)
    if criterion == "random":
        if key is None:
            raise ValueError("criterion 'random' needs key=")
        return random(key, params)
    if criterion in ("snip", "grasp"):
        if data is None:
            raise ValueError(f"criterion {criterion!r} needs data=(x, y)")
        fn = snip if criterion == "snip" else grasp
        return fn(net, params, data, likelihood)
    return synflow(net, params, sparsity)


# ----------------------------------------------------------------------------- masks


def _flags(net: Network, params: Params) -> tuple[bool, ...]:
    """Per leaf of ``params`` (tree order): True for the ``w``/``b`` of the network's layers."""
    names = {l.name for l in net.layers}
    return tuple(jax.tree.leaves({k: jax.tree.map(lambda _: k in names, sub) for k, sub in params.items()}))


def _same_tree(tree, params, what):
    if jax.tree.structure(tree) != jax.tree.structure(params) or any(
        jnp.shape(a) != jnp.shape(b) for a, b in zip(jax.tree.leaves(tree), jax.tree.leaves(params))
    ):
        raise ValueError(f"{what} must be a pytree shaped like params")


def _check_sparsity(sparsity):
    if not (isinstance(sparsity, (int, float, np.floating)) and 0.0 <= sparsity < 1.0):
        raise ValueError(f"sparsity must be a number in [0, 1); got {sparsity!r}")


def _check_scores(scores_, params=None):
    leaves = jax.tree.leaves(scores_)
    if any(bool(jnp.any(jnp.isnan(s))) for s in leaves):
        raise ValueError("scores contain NaN")
    if params is not None:
        _same_tree(scores_, params, "scores")


@partial(jax.jit, static_argnames=("flags",))
def _weight_mask(flags: tuple[bool, ...], scores_: Params, sparsity) -> Params:
    """Global lowest-``round(s·n)`` mask over the leaves flagged prunable (ties broken by position)."""
    leaves, tree = jax.tree.flatten(scores_)
    flat = jnp.concatenate([s.ravel() for s, f in zip(leaves, flags) if f])
    n = flat.size
    k = jnp.round(sparsity * n).astype(jnp.int32)
    rank = jnp.zeros(n, jnp.int32).at[jnp.argsort(flat, stable=True)].set(jnp.arange(n, dtype=jnp.int32))
    keep = rank >= k
    out, start = [], 0
    for s, f in zip(leaves, flags):
        if f:
            out.append(keep[start : start + s.size].reshape(s.shape))
            start += s.size
        else:
            out.append(jnp.ones(s.shape, bool))
    return jax.tree.unflatten(tree, out)


def weight_mask(net: Network, scores_: Params, sparsity: float) -> Params:
    """Unstructured mask (bool, like params): prune exactly ``round(sparsity · n)`` lowest scores of the layers' parameters."""
    _check_sparsity(sparsity)
    _check_scores(scores_)
    return _weight_mask(_flags(net, scores_), scores_, float(sparsity))


SCOPES = ("layer", "global")


def node_mask(net: Network, scores_: Params, sparsity: float, scope: str = "layer") -> dict[str, jax.Array]:
    """Structured mask ``{layer: bool (n_nodes,)}`` from the summed group scores ``g_j = Σ_{i ∈ group j} s_i``.

    ``scope="layer"``: per prunable layer drop the ``round(s · n_l)`` nodes (at most ``n_l − 1``) with the
    lowest ``g``. ``scope="global"``: rank the nodes of all prunable layers together and drop the
    ``round(s · Σ n_l)`` lowest, the best node of every layer excepted (an empty layer makes the network a
    constant; OPD group scores are second-order loss increases, comparable across layers).
    """
    _check_sparsity(sparsity)
    _check_scores(scores_)
    if scope not in SCOPES:
        raise ValueError(f"scope must be one of {SCOPES}; got {scope!r}")
    groups = {}
    for layer in net.prunable_layers:
        g = node_groups(scores_, layer).sum(axis=1)
        if bool(jnp.any(jnp.isinf(g))):
            raise ValueError(f"layer {layer.name!r}: infinite group scores (use one-shot synflow for structured masks)")
        groups[layer.name] = g
    if scope == "layer":
        return {name: _drop_lowest(g, min(int(round(sparsity * g.size)), g.size - 1)) for name, g in groups.items()}
    if not groups:
        return {}
    protected = [g.at[jnp.argmax(g)].set(jnp.inf) for g in groups.values()]  # each layer's best node stays
    flat = jnp.concatenate(protected)
    keep = _drop_lowest(flat, min(int(round(sparsity * flat.size)), flat.size - len(groups)))
    bounds = np.cumsum([0, *(g.size for g in groups.values())])
    return {name: keep[a:b] for name, a, b in zip(groups, bounds[:-1], bounds[1:])}


def _drop_lowest(g: jax.Array, k: int) -> jax.Array:
    """Bool keep mask of ``g`` without its ``k`` lowest entries (ties by position)."""
    return jnp.ones(g.size, bool).at[jnp.argsort(g, stable=True)[:k]].set(False)


def masks_at(net: Network, scores_: Params, sparsities: Sequence[float] = SPARSITIES, structured: bool = False) -> dict:
    """``{s: mask}`` over a sparsity grid: weight masks, or node masks when ``structured``."""
    fn = node_mask if structured else weight_mask
    return {float(s): fn(net, scores_, s) for s in sparsities}


def apply_mask(params: Params, mask: Params) -> Params:
    """``params`` with masked-out entries set to exactly zero."""
    _same_tree(mask, params, "mask")
    return jax.tree.map(lambda t, m: jnp.where(m, t, jnp.zeros_like(t)), params, mask)


def finetune(
    net: Network,
    params: Params,
    mask: Params,
    train,
    likelihood: Likelihood | str | None = None,
    *,
    epochs: int = 5,
    batch_size: int = 128,
    lr: float = 1e-3,
    prior_prec: float | Params = 0.0,
    seed: int = 0,
) -> Params:
    """Masked Adam fine-tuning after pruning: pruned entries stay exactly zero."""
    _same_tree(mask, params, "mask")
    out, _ = map_train(
        net, params, train, likelihood, prior_prec=prior_prec, epochs=epochs, batch_size=batch_size, lr=lr,
        seed=seed, mask=mask,
    )
    return out
