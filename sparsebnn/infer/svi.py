"""Minibatch mean-field SVI for any prior over any network (DESIGN.md §2).

    post = svi(net, prior, data, num_steps=5000, batch_size=128)
    post.predict(x)           # (n_samples, N, out) logits / regression means
    post.inclusion_probs()    # {layer: σ(θ)} for spike-and-slab priors
    post.node_masks()         # σ(θ) >= 0.5 (spike-and-slab) or BMR (Gaussian weight factors)

The objective is ``TraceMeanField_ELBO`` on :class:`sparsebnn.model.BNN` with the
:class:`~sparsebnn.infer.guides.MeanFieldGuide`: analytic KL wherever one exists (Gaussian weights,
Bernoulli indicators), Monte Carlo for the scale hierarchy, the likelihood scaled by N / batch.
The reported loss is ``−ELBO / N`` (nats per training example).

Training runs ``chunk_size`` steps per jitted call (``lax.scan``); minibatch indices are drawn on
the device (with replacement) from ``fold_in(key(seed), step)``, so a run is a pure function of
its seed and resumes from a checkpoint bit-for-bit. The host is touched once per chunk (progress
bar, validation metrics, checkpoint). With several local devices the batch is split across them
(``jax.sharding``; parameters replicated, gradients all-reduced by XLA); the same code runs on one
CPU, one GPU or a multi-GPU node. For GPUs install the CUDA build: ``pip install -U "jax[cuda12]"``.
"""

from __future__ import annotations

import dataclasses
import functools
import os
import pickle
import tempfile
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import optax
from numpyro import handlers
from numpyro.infer import TraceMeanField_ELBO
from tqdm.auto import tqdm

from sparsebnn.model import BNN
from sparsebnn.nets.base import Network, Params, scale_nodes
from sparsebnn.priors.base import DECENTERED, Prior

from .guides import MeanFieldGuide


POOL_MAX = 2**20  # cap beyond the 2P minimum: 4 MB in float32 stays in cache (2²², 16 MB: SVI steps ≈ 1.2× slower on 784-400-400-10)
POOL_REUSE = 16  # the pool holds at least 1/16 of the normals the chunk's draws would take fresh


class SVIState(NamedTuple):
    """What one optimisation step carries: guide parameters, optimiser state, step count."""

    params: dict
    opt_state: Any
    step: jax.Array


# ----------------------------------------------------------------------------- data


def _arrays(data, what: str) -> tuple[np.ndarray, np.ndarray]:
    """``(x, y)`` from a ``(x, y)`` pair or a ``data.Split``."""
    try:
        x, y = data
    except (TypeError, ValueError):
        raise ValueError(f"{what} must be an (x, y) pair, a sparsebnn.data.Split or Dataset; got {type(data).__name__}") from None
    x, y = np.asarray(x), np.asarray(y)
    if x.ndim < 2 or len(x) != len(y) or len(x) == 0:
        raise ValueError(f"{what}: x must be (n, features...) and y (n,) with n >= 1; got {x.shape} and {y.shape}")
    if not np.all(np.isfinite(x)) or (np.issubdtype(y.dtype, np.floating) and not np.all(np.isfinite(y))):
        raise ValueError(f"{what} contains NaN or inf values")
    return x, y


def split_data(data, val, likelihood):
    """``((x, y), val, likelihood)`` from a Dataset, Split or ``(x, y)`` pair, validated: training arrays,
    validation arrays (or None) and the likelihood (inferred from a Dataset's task when None)."""
    if hasattr(data, "train") and hasattr(data, "task"):  # sparsebnn.data.Dataset
        if likelihood is None:
            likelihood = "categorical" if data.task == "classification" else "gaussian"
        val = data.val if val is None else val
        data = data.train
    likelihood = likelihood or "categorical"
    x, y = _arrays(data, "data")
    if likelihood == "categorical":
        if not np.issubdtype(y.dtype, np.integer):
            if not np.all(np.mod(y, 1) == 0):
                raise ValueError("data: a categorical likelihood needs integer class labels y")
        y = y.astype(np.int32)
    val = None if val is None else _arrays(val, "val")
    if val is not None and likelihood == "categorical":
        val = (val[0], val[1].astype(np.int32))
    return (x, y), val, likelihood


