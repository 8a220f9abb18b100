"""Reference NUTS on the same NumPyro model that SVI fits (full-batch likelihood, small networks; ``docs/nuts.md``).

    post = nuts(net, prior, data, num_warmup=500, num_samples=500, num_chains=4)
    post.ok, post.problems        # convergence verdict (a failed run also raises a DiagnosticsWarning)
    post.trace                    # ArviZ DataTree: posterior + sample_stats (R-hat, ESS, energy, ...)
    post.predict(x)               # (n_draws, N, out) logits / regression means
    post.inclusion_probs()        # {layer: posterior frequency of z_j = 1}
    post.normal_factors()         # {site: (mean, sd)} Gaussian fitted to the draws, for sparsebnn.bmr
    post.delta_f(), post.savage_dickey()

**Model.** :class:`sparsebnn.model.BNN` (the deterministic ``"f"`` site is hidden from the trace).
Weights are non-centred by default (``centered=False``: ``w = scale · ε``, ``ε ~ N(0, 1)``), which
removes the funnel between a weight and its scale (Betancourt & Girolami 2015); ``centered=None``
keeps the prior's own setting.

**Node indicators, exactly.** NUTS needs continuous targets, so the Bernoulli node indicators
``"L.z"`` of the spike-and-slab priors are handled by one of two exact schemes:

* ``indicators="enumerate"``: the indicators are summed out, NUTS runs on the marginal
  ``p(θ | y) ∝ Σ_z p(z) p(θ) p(y | z, θ)`` (``2^K`` network evaluations per gradient for ``K``
  indicators), then ``z`` is drawn exactly from ``p(z | θ, y)`` per draw and the inclusion
  probabilities are Rao–Blackwellised, ``E[p(z_j = 1 | θ, y)]``. Nodes switch on and off smoothly:
  no Metropolis step has to accept a whole node at once.
* ``indicators="gibbs"``: :class:`numpyro.infer.DiscreteHMCGibbs` with Liu's modified
  (Metropolised) Gibbs proposal: every MCMC step sweeps all indicators in random order, each
  proposing the flip ``z_j → 1 − z_j`` accepted with ``min(1, p(flip | rest) / p(current | rest))``
  (one likelihood evaluation per indicator; for binary variables this dominates plain Gibbs in
  Peskun order), then one NUTS transition of every continuous site given ``z``. Linear cost in
  ``K``, but a switched-off node's slab weights drift under the prior (the pseudo-prior), so
  switching it back on is rarely accepted when the data are informative: indicators mix slowly
  (measured on a 1-4-1 teacher regression, 4 chains × 300 draws: indicator bulk ESS 27 and
  R-hat 1.11 with Gibbs vs 283 and 1.01 with enumeration, which was also faster).
* ``indicators="auto"`` (default): enumerate when ``2^K <= max_enumerate`` (1024), else Gibbs.

MixedHMC is not used: it wraps plain HMC with a fixed trajectory length, not NUTS.

**Replica exchange** (``replicas=R > 1``): ``R`` copies of every chain target the tempered posteriors
``p(θ) Σ_z p(z) p(y | z, θ)^β`` (indicators summed out) at ``β_k = beta_min^(k/(R−1))``; each step is one
NUTS transition per replica and one round of swaps between neighbouring temperatures (alternating even
and odd pairs), accepted with the Metropolis ratio of the two tempered targets. Hot replicas cross
between modes and node configurations that the ``β = 1`` chain alone rarely leaves; the draws kept are
the ``β = 1`` replica's, so the target is unchanged. Cost: ``R`` times the gradients (all counted in
``n_leapfrog``).

**Shape.** The sampler is a pure potential (:func:`log_joints` / :func:`marginal_potential` of the model
given the data) run by NumPyro's NUTS under :class:`NUTSOptions`, a frozen settings object validated
once; :func:`sample` is one run, :func:`nuts` the entry point, :func:`batched_sampler` many datasets at once.

**Chains.** ``chain_method="auto"`` runs chains in parallel when there are at least
``num_chains`` local devices, else sequentially (vectorised chains are available for models
without indicators). On CPU, create devices with ``numpyro.set_host_device_count(k)`` at the very
start of the program, before JAX initialises. ``init="shared"`` starts every chain at one draw of
the network's initialisation (:meth:`BNN.init_sites`: scales at their prior medians, indicators on),
so chains explore the same posterior mode; ``"dispersed"`` draws one start per chain — hidden-node
permutations and sign flips then put chains in symmetric copies of the posterior and weight-space
R-hat fails by construction. A dict of site values (e.g. from an SVI fit) is used for every chain.

**Diagnostics.** Via ArviZ (:mod:`sparsebnn.diagnostics`): R-hat (rank and folded) ≤ 1.01, bulk and
tail ESS ≥ 100 per chain, no divergences, E-BFMI ≥ 0.3. The verdict (``ok``, ``diagnostics``) is on
what the posterior identifies (:mod:`sparsebnn.invariants`: log-likelihood, outputs at probe inputs,
active nodes, sorted node norms, scalar sites); the same checks on every element of every latent site
are kept as ``raw_diagnostics`` (they fail between chains in relabelled copies of a mode). A failed
run is returned with ``ok=False`` and its ``problems`` listed, and warns loudly.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
import time
from collections.abc import Callable, Mapping
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import numpyro  # noqa: F401  (the package before its submodules; see sparsebnn.diagnostics)
import numpyro.distributions as dist
from numpyro import handlers
from numpyro.infer import MCMC, NUTS, DiscreteHMCGibbs
from numpyro.infer.initialization import init_to_median
from numpyro.infer.util import constrain_fn, log_density, potential_energy
from numpyro.primitives import Messenger
from numpyro.distributions.transforms import biject_to

from sparsebnn import sites
from sparsebnn.diagnostics import Diagnostics, diagnose, warn_if_failed
from sparsebnn.model import BNN
from sparsebnn.nets import Network, Params
from sparsebnn.posterior import DRAWS, GaussianFactors, ModelPosterior, check_draws
from sparsebnn.priors import Prior

from ._guides import model_sites
from ._inputs import model_and_data
from ._svi import effective_params, site_factors

INDICATORS = ("auto", "enumerate", "gibbs")
CHAIN_METHODS = ("auto", "parallel", "sequential", "vectorized")
INITS = ("shared", "dispersed")

_STATS = {  # numpyro HMCState field -> ArviZ sample_stats name
    "diverging": "diverging",
    "energy": "energy",
    "potential_energy": "lp",
    "num_steps": "n_steps",
    "adapt_state.step_size": "step_size",
    "accept_prob": "acceptance_rate",
}


# ----------------------------------------------------------------------------- options


def _count(name: str, v, minimum: int = 1) -> None:
    if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < minimum:
        raise ValueError(f"{name} must be a {'non-negative' if minimum == 0 else 'positive'} integer; got {v!r}")


@dataclasses.dataclass(frozen=True)
class NUTSOptions:
    """The sampler's settings, validated once.

    ``num_samples`` draws per chain are kept after ``num_warmup`` adaptation steps (step size, diagonal or
    ``dense_mass`` mass matrix), every ``thinning``-th of ``num_samples · thinning``; ``target_accept``
    and ``max_tree_depth`` are NUTS's; ``indicators``: ``"enumerate"`` / ``"gibbs"`` / ``"auto"`` (enumerate
    when ``2^K <= max_enumerate``); ``chain_method``: ``"parallel"`` / ``"sequential"`` / ``"vectorized"`` /
    ``"auto"`` (parallel when there are enough devices); ``progress``: NumPyro's progress bar;
    ``replicas``: ``R > 1`` runs replica exchange (:func:`replica_exchange`) over the likelihood temperatures
    ``β_k = beta_min^(k/(R−1))`` with indicators summed out, keeping the ``β = 1`` replica's draws.
    """

    num_warmup: int = 500
    num_samples: int = 500
    num_chains: int = 4
    thinning: int = 1
    chain_method: str = "auto"
    indicators: str = "auto"
    target_accept: float = 0.9
    max_tree_depth: int = 10
    dense_mass: bool = False
    max_enumerate: int = 1024
    progress: bool = False
    replicas: int = 1
    beta_min: float = 0.05

    def __post_init__(self):
        _count("num_warmup", self.num_warmup, 0)
        for name in ("num_samples", "num_chains", "thinning", "max_tree_depth", "max_enumerate", "replicas"):
            _count(name, getattr(self, name))
        if not 0 < self.beta_min < 1:
            raise ValueError(f"beta_min must lie in (0, 1); got {self.beta_min!r}")
        if not 0 < self.target_accept < 1:
            raise ValueError(f"target_accept must lie in (0, 1); got {self.target_accept!r}")
        if self.indicators not in INDICATORS:
            raise ValueError(f"indicators must be one of {INDICATORS}; got {self.indicators!r}")
        if self.chain_method not in CHAIN_METHODS:
            raise ValueError(f"chain_method must be one of {CHAIN_METHODS}; got {self.chain_method!r}")

    @property
    def method(self) -> str:
        """The chain method to use here (``"auto"`` resolved against the local device count)."""
        method, have = self.chain_method, jax.local_device_count()
        if method == "auto":
            method = "parallel" if self.num_chains > 1 and have >= self.num_chains else "sequential"
        if method == "parallel" and self.num_chains > 1 and have < self.num_chains:
            raise ValueError(f"chain_method='parallel' needs {self.num_chains} devices, found {have}; call "
                             f"numpyro.set_host_device_count({self.num_chains}) before JAX starts, or use 'sequential'")
        return method


# ----------------------------------------------------------------------------- the target


class Target(NamedTuple):
    """The model as the sampler sees it: its sites, and the indicator configurations when enumerated.

    ``fn``: the model with the deterministic ``"f"`` hidden; ``indicators``: ``"enumerate"``, ``"gibbs"`` or
    None (no indicators); ``configs``: per indicator site the ``(2^K_s, *shape)`` values of that site's ``K_s``
    indicators; the joint configurations are their product, ``config_matrix`` ``(2^K, K)`` (the first site's
    indicators vary slowest, as in :func:`over_configs`).
    """

    fn: Callable
    sites: tuple
    indicators: str | None
    configs: dict | None = None
    config_matrix: np.ndarray | None = None

    @property
    def z_sites(self) -> tuple:
        return tuple(s for s in self.sites if s.discrete)

    @property
    def real_sites(self) -> tuple:
        return tuple(s for s in self.sites if not s.discrete)

    @property
    def enumerated(self) -> bool:
        return self.indicators == "enumerate"


def target(model: BNN, options: NUTSOptions, x_example, y_example) -> Target:
    """The :class:`Target` of ``model`` (sites from one example batch) under ``options``."""
    fn = handlers.block(model, hide=["f"])
    found = tuple(model_sites(fn, x_example, y_example))
    z_sites = [s for s in found if s.discrete]
    if not z_sites:
        return Target(fn, found, None)
    n_z = sum(math.prod(s.shape) for s in z_sites)
    mode = options.indicators
    if mode == "auto":
        mode = "enumerate" if 2**n_z <= options.max_enumerate else "gibbs"
    if mode == "gibbs":
        if options.chain_method == "vectorized":
            raise ValueError("chain_method='vectorized' does not support Gibbs updates of indicators; use 'sequential'")
        return Target(fn, found, "gibbs")
    if 2**n_z > options.max_enumerate:
        raise ValueError(f"enumerating {n_z} indicators needs 2^{n_z} configurations > max_enumerate="
                         f"{options.max_enumerate}; use indicators='gibbs'")
    matrix = np.array(list(itertools.product([0, 1], repeat=n_z)), np.int32)
    configs = {s.name: jnp.asarray(np.array(list(itertools.product([0, 1], repeat=math.prod(s.shape))), np.int32)
                                   .reshape((-1, *s.shape))) for s in z_sites}
    return Target(fn, found, "enumerate", configs, matrix)


class tempered(Messenger):
    """Raise the likelihood to the power ``beta``: every observed site's log density is scaled by ``β``, so the
    model's joint becomes ``p(θ, z) p(y | θ, z)^β`` (``β = 1``: the posterior, ``β → 0``: the prior)."""

    def __init__(self, fn=None, beta=1.0):
        self.beta = beta
        super().__init__(fn)

    def process_message(self, msg):
        if msg["type"] == "sample" and msg.get("is_observed"):
            msg["scale"] = self.beta if msg["scale"] is None else self.beta * msg["scale"]


