"""Minibatch mean-field SVI for any prior over any network (``docs/svi.md``).

    post = svi(net, prior, data, num_steps=5000, batch_size=128)
    post.predict(x)           # (n_samples, N, out) logits / regression means
    post.inclusion_probs()    # {layer: σ(θ)} for spike-and-slab priors
    post.node_masks()         # σ(θ) >= 0.5 (spike-and-slab) or BMR (Gaussian weight factors)

The algorithm is pure, in the Optax / BlackJAX shape: :func:`mean_field_svi` returns ``init(params)``
and ``step(state, batch, key, pool) -> (state, loss)``; :func:`svi` runs it under the shared driver
(:func:`sparsebnn.infer.run_steps`: ``lax.scan`` chunks, on-device minibatches, weight-noise pool,
sharding, checkpoints, callbacks). The objective is ``TraceMeanField_ELBO`` on
:class:`sparsebnn.model.BNN` with the :class:`~sparsebnn.infer.MeanFieldGuide`: analytic KL wherever one
exists (Gaussian weights, Bernoulli indicators), Monte Carlo for the scale hierarchy, the likelihood
scaled by N / batch; the reported loss is ``(−E_q[ln p(y | w)] + β KL) / N`` (nats per training example).
For GPUs install the CUDA build of JAX: ``pip install -U "jax[cuda12]"``.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from numpyro import handlers
from numpyro.infer import TraceMeanField_ELBO

from sparsebnn import masks as masks_
from sparsebnn import sites
from sparsebnn.data import Training
from sparsebnn.model import BNN
from sparsebnn.nets import Network, Params
from sparsebnn.posterior import DRAWS, GaussianFactors, ModelPosterior, check_draws
from sparsebnn.priors import Prior, param_shapes

from ._guides import MeanFieldGuide
from ._inputs import model_and_data
from ._loop import Callback, Log, Pool, run_steps

WEIGHT_NOISE = ("auto", "pool", "fresh")


class SVIState(NamedTuple):
    """What one optimisation step carries: guide parameters, optimiser state, step count and ``aux``,
    runtime arguments of the model (e.g. the spike mask of iterative BMR; None for plain SVI)."""

    params: dict
    opt_state: Any
    step: jax.Array
    aux: Any = None


class SVI(NamedTuple):
    """A pure SVI algorithm: ``init(params, aux=None) -> SVIState`` and ``step(state, batch, key, pool) -> (state, loss)``."""

    init: Callable
    step: Callable


def _schedule(value, name: str) -> Callable:
    """A constant > 0 or a callable ``step -> value`` (e.g. an optax schedule)."""
    if callable(value):
        return value
    try:
        v = float(value)
    except (TypeError, ValueError):
        v = float("nan")
    if not v > 0:
        raise ValueError(f"{name} must be > 0 (or a schedule step -> value); got {value!r}")
    return lambda step: v


def mean_field_svi(model: BNN | Callable[[Any], BNN], guide: MeanFieldGuide, optimizer: optax.GradientTransformation,
                   *, n_data: int, temperature: float | Callable = 0.5, kl_weight: float | Callable = 1.0,
                   num_particles: int = 1) -> SVI:
    """Mean-field SVI of ``model`` with ``guide``: the pure ``init`` / ``step`` pair.

    Args:
      model: the :class:`~sparsebnn.model.BNN`, or a function ``aux -> BNN`` of the state's ``aux``.
      guide: the :class:`~sparsebnn.infer.MeanFieldGuide` of the model's sites.
      optimizer: an optax transformation of the guide parameters.
      n_data: the training-set size N (the minibatch likelihood is scaled by N / batch).
      temperature: Concrete temperature T of the indicators, a float or a schedule ``step -> T``.
      kl_weight: β of ``E_q[ln p(y | w)] − β KL(q ‖ p)``, a float or a schedule (a warm-up).
      num_particles: Monte Carlo draws of the guide per step.

    ``step(state, (xb, yb), key, pool)`` returns the new state and the loss ``(−E_q ln p + β KL) / N``
    at the current β; ``pool`` (or None) is the weight-noise pool of :meth:`MeanFieldGuide.rsample`.
    """
    temp = _schedule(temperature, "temperature")
    beta = _schedule(kl_weight, "kl_weight")
    model_of = model if not isinstance(model, BNN) else (lambda aux: model)
    elbo = TraceMeanField_ELBO(num_particles=num_particles, sum_sites=False)

    def loss(params, key, batch, step, pool, aux):
        guide_t = functools.partial(guide, temperature=temp(step), pool=pool)
        terms = elbo.loss(key, params, model_of(aux), guide_t, *batch, n_data=n_data)
        return sum(v if name == "y" else beta(step) * v for name, v in terms.items()) / n_data

    def init(params, aux=None) -> SVIState:
        return SVIState(params, optimizer.init(params), jnp.zeros((), jnp.int32), aux)

    def step(state: SVIState, batch, key, pool=None):
        value, grads = jax.value_and_grad(loss)(state.params, key, batch, state.step, pool, state.aux)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        return SVIState(optax.apply_updates(state.params, updates), opt_state, state.step + 1, state.aux), value

    return SVI(init, step)


# ----------------------------------------------------------------------------- posterior


@dataclasses.dataclass
class SVIPosterior(ModelPosterior):
    """A fitted mean-field posterior: the model, its guide and the guide parameters.

    ``losses``: per-step loss; ``history``: one dict per validation (step, loss, temperature, val
    metrics, nodes kept); ``wall_time``: seconds of the whole fit (compilation included);
    ``compile_time``: seconds compiling; ``steps_per_s``: training steps per second (compilation
    excluded); ``n_devices``: devices the batch was split over; ``chunk_times``: ``(steps, seconds)``
    of every compiled chunk of this call.
    """

    model: BNN
    guide: MeanFieldGuide
    params: dict
    n_data: int
    losses: np.ndarray
    history: list
    wall_time: float
    steps_per_s: float
    n_devices: int = 1
    chunk_times: list = dataclasses.field(default_factory=list)
    compile_time: float = 0.0

    def sample_sites(self, key: jax.Array | None = None, n: int = DRAWS) -> dict:
        """``n`` draws of every latent site from the guide (exact Bernoulli indicators), leading axis ``n``."""
        key = jax.random.key(0) if key is None else key
        return _sample_sites(self.guide, self.params, key, check_draws(n, "n"))

    def sample_params(self, key: jax.Array | None = None, n: int = DRAWS, masks: Mapping | None = None) -> Params:
        key = jax.random.key(0) if key is None else key
        return _sample_params(self.model, self.guide, self.params, self.n_data, key, check_draws(n, "n"), masks)

    def inclusion_probs(self) -> dict[str, jax.Array]:
        """``{layer: σ(θ)}`` of every layer with node indicators (empty for priors without them)."""
        return sites.by_layer(self.guide.inclusion_probs(self.params))

    def normal_factors(self) -> dict[str, tuple[jax.Array, jax.Array]]:
        """``{site: (μ, σ)}`` of the Gaussian guide factor of every real-valued site (weights)."""
        return self.guide.normal_factors(self.params)

    def gaussian_factors(self) -> GaussianFactors:
        """The guide's factors of the weight sites BMR reads (:meth:`sparsebnn.priors.Prior.bmr_sites`):
        centred ``w`` under a fixed Gaussian prior, or the non-centred ``ε ~ N(0, 1)`` of any prior."""
        return site_factors(self.net, self.prior, self.normal_factors())


def site_factors(net: Network, prior: Prior, normal: Mapping) -> GaussianFactors:
    """:class:`GaussianFactors` from per-site Gaussians ``{site: (μ, σ)}`` and the prior's BMR sites."""
    where = prior.bmr_sites(net)
    shapes = param_shapes(net)
    mean, var, pv = {}, {}, {}
    for layer in net.layers:
        mean[layer.name], var[layer.name], pv[layer.name] = {}, {}, {}
        for k in ("w", "b"):
            site, v0 = where[layer.name][k]
            if site not in normal:
                raise ValueError(f"the posterior has no Gaussian factor for site {site!r}")
            mu, sd = normal[site]
            mean[layer.name][k] = jnp.asarray(mu)
            var[layer.name][k] = jnp.asarray(sd) ** 2
            pv[layer.name][k] = jnp.broadcast_to(jnp.asarray(v0, var[layer.name][k].dtype),
                                                 tuple(shapes[layer.name][k].shape))
    return GaussianFactors(mean, var, pv)