# ----------------------------------------------------------------------------- checkpoints


def save_checkpoint(path: str | os.PathLike, payload: dict) -> None:
    """Pickle ``payload`` atomically (temporary file + ``os.replace`` in the same folder)."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as fh:
            pickle.dump(jax.device_get(payload), fh)
        os.replace(tmp, path)
    except BaseException:
        if os.path.exists(tmp):
            os.unlink(tmp)
        raise


def load_checkpoint(path: str | os.PathLike) -> dict:
    with open(path, "rb") as fh:
        return pickle.load(fh)


def _same_structure(a, b) -> bool:
    sa = jax.tree_util.tree_map(lambda x: np.shape(x), a)
    sb = jax.tree_util.tree_map(lambda x: np.shape(x), b)
    return jax.tree_util.tree_structure(a) == jax.tree_util.tree_structure(b) and sa == sb


# ----------------------------------------------------------------------------- posterior


@dataclasses.dataclass
class SVIPosterior:
    """A fitted mean-field posterior: the model, its guide and the guide parameters.

    ``losses``: per-step ``−ELBO / N``; ``history``: one dict per validation (step, loss,
    temperature, val metrics, nodes kept); ``wall_time`` (s, training incl. compilation) and
    ``steps_per_s`` (steady state, compilation excluded); ``n_devices`` the batch was split over;
    ``chunk_times``: ``(steps, seconds)`` of every jitted chunk of this call (the first includes compilation).
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

    @property
    def net(self) -> Network:
        return self.model.net

    @property
    def prior(self) -> Prior:
        return self.model.prior

    # --- samples --------------------------------------------------------------------------

    def sample_sites(self, key: jax.Array, n: int = 1) -> dict:
        """``n`` draws of every latent site from the guide (exact Bernoulli indicators), leading axis ``n``."""
        return _sample_sites(self.guide, self.params, key, int(n))

    def sample_params(self, key: jax.Array, n: int = 1, masks: Mapping | None = None) -> Params:
        """``n`` draws of the effective network parameters, leading axis ``n``; ``masks`` prunes them."""
        return _sample_params(self.model, self.guide, self.params, self.n_data, key, int(n), masks)

    def predict(self, x, key: jax.Array | None = None, n_samples: int = 32, masks: Mapping | None = None) -> jax.Array:
        """Posterior-predictive network outputs ``(n_samples, N, out_dim)`` (logits or means).

        ``masks``: node masks ``{layer: (n_nodes,) bool}`` (e.g. :meth:`node_masks`) or weight masks
        ``{layer: {"w", "b"}}``; pruned nodes/weights are set to 0 (indicators of kept nodes to 1).
        """
        key = jax.random.key(0) if key is None else key
        self.model.check_data(x)
        return _predict(self.model, self.guide, self.params, self.n_data, key, jnp.asarray(x), int(n_samples), masks)

    # --- sparsity -------------------------------------------------------------------------

    def inclusion_probs(self) -> dict[str, jax.Array]:
        """``{layer: σ(θ)}`` of every layer with node indicators (empty for priors without them)."""
        return {k[: -len(".z")]: v for k, v in self.guide.inclusion_probs(self.params).items()}

    def normal_factors(self) -> dict[str, tuple[jax.Array, jax.Array]]:
        """``{site: (μ, σ)}`` of the Gaussian guide factor of every real-valued site (weights)."""
        return self.guide.normal_factors(self.params)

    def delta_f(self) -> Params:
        """Per-weight BMR ΔF of moving each weight to a spike at 0, shaped like the layers' params.

        Needs a fixed Gaussian prior on the weight sites: :class:`~sparsebnn.priors.Gaussian` without a
        scale hyperprior (prior ``N(0, σ0²)`` or the per-weight ``variance``), or any prior in
        non-centred form (``*_decentered`` sites, prior ``N(0, 1)``, e.g. the horseshoe), where ``w = 0``
        exactly when ``ε = 0``. Weights already at a spike (variance 0) get ΔF = 0.
        """
        from sparsebnn import bmr

        factors = self.normal_factors()
        prior_var = fixed_prior_variances(self.model.prior, self.net)
        out = {}
        for layer in self.net.layers:
            out[layer.name] = {}
            for k in ("w", "b"):
                site, var = prior_var(layer.name, k)
                if site not in factors:
                    raise ValueError(f"no Gaussian guide factor for site {site!r}")
                mu, sd = factors[site]
                spike = var == 0
                df = bmr.delta_f(mu, sd**2, 0.0, jnp.where(spike, 1.0, var), 0.0, 0.0)
                out[layer.name][k] = jnp.where(spike, 0.0, df)
        return out

    def node_masks(self, rule: str = "auto", margin: float = 0.0) -> dict[str, np.ndarray]:
        """Kept nodes ``{layer: (n_nodes,) bool}`` of every node-prunable layer.

        ``rule="indicator"``: keep where ``σ(θ) >= 0.5`` (spike-and-slab priors); ``"bmr"``: keep where
        the node group's ΔF (sum over its incoming weights and bias, :meth:`delta_f`) is ``<= margin``;
        ``"auto"``: indicator when the prior has indicators, else bmr.
        """
        if rule == "auto":
            rule = "indicator" if self.prior.indicators else "bmr"
        if rule == "indicator":
            if not self.prior.indicators:
                raise ValueError(f"rule='indicator' needs a spike-and-slab prior; {type(self.prior).__name__} has none")
            return {k: np.asarray(v >= 0.5) for k, v in self.inclusion_probs().items()}
        if rule == "bmr":
            from sparsebnn import bmr

            df = self.delta_f()
            return {layer.name: np.asarray(bmr.node_delta_f(df, layer) <= margin) for layer in self.net.prunable_layers}
        raise ValueError(f"rule must be 'auto', 'indicator' or 'bmr'; got {rule!r}")

    def weight_masks(self, margin: float = 0.0) -> Params:
        """Kept weights ``{layer: {"w", "b"}}`` by BMR: keep where ΔF <= ``margin`` (every layer, output included)."""
        from sparsebnn import bmr

        return jax.tree_util.tree_map(np.asarray, bmr.threshold_rule(self.delta_f(), margin))

    def mean_params(self, key: jax.Array | None = None, n_samples: int = 64, masks: Mapping | None = None) -> Params:
        """Posterior mean of the effective parameters (Monte Carlo over ``n_samples``), pruned by ``masks``."""
        key = jax.random.key(0) if key is None else key
        return jax.tree_util.tree_map(lambda a: a.mean(axis=0), self.sample_params(key, n_samples, masks))