def over_configs(t: Target, f: Callable[[dict], jax.Array]) -> jax.Array:
    """``f(config)`` for every enumerated configuration, ``(2^K,)`` in the order of ``t.config_matrix``.

    One ``vmap`` per indicator site, nested in site order: what does not depend on a site's indicators (the
    layers before it, the prior of the continuous sites) is computed once per configuration of the sites before
    it, not once per joint configuration (``2.3×`` faster gradients on 1-4-4-1, whose 256 configurations are
    16 × 16).
    """
    def over_site(g, name, values):  # config -> g over every value of this site's indicators
        return lambda config: jax.vmap(lambda v: g({**config, name: v}))(values)

    for name, values in reversed(t.configs.items()):
        f = over_site(f, name, values)
    return f({}).reshape(-1)


def log_joints(t: Target, unconstrained: dict, x, y, beta=None) -> jax.Array:
    """``ln p(y, z = c, θ)`` (unconstrained θ, Jacobian included) for every enumerated configuration ``c``;
    with ``beta``, the tempered ``ln p(z = c, θ) + β ln p(y | z = c, θ)``."""
    fn = t.fn if beta is None else tempered(t.fn, beta)
    return over_configs(t, lambda config: -potential_energy(handlers.condition(fn, data=config), (x, y), {}, unconstrained))


