"""The posterior contract every inference engine returns (SVI, NUTS, Laplace).

A :class:`Posterior` over a network's parameters offers, whatever produced it:

* ``sample_params(key, n, masks)``: ``n`` draws of the network parameters (leading axis ``n``);
* ``predict(x, key, n_samples, masks)``: network outputs ``(n_samples, N, out_dim)`` under those draws;
* ``gaussian_factors()``: the mean-field Gaussian ``N(mean, var)`` of the weights and biases of every
  layer with the full model's prior ``N(0, prior_var)`` (0 marks a coordinate fixed at the spike) —
  the input of Bayesian model reduction;
* on top of these two, implemented once here: ``delta_f`` (per-coordinate BMR ΔF of a spike at 0),
  ``node_masks`` / ``weight_masks`` (what to keep) and ``mean_params``; ``inclusion_probs`` for priors
  with node indicators.

Every method takes the same defaults on every posterior (``n = DRAWS`` draws, ``key = key(0)``).
The math of the reduction is in ``docs/bmr.md``.
"""

from __future__ import annotations

import abc
import dataclasses
import functools
from collections.abc import Mapping
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from sparsebnn import bmr
from sparsebnn import masks as masks_
from sparsebnn.nets import Network, Params

DRAWS = 32  # default number of posterior draws of sample_params / predict / mean_params
RULES = ("auto", "indicator", "bmr")


class GaussianFactors(NamedTuple):
    """A mean-field Gaussian posterior ``N(mean, var)`` and its prior ``N(0, prior_var)`` (0 = at the spike).

    Each field is ``{layer: {"w", "b"}}`` over the network's layers (shapes of their params).
    """

    mean: Params
    var: Params
    prior_var: Params


def spike_delta_f(factors: GaussianFactors) -> Params:
    """ΔF of moving each coordinate to a spike at 0 (Savage–Dickey, :func:`sparsebnn.bmr.spike_delta_f`); 0 where already there."""
    spike, raw = spike_delta_f_parts(factors)
    return jax.tree_util.tree_map(lambda s, d: jnp.where(s, jnp.zeros_like(d), d), spike, raw)


def spike_delta_f_parts(factors: GaussianFactors) -> tuple[Params, Params]:
    """``(spike, raw)``: where ``prior_var == 0`` (already at the spike), and the spike ΔF with a unit prior
    variance standing in there, so ``raw`` is finite exactly where mean, var and prior_var are valid."""
    spike = jax.tree_util.tree_map(lambda v: v == 0, factors.prior_var)
    safe = jax.tree_util.tree_map(lambda s, v: jnp.where(s, jnp.ones_like(v), v), spike, factors.prior_var)
    return spike, bmr.spike_delta_f(factors.mean, factors.var, safe)


@functools.partial(jax.jit, static_argnums=0)
def _outputs(net: Network, draws: Params, x: jax.Array) -> jax.Array:
    return jax.vmap(net.apply, in_axes=(0, None))(draws, x)


def check_inputs(net: Network, x) -> jax.Array:
    """``x`` as a device array; ValueError unless it is ``(batch, *net.in_shape)``."""
    shape = tuple(np.shape(x))
    if len(shape) < 1 or int(np.prod(shape[1:])) != int(np.prod(net.in_shape)):
        raise ValueError(f"x must have shape (batch, *{net.in_shape}); got {shape}")
    return jnp.asarray(x)


def check_draws(n, name: str = "n_samples") -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"{name} must be a positive integer; got {n!r}")
    return int(n)


