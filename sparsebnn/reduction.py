r"""Bayesian model reduction of a network's Gaussian posterior: one-shot (post-hoc) and iterative.

Both act on a mean-field Gaussian over the weights and biases of the network's layers,
:class:`GaussianFactors` ``(mean, var, prior_var)`` shaped ``{layer: {"w", "b"}}``, where
``prior_var`` is the full model's prior variance of each coordinate and **0 marks a coordinate
already at the spike** (fixed at 0). For every coordinate still free, ΔF of moving it to the spike
is the Savage–Dickey ratio (``docs/bmr.md``, :func:`sparsebnn.bmr.delta_f`)

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

Every posterior of the suite gives its factors: ``posterior.gaussian_factors()``
(:class:`sparsebnn.posterior.Posterior`): mean-field SVI, the Gaussian fitted to NUTS draws, and the
Laplace approximation (diagonal of ``(H + P_h)⁻¹``, prior ``1/P_h``). For non-centred priors (the
horseshoe) the coordinates are the ``ε`` of ``w = scale · ε`` with prior ``N(0, 1)``: ``ε = 0``
exactly when ``w = 0``.

:func:`stochastic_bmr` is iterative ("stochastic") BMR (Marković et al. 2023): mean-field SVI
under a Gaussian prior for ``warmup_steps``, then ``rounds`` of {prune with :func:`reduce` → the
pruned weights' prior becomes the spike (variance 0: weight fixed at 0) → ``steps_per_round``
more SVI steps, optimiser state kept}, recording accuracy, NLL, ECE and the pruned fraction on a
test set after every round. It is SVI (:func:`sparsebnn.infer.mean_field_svi`) under the shared
driver with a pruning callback at the end of every round; the spike mask is the state's ``aux``, a
runtime argument of one compiled training step, so the whole schedule compiles once.
"""

from __future__ import annotations

import dataclasses
import functools
import math
import time
from collections.abc import Mapping
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax

from sparsebnn import bmr, metrics
from sparsebnn.infer import Log, SVIPosterior, mean_field_svi, run_steps
from sparsebnn.infer._inputs import model_and_data
from sparsebnn.infer._svi import positive_int, setup, weight_pool
from sparsebnn.masks import to_nodes
from sparsebnn.model import BNN
from sparsebnn.nets import Network, Params, node_groups
from sparsebnn.posterior import GaussianFactors, spike_delta_f, spike_delta_f_parts
from sparsebnn.priors import Gaussian, Prior, param_shapes

RULES = ("threshold", "beta_bernoulli")
LEVELS = ("weight", "node")

__all__ = ["LEVELS", "RULES", "Reduction", "StochasticBMR", "pruned_fraction", "reduce", "stochastic_bmr"]


class Reduction(NamedTuple):
    """The result of :func:`reduce`.

    ``keep``: ``{layer: {"w", "b"}}`` bool, False at the spike (old and new); ``node_keep``:
    ``{layer: (n_nodes,) bool}`` of the node-prunable layers, a node being alive while any entry of
    its incoming group is kept; ``factors``: the posterior that was reduced. Computed when asked for:
    ``delta_f``, the per-coordinate ΔF of moving to the spike (0 where already there), and ``mean``,
    ``var``, the reduced posterior (0, 0 at the spike; unchanged elsewhere: mean field).
    """

    keep: Params
    node_keep: dict
    factors: GaussianFactors

    @property
    def delta_f(self) -> Params:
        return spike_delta_f(self.factors)

    @property
    def mean(self) -> Params:
        return jax.tree_util.tree_map(lambda k, m: jnp.where(k, m, 0.0), self.keep, self.factors.mean)

    @property
    def var(self) -> Params:
        return jax.tree_util.tree_map(lambda k, v: jnp.where(k, v, 0.0), self.keep, self.factors.var)


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
    """Structure and shapes (the values are checked inside the reduction's own pass, :func:`_bad_values`)."""
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


_VALUE_ERRORS = ("mean, var or prior_var contains NaN or inf", "var must be > 0 everywhere (a posterior variance)",
                 "prior_var must be >= 0 (0 = already at the spike)")


def _any_bad(df) -> jax.Array:
    """True when some ΔF is not finite: every invalid input (NaN/inf anywhere, var <= 0, prior_var < 0) makes
    its ΔF = -½ ln(var/prior_var) - mean²/(2 var) non-finite (at a spike, prior_var = 1 stands in for 0), so
    this flag, read off the pass's own ΔF, misses none; :func:`_bad_values` then says which (an overflow of
    valid values raises nothing)."""
    return ~jnp.isfinite(sum(jnp.sum(d) for d in jax.tree_util.tree_leaves(df)))