def marginal_potential(t: Target, x, y) -> Callable[[dict], jax.Array]:
    """The potential ``−ln Σ_c p(y, z = c, θ)`` of the continuous sites given the data (indicators summed out)."""
    return lambda unconstrained: -jax.scipy.special.logsumexp(log_joints(t, unconstrained, x, y))


def tempered_potential(t: Target, x, y) -> Callable[[dict, jax.Array], jax.Array]:
    """``U(θ, β) = −ln Σ_c p(z = c, θ) p(y | z = c, θ)^β`` (indicators summed out; no sum without indicators),
    unconstrained θ with its Jacobian: the potential of the replica at inverse temperature ``β``."""
    if t.indicators == "gibbs":
        raise ValueError("tempering needs enumerated indicators (or none); use indicators='enumerate'")

    def potential(unconstrained, beta):
        if t.enumerated:
            return -jax.scipy.special.logsumexp(log_joints(t, unconstrained, x, y, beta))
        return potential_energy(tempered(t.fn, beta), (x, y), {}, unconstrained)

    return potential


def _constrainer(t: Target, x, y) -> Callable[[dict], dict]:
    one = {k: v[0] for k, v in t.configs.items()}
    return lambda unconstrained: constrain_fn(handlers.condition(t.fn, data=one), (x, y), {}, unconstrained)


def indicator_log_posterior(t: Target, theta: dict, x, y) -> jax.Array:
    """``ln p(y, z = c, θ)`` for every enumerated configuration ``c`` at one draw of the constrained continuous sites
    ``theta``: ``p(z | θ, y)`` up to its normaliser."""
    return over_configs(t, lambda config: log_density(handlers.condition(t.fn, data={**theta, **config}), (x, y), {}, {})[0])


def split_sites(t: Target, values) -> dict:
    """``{indicator site: values[..., its slice]}``: the last axis of ``values`` (one entry per indicator, the
    columns of ``t.config_matrix``) split by site and reshaped to the site's shape."""
    out, cut = {}, 0
    for s in t.z_sites:
        size = math.prod(s.shape)
        out[s.name] = values[..., cut:cut + size].reshape(values.shape[:-1] + s.shape)
        cut += size
    return out


def draw_indicators(t: Target, key, samples: dict, x, y) -> tuple[dict, dict]:
    """Exact ``z ~ p(z | θ, y)`` per draw and the conditional inclusion probabilities ``p(z = 1 | θ, y)``."""
    cont = {s.name: samples[s.name] for s in t.real_sites}
    lead = next(iter(cont.values())).shape[:2]
    flat = jax.tree_util.tree_map(lambda v: v.reshape((-1,) + v.shape[2:]), cont)

    @jax.jit
    def per_draw(theta, k):
        logp = indicator_log_posterior(t, theta, x, y)
        prob = jax.nn.softmax(logp)
        pick = jax.random.categorical(k, logp)
        return pick, prob @ t.config_matrix.astype(prob.dtype)

    keys = jax.random.split(key, math.prod(lead))
    pick, marg = jax.lax.map(lambda a: per_draw(*a), (flat, keys), batch_size=64)
    pick, marg = np.asarray(pick).reshape(lead), np.asarray(marg).reshape(lead + (-1,))
    return split_sites(t, t.config_matrix[pick]), split_sites(t, marg)


# ----------------------------------------------------------------------------- starting points


def start_values(draws: Mapping) -> dict:
    """A starting point from posterior draws ``{site: (S, ...)}`` (e.g. an SVI fit's ``sample_sites``): means,
    geometric means for positive sites, the majority value for indicators."""
    out = {}
    for name, v in draws.items():
        v = np.asarray(v, np.float64)
        if sites.indicator_layer(name) is not None:
            out[name] = (v.mean(0) >= 0.5).astype(np.int32)
        elif np.all(v > 0):
            out[name] = np.exp(np.log(v).mean(0))
        else:
            out[name] = v.mean(0)
    return out


def _complete(t: Target, values: dict, key, x_example, y_example) -> dict:
    """Fill sites missing from ``values`` (e.g. a learned noise sd) with their prior medians, indicators with 1."""
    missing = [s for s in t.sites if s.name not in values]
    if not missing:
        return values
    median = init_to_median(num_samples=15)

    def fill(site):
        if site["name"] in values:
            return values[site["name"]]
        if site["fn"].support is dist.constraints.boolean:
            return jnp.ones(site["fn"].shape())
        return median(site)

    tr = handlers.trace(handlers.substitute(handlers.seed(t.fn, key), substitute_fn=fill)).get_trace(x_example, y_example)
    return {**values, **{s.name: tr[s.name]["value"] for s in missing}}