def fixed_prior_variances(prior: Prior, net: Network) -> Callable[[str, str], tuple[str, jax.Array]]:
    """``(layer, "w"|"b") -> (weight site, prior variance)`` for priors where BMR applies; else ValueError."""
    from sparsebnn.priors import Gaussian

    gaussian = isinstance(prior, Gaussian) and prior.scale_prior is None
    spikes = prior.variance if gaussian and prior.variance is not None else {}

    def var(layer, k):
        centred = getattr(prior, "centered", True)
        site = f"{layer}.{k}" if centred else f"{layer}.{k}{DECENTERED}"
        v = jnp.asarray(prior.sigma0**2 if centred else 1.0)
        if layer in spikes:
            given = jnp.asarray(spikes[layer][k])
            v = given if centred else jnp.where(given > 0, 1.0, 0.0)
        return site, v

    if gaussian or not getattr(prior, "centered", True):
        return var
    raise ValueError(
        f"BMR needs a fixed Gaussian prior on the weight sites: use priors.Gaussian without scale_prior, or "
        f"centered=False (non-centred weights, prior N(0, 1)); got {prior!r}"
    )


def _sample_sites(guide, params, key, n):
    def one(k):
        tr = handlers.trace(handlers.seed(handlers.substitute(guide, data=params), k)).get_trace()
        return {name: s["value"] for name, s in tr.items() if s["type"] == "sample"}

    return jax.vmap(one)(jax.random.split(key, n))


