"""Spike-and-slab node priors: SS-IG, SS-GL and SS-GHS (Jantre, Bhattacharya & Maiti).

Node ``j`` of a prunable layer ``L`` owns the group ``w_j = (W[..., j], b[j])`` of ``m = fan_in + 1``
numbers. Every variant shares the spike-and-slab product

    z_j ~ Bernoulli(π_L)                     "L.z"   (a genuine Bernoulli site)
    w_j = z_j · w̃_j,   w̃_j ~ N(0, σ0² ŝ_j² I_m)  "L.w", "L.b" (centred, default) or "*_decentered"

and differs in the slab scale ``ŝ_j``:

* SS-IG  (independent Gaussian): ``ŝ_j = 1``;
* SS-GL  (group lasso): ``ŝ_j² = τ_j² ~ Gamma((m+1)/2, rate λ²/2)`` ("L.tau2"), ``λ² ~ Gamma(4, rate 2)``
  per layer ("L.lambda2"); marginally ``p(w̃_j | λ) ∝ exp(−λ ‖w̃_j‖ / σ0)``, the group-lasso density;
* SS-GHS (group horseshoe): ``ŝ_j = c s τ_j / √(c² + s² τ_j²)``, ``τ_j ~ C⁺(0, 1)`` ("L.tau"),
  ``s ~ C⁺(0, s0)`` per layer ("L.s"), ``c = c_reg`` (1, or ``"fan_in"``: ``m = fan_in + 1``).

π_L is fixed (``pi=0.5``, or ``{layer: π}``) or the theory-driven choice (``pi="theory"``, see
:func:`sparsebnn.priors.theory_inclusion`). Non-prunable layers (the output layer) get the slab alone:
the same scale hierarchy, no indicator (``z ≡ 1``).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping

import jax.numpy as jnp
import numpyro
import numpyro.distributions as dist

from sparsebnn import sites
from sparsebnn.nets import Layer, Network

from ._base import Prior, layer_weights, positive
from ._horseshoe import capped_scale
from ._inclusion import inclusion_probs


@dataclasses.dataclass(frozen=True, eq=False)
class SpikeSlab(Prior):
    """Shared spike-and-slab machinery; subclasses define :meth:`slab_scale` (``ŝ``, per node)."""

    sigma0: float = 1.0
    pi: float | str | Mapping = "theory"
    centered: bool = True
    indicators = True

    def __post_init__(self):
        super().__post_init__()
        if isinstance(self.pi, str):
            if self.pi != "theory":
                raise ValueError(f"pi must be a probability, a dict per layer, or 'theory'; got {self.pi!r}")
        elif not isinstance(self.pi, Mapping) and not (isinstance(self.pi, (int, float)) and 0 < self.pi < 1):
            raise ValueError(f"pi must lie in (0, 1); got {self.pi!r}")

    def context(self, net: Network, n_data: int | None) -> dict:
        return {"pi": inclusion_probs(net, n_data, self.pi)}

    def slab_scale(self, layer: Layer, shape: dict):
        raise NotImplementedError

    def layer_prior(self, layer: Layer, shape: dict, context: dict) -> dict:
        L = layer.name
        scale = self.sigma0 * self.slab_scale(layer, shape)
        if not layer.prunable:
            return layer_weights(layer, shape, scale, self.centered)
        pi = context["pi"][L]
        z = numpyro.sample(sites.indicator(L), dist.Bernoulli(probs=pi).expand((layer.n_nodes,)))
        slab = layer_weights(layer, shape, scale, self.centered, gate=sites.indicator(L))
        return {"w": slab["w"] * z, "b": slab["b"] * z}


@dataclasses.dataclass(frozen=True, eq=False)
class SpikeSlabIG(SpikeSlab):
    """SS-IG: ``w_j | z_j = 1 ~ N(0, σ0² I)``."""

    name = "ss-ig"

    def slab_scale(self, layer: Layer, shape: dict):
        return 1.0


@dataclasses.dataclass(frozen=True, eq=False)
class SpikeSlabGroupLasso(SpikeSlab):
    """SS-GL: ``w_j | z_j = 1, τ_j² ~ N(0, σ0² τ_j² I_m)``, ``τ_j² ~ Gamma((m+1)/2, λ²/2)``, ``λ² ~ Gamma(a, b)``."""

    lambda2_shape: float = 4.0
    lambda2_rate: float = 2.0
    name = "ss-gl"

    def __post_init__(self):
        super().__post_init__()
        positive(self.lambda2_shape, "lambda2_shape")
        positive(self.lambda2_rate, "lambda2_rate")

    def slab_scale(self, layer: Layer, shape: dict):
        L, m = layer.name, layer.fan_in + 1
        lam2 = numpyro.sample(f"{L}.lambda2", dist.Gamma(self.lambda2_shape, self.lambda2_rate))
        tau2 = numpyro.sample(f"{L}.tau2", dist.Gamma((m + 1) / 2, lam2 / 2).expand((layer.n_nodes,)))
        return jnp.sqrt(tau2)


@dataclasses.dataclass(frozen=True, eq=False)
class SpikeSlabGroupHorseshoe(SpikeSlab):
    """SS-GHS: ``w_j | z_j = 1 ~ N(0, σ0² ŝ_j² I)``, ``ŝ_j = c s τ_j / √(c² + s²τ_j²)``, ``τ_j ~ C⁺(0,1)``, ``s ~ C⁺(0, s0)``."""

    c_reg: float | str = 1.0
    s0: float = 1.0
    name = "ss-ghs"

    def __post_init__(self):
        super().__post_init__()
        positive(self.s0, "s0")
        if self.c_reg != "fan_in":
            positive(self.c_reg, "c_reg (a positive number or 'fan_in')")

    def slab_scale(self, layer: Layer, shape: dict):
        L = layer.name
        c = float(layer.fan_in + 1) if self.c_reg == "fan_in" else float(self.c_reg)
        s = numpyro.sample(f"{L}.s", dist.HalfCauchy(self.s0))
        tau = numpyro.sample(f"{L}.tau", dist.HalfCauchy(1.0).expand((layer.n_nodes,)))
        return capped_scale(s * tau, c)