def init_params(t: Target, model: BNN, num_chains: int, init, key, n_data: int, x_example, y_example) -> dict:
    """Per-chain starting values (unconstrained for NUTS sites, 0/1 for Gibbs-updated indicators) from ``init``:
    ``"shared"``, ``"dispersed"`` or a dict of site values (see the module docstring)."""
    if isinstance(init, str):
        if init not in INITS:
            raise ValueError(f"init must be one of {INITS} or a dict of site values; got {init!r}")
        keys = [key] * num_chains if init == "shared" else list(jax.random.split(key, num_chains))
        starts = [_complete(t, model.init_sites(k, n_data=n_data), k, x_example, y_example) for k in keys]
    elif isinstance(init, Mapping):
        unknown = set(init) - {s.name for s in t.sites}
        if unknown:
            raise ValueError(f"init has values for {sorted(unknown)}, which are not latent sites of the model")
        for s in t.sites:
            if s.name in init and not s.discrete:
                v = jnp.asarray(init[s.name], jnp.result_type(float))
                if v.shape != s.shape or not bool(jnp.all(jnp.isfinite(biject_to(s.support).inv(v)))):
                    raise ValueError(f"init[{s.name!r}] must have shape {s.shape} and lie inside the support "
                                     f"{s.support}; got shape {v.shape}")
        starts = [_complete(t, dict(init), key, x_example, y_example)] * num_chains
    else:
        raise ValueError(f"init must be one of {INITS} or a dict of site values; got {type(init).__name__}")
    out = {}
    for s in t.sites:
        if t.enumerated and s.discrete:
            continue
        vals = []
        for start in starts:
            v = jnp.broadcast_to(jnp.asarray(start[s.name]), s.shape)
            if s.discrete:
                vals.append(v.astype(jnp.int32))
                continue
            u = biject_to(s.support).inv(v.astype(jnp.result_type(float)))
            if not bool(jnp.all(jnp.isfinite(u))):
                raise ValueError(f"init[{s.name!r}] lies outside the support {s.support}")
            vals.append(u)
        out[s.name] = jnp.stack(vals) if num_chains > 1 else vals[0]
    return out


# ----------------------------------------------------------------------------- one run


class Draws(NamedTuple):
    """One sampler run: ``samples[site]`` and ``stats[name]`` shaped ``(chains, draws, ...)``, the conditional
    inclusion probabilities (enumeration only), the wall time of ``MCMC.run`` and the indicator scheme."""

    samples: dict
    stats: dict
    indicator_probs: dict | None
    wall_time: float
    indicators: str | None


def sample(model: BNN, x, y, options: NUTSOptions, key: jax.Array, init="shared", n_data: int | None = None) -> Draws:
    """Warm up and sample the posterior of ``model`` given ``(x, y)`` (full batch) under ``options``."""
    n_data = len(x) if n_data is None else n_data
    x, y = jnp.asarray(x), jnp.asarray(y)
    t = target(model, options, x[:1], y[:1])
    k_init, k_run, k_z = jax.random.split(key, 3)
    if options.replicas > 1:
        return _sample_tempered(t, model, x, y, options, init, n_data, k_init, k_run, k_z)
    nuts_kw = dict(target_accept_prob=options.target_accept, max_tree_depth=options.max_tree_depth,
                   dense_mass=options.dense_mass)
    if t.enumerated:
        kernel, post, args = NUTS(potential_fn=marginal_potential(t, x, y), **nuts_kw), _constrainer(t, x, y), ()
    else:
        kernel, post, args = NUTS(t.fn, **nuts_kw), None, (x, y)
        if t.indicators == "gibbs":
            kernel = DiscreteHMCGibbs(kernel, modified=True)
    mcmc = MCMC(kernel, num_warmup=options.num_warmup, num_samples=options.num_samples * options.thinning,
                num_chains=options.num_chains, thinning=options.thinning, chain_method=options.method,
                progress_bar=options.progress, postprocess_fn=post, jit_model_args=not t.enumerated)
    prefix = "hmc_state." if t.indicators == "gibbs" else ""
    start = init_params(t, model, options.num_chains, init, k_init, n_data, x[:1], y[:1])
    t0 = time.perf_counter()
    mcmc.run(k_run, *args, init_params=start, extra_fields=tuple(prefix + f for f in _STATS))
    samples = {k: np.asarray(v) for k, v in mcmc.get_samples(group_by_chain=True).items()}
    extra = mcmc.get_extra_fields(group_by_chain=True)
    wall = time.perf_counter() - t0
    stats = {_STATS[k[len(prefix):]]: np.asarray(v) for k, v in extra.items()}
    stats["lp"] = -stats["lp"]
    return _draws(t, samples, stats, stats["n_steps"], options, k_z, x, y, wall)


def _draws(t: Target, samples: dict, stats: dict, steps, options: NUTSOptions, k_z, x, y, wall: float) -> Draws:
    """Tree depths from the leapfrog counts, then exact indicator draws where the indicators were summed out."""
    stats["tree_depth"] = np.floor(np.log2(np.maximum(steps, 1))).astype(np.int64) + 1
    stats["reached_max_treedepth"] = steps >= 2**options.max_tree_depth - 1
    probs = None
    if t.enumerated:
        z, probs = draw_indicators(t, k_z, samples, x, y)
        samples.update(z)
    for s in t.z_sites:
        samples[s.name] = np.asarray(samples[s.name]).astype(np.int8)
    return Draws(samples, stats, probs, wall, t.indicators)


def _sample_tempered(t: Target, model: BNN, x, y, options: NUTSOptions, init, n_data, k_init, k_run, k_z) -> Draws:
    """:func:`sample` by :func:`replica_exchange` (``options.replicas > 1``): the β = 1 replica's draws."""
    if t.indicators == "gibbs":
        raise ValueError("replicas > 1 needs enumerated indicators; use indicators='enumerate' (or raise max_enumerate)")
    start = init_params(t, model, options.num_chains, init, k_init, n_data, x[:1], y[:1])
    if options.num_chains == 1:
        start = jax.tree_util.tree_map(lambda v: v[None], start)
    u, stats, wall = replica_exchange(t, options, k_run, start, x, y)
    if t.enumerated:
        post = _constrainer(t, x, y)
    else:
        post = functools.partial(constrain_fn, t.fn, (x, y), {})
    flat = jax.tree_util.tree_map(lambda v: v.reshape((-1,) + v.shape[2:]), u)
    lead = stats["diverging"].shape
    samples = {k: np.asarray(v).reshape(lead + v.shape[1:]) for k, v in jax.jit(jax.vmap(post))(flat).items()}
    return _draws(t, samples, stats, stats["n_steps_cold"], options, k_z, x, y, wall)