def effective_params(model: BNN, sites: dict, n_data: int, masks: Mapping | None) -> Params:
    """Effective params from one draw of the sites; indicators of masked layers set to 1, then masks applied."""
    if masks is None:
        return model.params(sites, n_data)
    sites = dict(sites)
    for layer in masks:
        if f"{layer}.z" in sites:
            sites[f"{layer}.z"] = jnp.ones_like(sites[f"{layer}.z"])
    params = model.params(sites, n_data)
    nodes = {k: jnp.asarray(v) for k, v in masks.items() if not isinstance(v, Mapping)}
    params = scale_nodes(params, nodes)
    for k, v in masks.items():
        if isinstance(v, Mapping):
            params[k] = {kk: params[k][kk] * jnp.asarray(v[kk]) for kk in params[k]}
    return params


def _sample_outputs(model, guide, params, n_data, key, x, n_samples, masks=None):
    """Network outputs under ``n_samples`` guide draws: ``(n_samples, N, out_dim)``."""
    sites = _sample_sites(guide, params, key, n_samples)
    return jax.vmap(lambda s: model.net.apply(effective_params(model, s, n_data, masks), x))(sites)


_predict = jax.jit(_sample_outputs, static_argnums=(0, 1, 3, 6))


@functools.partial(jax.jit, static_argnums=(0, 1, 3, 5))
def _sample_params(model, guide, params, n_data, key, n, masks):
    sites = _sample_sites(guide, params, key, n)
    return jax.vmap(lambda s: effective_params(model, s, n_data, masks))(sites)


# ----------------------------------------------------------------------------- training


