"""Reference NUTS on the same NumPyro model that SVI fits (full-batch likelihood, small networks).

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

**Chains.** ``chain_method="auto"`` runs chains in parallel when there are at least
``num_chains`` local devices, else sequentially (vectorised chains are available for models
without indicators). On CPU, create devices with ``numpyro.set_host_device_count(k)`` at the very
start of the program, before JAX initialises. ``init="shared"`` starts every chain at one draw of
the network's initialisation (:meth:`BNN.init_sites`: scales at their prior medians, indicators on),
so chains explore the same posterior mode; ``"dispersed"`` draws one start per chain — hidden-node
permutations and sign flips then put chains in symmetric copies of the posterior and weight-space
R-hat fails by construction. A dict of site values (e.g. from an SVI fit) is used for every chain.

**Diagnostics.** Via ArviZ (:mod:`sparsebnn.diagnostics`): R-hat (rank and folded) ≤ 1.01, bulk and
tail ESS ≥ 100 per chain, no divergences, E-BFMI ≥ 0.3, on every element of every latent site.
A failed run is returned with ``ok=False`` and its ``problems`` listed, and warns loudly.
"""

from __future__ import annotations

import dataclasses
import functools
import itertools
import math
import time
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np
import numpyro  # noqa: F401  (the package before its submodules; see sparsebnn.diagnostics)
import numpyro.distributions as dist
from numpyro import handlers
from numpyro.infer import MCMC, NUTS, DiscreteHMCGibbs
from numpyro.infer.initialization import init_to_median
from numpyro.infer.util import constrain_fn, log_density, potential_energy
from numpyro.distributions.transforms import biject_to

from sparsebnn.diagnostics import Diagnostics, diagnose, warn_if_failed
from sparsebnn.model import BNN
from sparsebnn.nets.base import Network, Params
from sparsebnn.priors.base import Prior

from .guides import model_sites
from .svi import effective_params, fixed_prior_variances, split_data

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


# ----------------------------------------------------------------------------- posterior