def temperatures(replicas: int, beta_min: float) -> np.ndarray:
    """The inverse temperatures ``β_k = β_min^(k / (R − 1))``, ``k = 0..R−1``: geometric from 1 (the posterior)
    down to ``β_min``; ``(1,)`` for one replica."""
    _count("replicas", replicas)
    return np.ones(1) if replicas == 1 else beta_min ** (np.arange(replicas) / (replicas - 1))


def swap_moves(potential: Callable, betas: jax.Array, z: dict, pe: jax.Array, parity, key) -> tuple[dict, jax.Array]:
    """One round of replica-exchange swaps between neighbours ``(k, k+1)`` with ``k ≡ parity (mod 2)``
    (disjoint pairs; alternating the parity is the non-reversible even-odd scheme of Syed et al. 2022).

    A pair swaps its states with probability ``min(1, π_k(θ_{k+1}) π_{k+1}(θ_k) / (π_k(θ_k) π_{k+1}(θ_{k+1})))``
    where ``π_k ∝ exp(−U(·, β_k))`` (with a plain tempered likelihood this is
    ``min(1, exp((β_k − β_{k+1})(ℓ_{k+1} − ℓ_k)))``; here the indicators are summed out inside ``U``, so the ratio is
    evaluated directly). ``z``: the replicas' unconstrained positions (leading axis ``R``), ``pe``: ``U(z_k, β_k)``.
    Returns the new positions' source index per replica and the accepted flags ``(R − 1,)``.
    """
    lo = jax.tree_util.tree_map(lambda v: v[:-1], z)
    hi = jax.tree_util.tree_map(lambda v: v[1:], z)
    cross = jax.vmap(potential)(hi, betas[:-1]) + jax.vmap(potential)(lo, betas[1:])
    log_ratio = pe[:-1] + pe[1:] - cross
    pairs = jnp.arange(betas.shape[0] - 1)
    accept = ((pairs % 2) == parity) & (jnp.log(jax.random.uniform(key, pairs.shape)) < log_ratio)
    up = jnp.concatenate([accept, jnp.zeros(1, bool)])
    down = jnp.concatenate([jnp.zeros(1, bool), accept])
    idx = jnp.arange(betas.shape[0])
    return jnp.where(up, idx + 1, jnp.where(down, idx - 1, idx)), accept


def replica_exchange(t: Target, options: NUTSOptions, key: jax.Array, start: dict, x, y) -> tuple[dict, dict, float]:
    """Replica exchange (parallel tempering) with NUTS in every replica; returns the β = 1 replica's draws.

    Per chain, ``R = options.replicas`` replicas target ``π_k(θ) ∝ exp(−U(θ, β_k))`` (:func:`tempered_potential`,
    :func:`temperatures`); every step is one NUTS transition of each replica (NumPyro's functional
    :func:`numpyro.infer.hmc.hmc`, step size and diagonal mass matrix adapted per replica during warm-up; the
    replicas' transitions run one after another, ``lax.map``) and one round of :func:`swap_moves`, alternating
    even and odd pairs. ``start``: per-chain unconstrained starting
    values (leading axis ``num_chains``), shared by the chain's replicas. Chains run one after another through
    one compiled function. Returns ``(unconstrained draws, stats, wall seconds)``, each ``(chains, draws, ...)``;
    ``stats["n_steps"]`` counts the leapfrog steps of all replicas, ``stats["swap_accept"]`` ``(chains, draws,
    R − 1)`` the accepted swaps (each pair is proposed every second step).
    """
    from numpyro.infer.hmc import hmc

    R = options.replicas
    betas = jnp.asarray(temperatures(R, options.beta_min), jnp.result_type(float))
    potential = tempered_potential(t, x, y)
    init_kernel, sample_kernel = hmc(potential_fn_gen=lambda beta: functools.partial(potential, beta=beta), algo="NUTS")
    grad = jax.vmap(jax.value_and_grad(potential))

    def transition(carry, parity):
        states, key = carry
        key, k_swap = jax.random.split(key)
        # one replica after another: vmapped NUTS would run every replica's tree as long as the longest one
        # (2.2-2.7x slower measured on 1-4-1, 4 replicas)
        states = jax.lax.map(lambda sb: sample_kernel(sb[0], model_args=(sb[1],)), (states, betas))
        src, accept = swap_moves(potential, betas, states.z, states.potential_energy, parity, k_swap)
        z = jax.tree_util.tree_map(lambda v: v[src], states.z)
        pe, g = grad(z, betas)
        return (states._replace(z=z, z_grad=g, potential_energy=pe), key), accept

    @jax.jit
    def chain(key, u0):
        k_init, k_run = jax.random.split(key)
        u = jax.tree_util.tree_map(lambda v: jnp.broadcast_to(v, (R,) + v.shape), u0)
        states = jax.vmap(lambda u, b, k: init_kernel(
            u, options.num_warmup, target_accept_prob=options.target_accept, max_tree_depth=options.max_tree_depth,
            dense_mass=options.dense_mass, model_args=(b,), rng_key=k))(u, betas, jax.random.split(k_init, R))
        carry = jax.lax.fori_loop(0, options.num_warmup, lambda i, c: transition(c, i % 2)[0], (states, k_run))

        def keep(carry, i):
            def inner(j, c):
                c, acc = c
                c, a = transition(c, (i * options.thinning + j) % 2)
                return c, acc + a
            carry, acc = jax.lax.fori_loop(0, options.thinning, inner, (carry, jnp.zeros(R - 1, jnp.int32)))
            s = carry[0]
            out = {"z": jax.tree_util.tree_map(lambda v: v[0], s.z), "diverging": s.diverging[0],
                   "hot_divergences": s.diverging[1:].sum(), "n_steps": s.num_steps.sum(), "n_steps_cold": s.num_steps[0],
                   "energy": s.energy[0], "lp": -s.potential_energy[0], "acceptance_rate": s.accept_prob[0],
                   "step_size": s.adapt_state.step_size[0], "swap_accept": acc}
            return carry, out

        return jax.lax.scan(keep, carry, jnp.arange(options.num_samples))[1]

    t0 = time.perf_counter()
    runs = []
    for c, k in enumerate(jax.random.split(key, options.num_chains)):
        runs.append(jax.block_until_ready(chain(k, jax.tree_util.tree_map(lambda v: v[c], start))))
    wall = time.perf_counter() - t0
    stacked = jax.tree_util.tree_map(lambda *v: np.stack([np.asarray(a) for a in v]), *runs)
    return stacked.pop("z"), stacked, wall


