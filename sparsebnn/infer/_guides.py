"""Mean-field guides read off a model's sites, for any prior (the variational family of ``docs/svi.md``).

Every latent site of the model gets one independent factor, chosen by its support:

* real (weights, ``*_decentered`` noise):  ``N(μ, exp(ρ)²)``            params ``"<site>.loc"``, ``"<site>.log_scale"``
* any other continuous support (scales):   ``biject_to(support)`` of ``N(μ, exp(ρ)²)``, i.e.
  log-normal on the positive reals
* boolean (node indicators ``"L.z"``):      ``Bernoulli(σ(θ))``                 param ``"<site>.logits"``,
  relaxed during training to :class:`~sparsebnn.infer.concrete.ConcreteBernoulli` at the
  guide's ``temperature`` (straight-through when ``hard``); exact Bernoulli when ``temperature=None``.

Weight sites marked ``infer={"gate": "L.z"}`` belong to a spike-and-slab slab: under
``q(w | z = 0) = p(w | z = 0)`` their KL counts only when the node is on, so the guide scales it by
``σ(θ_j)`` (``handlers.scale``; :class:`numpyro.infer.TraceMeanField_ELBO` applies the guide's scale
to the analytic KL). The resulting ELBO is the gated-slab ELBO of docs/svi.md:
``E_q[ln p(y | w)] − Σ_j KL(Bern(σ(θ_j)) ‖ Bern(π)) − Σ_j σ(θ_j) KL(q(w̃_j) ‖ p(w̃_j | scales)) − KL(scales)``.

Scales are parameterised by their logarithm ``ρ = ln σ`` (Jantre et al.'s code uses ``softplus(ρ)``: the same
family, and ``softplus(ρ) = exp(ρ)(1 + O(exp ρ))`` for the small scales of weights). It is the
cheapest choice: one ``exp`` per weight and step, and the Gaussian KL
``ln s − ρ + (σ² + (μ − m)²) / (2 s²) − ½`` needs no logarithm per weight
(:class:`LogScaleNormal`). All sites share one ``jax.random.normal`` call per step.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Mapping
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from numpyro import handlers
from numpyro.distributions.kl import kl_divergence
from numpyro.distributions.transforms import biject_to

from ._concrete import ConcreteBernoulli, concrete


def loc(site: str) -> str:
    """The guide parameter holding the location ``μ`` of ``site``'s Gaussian factor."""
    return f"{site}.loc"


def log_scale(site: str) -> str:
    """The guide parameter holding ``ρ = ln σ`` of ``site``'s Gaussian factor."""
    return f"{site}.log_scale"


def logits(site: str) -> str:
    """The guide parameter holding the logit ``θ`` of an indicator site's ``Bernoulli(σ(θ))``."""
    return f"{site}.logits"


class Site(NamedTuple):
    """One latent site of the model as the guide sees it."""

    name: str
    shape: tuple
    support: object  # a numpyro constraint
    gate: str | None  # the indicator site that switches this weight site off

    @property
    def discrete(self) -> bool:
        return self.support is dist.constraints.boolean


class LogScaleNormal(dist.Normal):
    """``N(loc, exp(log_scale)²)``; keeps ``log_scale`` so that its KL needs no logarithm per entry."""

    pytree_data_fields = ("log_scale",)

    def __init__(self, loc, log_scale, *, validate_args=None):
        self.log_scale = log_scale
        super().__init__(loc, jnp.exp(log_scale), validate_args=validate_args)


@kl_divergence.register(LogScaleNormal, dist.Normal)
def _kl_log_scale_normal(p, q):
    return jnp.log(q.scale) - p.log_scale + 0.5 * ((p.scale**2 + (p.loc - q.loc) ** 2) / q.scale**2 - 1)