@dataclasses.dataclass
class NUTSPosterior:
    """Draws of every latent site of ``model``, ``samples[site]`` shaped ``(chains, draws, *shape)``.

    ``trace``: the ArviZ DataTree; ``diagnostics``: its verdict; ``wall_time``: seconds of
    ``MCMC.run`` (warm-up, sampling and compilation); ``n_leapfrog``: leapfrog steps after warm-up,
    all chains; ``indicator_probs`` (``indicators="enumerate"`` only): ``p(z = 1 | θ, y)`` per draw.
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

    # --- verdict and cost -----------------------------------------------------------------

    @property
    def ok(self) -> bool:
        return self.diagnostics.ok

    @property
    def problems(self) -> tuple[str, ...]:
        return self.diagnostics.problems

    @property
    def net(self) -> Network:
        return self.model.net

    @property
    def prior(self) -> Prior:
        return self.model.prior

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
        """Smallest bulk ESS over all sites per second of wall time (compilation included)."""
        return self.diagnostics.min_ess_bulk / self.wall_time

    @property
    def ess_per_1k_grad(self) -> float:
        """Smallest bulk ESS per 1000 leapfrog steps (gradient evaluations): hardware-free efficiency."""
        return 1000.0 * self.diagnostics.min_ess_bulk / max(self.n_leapfrog, 1)

    # --- draws ----------------------------------------------------------------------------

    def draws(self) -> dict:
        """Every site's draws with chains pooled: ``(n_draws, *shape)``."""
        return {k: v.reshape((-1,) + v.shape[2:]) for k, v in self.samples.items()}

    def sample_sites(self, key: jax.Array | None = None, n: int | None = None) -> dict:
        """``n`` draws of every latent site (all when ``n`` is None; else ``n`` picked at random by ``key``)."""
        d = self.draws()
        if n is None:
            return d
        n = int(n)
        if not 1 <= n <= self.num_draws:
            raise ValueError(f"n must lie in [1, {self.num_draws}]; got {n}")
        key = jax.random.key(0) if key is None else key
        idx = np.asarray(jax.random.choice(key, self.num_draws, (n,), replace=False))
        return {k: v[idx] for k, v in d.items()}

    def sample_params(self, key: jax.Array | None = None, n: int | None = None, masks: Mapping | None = None) -> Params:
        """Effective network parameters per draw (leading axis), pruned by ``masks`` as in SVI."""
        sites = jax.tree_util.tree_map(jnp.asarray, self.sample_sites(key, n))
        return self._params_fn(sites, _as_arrays(masks))

    def predict(self, x, key: jax.Array | None = None, n_samples: int | None = None,
                masks: Mapping | None = None) -> jax.Array:
        """Posterior-predictive network outputs ``(n_samples, N, out_dim)``; all draws when ``n_samples`` is None."""
        self.model.check_data(x)
        sites = jax.tree_util.tree_map(jnp.asarray, self.sample_sites(key, n_samples))
        return self._predict_fn(sites, _as_arrays(masks), jnp.asarray(x))

    @functools.cached_property
    def _params_fn(self):
        return jax.jit(jax.vmap(lambda s, m: effective_params(self.model, s, self.n_data, m), in_axes=(0, None)))

    @functools.cached_property
    def _predict_fn(self):
        def outputs(s, m, x):
            return self.net.apply(effective_params(self.model, s, self.n_data, m), x)

        return jax.jit(jax.vmap(outputs, in_axes=(0, None, None)))

    def mean_params(self, masks: Mapping | None = None) -> Params:
        """Posterior mean of the effective parameters over all draws."""
        return jax.tree_util.tree_map(lambda a: a.mean(axis=0), self.sample_params(masks=masks))

    # --- sparsity -------------------------------------------------------------------------

    def inclusion_probs(self) -> dict[str, np.ndarray]:
        """``{layer: P(z_j = 1 | y)}``: frequencies of the indicator draws (Rao–Blackwellised when enumerated)."""
        if self.indicator_probs is not None:
            src = {k: np.asarray(v) for k, v in self.indicator_probs.items()}
        else:
            src = {k: np.asarray(v, float) for k, v in self.samples.items() if k.endswith(".z")}
        return {k[: -len(".z")]: v.reshape((-1,) + v.shape[2:]).mean(axis=0) for k, v in src.items()}

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
        """``{site: (mean, sd)}`` of a Gaussian fitted to the draws of every real-valued site (weights).

        The same layout as :meth:`SVIPosterior.normal_factors`; plug into :func:`sparsebnn.bmr.delta_f`.
        """
        out = {}
        for name, s in self._real_sites().items():
            v = np.asarray(self.samples[name], np.float64).reshape((-1,) + s.shape)
            out[name] = (v.mean(axis=0), v.std(axis=0, ddof=1))
        return out

    def delta_f(self) -> Params:
        """Per-weight BMR ΔF of a spike at 0 from the Gaussian fitted to the draws (:meth:`normal_factors`).

        Same sites, prior variances and conventions as :meth:`SVIPosterior.delta_f`. Under the exact
        posterior with Gaussian marginals this equals the Savage–Dickey ratio (:meth:`savage_dickey`).
        """
        from sparsebnn import bmr

        factors, prior_var = self.normal_factors(), fixed_prior_variances(self.prior, self.net)
        out = {}
        for layer in self.net.layers:
            out[layer.name] = {}
            for k in ("w", "b"):
                site, var = prior_var(layer.name, k)
                mu, sd = factors[site]
                spike = np.asarray(var) == 0
                df = bmr.delta_f(jnp.asarray(mu), jnp.asarray(sd) ** 2, 0.0, jnp.where(spike, 1.0, var), 0.0, 0.0)
                out[layer.name][k] = jnp.where(spike, 0.0, df)
        return out

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
        prior_var = fixed_prior_variances(self.prior, self.net)
        out = {}
        for layer in self.net.layers:
            out[layer.name] = {}
            for k in ("w", "b"):
                site, var = prior_var(layer.name, k)
                draws = np.asarray(self.samples[site], np.float64)
                draws = draws.reshape((-1,) + draws.shape[2:])
                var = np.broadcast_to(np.asarray(var, np.float64), draws.shape[1:])
                spike = var == 0
                log_post, h = kde_log_density_at_zero(draws, return_bandwidth=True)
                log_prior = -0.5 * np.log(2 * np.pi * np.where(spike, 1.0, var))
                near = (np.abs(draws) < h).sum(axis=0)
                out[layer.name][k] = np.where(spike, 0.0, np.where(near >= min_count, log_post - log_prior, np.nan))
        return out

    def _real_sites(self) -> dict:
        sites = model_sites(handlers.block(self.model, hide=["f"]), *self._example())
        return {s.name: s for s in sites if s.support is dist.constraints.real}

    def _example(self):
        x = jnp.zeros((1, *self.net.in_shape))
        y = jnp.zeros((1,), jnp.int32) if self.model.likelihood == "categorical" else jnp.zeros((1,))
        return x, y