def batched_sampler(model: BNN, x_example, y_example, options: NUTSOptions = NUTSOptions(), *, init: str = "dispersed"):
    """One jitted function running NUTS on many datasets of the same shapes at once (one chain each).

    Returns ``run(keys, xs, ys) -> (samples, stats)`` with ``keys`` ``(B,)``, ``xs`` ``(B, N, ...)``,
    ``ys`` ``(B, N, ...)``; ``samples[site]`` ``(B, num_samples, ...)`` (constrained) and ``stats``
    ``{"diverging", "n_steps"}`` ``(B, num_samples)``. Built from NumPyro's functional
    :func:`numpyro.infer.hmc.hmc` (NUTS with step-size and diagonal mass-matrix adaptation), vmapped
    over datasets and compiled once: for simulation-based calibration and other repeated fits.
    ``options``: warm-up, draws, thinning, target acceptance and tree depth (chains and indicator
    settings do not apply). Each chain starts at :meth:`BNN.init_sites` drawn from its key
    (``init="dispersed"``) or from one fixed key (``"shared"``: every chain at the same point, as
    :func:`nuts`'s default). Node indicators are summed out (``2^K <= options.max_enumerate``) and drawn
    exactly from ``p(z | θ, y)`` after every kept draw (as :func:`nuts` with ``indicators="enumerate"``).
    """
    from numpyro.infer.hmc import hmc
    from numpyro.infer.util import initialize_model

    if not isinstance(options, NUTSOptions):
        raise ValueError(f"options must be a NUTSOptions; got {type(options).__name__}")
    if init not in INITS:
        raise ValueError(f"init must be one of {INITS}; got {init!r}")
    num_warmup, num_samples, thinning = options.num_warmup, options.num_samples, options.thinning
    target_accept, max_tree_depth = options.target_accept, options.max_tree_depth
    if options.indicators == "gibbs":
        raise ValueError("batched_sampler sums node indicators out; indicators='gibbs' is not supported")
    fn = handlers.block(model, hide=["f"])
    t = target(model, dataclasses.replace(options, indicators="enumerate", chain_method="sequential"),
               jnp.asarray(x_example)[:1], jnp.asarray(y_example)[:1])
    sites = t.real_sites
    if t.enumerated:
        potential_gen, post_gen = functools.partial(marginal_potential, t), functools.partial(_constrainer, t)
    else:
        info = initialize_model(jax.random.key(0), fn, model_args=(jnp.asarray(x_example), jnp.asarray(y_example)),
                                dynamic_args=True)
        potential_gen, post_gen = info.potential_fn, info.postprocess_fn
    init_kernel, sample_kernel = hmc(potential_fn_gen=potential_gen, algo="NUTS")
    n_data = int(np.shape(x_example)[0])

    def one(key, x, y):
        k_init, k_run = jax.random.split(key)
        k_run, k_z = jax.random.split(k_run)
        start = model.init_sites(jax.random.key(0) if init == "shared" else k_init, n_data=n_data)
        u = {s.name: biject_to(s.support).inv(jnp.broadcast_to(start[s.name], s.shape)) for s in sites}
        state = init_kernel(u, num_warmup, target_accept_prob=target_accept, max_tree_depth=max_tree_depth,
                            model_args=(x, y), rng_key=k_run)
        step = functools.partial(sample_kernel, model_args=(x, y))
        state = jax.lax.fori_loop(0, num_warmup, lambda i, s: step(s), state)

        def keep(s, _):
            s = jax.lax.fori_loop(0, thinning, lambda i, s: step(s), s)
            return s, (s.z, s.diverging, s.num_steps)

        _, (z, div, n_steps) = jax.lax.scan(keep, state, None, length=num_samples)
        samples = jax.vmap(post_gen(x, y))(z)
        if t.enumerated:
            logp = jax.vmap(lambda th: indicator_log_posterior(t, th, x, y))(samples)
            samples.update(split_sites(t, jnp.asarray(t.config_matrix)[jax.random.categorical(k_z, logp)]))
        return samples, {"diverging": div, "n_steps": n_steps}

    return jax.jit(jax.vmap(one))


def to_datatree(samples: Mapping, stats: Mapping):
    """An ArviZ DataTree with groups ``posterior`` (every site) and ``sample_stats`` (``(chains, draws, ...)`` arrays)."""
    import arviz as az

    return az.from_dict({"posterior": {k: np.asarray(v) for k, v in samples.items()},
                         "sample_stats": {k: np.asarray(v) for k, v in stats.items()}})


def kde_log_density_at_zero(draws: np.ndarray, return_bandwidth: bool = False):
    """``ln p̂(0)`` of a Gaussian KDE (Silverman bandwidth ``h``) of ``draws`` ``(S, ...)``, per trailing element."""
    x = np.asarray(draws, np.float64)
    n = x.shape[0]
    if n < 2:
        raise ValueError(f"a KDE needs at least 2 draws; got {n}")
    sd = x.std(axis=0, ddof=1)
    iqr = np.subtract(*np.percentile(x, [75, 25], axis=0)) / 1.349
    spread = np.where(iqr > 0, np.minimum(sd, iqr), sd)
    h = 0.9 * spread * n ** (-0.2)
    h = np.where(h > 0, h, np.finfo(float).tiny)
    from scipy.special import logsumexp

    out = logsumexp(-0.5 * (x / h) ** 2, axis=0) - np.log(n) - np.log(h) - 0.5 * np.log(2 * np.pi)
    return (out, h) if return_bandwidth else out




# ----------------------------------------------------------------------------- posterior