def _sample_sites(guide, params, key, n):
    def one(k):
        tr = handlers.trace(handlers.seed(handlers.substitute(guide, data=params), k)).get_trace()
        return {name: s["value"] for name, s in tr.items() if s["type"] == "sample"}

    return jax.vmap(one)(jax.random.split(key, n))


def effective_params(model: BNN, draw: dict, n_data: int, masks: Mapping | None) -> Params:
    """Network parameters of one draw of the sites; the indicators of masked layers set to 1, then ``masks`` applied."""
    if masks is None:
        return model.params(draw, n_data)
    draw = dict(draw)
    for layer in masks:
        if sites.indicator(layer) in draw:
            draw[sites.indicator(layer)] = jnp.ones_like(draw[sites.indicator(layer)])
    return masks_.apply(model.params(draw, n_data), jax.tree_util.tree_map(jnp.asarray, dict(masks)))


@functools.partial(jax.jit, static_argnums=(0, 1, 3, 5))
def _sample_params(model, guide, params, n_data, key, n, masks):
    draws = _sample_sites(guide, params, key, n)
    return jax.vmap(lambda s: effective_params(model, s, n_data, masks))(draws)


# ----------------------------------------------------------------------------- fitting


class Setup(NamedTuple):
    """The pieces every mean-field fit starts from: the guide, its initial parameters and the run's keys."""

    guide: MeanFieldGuide
    params: dict
    k_train: jax.Array
    k_eval: jax.Array
    k_pool: jax.Array