def _as_arrays(masks):
    return None if masks is None else jax.tree_util.tree_map(jnp.asarray, dict(masks))


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


# ----------------------------------------------------------------------------- the sampler


@dataclasses.dataclass
class Sampler:
    """A compiled-once NUTS run on ``model`` for data of fixed shapes (reused by SBC and the benchmark).

    ``run(key, x, y)`` returns ``(samples, stats, wall_time)`` with ``samples[site]`` and
    ``stats[name]`` shaped ``(chains, draws, ...)``; new data of the same shapes reuses the compilation.
    """

    model: BNN
    x_example: object
    y_example: object
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

    def __post_init__(self):
        for name in ("num_warmup", "num_samples", "num_chains", "thinning", "max_tree_depth", "max_enumerate"):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < (0 if name == "num_warmup" else 1):
                raise ValueError(f"{name} must be a {'non-negative' if name == 'num_warmup' else 'positive'} integer; got {v!r}")
        if not 0 < self.target_accept < 1:
            raise ValueError(f"target_accept must lie in (0, 1); got {self.target_accept!r}")
        if self.indicators not in INDICATORS:
            raise ValueError(f"indicators must be one of {INDICATORS}; got {self.indicators!r}")
        if self.chain_method not in CHAIN_METHODS:
            raise ValueError(f"chain_method must be one of {CHAIN_METHODS}; got {self.chain_method!r}")
        self.fn = handlers.block(self.model, hide=["f"])
        self.sites = model_sites(self.fn, self.x_example, self.y_example)
        self.z_sites = [s for s in self.sites if s.discrete]
        self.real_sites = [s for s in self.sites if not s.discrete]
        method = self.chain_method
        if method == "auto":
            method = "parallel" if self.num_chains > 1 and jax.local_device_count() >= self.num_chains else "sequential"
        if method == "parallel" and self.num_chains > 1 and jax.local_device_count() < self.num_chains:
            raise ValueError(f"chain_method='parallel' needs {self.num_chains} devices, found {jax.local_device_count()}; "
                             f"call numpyro.set_host_device_count({self.num_chains}) before JAX starts, or use 'sequential'")
        self.method = method
        n_z = sum(math.prod(s.shape) for s in self.z_sites)
        if self.indicators == "auto":
            self.indicators = "enumerate" if 2**n_z <= self.max_enumerate else "gibbs"
        if method == "vectorized" and self.z_sites and self.indicators == "gibbs":
            raise ValueError("chain_method='vectorized' does not support Gibbs updates of indicators; use 'sequential'")
        self.enumerated = bool(self.z_sites) and self.indicators == "enumerate"
        nuts_kw = dict(target_accept_prob=self.target_accept, max_tree_depth=self.max_tree_depth, dense_mass=self.dense_mass)
        if self.enumerated:
            if 2**n_z > self.max_enumerate:
                raise ValueError(f"enumerating {n_z} indicators needs 2^{n_z} configurations > max_enumerate="
                                 f"{self.max_enumerate}; use indicators='gibbs'")
            configs = np.array(list(itertools.product([0, 1], repeat=n_z)), np.int32)
            self.configs, cut = {}, 0
            for s in self.z_sites:
                size = math.prod(s.shape)
                self.configs[s.name] = jnp.asarray(configs[:, cut:cut + size].reshape((-1, *s.shape)))
                cut += size
            self.config_matrix = configs
        self._nuts_kw = nuts_kw
        self._data = None
        self.mcmc = None if self.enumerated else self._mcmc()

    def _mcmc(self) -> MCMC:
        """The MCMC driver; with enumeration the potential closes over the data, so it is rebuilt per run."""
        if self.enumerated:
            kernel, post = NUTS(potential_fn=self._marginal_potential, **self._nuts_kw), self._constrain
        else:
            kernel, post = NUTS(self.fn, **self._nuts_kw), None
            if self.z_sites:
                kernel = DiscreteHMCGibbs(kernel, modified=True)
        return MCMC(kernel, num_warmup=self.num_warmup, num_samples=self.num_samples * self.thinning,
                    num_chains=self.num_chains, thinning=self.thinning, chain_method=self.method,
                    progress_bar=self.progress, postprocess_fn=post, jit_model_args=not self.enumerated)

    # --- enumeration of the indicators ----------------------------------------------------

    def _log_joints(self, unconstrained: dict, x, y) -> jax.Array:
        """``ln p(y, z = c, θ)`` (unconstrained θ, Jacobian included) for every configuration ``c``."""
        def one(config):
            return -potential_energy(handlers.condition(self.fn, data=config), (x, y), {}, unconstrained)

        return jax.vmap(one)(self.configs)

    def _marginal_potential(self, unconstrained: dict) -> jax.Array:
        x, y = self._data
        return -jax.scipy.special.logsumexp(self._log_joints(unconstrained, x, y))

    def _constrain(self, unconstrained: dict) -> dict:
        x, y = self._data
        one = {k: v[0] for k, v in self.configs.items()}
        return constrain_fn(handlers.condition(self.fn, data=one), (x, y), {}, unconstrained)

    def _draw_indicators(self, key, samples: dict, x, y) -> tuple[dict, dict]:
        """Exact ``z ~ p(z | θ, y)`` per draw and the conditional inclusion probabilities."""
        cont = {s.name: samples[s.name] for s in self.real_sites}
        lead = next(iter(cont.values())).shape[:2]
        flat = jax.tree_util.tree_map(lambda v: v.reshape((-1,) + v.shape[2:]), cont)

        @jax.jit
        def per_draw(theta, k):
            def one(config):
                return log_density(handlers.condition(self.fn, data={**theta, **config}), (x, y), {}, {})[0]

            logp = jax.vmap(one)(self.configs)
            prob = jax.nn.softmax(logp)
            pick = jax.random.categorical(k, logp)
            return pick, prob @ self.config_matrix.astype(prob.dtype)

        keys = jax.random.split(key, math.prod(lead))
        pick, marg = jax.lax.map(lambda a: per_draw(*a), (flat, keys), batch_size=64)
        pick, marg = np.asarray(pick), np.asarray(marg)
        z, probs, cut = {}, {}, 0
        for s in self.z_sites:
            size = math.prod(s.shape)
            z[s.name] = self.config_matrix[pick, cut:cut + size].reshape(lead + s.shape)
            probs[s.name] = marg[:, cut:cut + size].reshape(lead + s.shape)
            cut += size
        return z, probs

    # --- initial values ---------------------------------------------------------------------

    def init_params(self, init, key, n_data: int):
        """Per-chain starting values (unconstrained for NUTS sites, 0/1 for indicators) from ``init``."""
        if isinstance(init, str):
            if init not in INITS:
                raise ValueError(f"init must be one of {INITS} or a dict of site values; got {init!r}")
            keys = [key] * self.num_chains if init == "shared" else list(jax.random.split(key, self.num_chains))
            starts = [self._complete(self.model.init_sites(k, n_data=n_data), k) for k in keys]
        elif isinstance(init, Mapping):
            unknown = set(init) - {s.name for s in self.sites}
            if unknown:
                raise ValueError(f"init has values for {sorted(unknown)}, which are not latent sites of the model")
            for s in self.sites:
                if s.name in init and not s.discrete:
                    v = jnp.asarray(init[s.name], jnp.result_type(float))
                    if v.shape != s.shape or not bool(jnp.all(jnp.isfinite(biject_to(s.support).inv(v)))):
                        raise ValueError(f"init[{s.name!r}] must have shape {s.shape} and lie inside the support "
                                         f"{s.support}; got shape {v.shape}")
            starts = [self._complete(dict(init), key)] * self.num_chains
        else:
            raise ValueError(f"init must be one of {INITS} or a dict of site values; got {type(init).__name__}")
        out = {}
        for s in self.sites:
            if self.enumerated and s.discrete:
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
            out[s.name] = jnp.stack(vals) if self.num_chains > 1 else vals[0]
        return out

    def _complete(self, values: dict, key) -> dict:
        """Fill sites missing from ``values`` (e.g. a learned noise sd) with their prior medians, indicators with 1."""
        missing = [s for s in self.sites if s.name not in values]
        if missing:
            median = init_to_median(num_samples=15)

            def fill(site):
                if site["name"] in values:
                    return values[site["name"]]
                if site["fn"].support is dist.constraints.boolean:
                    return jnp.ones(site["fn"].shape())
                return median(site)

            tr = handlers.trace(handlers.substitute(handlers.seed(self.fn, key), substitute_fn=fill)).get_trace(
                self.x_example, self.y_example)
            values = {**values, **{s.name: tr[s.name]["value"] for s in missing}}
        return values

    # --- one run ----------------------------------------------------------------------------

    def run(self, key, x, y, init="shared", n_data: int | None = None):
        """Warm up and sample on ``(x, y)``; returns ``(samples, stats, indicator_probs, wall_time)``."""
        self.model.check_data(x, y)
        n_data = len(x) if n_data is None else n_data
        k_init, k_run, k_z = jax.random.split(key, 3)
        x, y = jnp.asarray(x), jnp.asarray(y)
        self._data = (x, y)
        prefix = "hmc_state." if (self.z_sites and not self.enumerated) else ""
        fields = tuple(prefix + f for f in _STATS)
        init_params = self.init_params(init, k_init, n_data)
        t0 = time.perf_counter()
        if self.enumerated:
            self.mcmc = self._mcmc()
            self.mcmc.run(k_run, init_params=init_params, extra_fields=fields)
        else:
            self.mcmc.run(k_run, x, y, init_params=init_params, extra_fields=fields)
        samples = {k: np.asarray(v) for k, v in self.mcmc.get_samples(group_by_chain=True).items()}
        extra = self.mcmc.get_extra_fields(group_by_chain=True)
        wall = time.perf_counter() - t0
        stats = {_STATS[k[len(prefix):]]: np.asarray(v) for k, v in extra.items()}
        stats["lp"] = -stats["lp"]
        steps = stats["n_steps"]
        stats["tree_depth"] = np.floor(np.log2(np.maximum(steps, 1))).astype(np.int64) + 1
        stats["reached_max_treedepth"] = steps >= 2**self.max_tree_depth - 1
        probs = None
        if self.enumerated:
            z, probs = self._draw_indicators(k_z, samples, x, y)
            samples.update(z)
        for s in self.z_sites:
            samples[s.name] = np.asarray(samples[s.name]).astype(np.int8)
        return samples, stats, probs, wall