@dataclasses.dataclass
class NUTSPosterior(ModelPosterior):
    """Draws of every latent site of ``model``, ``samples[site]`` shaped ``(chains, draws, *shape)``.

    ``trace``: the ArviZ DataTree of the sites; ``invariants``: the relabelling-invariant functionals of
    every draw (:func:`sparsebnn.invariants.invariant_quantities`: log-likelihood, outputs at probe inputs,
    active nodes, sorted node norms, scalar sites), ``(chains, draws, k)`` each; ``diagnostics``: the
    verdict on the invariants (what decides :attr:`ok`); ``raw_diagnostics``: the same checks on every
    site element, shown but not decisive (node relabelling makes raw R-hat fail between chains in
    symmetric copies of a mode); ``wall_time``: seconds of the sampler run (warm-up, sampling and
    compilation); ``n_leapfrog``: leapfrog steps after warm-up, all chains (all replicas when
    tempered); ``indicator_probs`` (enumerated indicators only): ``p(z = 1 | θ, y)`` per draw.
    Methods taking ``n`` draws pick them at random without replacement; ``n=None`` takes every draw.
    """

    model: BNN
    samples: dict
    n_data: int
    trace: object
    diagnostics: Diagnostics
    wall_time: float
    n_leapfrog: int
    indicators: str | None
    indicator_probs: dict | None = None
    raw_diagnostics: Diagnostics | None = None
    invariants: dict | None = None

    # --- verdict and cost -----------------------------------------------------------------

    @property
    def ok(self) -> bool:
        return self.diagnostics.ok

    @property
    def problems(self) -> tuple[str, ...]:
        return self.diagnostics.problems

    def diagnostics_row(self, prefix: str = "nuts_") -> dict:
        """Both verdicts for a results table: ``{prefix}ok`` / ``{prefix}problems`` (the invariant verdict), then
        every field of :attr:`diagnostics` as ``{prefix}inv_*`` and of :attr:`raw_diagnostics` as ``{prefix}raw_*``."""
        row = {f"{prefix}ok": self.ok, f"{prefix}problems": "; ".join(self.problems)}
        row.update(self.diagnostics.row(prefix + "inv_"))
        if self.raw_diagnostics is not None:
            row.update(self.raw_diagnostics.row(prefix + "raw_"))
        return row

    @property
    def num_chains(self) -> int:
        return int(next(iter(self.samples.values())).shape[0])

    @property
    def num_draws(self) -> int:
        """Draws over all chains."""
        v = next(iter(self.samples.values()))
        return int(v.shape[0] * v.shape[1])

    @property
    def ess_per_s(self) -> float:
        """Smallest bulk ESS over the invariant functionals per second of wall time (compilation included)."""
        return self.diagnostics.min_ess_bulk / self.wall_time

    @property
    def ess_per_1k_grad(self) -> float:
        """Smallest invariant bulk ESS per 1000 leapfrog steps (gradient evaluations): hardware-free efficiency."""
        return 1000.0 * self.diagnostics.min_ess_bulk / max(self.n_leapfrog, 1)

    # --- draws ----------------------------------------------------------------------------

    def draws(self) -> dict:
        """Every site's draws with chains pooled: ``(n_draws, *shape)``."""
        return {k: v.reshape((-1,) + v.shape[2:]) for k, v in self.samples.items()}

    def sample_sites(self, key: jax.Array | None = None, n: int | None = DRAWS) -> dict:
        """``n`` draws of every latent site, picked at random by ``key`` (every draw when ``n`` is None)."""
        d = self.draws()
        if n is None:
            return d
        n = check_draws(n, "n")
        if n > self.num_draws:
            raise ValueError(f"n must be at most the {self.num_draws} draws of this run (n=None takes them all); got {n}")
        key = jax.random.key(0) if key is None else key
        idx = np.asarray(jax.random.choice(key, self.num_draws, (n,), replace=False))
        return {k: v[idx] for k, v in d.items()}

    def sample_params(self, key: jax.Array | None = None, n: int | None = DRAWS, masks: Mapping | None = None) -> Params:
        draws = jax.tree_util.tree_map(jnp.asarray, self.sample_sites(key, n))
        return self._params_fn(draws, None if masks is None else jax.tree_util.tree_map(jnp.asarray, dict(masks)))

    @functools.cached_property
    def _params_fn(self):
        return jax.jit(jax.vmap(lambda s, m: effective_params(self.model, s, self.n_data, m), in_axes=(0, None)))

    # --- sparsity -------------------------------------------------------------------------

    def inclusion_probs(self) -> dict[str, np.ndarray]:
        """``{layer: P(z_j = 1 | y)}``: frequencies of the indicator draws (Rao–Blackwellised when enumerated)."""
        if self.indicator_probs is not None:
            src = {k: np.asarray(v) for k, v in self.indicator_probs.items()}
        else:
            src = {k: np.asarray(v, float) for k, v in self.samples.items() if sites.indicator_layer(k) is not None}
        return sites.by_layer({k: v.reshape((-1,) + v.shape[2:]).mean(axis=0) for k, v in src.items()})

    def node_log_bayes_factors(self) -> dict[str, np.ndarray]:
        """``{layer: ln p(y | z_j = 0) − ln p(y | z_j = 1)}`` per node: posterior over prior odds of switching it off.

        Exact up to Monte Carlo error; frequencies are clipped to ``[1/(2S), 1 − 1/(2S)]`` for ``S`` draws,
        so a node never (or always) on in the draws gets a finite bound, not ±inf.
        """
        if not self.prior.indicators:
            raise ValueError(f"node Bayes factors need a spike-and-slab prior; {type(self.prior).__name__} has none")
        pi = self.prior.context(self.net, self.n_data)["pi"]
        eps = 0.5 / self.num_draws
        out = {}
        for layer, p in self.inclusion_probs().items():
            p = np.clip(p, eps, 1 - eps)
            out[layer] = np.log1p(-p) - np.log(p) - (math.log1p(-pi[layer]) - math.log(pi[layer]))
        return out

    def normal_factors(self) -> dict[str, tuple[np.ndarray, np.ndarray]]:
        """``{site: (mean, sd)}`` of a Gaussian fitted to the draws of every real-valued site (weights)."""
        out = {}
        for s in self._real_sites():
            v = np.asarray(self.samples[s.name], np.float64).reshape((-1,) + s.shape)
            out[s.name] = (v.mean(axis=0), v.std(axis=0, ddof=1))
        return out

    def gaussian_factors(self) -> GaussianFactors:
        """The Gaussian fitted to the draws of the weight sites BMR reads (as :meth:`SVIPosterior.gaussian_factors`).

        Under the exact posterior with Gaussian marginals, ΔF of these factors equals the Savage–Dickey
        ratio (:meth:`savage_dickey`).
        """
        return site_factors(self.net, self.prior, self.normal_factors())

    def savage_dickey(self, min_count: int = 5) -> Params:
        """Per-weight Savage–Dickey ``ln p̂(site = 0 | y) − ln p(site = 0)`` with ``p̂`` a Gaussian KDE of the draws.

        The exact ln Bayes factor of fixing that weight at 0 (Monte Carlo and KDE error aside) wherever
        the site has a fixed ``N(0, v)`` prior independent of the rest (the sites of :meth:`delta_f`).
        KDE bandwidth ``h = 0.9 min(sd, IQR/1.34) S^(−1/5)`` (Silverman) per weight. NaN where fewer
        than ``min_count`` draws lie within ``h`` of 0: there the KDE only reflects the kernel tails of
        the nearest draws (the true ratio is then very negative: zero is far outside the posterior).
        """
        if isinstance(min_count, bool) or not isinstance(min_count, (int, np.integer)) or min_count < 0:
            raise ValueError(f"min_count must be a non-negative integer; got {min_count!r}")
        where = self.prior.bmr_sites(self.net)
        out = {}
        for layer in self.net.layers:
            out[layer.name] = {}
            for k in ("w", "b"):
                site, var = where[layer.name][k]
                draws = np.asarray(self.samples[site], np.float64)
                draws = draws.reshape((-1,) + draws.shape[2:])
                var = np.broadcast_to(np.asarray(var, np.float64), draws.shape[1:])
                spike = var == 0
                log_post, h = kde_log_density_at_zero(draws, return_bandwidth=True)
                log_prior = -0.5 * np.log(2 * np.pi * np.where(spike, 1.0, var))
                near = (np.abs(draws) < h).sum(axis=0)
                out[layer.name][k] = np.where(spike, 0.0, np.where(near >= min_count, log_post - log_prior, np.nan))
        return out

    def _real_sites(self) -> list:
        x = jnp.zeros((1, *self.net.in_shape))
        y = jnp.zeros((1,), jnp.int32) if self.likelihood.kind == "categorical" else jnp.zeros((1,))
        return [s for s in model_sites(handlers.block(self.model, hide=["f"]), x, y) if s.support is dist.constraints.real]