def noise_pool(key: jax.Array, step, size: int, draws: int) -> jax.Array | None:
    """The pool of standard normals for a chunk starting at ``step``: ``max(2·size, min(⌈draws·size/16⌉, 2²⁰))``
    of them (``size`` normals per draw of the guide, ``draws`` draws in the chunk); None when ``size`` is 0."""
    if not size:
        return None
    n = max(2 * size, min(-(-draws * size // POOL_REUSE), POOL_MAX))
    return jax.random.normal(jax.random.fold_in(key, step), (n,), jnp.result_type(float))


def training_chunk(loss_fn: Callable, optimizer: optax.GradientTransformation, key: jax.Array, *, n_data: int,
                   batch_size: int | None, noise_size: int = 0, draws: int = 1, pool_key: jax.Array | None = None,
                   sharding=None) -> Callable:
    """The jitted optimisation loop: ``run(state, x, y, length, *extra) -> (state, losses)``.

    ``length`` (static) steps of ``lax.scan``; step ``t`` draws its minibatch of ``batch_size`` (with
    replacement; the whole data when None) and the key of ``loss_fn(params, key, xb, yb, step, pool,
    *extra)`` from ``fold_in(key, t)``, then applies ``optimizer`` to the gradient. ``pool``: the chunk's
    :func:`noise_pool` from ``pool_key`` (``draws`` draws of ``noise_size`` normals a step), or None
    without ``pool_key``. ``sharding`` constrains each minibatch (data parallelism). The state is donated.
    """

    def step(state: SVIState, _, x, y, pool, extra):
        k_idx, k_loss = jax.random.split(jax.random.fold_in(key, state.step))
        if batch_size is None:
            xb, yb = x, y
        else:
            idx = jax.random.randint(k_idx, (batch_size,), 0, n_data)
            xb, yb = x[idx], y[idx]
        if sharding is not None:
            xb, yb = jax.lax.with_sharding_constraint((xb, yb), sharding)
        loss, grads = jax.value_and_grad(loss_fn)(state.params, k_loss, xb, yb, state.step, pool, *extra)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        return SVIState(optax.apply_updates(state.params, updates), opt_state, state.step + 1), loss

    @functools.partial(jax.jit, static_argnums=3, donate_argnums=0)
    def run(state, x, y, length, *extra):
        pool = None if pool_key is None else noise_pool(pool_key, state.step, noise_size, length * draws)
        return jax.lax.scan(functools.partial(step, x=x, y=y, pool=pool, extra=extra), state, None, length=length)

    return run


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


def _metrics(model: BNN, outs: jax.Array, y: jax.Array) -> dict:
    """Validation metrics on device from predictive samples ``outs`` ``(S, N, out)``."""
    if model.likelihood == "categorical":
        logp = jax.nn.log_softmax(outs, axis=-1)
        lp = jnp.take_along_axis(logp, y[None, :, None], axis=-1)[..., 0]
        nll = -jnp.mean(jax.scipy.special.logsumexp(lp, axis=0) - jnp.log(outs.shape[0]))
        acc = jnp.mean(jnp.argmax(jnp.exp(logp).mean(0), -1) == y)
        return {"val_accuracy": acc, "val_nll": nll}
    mean = outs.mean(0)
    mean = mean[..., 0] if y.ndim == 1 else mean
    return {"val_rmse": jnp.sqrt(jnp.mean((mean - y) ** 2))}


def svi(
    net: Network,
    prior: Prior,
    data,
    *,
    likelihood: str | None = None,
    noise=None,
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
    progress: bool = True,
    checkpoint: str | os.PathLike | None = None,
    checkpoint_every: int = 10,
    seed: int = 0,
    devices: Sequence | None = None,
    prng_impl: str | None = None,
    weight_noise: str = "pool",
) -> SVIPosterior:
    """Fit ``prior`` over ``net`` to ``data`` by minibatch mean-field SVI; return the posterior.

    ``data``: a ``sparsebnn.data.Dataset`` (its train split; val split for validation), a ``Split``
    or an ``(x, y)`` pair; ``batch_size=None`` uses all of it at every step. ``likelihood``: ``"categorical"`` (default; inferred from a Dataset) or
    ``"gaussian"`` with ``noise`` (known sd or a prior on it). ``optimizer`` defaults to
    ``optax.adam(1e-3)``. ``temperature``: Concrete temperature T, a float or an optax-style schedule
    ``step -> T``; ``hard``: straight-through hard indicators (the anchor's choice; off by default because
    on digits it switched whole layers off at learning rate 5e-3 and left nodes with σ(θ) < 0.5 doing the
    work, so the pruned network lost 10+ points that the relaxed estimator keeps). ``kl_weight``: β of the objective
    ``E_q[ln p(y | w)] − β KL(q ‖ p)``, a float or a schedule (a warm-up ``0 → 1``; β = 1, the ELBO,
    by default; the reported loss uses the current β). ``init``: guide parameters overriding
    the defaults by name (e.g. a previous posterior's ``params``). ``eval_every``: steps between
    validation passes (default: every chunk). ``checkpoint``: a file to save to every
    ``checkpoint_every`` chunks and at the end, and to resume from if it exists. ``devices``:
    devices to split each batch over (default: all local devices). ``prng_impl``: JAX's PRNG
    (``None``: the default threefry; ``"rbg"``/``"unsafe_rbg"`` compile faster and run faster on
    GPU, but generate normals several times slower on CPU). ``weight_noise``: ``"pool"`` (default) draws
    one pool of ``max(2P, min(steps · particles · P / 16, 2²⁰))`` normals per chunk (``P`` Gaussian factors)
    and gives every draw the window of ``P`` at a random offset (each step's noise is exactly iid N(0, 1), steps within a chunk share the pool:
    see :meth:`MeanFieldGuide.rsample`), which removes the one-normal-per-weight cost that otherwise
    doubles the step time on CPU; ``"fresh"``: new normals at every step.
    """
    (x, y), val, likelihood = split_data(data, val, likelihood)
    model = BNN(net, prior, likelihood, noise)
    n = len(x)
    model.check_data(x, y)
    if val is not None:
        model.check_data(*val)
    full_batch = batch_size is None
    batch_size = n if full_batch else batch_size
    for name, v in (("num_steps", num_steps), ("batch_size", batch_size), ("num_particles", num_particles),
                    ("chunk_size", chunk_size), ("checkpoint_every", checkpoint_every), ("eval_samples", eval_samples)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < 1:
            raise ValueError(f"{name} must be a positive integer; got {v!r}")
    if batch_size > n:
        raise ValueError(f"batch_size ({batch_size}) exceeds the number of training examples ({n})")
    devices = list(jax.local_devices() if devices is None else devices)
    if batch_size % len(devices):
        raise ValueError(f"batch_size ({batch_size}) must be divisible by the number of devices ({len(devices)})")
    if weight_noise not in ("pool", "fresh"):
        raise ValueError(f"weight_noise must be 'pool' or 'fresh'; got {weight_noise!r}")
    optimizer = optax.adam(1e-3) if optimizer is None else optimizer
    temp = _schedule(temperature, "temperature")
    beta = _schedule(kl_weight, "kl_weight")
    eval_every = chunk_size if eval_every is None else int(eval_every)

    # --- model, guide, initial state --------------------------------------------------------
    key = jax.random.key(seed, impl=prng_impl)
    k_init, k_train, k_eval, k_pool = jax.random.split(key, 4)
    sites0 = jax.jit(model.init_sites, static_argnames="n_data")(k_init, n_data=n)
    guide = MeanFieldGuide(model, x[:batch_size], y[:batch_size], n_data=n, init_values=sites0,
                           init_scale=init_scale, init_inclusion=init_inclusion, hard=hard)
    params = {k: jnp.array(v, copy=True) for k, v in guide.init_params.items()}  # the chunk donates its state
    for k, v in (init or {}).items():
        if k not in params:
            raise ValueError(f"init has parameter {k!r}, which the guide does not have")
        if np.shape(v) != np.shape(params[k]):
            raise ValueError(f"init[{k!r}] must have shape {np.shape(params[k])}; got {np.shape(v)}")
        params[k] = jnp.array(v, params[k].dtype, copy=True)  # the chunk donates its state: never the caller's arrays
    state = SVIState(params, optimizer.init(params), jnp.zeros((), jnp.int32))
    losses, history = np.zeros(0), []

    if checkpoint is not None and Path(checkpoint).exists():
        ck = load_checkpoint(checkpoint)
        if not _same_structure(ck["state"].params, state.params) or ck["seed"] != seed or ck["batch_size"] != batch_size:
            raise ValueError(f"checkpoint {checkpoint} does not match this run (model, seed or batch size differ)")
        state = jax.tree_util.tree_map(jnp.asarray, ck["state"])
        losses, history = np.asarray(ck["losses"]), list(ck["history"])

    # --- devices ----------------------------------------------------------------------------
    mesh = jax.sharding.Mesh(np.array(devices), ("data",))
    replicated = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec())
    batched = jax.sharding.NamedSharding(mesh, jax.sharding.PartitionSpec("data"))
    x_dev, y_dev = jax.device_put((x, y), replicated)
    state = jax.device_put(state, replicated)
    val_dev = None if val is None else jax.device_put(val, replicated)

    # --- the jitted chunk ---------------------------------------------------------------------
    elbo = TraceMeanField_ELBO(num_particles=num_particles, sum_sites=False)

    def loss_fn(p, k, xb, yb, step, pool):
        """``(−E_q[ln p(y | w)] + β KL) / N`` from the per-site ELBO terms (observed site: "y")."""
        guide_t = functools.partial(guide, temperature=temp(step), pool=pool)
        terms = elbo.loss(k, p, model, guide_t, xb, yb, n_data=n)
        return sum(v if name == "y" else beta(step) * v for name, v in terms.items()) / n

    run_chunk = training_chunk(loss_fn, optimizer, k_train, n_data=n, batch_size=None if full_batch else batch_size,
                               noise_size=guide.noise_size, draws=num_particles,
                               pool_key=k_pool if weight_noise == "pool" else None,
                               sharding=batched if len(devices) > 1 else None)

    @jax.jit
    def evaluate(params, key, x, y):
        outs = _sample_outputs(model, guide, params, n, key, x, eval_samples)
        return _metrics(model, outs, y)

    # --- the loop -------------------------------------------------------------------------------
    start = int(state.step)
    bar = tqdm(total=num_steps, initial=min(start, num_steps), unit="step", disable=not progress,
               desc=f"svi {getattr(prior, 'name', type(prior).__name__)}")
    t_start, steady_time, steady_steps, chunks, chunk_times = time.perf_counter(), 0.0, 0, 0, []
    step_now, last_eval = start, start
    while step_now < num_steps:
        length = min(chunk_size, num_steps - step_now)
        t0 = time.perf_counter()
        state, chunk_losses = run_chunk(state, x_dev, y_dev, length)
        chunk_losses = np.asarray(chunk_losses)  # the one host sync per chunk
        dt = time.perf_counter() - t0
        chunk_times.append((length, dt))
        if chunks > 0:
            steady_time, steady_steps = steady_time + dt, steady_steps + length
        chunks += 1
        step_now += length
        losses = np.concatenate([losses, chunk_losses])
        if not np.all(np.isfinite(chunk_losses)):
            bar.close()
            raise FloatingPointError(f"SVI loss became non-finite by step {step_now}; lower the learning rate")
        bar.update(length)
        if step_now - last_eval >= eval_every or step_now == num_steps:
            last_eval = step_now
            row = {"step": step_now, "loss": float(chunk_losses.mean()), "temperature": float(temp(step_now - 1)),
                   "kl_weight": float(beta(step_now - 1))}
            if val_dev is not None:
                row.update({k: float(v) for k, v in evaluate(state.params, jax.random.fold_in(k_eval, step_now), *val_dev).items()})
            probs = guide.inclusion_probs(state.params)
            if probs:
                row["nodes_kept"] = float(np.mean(np.concatenate([np.asarray(p >= 0.5).ravel() for p in probs.values()])))
                row.update({f"nodes_kept/{site.removesuffix('.z')}": float(np.mean(np.asarray(p) >= 0.5))
                            for site, p in probs.items()})
            history.append(row)
            bar.set_postfix({k: f"{v:.4g}" for k, v in row.items() if k != "step"})
        if checkpoint is not None and (chunks % checkpoint_every == 0 or step_now == num_steps):
            save_checkpoint(checkpoint, {"state": state, "losses": losses, "history": history, "seed": seed,
                                         "batch_size": batch_size})
    bar.close()
    wall = time.perf_counter() - t_start
    steps_per_s = steady_steps / steady_time if steady_steps else (step_now - start) / max(wall, 1e-9)
    params = jax.device_get(state.params)
    return SVIPosterior(model, guide, jax.tree_util.tree_map(jnp.asarray, params), n, losses, history, wall, steps_per_s,
                        len(devices), chunk_times)


__all__ = ["SVIPosterior", "SVIState", "effective_params", "fixed_prior_variances", "load_checkpoint", "noise_pool",
           "save_checkpoint", "split_data", "svi", "training_chunk"]