def batched_sampler(model: BNN, x_example, y_example, *, num_warmup: int = 300, num_samples: int = 100,
                    thinning: int = 1, target_accept: float = 0.9, max_tree_depth: int = 10, init: str = "dispersed"):
    """One jitted function running NUTS on many datasets of the same shapes at once (one chain each).

    Returns ``run(keys, xs, ys) -> (samples, stats)`` with ``keys`` ``(B,)``, ``xs`` ``(B, N, ...)``,
    ``ys`` ``(B, N, ...)``; ``samples[site]`` ``(B, num_samples, ...)`` (constrained) and ``stats``
    ``{"diverging", "n_steps"}`` ``(B, num_samples)``. Built from NumPyro's functional
    :func:`numpyro.infer.hmc.hmc` (NUTS with step-size and diagonal mass-matrix adaptation), vmapped
    over datasets and compiled once: for simulation-based calibration and other repeated fits.
    Each chain starts at :meth:`BNN.init_sites` drawn from its key (``init="dispersed"``) or from one
    fixed key (``"shared"``: every chain at the same point, as :func:`nuts`'s default). Models without
    node indicators only.
    """
    from numpyro.infer.hmc import hmc
    from numpyro.infer.util import initialize_model

    for name, v in (("num_warmup", num_warmup), ("num_samples", num_samples), ("thinning", thinning),
                    ("max_tree_depth", max_tree_depth)):
        if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < (0 if name == "num_warmup" else 1):
            raise ValueError(f"{name} must be a {'non-negative' if name == 'num_warmup' else 'positive'} integer; got {v!r}")
    if not 0 < target_accept < 1:
        raise ValueError(f"target_accept must lie in (0, 1); got {target_accept!r}")
    if init not in INITS:
        raise ValueError(f"init must be one of {INITS}; got {init!r}")
    fn = handlers.block(model, hide=["f"])
    sites = model_sites(fn, x_example, y_example)
    if any(s.discrete for s in sites):
        raise ValueError("batched_sampler handles models without node indicators; use nuts(..., indicators=...)")
    info = initialize_model(jax.random.key(0), fn, model_args=(jnp.asarray(x_example), jnp.asarray(y_example)),
                            dynamic_args=True)
    init_kernel, sample_kernel = hmc(potential_fn_gen=info.potential_fn, algo="NUTS")
    n_data = int(np.shape(x_example)[0])

    def one(key, x, y):
        k_init, k_run = jax.random.split(key)
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
        return jax.vmap(info.postprocess_fn(x, y))(z), {"diverging": div, "n_steps": n_steps}

    return jax.jit(jax.vmap(one))