def model_sites(model: Callable, *args, **kwargs) -> list[Site]:
    """The latent sample sites of ``model(*args, **kwargs)`` in execution order (abstract evaluation)."""
    found = {}

    def run(*args):
        found.update(handlers.trace(handlers.seed(model, jax.random.key(0))).get_trace(*args, **kwargs))
        return 0

    jax.eval_shape(run, *args)
    sites = []
    for name, s in found.items():
        if s["type"] != "sample" or s["is_observed"]:
            continue
        support = s["fn"].support
        if support.is_discrete and support is not dist.constraints.boolean:
            raise ValueError(f"site {name!r}: the mean-field guide handles Bernoulli indicators only, got {support}")
        if s["fn"].event_shape:
            raise ValueError(f"site {name!r}: the mean-field guide needs scalar-event sites; got event {s['fn'].event_shape}")
        sites.append(Site(name, tuple(s["fn"].shape()), support, s["infer"].get("gate")))
    seen = set()
    for s in sites:
        if s.gate is not None and s.gate not in seen:
            raise ValueError(f"site {s.name!r} is gated by {s.gate!r}, which is not a latent site sampled before it")
        seen.add(s.name)
    return sites


class MeanFieldGuide:
    """A fully factorised guide over ``model``'s latent sites (see the module docstring).

    ``init_values``: starting site values (e.g. :meth:`sparsebnn.model.BNN.init_sites`); sites not
    given start at 0 (real) or 1 (positive) in the constrained space. ``init_scale``: the initial
    ``σ = exp(ρ)`` of every Gaussian factor; ``init_inclusion``: the initial ``σ(θ)`` of every
    indicator. ``hard``: straight-through hard indicator samples during training (off by default:
    see :func:`sparsebnn.infer.svi`).

    Call it with the model's arguments; ``temperature=T`` relaxes the indicators (training),
    ``temperature=None`` samples them exactly. Usable with ``numpyro.infer.SVI``/``Predictive``.
    """

    def __init__(self, model: Callable, *args, init_values: Mapping[str, jax.Array] | None = None,
                 init_scale: float = 1e-2, init_inclusion: float = 0.99, hard: bool = False, **kwargs):
        if not init_scale > 0:
            raise ValueError(f"init_scale must be > 0; got {init_scale}")
        if not 0 < init_inclusion < 1:
            raise ValueError(f"init_inclusion must lie in (0, 1); got {init_inclusion}")
        self.model = model
        self.sites = model_sites(model, *args, **kwargs)
        self.hard = bool(hard)
        self.init_scale = float(init_scale)
        self.init_inclusion = float(init_inclusion)
        self.init_params = self._init(dict(init_values or {}))

    def _init(self, values: dict) -> dict[str, jax.Array]:
        unknown = set(values) - {s.name for s in self.sites}
        if unknown:
            raise ValueError(f"init_values has no matching latent sites: {sorted(unknown)}")
        out, dtype = {}, jnp.result_type(float)
        for s in self.sites:
            if s.discrete:
                logit = np.log(self.init_inclusion / (1 - self.init_inclusion))
                out[logits(s.name)] = jnp.full(s.shape, logit, dtype)
                continue
            t = biject_to(s.support)
            v = values.get(s.name)
            mu = jnp.zeros(s.shape, dtype) if v is None else t.inv(jnp.broadcast_to(jnp.asarray(v, dtype), s.shape))
            if not bool(jnp.all(jnp.isfinite(mu))):
                raise ValueError(f"init_values[{s.name!r}] lies outside the support {s.support}")
            out[loc(s.name)] = mu
            out[log_scale(s.name)] = jnp.full(s.shape, np.log(self.init_scale), dtype)
        return out

    @property
    def noise_size(self) -> int:
        """Number of standard normals one draw of every Gaussian factor takes."""
        return sum(math.prod(s.shape) for s in self.sites if not s.discrete)

    def __call__(self, *args, temperature=None, pool=None, **kwargs):
        params = {k: numpyro.param(k, v) for k, v in self.init_params.items()}
        values = self.rsample(params, numpyro.prng_key(), temperature, pool)
        with handlers.substitute(data=values):  # one noise draw for all sites; each site keeps its factor
            for s in self.sites:
                fn = self.factor(s, params, temperature)
                if s.gate is None:
                    numpyro.sample(s.name, fn)
                    continue
                gate = jax.nn.sigmoid(params[logits(s.gate)])
                with handlers.scale(scale=jnp.maximum(gate, jnp.finfo(gate.dtype).tiny)):
                    numpyro.sample(s.name, fn)

    def factor(self, site: Site, params: Mapping[str, jax.Array], temperature=None) -> dist.Distribution:
        """The guide's distribution of one site under ``params``."""
        if site.discrete:
            theta = params[logits(site.name)]
            return dist.BernoulliLogits(theta) if temperature is None else ConcreteBernoulli(temperature, theta, self.hard)
        fn = LogScaleNormal(params[loc(site.name)], params[log_scale(site.name)])
        return fn if site.support is dist.constraints.real else dist.TransformedDistribution(fn, biject_to(site.support))

    def rsample(self, params: Mapping[str, jax.Array], key: jax.Array, temperature=None,
                pool: jax.Array | None = None) -> dict[str, jax.Array]:
        """One reparameterised draw of every site from a single noise vector (one RNG call per kind).

        Gaussian factors: ``T(μ + exp(ρ) ε)`` with ``T = biject_to(support)``; indicators:
        :func:`~sparsebnn.infer.concrete.concrete` from uniforms (exact Bernoulli when ``temperature`` is None).
        ``pool``: iid standard normals, at least :attr:`noise_size` of them; ``ε`` is then the window of
        ``noise_size`` consecutive entries at a uniformly random offset (drawn from ``key``) instead of
        fresh normals. Each draw's ``ε`` is still exactly iid ``N(0, 1)``; draws that share a pool are
        dependent (the shared noise table of Salimans et al. 2017), which :func:`~sparsebnn.infer.svi`
        uses to draw the weight noise once per chunk of steps instead of once per step.
        """
        dtype = jnp.result_type(float)
        real = [s for s in self.sites if not s.discrete]
        flags = [s for s in self.sites if s.discrete]
        k_eps, k_u = jax.random.split(key)
        out = {}
        if real:
            total = self.noise_size
            if pool is None:
                eps = jax.random.normal(k_eps, (total,), dtype)
            else:
                if pool.ndim != 1 or pool.shape[0] < total:
                    raise ValueError(f"pool must be a 1-D array of at least {total} normals; got shape {pool.shape}")
                offset = jax.random.randint(k_eps, (), 0, pool.shape[0] - total + 1)
                eps = jax.lax.dynamic_slice(pool.astype(dtype), (offset,), (total,))
            start = 0
            for s in real:
                size = math.prod(s.shape)
                e = eps[start : start + size].reshape(s.shape)
                start += size
                v = params[loc(s.name)] + jnp.exp(params[log_scale(s.name)]) * e
                out[s.name] = v if s.support is dist.constraints.real else biject_to(s.support)(v)
        if flags:
            u = jax.random.uniform(k_u, (sum(math.prod(s.shape) for s in flags),), dtype, minval=jnp.finfo(dtype).tiny)
            start = 0
            for s in flags:
                size = math.prod(s.shape)
                out[s.name] = concrete(params[logits(s.name)], temperature, u[start : start + size].reshape(s.shape), self.hard)
                start += size
        return out

    def inclusion_probs(self, params: Mapping[str, jax.Array]) -> dict[str, jax.Array]:
        """``{indicator site: σ(θ)}`` under guide parameters ``params``."""
        return {s.name: jax.nn.sigmoid(params[logits(s.name)]) for s in self.sites if s.discrete}

    def normal_factors(self, params: Mapping[str, jax.Array]) -> dict[str, tuple[jax.Array, jax.Array]]:
        """``{site: (μ, σ)}`` of every real-valued site's Gaussian factor ``N(μ, σ²)``."""
        return {s.name: (params[loc(s.name)], jnp.exp(params[log_scale(s.name)]))
                for s in self.sites if s.support is dist.constraints.real}


__all__ = ["LogScaleNormal", "MeanFieldGuide", "Site", "loc", "log_scale", "logits", "model_sites"]
