"""The Bayesian neural network as one ordinary NumPyro model: network + prior + likelihood.

    model = BNN(net, prior)                 # categorical likelihood on logits
    model = BNN(net, prior, Likelihood("gaussian", noise=0.3))
    model(x, y)                             # a NumPyro model: trace, condition, SVI, NUTS, ...
    model(xb, yb, n_data=N)                 # a minibatch: the likelihood is scaled by N / batch

Sites: the prior's (named by :mod:`sparsebnn.sites`), ``"noise"`` (a learned Gaussian noise sd),
``"f"`` (deterministic network outputs) and the observed ``"y"`` inside ``plate("data")``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist
from numpyro import handlers
from numpyro.infer.initialization import init_to_median

from sparsebnn import sites
from sparsebnn.likelihood import Likelihood, as_likelihood
from sparsebnn.nets import Network, Params
from sparsebnn.priors import Prior


@dataclasses.dataclass(frozen=True)
class BNN:
    """``y ~ p(y | f = net(x; w))`` (:class:`~sparsebnn.likelihood.Likelihood`), ``w ~ prior``.

    ``likelihood``: a :class:`~sparsebnn.likelihood.Likelihood` or ``"categorical"`` (default).
    """

    net: Network
    prior: Prior
    likelihood: Likelihood | str = "categorical"

    def __post_init__(self):
        if not isinstance(self.net, Network):
            raise ValueError(f"net must be a sparsebnn.nets.Network; got {type(self.net).__name__}")
        if not isinstance(self.prior, Prior):
            raise ValueError(f"prior must be a sparsebnn.priors.Prior; got {type(self.prior).__name__}")
        lik = as_likelihood(self.likelihood)
        object.__setattr__(self, "likelihood", lik)
        if lik.kind == "categorical" and self.net.out_dim < 2:
            raise ValueError(f"a categorical likelihood needs out_dim >= 2; the network has {self.net.out_dim}")

    def __call__(self, x, y=None, n_data: int | None = None):
        """The model. ``x`` ``(batch, *in_shape)``; ``y`` labels ``(batch,)`` or targets ``(batch,)`` /
        ``(batch, out_dim)``; ``n_data`` the full training-set size when ``x`` is a minibatch."""
        batch = self.check_data(x, y)
        n = batch if n_data is None else int(n_data)
        if n < batch:
            raise ValueError(f"n_data ({n}) must be >= the batch size ({batch})")
        params = self.prior(self.net, n)
        f = numpyro.deterministic("f", self.net.apply(params, x))
        lik = self.likelihood
        sd = numpyro.sample("noise", lik.noise) if lik.learned else None
        with numpyro.plate("data", batch), handlers.scale(scale=n / batch):
            return numpyro.sample("y", lik.distribution(f, sd), obs=y)

    def check_data(self, x, y=None) -> int:
        """The batch size; ValueError when ``x`` / ``y`` do not fit the network and likelihood."""
        shape = tuple(np.shape(x))
        if len(shape) < 1 or int(np.prod(shape[1:])) != int(np.prod(self.net.in_shape)):
            raise ValueError(f"x must have shape (batch, *{self.net.in_shape}); got {shape}")
        if y is not None:
            ys = tuple(np.shape(y))
            ok = ys == shape[:1] or (self.likelihood.kind == "gaussian" and ys == (shape[0], self.net.out_dim))
            if not ok:
                raise ValueError(f"y must have shape ({shape[0]},) to match x; got {ys}")
            if self.likelihood.kind == "categorical" and ys[0] and not isinstance(y, jax.core.Tracer):
                labels, k = np.asarray(y), self.net.out_dim  # values are checked where known (not under jit)
                if np.any(labels % 1 != 0) or labels.min() < 0 or labels.max() >= k:
                    raise ValueError(f"y must hold integer class labels in [0, {k}) for the network's {k} "
                                     f"outputs; found values in [{labels.min()}, {labels.max()}]")
        return shape[0]

    def params(self, sites: Mapping[str, jax.Array], n_data: int | None = None) -> Params:
        """Effective parameters (the pytree ``net.apply`` takes) from values of all prior sites.

        Add leading sample dimensions with ``jax.vmap``. ``n_data`` matters only for ``pi="theory"``.
        """
        fn = handlers.substitute(handlers.seed(self.prior, jax.random.key(0)), data=dict(sites))
        with handlers.trace() as tr:
            params = fn(self.net, n_data)
        missing = [k for k, s in tr.items() if s["type"] == "sample" and k not in sites]
        if missing:
            raise ValueError(f"sites is missing prior sites {missing}")
        return params

    def init_sites(self, key: jax.Array, params: Params | None = None, n_data: int | None = None) -> dict:
        """Site values whose effective parameters are ``params`` (default ``net.init(key)``).

        Hyperparameters the prior fits to ``params`` (:meth:`sparsebnn.priors.Prior.init_values`, e.g. the
        horseshoe's global scale) start there; other positive hyperparameters (scales) at their prior median
        (``icdf(1/2)``) or, where that is not available, their prior mean (1 if infinite) — no sampling, so
        nothing slow to compile; other continuous sites at ``init_to_median``. Indicators start at 1,
        centred weights at ``params``, non-centred ones at ``params / scale``.
        """
        k_init, k_med = jax.random.split(key)
        params = self.net.init(k_init) if params is None else params
        names = sites.leaf_names(params)
        median = init_to_median(num_samples=15)
        fitted = self.prior.init_values(self.net, params)

        def start(site):
            if site["type"] != "sample" or site["is_observed"]:
                return None
            if site["name"] in fitted:
                return jnp.broadcast_to(jnp.asarray(fitted[site["name"]]), site["fn"].shape())
            if sites.weight_path(site["name"], names) is not None:
                return jnp.ones(site["fn"].shape())
            if site["fn"].support is dist.constraints.boolean:
                return jnp.ones(site["fn"].shape())
            if site["fn"].support is dist.constraints.positive:
                return _typical_positive(site["fn"])
            return median(site)

        fn = handlers.substitute(handlers.seed(self.prior, k_med), substitute_fn=start)
        with handlers.trace() as tr:
            unit = fn(self.net, n_data)  # effective weights at ε = 1: the prior scale of each weight
        values = {k: s["value"] for k, s in tr.items() if s["type"] == "sample"}
        for name in values:
            path = sites.weight_path(name, names)
            if path is None:
                continue
            target = _get(params, path)
            if sites.is_decentered(name):
                scale = _get(unit, path)
                values[name] = jnp.where(scale != 0, target / jnp.where(scale != 0, scale, 1.0), 0.0)
            else:
                values[name] = jnp.asarray(target)
        return values


def _typical_positive(fn: dist.Distribution) -> jax.Array:
    """Median of a positive distribution if it has an ``icdf``, else its mean; 1 where that is infinite."""
    try:
        v = fn.icdf(jnp.full(fn.shape(), 0.5))
    except (NotImplementedError, ImportError, AttributeError):
        v = jnp.broadcast_to(fn.mean, fn.shape())
    return jnp.where(jnp.isfinite(v) & (v > 0), v, 1.0)


def _get(tree, path):
    for k in path:
        tree = tree[k]
    return tree


__all__ = ["BNN"]