def setup(model: BNN, tr: Training, *, batch_size: int, init_scale: float = 1e-2, init_inclusion: float = 0.99,
          hard: bool = False, init: Mapping | None = None, seed: int = 0, prng_impl: str | None = None) -> Setup:
    """Guide and initial guide parameters of ``model`` (at :meth:`BNN.init_sites`, overridden by ``init``)
    and the keys ``fold``-ed from ``seed``: one place for SVI and iterative BMR, so both draw the same numbers."""
    n = len(tr.x)
    key = jax.random.key(seed, impl=prng_impl)
    k_init, k_train, k_eval, k_pool = jax.random.split(key, 4)
    sites0 = jax.jit(model.init_sites, static_argnames="n_data")(k_init, n_data=n)
    guide = MeanFieldGuide(model, tr.x[:batch_size], tr.y[:batch_size], n_data=n, init_values=sites0,
                           init_scale=init_scale, init_inclusion=init_inclusion, hard=hard)
    params = {k: jnp.array(v, copy=True) for k, v in guide.init_params.items()}  # the driver donates its state
    for k, v in (init or {}).items():
        if k not in params:
            raise ValueError(f"init has parameter {k!r}, which the guide does not have")
        if np.shape(v) != np.shape(params[k]):
            raise ValueError(f"init[{k!r}] must have shape {np.shape(params[k])}; got {np.shape(v)}")
        params[k] = jnp.array(v, params[k].dtype, copy=True)  # never the caller's arrays
    return Setup(guide, params, k_train, k_eval, k_pool)


def validation(model: BNN, guide: MeanFieldGuide, n_data: int, val, *, every: int, eval_samples: int, key,
               temperature: Callable, kl_weight: Callable) -> Callback:
    """The callback recording a history row every ``every`` steps (and at the end): loss, T, β, nodes kept
    per layer and, given ``val`` data, validation accuracy / NLL (or RMSE) of ``eval_samples`` guide draws."""
    val_dev = None if val is None else jax.device_put(tuple(val))
    evaluate = jax.jit(lambda params, k, x, y: _metrics(model, _sample_outputs(model, guide, params, n_data, k, x,
                                                                                eval_samples), y))
    last = []

    def callback(state, log: Log):
        since = log.step - (last[-1] if last else log.start)
        if since < every and not log.done:
            return None
        last.append(log.step)
        row = {"step": log.step, "loss": float(log.losses[-log.last_chunk:].mean()),
               "temperature": float(temperature(log.step - 1)),
               "kl_weight": float(kl_weight(log.step - 1))}
        if val_dev is not None:
            row.update({k: float(v) for k, v in evaluate(state.params, jax.random.fold_in(key, log.step), *val_dev).items()})
        probs = guide.inclusion_probs(state.params)
        if probs:
            row["nodes_kept"] = float(np.mean(np.concatenate([np.asarray(p >= 0.5).ravel() for p in probs.values()])))
            row.update({f"nodes_kept/{layer}": float(np.mean(np.asarray(p) >= 0.5))
                        for layer, p in sites.by_layer(probs).items()})
        log.history.append(row)
        return None

    return callback


def _sample_outputs(model, guide, params, n_data, key, x, n_samples):
    draws = _sample_sites(guide, params, key, n_samples)
    return jax.vmap(lambda s: model.net.apply(model.params(s, n_data), x))(draws)


