"""Gaussian prior: ``w ~ N(0, σ²)`` with a fixed, per-layer random, or per-weight variance.

* default: ``σ = σ0`` for every parameter;
* ``scale_prior`` (a positive NumPyro distribution): per layer ``σ_l ~ scale_prior`` (site
  ``"L.scale"``), ``w ~ N(0, σ_l²)`` for the layer's weights and biases;
* ``variance`` (for Bayesian model reduction): per-weight prior variances ``{key: subtree}`` for
  any top-level entries of ``params`` (the rest keep ``σ0²``). A variance of exactly 0 is a spike:
  that weight is fixed at 0. Its site stays in the model as an unused ``N(0, 1)`` dummy, so the
  model stays proper (NUTS-safe) and the evidence is unchanged;
* ``learn`` (for :func:`sparsebnn.infer.laplace`): the structure of a prior precision learned by
  maximising the Laplace marginal likelihood (``"scalar"``, ``"layer"``, ``"node"``, ``"unit"``,
  ``"parameter"``; ``docs/laplace.md``), starting from ``1/σ0²``. SVI and NUTS do not learn it.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import jax
import jax.numpy as jnp
import numpy as np
import numpyro
import numpyro.distributions as dist

from sparsebnn.nets import Layer, Network, Params

from sparsebnn import sites
from sparsebnn.sites import leaf_names

from ._base import Prior, layer_weights, normal_site, param_shapes

STRUCTURES = ("scalar", "layer", "node", "unit", "parameter")  # learnable prior-precision structures


@dataclasses.dataclass(frozen=True, eq=False)
class Gaussian(Prior):
    """``w ~ N(0, σ0²)``; optional per-layer scale hyperprior or per-weight variances (0 = spike)."""

    sigma0: float = 1.0
    scale_prior: dist.Distribution | None = None
    variance: Mapping | None = None
    centered: bool = True
    learn: str | None = None
    name = "gaussian"

    def __post_init__(self):
        super().__post_init__()
        if self.learn is not None:
            if self.learn not in STRUCTURES:
                raise ValueError(f"learn must be one of {STRUCTURES} (or None: fixed); got {self.learn!r}")
            if self.scale_prior is not None or self.variance is not None:
                raise ValueError("learn (a precision learned by the marginal likelihood) excludes scale_prior and variance")
        if self.scale_prior is not None:
            if not isinstance(self.scale_prior, dist.Distribution):
                raise ValueError(f"scale_prior must be a numpyro Distribution; got {type(self.scale_prior).__name__}")
            if self.scale_prior.support is not dist.constraints.positive or self.scale_prior.batch_shape:
                raise ValueError("scale_prior must be a scalar distribution on the positive reals (e.g. HalfCauchy(1.))")
            if self.variance is not None:
                raise ValueError("give either scale_prior or variance, not both")
        if self.variance is not None and not isinstance(self.variance, Mapping):
            raise ValueError(f"variance must be a dict {{params key: subtree of variances}}; got {type(self.variance).__name__}")

    def __call__(self, net: Network, n_data: int | None = None) -> Params:
        if self.variance is not None:
            self.check_variance(net)
        return super().__call__(net, n_data)

    def check_variance(self, net: Network) -> None:
        """ValueError unless ``variance`` matches the shapes of ``params`` and is finite and >= 0."""
        shapes = param_shapes(net)
        for key, sub in self.variance.items():
            if key not in shapes:
                raise ValueError(f"variance has key {key!r}, which is not in the network's params {sorted(shapes)}")
            want, got = leaf_names({key: shapes[key]}), leaf_names({key: sub})
            if set(want) != set(got):
                raise ValueError(f"variance[{key!r}] must have the leaves {sorted(want)}; got {sorted(got)}")
            for (name, s), v in zip(jax.tree_util.tree_leaves_with_path(shapes[key]), jax.tree_util.tree_leaves(sub)):
                if isinstance(v, jax.core.Tracer):
                    continue
                v = np.asarray(v)
                label = jax.tree_util.keystr(name, simple=True, separator=".")
                if v.shape != tuple(s.shape):
                    raise ValueError(f"variance[{key!r}].{label} must have shape {tuple(s.shape)}; got {v.shape}")
                if not np.all(np.isfinite(v)) or np.any(v < 0):
                    raise ValueError(f"variance[{key!r}].{label} must be finite and >= 0 (0 = spike at zero)")

    def bmr_sites(self, net: Network) -> dict:
        """As :meth:`Prior.bmr_sites`; centred weights qualify too without a scale hyperprior (prior ``σ0²``
        or the given ``variance``, whose zeros are spikes)."""
        if self.scale_prior is not None:
            return super().bmr_sites(net)
        spikes = self.variance or {}
        out = {}
        for layer in net.layers:
            out[layer.name] = {}
            for k in ("w", "b"):
                v = jnp.asarray(self.sigma0**2 if self.centered else 1.0)
                if layer.name in spikes:
                    given = jnp.asarray(spikes[layer.name][k])
                    v = given if self.centered else jnp.where(given > 0, 1.0, 0.0)
                out[layer.name][k] = (sites.weight(layer.name, k, self.centered), v)
        return out

    def _spiked(self, name: str, shape: tuple, var) -> jax.Array:
        keep = var > 0
        w = normal_site(name, shape, jnp.sqrt(jnp.where(keep, var, 1.0)), self.centered)
        return jnp.where(keep, w, 0.0)

    def layer_prior(self, layer: Layer, shape: dict, context: dict) -> dict:
        if self.variance is not None and layer.name in self.variance:
            var = self.variance[layer.name]
            return {k: self._spiked(sites.weight(layer.name, k), shape[k], _floats(var[k])) for k in ("w", "b")}
        scale = self.sigma0
        if self.scale_prior is not None:
            scale = numpyro.sample(f"{layer.name}.scale", self.scale_prior)
        return layer_weights(layer, shape, scale, self.centered)

    def other_prior(self, key: str, sub):
        if self.variance is None or key not in self.variance:
            return super().other_prior(key, sub)
        names = leaf_names({key: sub})
        leaves, treedef = jax.tree_util.tree_flatten(sub)
        var = jax.tree_util.tree_leaves(self.variance[key])
        values = [self._spiked(n, tuple(s.shape), _floats(v)) for n, s, v in zip(names, leaves, var)]
        return jax.tree_util.tree_unflatten(treedef, values)


def _floats(v) -> jax.Array:
    return jnp.asarray(v, dtype=jnp.result_type(float))