# ----------------------------------------------------------------------------- entry point


def nuts(
    net: Network | BNN,
    prior: Prior | None = None,
    data=None,
    *,
    likelihood=None,
    centered: bool | None = False,
    init: str | Mapping = "shared",
    max_rhat: float = 1.01,
    min_ess: float | None = None,
    seed: int = 0,
    warn: bool = True,
    options: NUTSOptions | None = None,
    **settings,
) -> NUTSPosterior:
    """Sample the posterior of ``prior`` over ``net`` given ``data`` (full batch) with NUTS (module docstring).

    Args:
      net: the :class:`~sparsebnn.nets.Network`, or a :class:`~sparsebnn.model.BNN` (then ``nuts(model, data)``).
      prior: a :class:`~sparsebnn.priors.Prior`.
      data: a :class:`~sparsebnn.data.Dataset` (its train split), a ``Split`` or an ``(x, y)`` pair.
      likelihood: a :class:`~sparsebnn.likelihood.Likelihood` or ``"categorical"`` (default: from the Dataset).
      centered: weight parameterisation (False: non-centred, the default; None: the prior's own).
      init: ``"shared"``, ``"dispersed"`` or a dict of site values (e.g. :func:`start_values` of an SVI fit).
      max_rhat, min_ess: diagnostic thresholds (``min_ess`` default 100 per chain).
      seed: the run's seed.
      warn: emit a :class:`~sparsebnn.diagnostics.DiagnosticsWarning` when the run fails its diagnostics.
      options: the sampler's :class:`NUTSOptions`; or give its fields as keywords (``num_samples=...``).
    """
    if options is not None and settings:
        raise ValueError(f"give either options or its fields as keywords, not both; got {sorted(settings)}")
    options = NUTSOptions(**settings) if options is None else options
    model, tr = model_and_data(net, prior, data, likelihood)
    if centered is not None and hasattr(model.prior, "centered") and model.prior.centered != centered:
        model = dataclasses.replace(model, prior=dataclasses.replace(model.prior, centered=bool(centered)))
    if options.num_samples < 4:
        raise ValueError(f"num_samples must be >= 4 (R-hat and ESS need them); got {options.num_samples}")
    run = sample(model, tr.x, tr.y, options, jax.random.key(seed), init=init)
    return from_draws(model, run, tr.x, tr.y, max_rhat=max_rhat, min_ess=min_ess, warn=warn)


def from_draws(model: BNN, run: Draws, x, y, *, max_rhat: float = 1.01, min_ess: float | None = None,
               warn: bool = True, probes=None) -> NUTSPosterior:
    """The :class:`NUTSPosterior` of a sampler run on ``(x, y)``: diagnostics of the invariant functionals
    (:func:`sparsebnn.invariants.invariant_quantities` at ``probes``) decide ``ok``; those of the raw sites
    are kept in ``raw_diagnostics``. ``warn``: a :class:`~sparsebnn.diagnostics.DiagnosticsWarning` on failure."""
    from sparsebnn.invariants import invariant_quantities

    trace = to_datatree(run.samples, run.stats)
    raw = diagnose(trace, max_rhat=max_rhat, min_ess=min_ess)
    inv = invariant_quantities(model, run.samples, x, y, probes)
    diagnostics = diagnose(to_datatree(inv, run.stats), max_rhat=max_rhat, min_ess=min_ess)
    if warn:
        warn_if_failed(diagnostics, f"NUTS on {model.net.name} with {type(model.prior).__name__} "
                       f"(relabelling-invariant functionals)", stacklevel=3)
    return NUTSPosterior(model, run.samples, len(x), trace, diagnostics, run.wall_time,
                         int(run.stats["n_steps"].sum()), run.indicators, run.indicator_probs, raw, inv)


__all__ = ["INDICATORS", "Draws", "NUTSOptions", "NUTSPosterior", "Target", "batched_sampler", "draw_indicators",
           "from_draws", "indicator_log_posterior", "init_params", "kde_log_density_at_zero", "log_joints",
           "marginal_potential", "nuts", "over_configs", "replica_exchange", "sample", "split_sites", "start_values", "swap_moves",
           "target", "temperatures", "tempered", "tempered_potential", "to_datatree"]