class Posterior(abc.ABC):
    """What SVI, NUTS and Laplace posteriors share (module docstring). Subclasses define ``net``, ``prior``,
    ``likelihood``, ``n_data``, :meth:`sample_params` and :meth:`gaussian_factors`."""

    net: Network

    @abc.abstractmethod
    def sample_params(self, key: jax.Array | None = None, n: int = DRAWS, masks: Mapping | None = None) -> Params:
        """``n`` draws of the network parameters (leading axis ``n``); ``masks`` (see :mod:`sparsebnn.masks`) prunes them."""

    @abc.abstractmethod
    def gaussian_factors(self) -> GaussianFactors:
        """The mean-field Gaussian of every layer's weights and biases and its prior (module docstring)."""

    def inclusion_probs(self) -> dict[str, np.ndarray]:
        """``{layer: P(z_j = 1 | y)}`` of every layer with node indicators (empty without them)."""
        return {}

    def predict(self, x, key: jax.Array | None = None, n_samples: int = DRAWS, masks: Mapping | None = None) -> jax.Array:
        """Posterior-predictive network outputs ``(n_samples, N, out_dim)`` (logits or regression means)."""
        x = check_inputs(self.net, x)
        return _outputs(self.net, self.sample_params(key, n_samples, masks), x)

    def mean_params(self, key: jax.Array | None = None, n_samples: int = DRAWS, masks: Mapping | None = None) -> Params:
        """Posterior mean of the network parameters over ``n_samples`` draws, pruned by ``masks``."""
        return jax.tree_util.tree_map(lambda a: a.mean(axis=0), self.sample_params(key, n_samples, masks))

    # --- Bayesian model reduction ------------------------------------------------------------

    def delta_f(self) -> Params:
        """Per-coordinate BMR ΔF of moving each weight / bias to a spike at 0, shaped like the layers' params.

        ``ΔF_i = ln q_i(0) − ln p_i(0)`` from :meth:`gaussian_factors` (``docs/bmr.md``); 0 where the
        coordinate is already at the spike. ΔF > 0: the model without the coordinate has more evidence.
        """
        return spike_delta_f(self.gaussian_factors())

    def node_masks(self, rule: str = "auto", margin: float = 0.0) -> dict[str, np.ndarray]:
        """Kept nodes ``{layer: (n_nodes,) bool}`` of every node-prunable layer.

        ``rule="indicator"``: keep where ``P(z_j = 1) >= 0.5`` (spike-and-slab priors); ``"bmr"``: keep where
        the node group's ΔF (sum over its incoming weights and bias) is ``<= margin``; ``"auto"``:
        indicator when the posterior has indicators, else bmr.
        """
        if rule not in RULES:
            raise ValueError(f"rule must be one of {RULES}; got {rule!r}")
        probs = self.inclusion_probs()
        if rule == "auto":
            rule = "indicator" if probs else "bmr"
        if rule == "indicator":
            if not probs:
                raise ValueError("rule='indicator' needs a posterior with node indicators (a spike-and-slab prior)")
            return {k: np.asarray(v) >= 0.5 for k, v in probs.items()}
        df = self.delta_f()
        return {layer.name: np.asarray(bmr.node_delta_f(df, layer) <= margin) for layer in self.net.prunable_layers}

    def weight_masks(self, margin: float = 0.0) -> Params:
        """Kept coordinates ``{layer: {"w", "b"}}`` by BMR: keep where ΔF <= ``margin`` (every layer, output included)."""
        return jax.tree_util.tree_map(np.asarray, bmr.threshold_rule(self.delta_f(), margin))

    def pruning_masks(self) -> tuple[dict, dict]:
        """``(node masks, masks to apply)`` by the posterior's own rule.

        With node indicators: keep node ``j`` when ``P(z_j = 1) >= 0.5`` (both are those node masks).
        Otherwise BMR: the weight masks of :meth:`weight_masks` (keep where ΔF <= 0), and a node is kept
        while any entry of its incoming group is (:func:`sparsebnn.masks.to_nodes`).
        """
        if self.inclusion_probs():
            nodes = self.node_masks("indicator")
            return nodes, nodes
        keep = self.weight_masks()
        return masks_.to_nodes(self.net, keep), keep


class ModelPosterior(Posterior):
    """A posterior of a :class:`sparsebnn.model.BNN` (field ``model``): its network, prior and likelihood."""

    @property
    def net(self) -> Network:
        return self.model.net

    @property
    def prior(self):
        return self.model.prior

    @property
    def likelihood(self):
        return self.model.likelihood


@dataclasses.dataclass(frozen=True)
class Point(Posterior):
    """A point estimate (a MAP, or a pruned network) seen through the contract: a Dirac measure at ``params``.

    Every draw is ``params``, so ``predict`` repeats the network's outputs and metrics of the predictive
    equal those of the point. It has no posterior variance: :meth:`gaussian_factors` (and with it BMR)
    raises.
    """

    net: Network
    params: Params
    likelihood: object = None
    n_data: int = 0
    prior: object = None

    def sample_params(self, key: jax.Array | None = None, n: int = DRAWS, masks: Mapping | None = None) -> Params:
        n = check_draws(n, "n")
        p = self.params if masks is None else masks_.apply(self.params, masks)
        return jax.tree_util.tree_map(lambda a: jnp.broadcast_to(a, (n, *jnp.shape(a))), p)

    def gaussian_factors(self) -> GaussianFactors:
        raise ValueError("a point estimate has no posterior variance: Bayesian model reduction needs a posterior")


__all__ = ["DRAWS", "GaussianFactors", "ModelPosterior", "Point", "Posterior", "check_draws", "check_inputs", "spike_delta_f",
           "spike_delta_f_parts"]