@jax.jit
def _bad_values(mean, var, prior_var) -> jax.Array:
    """``[non-finite anywhere, var <= 0 somewhere, prior_var < 0 somewhere]``: which check failed, once
    :func:`_any_bad` has flagged the pass (the error path only)."""
    def anywhere(test, tree):
        return jnp.any(jnp.stack([jnp.any(test(x)) for x in jax.tree_util.tree_leaves(tree)]))

    return jnp.stack([anywhere(lambda x: ~jnp.isfinite(x), (mean, var, prior_var)), anywhere(lambda v: v <= 0, var),
                      anywhere(lambda v: v < 0, prior_var)])


# ----------------------------------------------------------------------------- the reduction


def _decide(df, spike, rule: str, margin, n_iter: int):
    """Keep mask of one layer (a pytree of ΔF): never revives a spike."""
    limit = margin if rule == "threshold" else bmr.beta_bernoulli_zeta_spiked(df, spike, n_iter)
    return jax.tree_util.tree_map(lambda d, s: (d <= limit) & ~s, df, spike)


@functools.lru_cache(maxsize=64)
def _reducer(net: Network, rule: str, level: str, n_iter: int):
    """The compiled pass of one setting (no static arguments at call time: JAX's fastest dispatch)."""
    return jax.jit(functools.partial(_reduce, net=net, rule=rule, level=level, n_iter=n_iter))


def _reduce(mean, var, prior_var, margin, *, net: Network, rule: str, level: str, n_iter: int):
    spike, raw = spike_delta_f_parts(GaussianFactors(mean, var, prior_var))
    df = jax.tree_util.tree_map(lambda s, d: jnp.where(s, jnp.zeros_like(d), d), spike, raw)
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
    return keep, to_nodes(net, keep), _any_bad(raw)


def reduce(factors: GaussianFactors, net: Network, *, rule: str = "threshold", level: str = "weight",
           margin: float = 0.0, n_iter: int = 4) -> Reduction:
    """One BMR pruning pass over a mean-field Gaussian posterior (module docstring); jit-compatible.

    ``rule``: ``"threshold"`` (prune where ΔF > ``margin``) or ``"beta_bernoulli"`` (per layer,
    ``n_iter`` iterations; ``margin`` unused). ``level``: ``"weight"`` (every coordinate of every layer
    but the output layer) or ``"node"`` (group ΔF of the nodes of ``net.prunable_layers``).
    Coordinates with ``prior_var == 0`` stay pruned. Eager calls check the values too (NaN/inf, var > 0,
    prior_var >= 0), inside the same compiled pass: one small host sync, no host copy of the posterior.
    """
    _check_choice("rule", rule, RULES)
    _check_choice("level", level, LEVELS)
    if isinstance(n_iter, bool) or not isinstance(n_iter, (int, np.integer)) or n_iter < 0:
        raise ValueError(f"n_iter must be a non-negative integer; got {n_iter!r}")
    if _concrete(margin) and not math.isfinite(float(margin)):
        raise ValueError(f"margin must be a finite number; got {margin!r}")
    _check_factors(factors, net)
    leaves = jax.tree_util.tree_leaves(factors)
    dtype = jnp.result_type(*jax.tree_util.tree_leaves(factors.mean), float)
    if not all(isinstance(x, jax.Array) and x.dtype == dtype for x in leaves):
        factors = GaussianFactors(*(jax.tree_util.tree_map(lambda x: jnp.asarray(x, dtype), t) for t in factors))
    mean, var, prior_var = factors
    keep, node_keep, bad = _reducer(net, rule, level, int(n_iter))(mean, var, prior_var, jnp.asarray(margin, dtype))
    if _concrete(factors) and bool(bad):
        for flag, message in zip(np.asarray(_bad_values(mean, var, prior_var)), _VALUE_ERRORS):
            if flag:
                raise ValueError(message)
    # Mean field: a spike replaces the factor by N(0, 0), every other factor is unchanged (bmr.reduced_posterior).
    return Reduction(keep, node_keep, GaussianFactors(mean, var, prior_var))


