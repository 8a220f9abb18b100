r"""Bayesian model reduction of a network's Gaussian posterior: one-shot (post-hoc) and iterative.

Both act on a mean-field Gaussian over the weights and biases of the network's layers,
:class:`GaussianFactors` ``(mean, var, prior_var)`` shaped ``{layer: {"w", "b"}}``, where
``prior_var`` is the full model's prior variance of each coordinate and **0 marks a coordinate
already at the spike** (fixed at 0). For every coordinate still free, ΔF of moving it to the spike
is the Savage–Dickey ratio (DESIGN.md §1, :func:`sparsebnn.bmr.delta_f`)

    ΔF_i = ln q_i(0) − ln p_i(0) = −½ ln(s_i² / s0_i²) − μ_i² / (2 s_i²),

and a node's (filter's) ΔF is the sum over its incoming group ``(w[..., j], b[j])``
(:func:`sparsebnn.bmr.node_delta_f`; exact under mean field). :func:`reduce` applies a rule

* ``"threshold"``: prune where ΔF > ``margin``;
* ``"beta_bernoulli"``: per layer, keep where ΔF ≤ ζ with ζ from the Beta–Bernoulli iteration
  (:func:`sparsebnn.bmr.beta_bernoulli_zeta_spiked`: coordinates already at the spike count as pruned),

``level="weight"`` to every coordinate of every layer but the output layer (``net.layers[-1]``),
or ``level="node"`` to the nodes of every node-prunable layer (``layer.prunable``). Pruning is never
undone. The reduced posterior is exact under mean field: pruned coordinates become ``N(0, 0)``, the
rest keep their factor (:func:`sparsebnn.bmr.reduced_posterior`).

:func:`gaussian_factors` reads the factors off any Gaussian posterior of the suite: mean-field SVI
(:class:`~sparsebnn.infer.SVIPosterior`), the Gaussian fitted to NUTS draws
(:class:`~sparsebnn.infer.NUTSPosterior`) and the Laplace approximation
(:class:`~sparsebnn.infer.LaplacePosterior`, diagonal of ``(H + P_h)⁻¹``, prior ``1/P_h``).
For non-centred priors (the horseshoe) the coordinates are the ``ε`` of ``w = scale · ε`` with
prior ``N(0, 1)``: ``ε = 0`` exactly when ``w = 0``.

:func:`stochastic_bmr` is iterative ("stochastic") BMR (Marković et al. 2023): mean-field SVI
under a Gaussian prior for ``warmup_steps``, then ``rounds`` of {prune with :func:`reduce` → the
pruned weights' prior becomes the spike (variance 0: weight fixed at 0) → ``steps_per_round``
more SVI steps, optimiser state kept}, recording accuracy, NLL, ECE and the pruned fraction on a
test set after every round. The spike mask is a runtime argument of one compiled training step, so
the whole schedule compiles once.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from collections.abc import Mapping
from functools import partial
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from numpyro.infer import TraceMeanField_ELBO
from tqdm.auto import tqdm

from sparsebnn import bmr, metrics
from sparsebnn.infer.guides import MeanFieldGuide
from sparsebnn.infer.svi import SVIPosterior, SVIState, fixed_prior_variances, training_chunk
from sparsebnn.model import BNN
from sparsebnn.nets.base import Network, Params, node_groups
from sparsebnn.priors import Gaussian, Prior, param_shapes

RULES = ("threshold", "beta_bernoulli")
LEVELS = ("weight", "node")

__all__ = [
    "LEVELS", "RULES", "GaussianFactors", "Reduction", "StochasticBMR", "gaussian_factors", "node_alive",
    "pruned_fraction", "reduce", "stochastic_bmr",
]


class GaussianFactors(NamedTuple):
    """A mean-field Gaussian posterior ``N(mean, var)`` and its prior ``N(0, prior_var)`` (0 = at the spike).

    Each field is ``{layer: {"w", "b"}}`` over the network's layers (shapes of their params).
    """

    mean: Params
    var: Params
    prior_var: Params


class Reduction(NamedTuple):
    """The result of :func:`reduce`.

    ``keep``: ``{layer: {"w", "b"}}`` bool, False at the spike (old and new); ``node_keep``:
    ``{layer: (n_nodes,) bool}`` of the node-prunable layers, a node being alive while any entry of
    its incoming group is kept; ``delta_f``: per-coordinate ΔF of moving to the spike (0 where already
    there); ``mean``, ``var``: the reduced posterior (0, 0 at the spike; unchanged elsewhere).
    """

    keep: Params
    node_keep: dict
    delta_f: Params
    mean: Params
    var: Params


# ----------------------------------------------------------------------------- validation


def _concrete(*trees) -> bool:
    return not any(isinstance(x, jax.core.Tracer) for x in jax.tree_util.tree_leaves(trees))


def _check_choice(name: str, value, choices) -> None:
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}; got {value!r}")


@functools.lru_cache(maxsize=64)
def _layer_shapes(net: Network) -> dict:
    shapes = param_shapes(net)
    return {layer.name: {k: tuple(shapes[layer.name][k].shape) for k in ("w", "b")} for layer in net.layers}


def _check_factors(factors: GaussianFactors, net: Network) -> None:
    """Structure and shapes always; values (finite, var > 0, prior_var >= 0) when called eagerly."""
    if not isinstance(factors, GaussianFactors):
        raise ValueError(f"factors must be a GaussianFactors(mean, var, prior_var); got {type(factors).__name__}")
    want = _layer_shapes(net)
    for field, tree in zip(factors._fields, factors):
        if not isinstance(tree, Mapping) or set(tree) != set(want):
            got = sorted(tree) if isinstance(tree, Mapping) else type(tree).__name__
            raise ValueError(f"{field} must be a dict over the network's layers {sorted(want)}; got {got}")
        for name, shp in want.items():
            sub = tree[name]
            if not isinstance(sub, Mapping) or set(sub) != {"w", "b"}:
                raise ValueError(f"{field}[{name!r}] must be a dict with keys 'w' and 'b'")
            for k in ("w", "b"):
                if tuple(jnp.shape(sub[k])) != shp[k]:
                    raise ValueError(f"{field}[{name!r}][{k!r}] must have shape {shp[k]}; got {tuple(jnp.shape(sub[k]))}")
    if not _concrete(factors):
        return
    for field, tree in zip(factors._fields, factors):
        for x in jax.tree_util.tree_leaves(tree):
            x = np.asarray(x)
            if not np.all(np.isfinite(x)):
                raise ValueError(f"{field} contains NaN or inf")
            if field == "var" and np.any(x <= 0):
                raise ValueError("var must be > 0 everywhere (a posterior variance)")
            if field == "prior_var" and np.any(x < 0):
                raise ValueError("prior_var must be >= 0 (0 = already at the spike)")


# ----------------------------------------------------------------------------- the reduction


def node_alive(keep: Params, net: Network) -> dict:
    """``{layer: (n_nodes,) bool}`` for the node-prunable layers: any entry of the node's incoming group kept.

    NumPy in, NumPy out (no compilation); JAX arrays work too (inside ``jit``).
    """
    out = {}
    for layer in net.prunable_layers:
        k = keep[layer.name]
        out[layer.name] = k["w"].reshape(-1, layer.n_nodes).any(axis=0) | k["b"]
    return out


def _decide(df, spike, rule: str, margin, n_iter: int):
    """Keep mask of one layer (a pytree of ΔF): never revives a spike."""
    limit = margin if rule == "threshold" else bmr.beta_bernoulli_zeta_spiked(df, spike, n_iter)
    return jax.tree_util.tree_map(lambda d, s: (d <= limit) & ~s, df, spike)


def _spike_delta_f(mean, var, prior_var, spike):
    """:func:`sparsebnn.bmr.spike_delta_f` (Savage–Dickey); 0 where ``spike`` (``prior_var == 0``: already there)."""
    safe = jax.tree_util.tree_map(lambda s, v: jnp.where(s, jnp.ones_like(v), v), spike, prior_var)
    df = bmr.spike_delta_f(mean, var, safe)
    return jax.tree_util.tree_map(lambda s, d: jnp.where(s, jnp.zeros_like(d), d), spike, df)


@partial(jax.jit, static_argnames=("net", "rule", "level", "n_iter"))
def _reduce(mean, var, prior_var, margin, *, net: Network, rule: str, level: str, n_iter: int):
    spike = jax.tree_util.tree_map(lambda v: v == 0, prior_var)
    df = _spike_delta_f(mean, var, prior_var, spike)
    keep = jax.tree_util.tree_map(jnp.logical_not, spike)
    output = net.layers[-1].name
    if level == "weight":
        for layer in net.layers:
            if layer.name != output:
                keep[layer.name] = _decide(df[layer.name], spike[layer.name], rule, margin, n_iter)
    else:
        for layer in net.prunable_layers:
            g = bmr.node_delta_f(df, layer)
            dead = ~jnp.any(node_groups(keep, layer), axis=1)
            node = _decide(g, dead, rule, margin, n_iter)
            keep[layer.name] = {k: keep[layer.name][k] & node for k in ("w", "b")}
    # Mean field: a spike replaces the factor by N(0, 0); every other factor is unchanged (bmr.reduced_posterior).
    red_mean = jax.tree_util.tree_map(lambda k, m: jnp.where(k, m, 0.0), keep, mean)
    red_var = jax.tree_util.tree_map(lambda k, v: jnp.where(k, v, 0.0), keep, var)
    return Reduction(keep, node_alive(keep, net), df, red_mean, red_var)


def reduce(factors: GaussianFactors, net: Network, *, rule: str = "threshold", level: str = "weight",
           margin: float = 0.0, n_iter: int = 4) -> Reduction:
    """One BMR pruning pass over a mean-field Gaussian posterior (module docstring); jit-compatible.

    ``rule``: ``"threshold"`` (prune where ΔF > ``margin``) or ``"beta_bernoulli"`` (per layer,
    ``n_iter`` iterations; ``margin`` unused). ``level``: ``"weight"`` (every coordinate of every layer
    but the output layer) or ``"node"`` (group ΔF of the nodes of ``net.prunable_layers``).
    Coordinates with ``prior_var == 0`` stay pruned. Eager calls check the values too.
    """
    _check_choice("rule", rule, RULES)
    _check_choice("level", level, LEVELS)
    if isinstance(n_iter, bool) or not isinstance(n_iter, (int, np.integer)) or n_iter < 0:
        raise ValueError(f"n_iter must be a non-negative integer; got {n_iter!r}")
    if _concrete(margin) and not math.isfinite(float(margin)):
        raise ValueError(f"margin must be a finite number; got {margin!r}")
    _check_factors(factors, net)
    dtype = jnp.result_type(*jax.tree_util.tree_leaves(factors.mean), float)
    mean, var, prior_var = (jax.tree_util.tree_map(lambda x: jnp.asarray(x, dtype), t) for t in factors)
    return _reduce(mean, var, prior_var, jnp.asarray(margin, dtype), net=net, rule=rule, level=level, n_iter=int(n_iter))


def pruned_fraction(keep: Params, net: Network) -> float:
    """Fraction of the weights and biases of every layer but the output layer that are at the spike."""
    out = net.layers[-1].name
    leaves = [np.asarray(x) for name, sub in keep.items() if name != out for x in jax.tree_util.tree_leaves(sub)]
    total = sum(x.size for x in leaves)
    return float(sum((~x.astype(bool)).sum() for x in leaves) / total) if total else 0.0


# ----------------------------------------------------------------------------- posteriors → factors


def _site_factors(net: Network, prior: Prior, normal: Mapping) -> GaussianFactors:
    """Factors of the weight sites of an SVI or NUTS posterior (centred ``w`` or non-centred ``ε``)."""
    prior_var = fixed_prior_variances(prior, net)
    shapes = param_shapes(net)
    mean, var, pv = {}, {}, {}
    for layer in net.layers:
        mean[layer.name], var[layer.name], pv[layer.name] = {}, {}, {}
        for k in ("w", "b"):
            site, v0 = prior_var(layer.name, k)
            if site not in normal:
                raise ValueError(f"the posterior has no Gaussian factor for site {site!r}")
            mu, sd = normal[site]
            shape = tuple(shapes[layer.name][k].shape)
            mean[layer.name][k] = jnp.asarray(mu)
            var[layer.name][k] = jnp.asarray(sd) ** 2
            pv[layer.name][k] = jnp.broadcast_to(jnp.asarray(v0, var[layer.name][k].dtype), shape)
    return GaussianFactors(mean, var, pv)


def gaussian_factors(posterior, net: Network | None = None) -> GaussianFactors:
    """:class:`GaussianFactors` of an SVI, NUTS (Gaussian fitted to the draws) or Laplace posterior.

    SVI/NUTS need a fixed Gaussian prior on the weight sites (``priors.Gaussian`` without a scale
    hyperprior, or any non-centred prior); their spikes (prior variance 0) carry over. A
    :class:`~sparsebnn.infer.LaplacePosterior` needs ``net``: mean = MAP, var = diagonal of
    ``(H + P_h)⁻¹``, prior_var = ``1/P_h``.
    """
    from sparsebnn.infer.laplace import LaplacePosterior, marginal_variance

    if isinstance(posterior, LaplacePosterior):
        if not isinstance(net, Network):
            raise ValueError("net: a LaplacePosterior does not record its network; pass net=")
        names = [layer.name for layer in net.layers]
        missing = [n for n in names if n not in posterior.params]
        if missing:
            raise ValueError(f"net: the Laplace posterior has no parameters for layers {missing}")
        var = marginal_variance(posterior)
        prec = posterior.prior.precision(posterior.params)
        pick = lambda tree: {n: {"w": tree[n]["w"], "b": tree[n]["b"]} for n in names}  # noqa: E731
        return GaussianFactors(pick(posterior.params), pick(var), jax.tree_util.tree_map(lambda p: 1.0 / p, pick(prec)))
    if hasattr(posterior, "normal_factors") and hasattr(posterior, "prior") and hasattr(posterior, "net"):
        if net is not None and net is not posterior.net:
            raise ValueError("net: differs from the posterior's own network")
        return _site_factors(posterior.net, posterior.prior, posterior.normal_factors())
    raise ValueError(
        f"posterior must be an SVIPosterior, NUTSPosterior or LaplacePosterior; got {type(posterior).__name__}"
    )


# ----------------------------------------------------------------------------- iterative (stochastic) BMR


@dataclasses.dataclass
class StochasticBMR:
    """The outcome of :func:`stochastic_bmr`.

    ``posterior``: the final mean-field posterior; when iterative, its model's prior is the Gaussian
    with the final spikes (variance 0), so ``posterior.predict`` and ``posterior.delta_f`` see the
    pruned model. ``keep``: final keep mask ``{layer: {"w", "b"}}`` (use as ``masks=`` of
    ``posterior.predict``); ``history``: one tidy row per round (round 0 = end of the warm-up).
    ``compile_time``: seconds spent compiling the training step and the pruning pass.
    """

    posterior: SVIPosterior
    keep: Params
    history: list
    compile_time: float

    @property
    def node_keep(self) -> dict[str, np.ndarray]:
        return node_alive(self.keep, self.posterior.net)


def _train_arrays(data, likelihood):
    """``(x, y)``, the likelihood and a default test split from a Dataset or an ``(x, y)`` pair."""
    test = None
    if hasattr(data, "train") and hasattr(data, "task"):
        likelihood = likelihood or ("categorical" if data.task == "classification" else "gaussian")
        test = data.test
        data = data.train
    likelihood = likelihood or "categorical"
    try:
        x, y = data
    except (TypeError, ValueError):
        raise ValueError(f"data must be a sparsebnn.data.Dataset or an (x, y) pair; got {type(data).__name__}") from None
    x, y = np.asarray(x), np.asarray(y)
    if x.ndim < 2 or len(x) != len(y) or len(x) == 0:
        raise ValueError(f"data: x must be (n, features...) and y (n,); got {x.shape} and {y.shape}")
    if not np.all(np.isfinite(x)) or (np.issubdtype(y.dtype, np.floating) and not np.all(np.isfinite(y))):
        raise ValueError("data contains NaN or inf values")
    if likelihood == "categorical":
        y = y.astype(np.int32)
    return (x, y), likelihood, test


def _positive_int(name, v, allow_zero=False):
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < (0 if allow_zero else 1):
        raise ValueError(f"{name} must be a {'non-negative' if allow_zero else 'positive'} integer; got {v!r}")
    return int(v)


def stochastic_bmr(
    net: Network,
    data,
    *,
    prior: Prior | None = None,
    rule: str = "threshold",
    level: str = "weight",
    margin: float = 0.0,
    n_iter: int = 4,
    warmup_steps: int = 2000,
    steps_per_round: int = 500,
    rounds: int = 10,
    iterative: bool = True,
    test=None,
    likelihood: str | None = None,
    noise: float | None = None,
    batch_size: int = 128,
    optimizer: optax.GradientTransformation | None = None,
    init_scale: float = 1e-2,
    eval_samples: int = 32,
    chunk_size: int = 500,
    seed: int = 0,
    progress: bool = False,
) -> StochasticBMR:
    """Iterative ("stochastic") BMR: SVI, then ``rounds`` of {prune → spike prior → more SVI} (module docstring).

    ``prior``: a :class:`~sparsebnn.priors.Gaussian` without scale hyperprior (default ``Gaussian(1.0)``;
    per-weight ``variance`` allowed, its zeros are spikes from the start). ``rule``, ``level``,
    ``margin``, ``n_iter``: as in :func:`reduce`. With ``iterative=False`` nothing is pruned during
    training and each round reports the one-shot post-hoc reduction of the current posterior instead;
    any prior with Gaussian weight sites works then (e.g. the non-centred tiered horseshoe).
    ``data``: a ``Dataset`` (train split; its test split is the default ``test``) or ``(x, y)``.
    ``optimizer`` defaults to ``optax.adam(1e-3)`` (its state carries over between rounds); minibatches
    of ``batch_size`` are drawn on the device from ``fold_in(key(seed), step)``. Every history row has
    ``round``, ``step``, ``train_time`` (cumulative seconds of SVI steps and pruning passes, compilation
    and evaluation excluded), ``loss`` (mean −ELBO/N of the round's last chunk), ``pruned_fraction``
    (:func:`pruned_fraction`) and, given a test set, the :func:`sparsebnn.metrics.evaluate` metrics
    of ``eval_samples`` posterior draws of the pruned network.
    """
    _check_choice("rule", rule, RULES)
    _check_choice("level", level, LEVELS)
    warmup_steps = _positive_int("warmup_steps", warmup_steps, allow_zero=True)
    steps_per_round = _positive_int("steps_per_round", steps_per_round)
    rounds = _positive_int("rounds", rounds, allow_zero=True)
    batch_size = _positive_int("batch_size", batch_size)
    eval_samples = _positive_int("eval_samples", eval_samples)
    chunk_size = _positive_int("chunk_size", chunk_size)
    if not math.isfinite(float(margin)):
        raise ValueError(f"margin must be a finite number; got {margin!r}")
    if not init_scale > 0:
        raise ValueError(f"init_scale must be > 0; got {init_scale!r}")
    prior = Gaussian(1.0) if prior is None else prior
    if not isinstance(prior, Prior):
        raise ValueError(f"prior must be a sparsebnn.priors.Prior; got {type(prior).__name__}")
    if iterative and not (isinstance(prior, Gaussian) and prior.scale_prior is None):
        raise ValueError(f"iterative BMR needs a priors.Gaussian prior without scale_prior (the spike is its variance 0); got {prior!r}")
    site_var_of = fixed_prior_variances(prior, net)  # ValueError when BMR does not apply to this prior
    (x, y), likelihood, default_test = _train_arrays(data, likelihood)
    test = default_test if test is None else test
    n = len(x)
    if batch_size > n:
        raise ValueError(f"batch_size ({batch_size}) exceeds the number of training examples ({n})")
    task = "classification" if likelihood == "categorical" else "regression"
    if test is not None:
        x_test, y_test = (np.asarray(a) for a in test)
    optimizer = optax.adam(1e-3) if optimizer is None else optimizer

    # --- prior variances: ΔF coordinates (site_var) and the Gaussian's weight-space variances (host arrays)
    shapes = param_shapes(net)
    dtype = np.dtype(jnp.result_type(float))
    given = (getattr(prior, "variance", None) or {}) if iterative else {}
    site_var, weight_var = {}, {}
    for layer in net.layers:
        site_var[layer.name], weight_var[layer.name] = {}, {}
        for k in ("w", "b"):
            shape = tuple(shapes[layer.name][k].shape)
            site_var[layer.name][k] = np.broadcast_to(np.asarray(site_var_of(layer.name, k)[1], dtype), shape)
            wv = given[layer.name][k] if layer.name in given else prior.sigma0**2
            weight_var[layer.name][k] = np.broadcast_to(np.asarray(wv, dtype), shape)
    keep0 = jax.tree_util.tree_map(lambda v: v > 0, site_var)

    def model_for(keep) -> BNN:
        if not iterative:
            return BNN(net, prior, likelihood, noise)
        where = np.where if _concrete(keep) else jnp.where
        variance = {name: {k: where(keep[name][k], weight_var[name][k], 0.0) for k in ("w", "b")} for name in keep}
        if isinstance(prior.variance, Mapping):  # entries outside layers keep their given variances
            variance.update({k: v for k, v in prior.variance.items() if k not in variance})
        return BNN(net, Gaussian(prior.sigma0, variance=variance, centered=prior.centered), likelihood, noise)

    key = jax.random.key(seed)
    k_init, k_train, k_eval, k_pool = jax.random.split(key, 4)  # as in svi, so that unpruned runs are svi's
    model0 = model_for(keep0)
    model0.check_data(x, y)
    sites0 = jax.jit(model0.init_sites, static_argnames="n_data")(k_init, n_data=n)
    guide = MeanFieldGuide(model0, x[:batch_size], y[:batch_size], n_data=n, init_values=sites0, init_scale=init_scale)
    sites = {layer.name: {k: site_var_of(layer.name, k)[0] for k in ("w", "b")} for layer in net.layers}
    elbo = TraceMeanField_ELBO()

    def loss_fn(params, k, xb, yb, step, pool, keep):
        return elbo.loss(k, params, model_for(keep), partial(guide, pool=pool), xb, yb, n_data=n) / n

    run_chunk = training_chunk(loss_fn, optimizer, k_train, n_data=n, batch_size=batch_size,
                               noise_size=guide.noise_size, pool_key=k_pool)  # svi's loop and weight noise

    def factors_of(params, keep) -> GaussianFactors:
        mean = {name: {k: params[f"{s}.loc"] for k, s in sub.items()} for name, sub in sites.items()}
        var = {name: {k: jnp.exp(2 * params[f"{s}.log_scale"]) for k, s in sub.items()} for name, sub in sites.items()}
        pv = jax.tree_util.tree_map(lambda v, kp: jnp.where(kp, v, 0.0), site_var, keep)
        return GaussianFactors(mean, var, pv)

    def prune(params, keep):
        f = factors_of(params, keep)
        return _reduce(*f, jnp.asarray(margin, dtype), net=net, rule=rule, level=level, n_iter=int(n_iter)).keep

    def outputs(params, keep, k, x):
        model = model_for(keep)

        def one(kk):
            p = model.params(guide.rsample(params, kk), n)
            return {**p, **{name: {c: p[name][c] * keep[name][c] for c in ("w", "b")} for name in keep}}

        draws = jax.vmap(one)(jax.random.split(k, eval_samples))
        return jax.vmap(net.apply, in_axes=(0, None))(draws, x), jax.tree_util.tree_map(lambda a: a.mean(0), draws)

    # --- compile once (ahead of time, timed separately)
    steps = [warmup_steps] + [steps_per_round] * rounds
    chunk = math.gcd(*[s for s in steps if s], chunk_size) if any(steps) else 1
    params = {k: jnp.array(v, copy=True) for k, v in guide.init_params.items()}  # the chunk donates its state
    state = SVIState(params, jax.jit(optimizer.init)(params), jnp.zeros((), jnp.int32))
    x_dev, y_dev = jnp.asarray(x), jnp.asarray(y)
    t0 = time.perf_counter()
    run_c = run_chunk.lower(state, x_dev, y_dev, chunk, keep0).compile()
    prune_c = jax.jit(prune).lower(state.params, keep0).compile()
    compile_time = time.perf_counter() - t0
    eval_c = jax.jit(outputs) if test is not None else None
    x_test_dev = jnp.asarray(x_test) if test is not None else None

    keep = keep0
    losses, history, train_time = [], [], 0.0
    bar = tqdm(total=rounds + 1, desc=f"bmr {net.name}", disable=not progress)
    for r, n_steps in enumerate(steps):
        t = time.perf_counter()
        if iterative and r > 0:
            keep = prune_c(state.params, keep)
        for _ in range(n_steps // chunk):
            state, chunk_losses = run_c(state, x_dev, y_dev, keep)
            losses.append(chunk_losses)
        jax.block_until_ready(state)
        shown = keep if iterative else prune_c(state.params, keep0)
        shown = jax.tree_util.tree_map(np.asarray, shown)  # the host sync of the round
        train_time += time.perf_counter() - t
        last = np.asarray(losses[-1]) if losses else np.array([np.nan])
        if not np.all(np.isfinite(last)):
            raise FloatingPointError(f"SVI loss became non-finite in round {r}; lower the learning rate")
        row = {"round": r, "step": int(state.step), "train_time": train_time, "loss": float(last.mean()),
               "pruned_fraction": pruned_fraction(shown, net)}
        if eval_c is not None:
            outs, mean_params = eval_c(state.params, shown, jax.random.fold_in(k_eval, r), x_test_dev)
            row.update(metrics.evaluate(np.asarray(outs), y_test, task=task, noise_std=noise, params=mean_params,
                                        masks=node_alive(shown, net)))
        history.append(row)
        bar.update(1)
        bar.set_postfix({k: f"{row[k]:.3g}" for k in ("pruned_fraction", "accuracy") if k in row})
    bar.close()

    keep = jax.tree_util.tree_map(np.asarray, keep if iterative else prune_c(state.params, keep0))
    final = model_for(keep)
    all_losses = np.concatenate([np.asarray(l) for l in losses]) if losses else np.zeros(0)
    total = int(state.step)
    params = jax.tree_util.tree_map(jnp.asarray, jax.device_get(state.params))
    post = SVIPosterior(final, guide, params, n, all_losses, history,
                        compile_time + train_time, total / train_time if train_time > 0 else float("nan"))
    return StochasticBMR(post, keep, history, compile_time)