def to_datatree(samples: Mapping, stats: Mapping):
    """An ArviZ DataTree with groups ``posterior`` (every site) and ``sample_stats`` (``(chains, draws, ...)`` arrays)."""
    import arviz as az

    return az.from_dict({"posterior": {k: np.asarray(v) for k, v in samples.items()},
                         "sample_stats": {k: np.asarray(v) for k, v in stats.items()}})


# ----------------------------------------------------------------------------- entry point


def nuts(
    net: Network | BNN,
    prior: Prior | None = None,
    data=None,
    *,
    likelihood: str | None = None,
    noise=None,
    centered: bool | None = False,
    num_warmup: int = 500,
    num_samples: int = 500,
    num_chains: int = 4,
    thinning: int = 1,
    chain_method: str = "auto",
    indicators: str = "auto",
    init: str | Mapping = "shared",
    target_accept: float = 0.9,
    max_tree_depth: int = 10,
    dense_mass: bool = False,
    max_enumerate: int = 1024,
    max_rhat: float = 1.01,
    min_ess: float | None = None,
    seed: int = 0,
    progress: bool = False,
    warn: bool = True,
) -> NUTSPosterior:
    """Sample the posterior of ``prior`` over ``net`` given ``data`` (full batch) with NUTS; see the module docstring.

    ``nuts(net, prior, data, ...)`` or ``nuts(model, data, ...)`` with a :class:`~sparsebnn.model.BNN`.
    ``data``: a ``sparsebnn.data.Dataset`` (its train split), a ``Split`` or an ``(x, y)`` pair;
    ``likelihood`` / ``noise`` as in :func:`sparsebnn.infer.svi`. ``centered``: weight
    parameterisation (False: non-centred, the default; None: the prior's own). ``num_samples`` draws
    per chain are kept after ``num_warmup`` adaptation steps (step size, diagonal or ``dense_mass``
    mass matrix), every ``thinning``-th of ``num_samples · thinning``. ``max_rhat`` / ``min_ess``
    (default 100 per chain): diagnostic thresholds; ``warn``: emit a DiagnosticsWarning on failure.
    """
    if isinstance(net, BNN):
        if data is None and prior is not None and not isinstance(prior, Prior):
            prior, data = None, prior
        if prior is not None or likelihood is not None or noise is not None:
            raise ValueError("with a BNN model, give only the data (the model fixes prior, likelihood and noise)")
        model = net
        (x, y), _, _ = split_data(data, None, model.likelihood)
    else:
        if not isinstance(net, Network):
            raise ValueError(f"net must be a sparsebnn.nets.Network or a sparsebnn.model.BNN; got {type(net).__name__}")
        if not isinstance(prior, Prior):
            raise ValueError(f"prior must be a sparsebnn.priors.Prior; got {type(prior).__name__}")
        if data is None:
            raise ValueError("data is required")
        (x, y), _, likelihood = split_data(data, None, likelihood)
        model = BNN(net, prior, likelihood, noise)
    if centered is not None and hasattr(model.prior, "centered") and model.prior.centered != centered:
        model = dataclasses.replace(model, prior=dataclasses.replace(model.prior, centered=bool(centered)))
    model.check_data(x, y)
    if isinstance(num_samples, (int, np.integer)) and not isinstance(num_samples, bool) and num_samples < 4:
        raise ValueError(f"num_samples must be >= 4 (R-hat and ESS need them); got {num_samples}")
    sampler = Sampler(model, x[:1], y[:1], num_warmup=num_warmup, num_samples=num_samples, num_chains=num_chains,
                      thinning=thinning, chain_method=chain_method, indicators=indicators, target_accept=target_accept,
                      max_tree_depth=max_tree_depth, dense_mass=dense_mass, max_enumerate=max_enumerate,
                      progress=progress)
    samples, stats, probs, wall = sampler.run(jax.random.key(seed), x, y, init=init)
    trace = to_datatree(samples, stats)
    diagnostics = diagnose(trace, max_rhat=max_rhat, min_ess=min_ess)
    if warn:
        warn_if_failed(diagnostics, f"NUTS on {model.net.name} with {type(model.prior).__name__}")
    n_leapfrog = int(stats["n_steps"].sum())
    return NUTSPosterior(model, samples, len(x), trace, diagnostics, wall, n_leapfrog,
                         sampler.indicators if sampler.z_sites else None, probs)


__all__ = ["INDICATORS", "NUTSPosterior", "Sampler", "batched_sampler", "kde_log_density_at_zero", "nuts", "to_datatree"]