def pruned_fraction(keep: Params, net: Network) -> float:
    """Fraction of the weights and biases of every layer but the output layer that are at the spike."""
    out = net.layers[-1].name
    leaves = [np.asarray(x) for name, sub in keep.items() if name != out for x in jax.tree_util.tree_leaves(sub)]
    total = sum(x.size for x in leaves)
    return float(sum((~x.astype(bool)).sum() for x in leaves) / total) if total else 0.0


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
        return to_nodes(self.posterior.net, self.keep)


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
    likelihood=None,
    batch_size: int = 128,
    optimizer: optax.GradientTransformation | None = None,
    init_scale: float = 1e-2,
    eval_samples: int = 32,
    chunk_size: int = 500,
    seed: int = 0,
    weight_noise: str = "auto",
    progress: bool = False,
) -> StochasticBMR:
    """Iterative ("stochastic") BMR: SVI, then ``rounds`` of {prune → spike prior → more SVI} (module docstring).

    Args:
      net: the network.
      data: a :class:`~sparsebnn.data.Dataset` (train split; its test split is the default ``test``) or ``(x, y)``.
      prior: a :class:`~sparsebnn.priors.Gaussian` without scale hyperprior (default ``Gaussian(1.0)``;
        per-weight ``variance`` allowed, its zeros are spikes from the start). With ``iterative=False`` any
        prior BMR applies to (e.g. the non-centred tiered horseshoe).
      rule, level, margin, n_iter: as in :func:`reduce`.
      warmup_steps, steps_per_round, rounds: the schedule (round 0 ends the warm-up).
      iterative: False prunes nothing during training; each round then reports the one-shot reduction.
      test: ``(x, y)`` evaluated after every round with ``eval_samples`` posterior draws of the pruned network.
      likelihood: as in :func:`sparsebnn.infer.svi`.
      batch_size, optimizer, init_scale, chunk_size, seed, weight_noise, progress: as in :func:`sparsebnn.infer.svi`
        (``optimizer`` default ``optax.adam(1e-3)``; its state carries over between rounds).

    Every history row has ``round``, ``step``, ``train_time`` (cumulative seconds of SVI steps and pruning
    passes, compilation and evaluation excluded), ``loss`` (mean loss of the round's last chunk),
    ``pruned_fraction`` (:func:`pruned_fraction`) and, given a test set, the
    :func:`sparsebnn.metrics.evaluate` metrics.
    """
    _check_choice("rule", rule, RULES)
    _check_choice("level", level, LEVELS)
    warmup_steps = positive_int("warmup_steps", warmup_steps, allow_zero=True)
    steps_per_round = positive_int("steps_per_round", steps_per_round)
    rounds = positive_int("rounds", rounds, allow_zero=True)
    batch_size = positive_int("batch_size", batch_size)
    eval_samples = positive_int("eval_samples", eval_samples)
    chunk_size = positive_int("chunk_size", chunk_size)
    if not math.isfinite(float(margin)):
        raise ValueError(f"margin must be a finite number; got {margin!r}")
    if not init_scale > 0:
        raise ValueError(f"init_scale must be > 0; got {init_scale!r}")
    prior = Gaussian(1.0) if prior is None else prior
    if not isinstance(prior, Prior):
        raise ValueError(f"prior must be a sparsebnn.priors.Prior; got {type(prior).__name__}")
    if iterative and not (isinstance(prior, Gaussian) and prior.scale_prior is None):
        raise ValueError(f"iterative BMR needs a priors.Gaussian prior without scale_prior (the spike is its variance 0); got {prior!r}")
    where = prior.bmr_sites(net)  # ValueError when BMR does not apply to this prior
    model, tr = model_and_data(net, prior, data, likelihood, test=test)
    n = len(tr.x)
    if batch_size > n:
        raise ValueError(f"batch_size ({batch_size}) exceeds the number of training examples ({n})")
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
            site_var[layer.name][k] = np.broadcast_to(np.asarray(where[layer.name][k][1], dtype), shape)
            wv = given[layer.name][k] if layer.name in given else prior.sigma0**2
            weight_var[layer.name][k] = np.broadcast_to(np.asarray(wv, dtype), shape)
    keep0 = jax.tree_util.tree_map(lambda v: v > 0, site_var)

    def model_for(keep) -> BNN:
        if not iterative:
            return model
        where_ = np.where if _concrete(keep) else jnp.where
        variance = {name: {k: where_(keep[name][k], weight_var[name][k], 0.0) for k in ("w", "b")} for name in keep}
        if isinstance(prior.variance, Mapping):  # entries outside layers keep their given variances
            variance.update({k: v for k, v in prior.variance.items() if k not in variance})
        return BNN(net, Gaussian(prior.sigma0, variance=variance, centered=prior.centered), model.likelihood)

    s = setup(model_for(keep0), tr, batch_size=batch_size, init_scale=init_scale, seed=seed)
    algo = mean_field_svi(model_for, s.guide, optimizer, n_data=n)
    factor_sites = {layer.name: {k: where[layer.name][k][0] for k in ("w", "b")} for layer in net.layers}

    def prune(params, keep):
        normal = s.guide.normal_factors(params)
        mean = {name: {k: normal[site][0] for k, site in sub.items()} for name, sub in factor_sites.items()}
        var = {name: {k: normal[site][1] ** 2 for k, site in sub.items()} for name, sub in factor_sites.items()}
        pv = jax.tree_util.tree_map(lambda v, kp: jnp.where(kp, v, 0.0), site_var, keep)
        return _reducer(net, rule, level, int(n_iter))(mean, var, pv, jnp.asarray(margin, dtype))[0]

    def outputs(params, keep, k, x):
        m = model_for(keep)

        def one(kk):
            p = m.params(s.guide.rsample(params, kk), n)
            return {**p, **{name: {c: p[name][c] * keep[name][c] for c in ("w", "b")} for name in keep}}

        draws = jax.vmap(one)(jax.random.split(k, eval_samples))
        return jax.vmap(net.apply, in_axes=(0, None))(draws, x), jax.tree_util.tree_map(lambda a: a.mean(0), draws)

    state = algo.init(s.params, keep0)
    t0 = time.perf_counter()
    prune_c = jax.jit(prune).lower(state.params, keep0).compile()
    compile_time = time.perf_counter() - t0
    eval_c = jax.jit(outputs) if tr.test is not None else None
    task = "classification" if model.likelihood.kind == "categorical" else "regression"
    noise = None if task == "classification" or model.likelihood.learned else model.likelihood.noise
    ends = list(np.cumsum([warmup_steps] + [steps_per_round] * rounds))
    prune_time = [0.0]

    def end_of_round(state, log: Log):
        if log.step not in ends:
            return None
        r = ends.index(log.step)
        t = time.perf_counter()
        shown = jax.tree_util.tree_map(np.asarray, state.aux if iterative else prune_c(state.params, keep0))
        prune_time[0] += time.perf_counter() - t
        last = log.losses[-log.last_chunk:] if log.last_chunk else np.array([np.nan])
        row = {"round": r, "step": log.step, "train_time": log.train_time + prune_time[0], "loss": float(last.mean()),
               "pruned_fraction": pruned_fraction(shown, net)}
        if eval_c is not None:
            outs, mean_params = eval_c(state.params, shown, jax.random.fold_in(s.k_eval, r), jnp.asarray(tr.test.x))
            row.update(metrics.evaluate(np.asarray(outs), tr.test.y, task=task, noise_std=noise, params=mean_params,
                                        masks=to_nodes(net, shown)))
        log.history.append(row)
        if not iterative or r == rounds:
            return None
        t = time.perf_counter()
        keep = jax.block_until_ready(prune_c(state.params, state.aux))
        prune_time[0] += time.perf_counter() - t
        return state._replace(aux=keep)

    steps = [warmup_steps] + [steps_per_round] * rounds
    chunk = math.gcd(*[x for x in steps if x], chunk_size) if any(steps) else 1
    log0 = Log()
    if warmup_steps == 0:  # round 0 ends before any step
        state = end_of_round(state, log0) or state
    state, log = run_steps(algo.step, state, (tr.x, tr.y), key=s.k_train, num_steps=ends[-1], batch_size=batch_size,
                           chunk_size=chunk, pool=weight_pool(weight_noise, s, 1, jax.local_devices()),
                           callbacks=[end_of_round],
                           progress=progress, desc=f"bmr {net.name}")
    history = log0.history + log.history
    keep = jax.tree_util.tree_map(np.asarray, state.aux if iterative else prune_c(state.params, keep0))
    compile_time += log.compile_time
    train_time = log.train_time + prune_time[0]
    params = jax.tree_util.tree_map(jnp.asarray, jax.device_get(state.params))
    post = SVIPosterior(model_for(keep), s.guide, params, n, log.losses, history, compile_time + train_time,
                        ends[-1] / train_time if train_time > 0 else float("nan"), compile_time=compile_time)
    return StochasticBMR(post, keep, history, compile_time)