def _metrics(model: BNN, outs: jax.Array, y: jax.Array) -> dict:
    """Validation metrics on device from predictive samples ``outs`` ``(S, N, out)``."""
    if model.likelihood.kind == "categorical":
        logp = jax.nn.log_softmax(outs, axis=-1)
        lp = jnp.take_along_axis(logp, y[None, :, None], axis=-1)[..., 0]
        nll = -jnp.mean(jax.scipy.special.logsumexp(lp, axis=0) - jnp.log(outs.shape[0]))
        acc = jnp.mean(jnp.argmax(jnp.exp(logp).mean(0), -1) == y)
        return {"val_accuracy": acc, "val_nll": nll}
    mean = outs.mean(0)
    mean = mean[..., 0] if y.ndim == 1 else mean
    return {"val_rmse": jnp.sqrt(jnp.mean((mean - y) ** 2))}


def weight_pool(weight_noise: str, s: Setup, num_particles: int, devices: Sequence) -> Pool | None:
    """The driver's :class:`Pool` for ``weight_noise`` (``"auto"``: pool on CPU, fresh normals elsewhere), or None."""
    if weight_noise not in WEIGHT_NOISE:
        raise ValueError(f"weight_noise must be one of {WEIGHT_NOISE}; got {weight_noise!r}")
    if weight_noise == "auto":
        weight_noise = "pool" if devices[0].platform == "cpu" else "fresh"
    return Pool(s.k_pool, s.guide.noise_size, num_particles) if weight_noise == "pool" else None


def positive_int(name: str, v, allow_zero: bool = False) -> int:
    """``v`` as an int; ValueError naming ``name`` unless it is an integer >= 1 (>= 0 with ``allow_zero``)."""
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < (0 if allow_zero else 1):
        raise ValueError(f"{name} must be a {'non-negative' if allow_zero else 'positive'} integer; got {v!r}")
    return int(v)


def svi(
    net: Network | BNN,
    prior: Prior | None = None,
    data=None,
    *,
    likelihood=None,
    num_steps: int = 5000,
    batch_size: int | None = 128,
    optimizer: optax.GradientTransformation | None = None,
    temperature: float | Callable = 0.5,
    kl_weight: float | Callable = 1.0,
    hard: bool = False,
    num_particles: int = 1,
    init_scale: float = 1e-2,
    init_inclusion: float = 0.99,
    init: Mapping[str, jax.Array] | None = None,
    val=None,
    eval_every: int | None = None,
    eval_samples: int = 8,
    chunk_size: int = 500,
    callbacks: Sequence[Callback] = (),
    progress: bool = True,
    checkpoint: str | os.PathLike | None = None,
    checkpoint_every: int = 10,
    seed: int = 0,
    devices: Sequence | None = None,
    prng_impl: str | None = None,
    weight_noise: str = "auto",
) -> SVIPosterior:
    """Fit ``prior`` over ``net`` to ``data`` by minibatch mean-field SVI; return the :class:`SVIPosterior`.

    Args:
      net: the :class:`~sparsebnn.nets.Network`, or a :class:`~sparsebnn.model.BNN` (then ``svi(model, data)``).
      prior: a :class:`~sparsebnn.priors.Prior`.
      data: a :class:`~sparsebnn.data.Dataset` (its train split; its val split validates), a ``Split`` or
        an ``(x, y)`` pair (:func:`sparsebnn.data.as_training` checks it).
      likelihood: a :class:`~sparsebnn.likelihood.Likelihood` or ``"categorical"`` (default: from the Dataset).
      num_steps: optimisation steps.
      batch_size: minibatch size (``None``: all the data at every step).
      optimizer: optax transformation (default ``optax.adam(1e-3)``).
      temperature: Concrete temperature T of the indicators, a float or a schedule ``step -> T``.
      kl_weight: β of ``E_q[ln p(y | w)] − β KL(q ‖ p)``, a float or a schedule (a warm-up ``0 → 1``).
      hard: straight-through hard indicators (off by default: on digits they switched whole layers off and
        left nodes with σ(θ) < 0.5 doing the work, so the pruned network lost 10+ points).
      num_particles: guide draws per step.
      init_scale, init_inclusion: initial ``σ = exp(ρ)`` of every Gaussian factor, initial ``σ(θ)``.
      init: guide parameters overriding the defaults by name (e.g. a previous posterior's ``params``).
      val: validation ``(x, y)`` (default: the Dataset's val split).
      eval_every: steps between history rows (default every chunk); ``eval_samples`` guide draws each.
      chunk_size: steps per compiled call.
      callbacks: extra :data:`~sparsebnn.infer.Callback` s run after every chunk.
      progress: show a progress bar.
      checkpoint: a file to save to every ``checkpoint_every`` chunks and at the end, and to resume from.
      seed: the run's seed; the run is a pure function of it.
      devices: devices to split each batch over (default: all local devices).
      prng_impl: JAX's PRNG (None: threefry; ``"rbg"`` compiles and runs faster on GPU).
      weight_noise: ``"pool"``: one pool of ``max(2P, min(steps · particles · P / 16, 2²⁰))`` normals per
        chunk, each draw taking ``P`` at a random offset (every step's noise is exactly iid N(0, 1); steps
        within a chunk share the pool, ``docs/svi.md``); ``"fresh"``: new normals at every step; ``"auto"``
        (default): the pool on CPU, where it halves the step time, fresh normals on GPU/TPU, where they are
        faster (measured on an H200) and the pool's small bias buys nothing (``docs/svi.md``).
    """
    model, tr = model_and_data(net, prior, data, likelihood, val=val)
    n = len(tr.x)
    full_batch = batch_size is None
    batch_size = n if full_batch else batch_size
    for name, v in (("num_steps", num_steps), ("batch_size", batch_size), ("num_particles", num_particles),
                    ("chunk_size", chunk_size), ("checkpoint_every", checkpoint_every), ("eval_samples", eval_samples)):
        positive_int(name, v)
    if batch_size > n:
        raise ValueError(f"batch_size ({batch_size}) exceeds the number of training examples ({n})")
    devices = list(jax.local_devices() if devices is None else devices)
    if batch_size % len(devices):
        raise ValueError(f"batch_size ({batch_size}) must be divisible by the number of devices ({len(devices)})")
    optimizer = optax.adam(1e-3) if optimizer is None else optimizer
    temp, beta = _schedule(temperature, "temperature"), _schedule(kl_weight, "kl_weight")
    eval_every = chunk_size if eval_every is None else positive_int("eval_every", eval_every)

    s = setup(model, tr, batch_size=batch_size, init_scale=init_scale, init_inclusion=init_inclusion, hard=hard,
              init=init, seed=seed, prng_impl=prng_impl)
    algo = mean_field_svi(model, s.guide, optimizer, n_data=n, temperature=temp, kl_weight=beta,
                          num_particles=num_particles)
    record = validation(model, s.guide, n, tr.val, every=eval_every, eval_samples=eval_samples, key=s.k_eval,
                        temperature=temp, kl_weight=beta)
    pool = weight_pool(weight_noise, s, num_particles, devices)
    return fit(model, s, algo, tr, num_steps=num_steps, batch_size=None if full_batch else batch_size,
               chunk_size=chunk_size, pool=pool, devices=devices, callbacks=[record, *callbacks], progress=progress,
               desc=f"svi {getattr(model.prior, 'name', type(model.prior).__name__)}", checkpoint=checkpoint,
               checkpoint_every=checkpoint_every, meta={"seed": seed, "batch_size": batch_size})


def fit(model: BNN, s: Setup, algo: SVI, tr: Training, *, num_steps: int, batch_size: int | None, chunk_size: int,
        pool: Pool | None, aux=None, **driver) -> SVIPosterior:
    """Run ``algo`` from ``s.params`` under :func:`~sparsebnn.infer.run_steps`; the :class:`SVIPosterior` of the result
    (its model: ``model``). ``driver``: devices, callbacks, progress, desc, checkpoint, checkpoint_every, meta."""
    t0 = time.perf_counter()
    state, log = run_steps(algo.step, algo.init(s.params, aux), (tr.x, tr.y), key=s.k_train, num_steps=num_steps,
                           batch_size=batch_size, chunk_size=chunk_size, pool=pool, **driver)
    params = jax.tree_util.tree_map(jnp.asarray, jax.device_get(state.params))
    n_devices = len(driver.get("devices") or jax.local_devices())
    return SVIPosterior(model, s.guide, params, len(tr.x), log.losses, log.history, time.perf_counter() - t0,
                        log.steps_per_s, n_devices, log.chunk_times, log.compile_time)


__all__ = ["SVI", "SVIPosterior", "SVIState", "Setup", "effective_params", "fit", "mean_field_svi", "setup", "site_factors",
           "svi", "validation"]
