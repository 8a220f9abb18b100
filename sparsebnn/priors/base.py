"""What every prior shares: walking a network's parameters and naming the NumPyro sites.

A prior is a small frozen dataclass of hyperparameters. Called inside a NumPyro model,
``prior(net, n_data)`` registers sample sites over every parameter of ``net`` and returns the
*effective* parameters (the pytree ``net.apply`` consumes).

Site-naming contract (guides, posteriors, BMR and MCMC code rely on it):

* weights of layer ``L`` (``params[L] = {"w", "b"}``): ``"L.w"``, ``"L.b"`` when centred
  (``w ~ N(0, s²)``), or ``"L.w_decentered"``, ``"L.b_decentered"`` when non-centred
  (``ε ~ N(0, 1)``, ``w = s ε``; the suffix follows ``numpyro.infer.reparam.LocScaleReparam``);
* parameters outside the network's layers: their pytree path joined by ``"."`` (for example
  ``"norm_0.scale"``), always ``N(0, σ0²)``;
* per-layer hyperparameters ``"L.<name>"`` (``"L.tau"``, ``"L.s"``, ``"L.lambda2"``, ...) and node
  indicators ``"L.z"`` (``(n_nodes,)`` genuine Bernoulli sites).

Weight sites of a node-gated slab carry ``infer={"gate": "L.z"}``: their node's indicator.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import ClassVar

import jax
import numpyro
import numpyro.distributions as dist

from sparsebnn.nets.base import Layer, Network, Params

DECENTERED = "_decentered"


def param_shapes(net: Network) -> Params:
    """The network's parameter pytree as ``jax.ShapeDtypeStruct`` leaves (no computation)."""
    return jax.eval_shape(net.init, jax.random.key(0))


def leaf_names(tree) -> dict[str, tuple]:
    """``{"a.b.c": path}`` for every leaf of a (nested dict) pytree: the site name of each parameter."""
    out = {}
    for path, _ in jax.tree_util.tree_flatten_with_path(tree)[0]:
        out[jax.tree_util.keystr(path, simple=True, separator=".")] = tuple(
            getattr(k, "key", getattr(k, "idx", k)) for k in path
        )
    return out


def weight_site_path(site: str, names: Mapping[str, tuple]) -> tuple | None:
    """The params path behind a weight site (``"L.w"`` or ``"L.w_decentered"``), else None."""
    base = site[: -len(DECENTERED)] if site.endswith(DECENTERED) else site
    return names.get(base)


def normal_site(name: str, shape: tuple, scale, centered: bool = True, gate: str | None = None) -> jax.Array:
    """``w ~ N(0, scale²)`` of ``shape`` (``scale`` broadcasts to it).

    Centred: one site ``name``. Non-centred: site ``name + "_decentered"`` ``ε ~ N(0, 1)`` and
    ``w = scale · ε``. ``gate`` names the node indicator that switches these weights off.
    """
    infer = {"gate": gate} if gate else {}
    if centered:
        # expand (not broadcast) keeps per-node scales per node: KLs take ln s once per node
        return numpyro.sample(name, dist.Normal(0.0, scale).expand(shape), infer=infer)
    eps = numpyro.sample(name + DECENTERED, dist.Normal(0.0, 1.0).expand(shape), infer=infer)
    return scale * eps


def positive(value, name: str) -> float:
    """A finite positive float, else ValueError naming the argument."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be a positive number; got {value!r}") from None
    if not (math.isfinite(v) and v > 0):
        raise ValueError(f"{name} must be a positive finite number; got {value!r}")
    return v


@dataclasses.dataclass(frozen=True, eq=False)
class Prior:
    """Base class: Gaussian ``N(0, σ0²)`` on parameters outside layers, ``layer_prior`` on each layer.

    Subclasses implement :meth:`layer_prior` (sites of one layer, returning its effective
    ``{"w", "b"}``) and set ``indicators = True`` when they carry node indicators ``"L.z"``.
    """

    sigma0: float = 1.0
    indicators: ClassVar[bool] = False
    name: ClassVar[str] = "prior"

    def __post_init__(self):
        positive(self.sigma0, "sigma0")

    def __call__(self, net: Network, n_data: int | None = None) -> Params:
        """Register the prior's sites over ``net`` (inside a NumPyro model); return effective params."""
        shapes = param_shapes(net)
        layers = {layer.name: layer for layer in net.layers}
        context = self.context(net, n_data)
        out = {}
        for key, sub in shapes.items():
            if key in layers:
                shape = {"w": tuple(sub["w"].shape), "b": tuple(sub["b"].shape)}
                out[key] = self.layer_prior(layers[key], shape, context)
            else:
                out[key] = self.other_prior(key, sub)
        return out

    def context(self, net: Network, n_data: int | None) -> dict:
        """Network-level quantities the layers need (e.g. inclusion probabilities); none by default."""
        return {}

    def layer_prior(self, layer: Layer, shape: dict, context: dict) -> dict:
        raise NotImplementedError

    def other_prior(self, key: str, sub) -> object:
        """``N(0, σ0²)`` on every leaf of a parameter subtree that belongs to no layer."""
        names = leaf_names({key: sub})
        leaves, treedef = jax.tree_util.tree_flatten(sub)
        values = [normal_site(n, tuple(leaf.shape), self.sigma0) for n, leaf in zip(names, leaves)]
        return jax.tree_util.tree_unflatten(treedef, values)


def layer_weights(layer: Layer, shape: dict, scale, centered: bool, gate: str | None = None) -> dict:
    """The ``"L.w"``, ``"L.b"`` sites of a layer with prior sd ``scale`` (scalar or per node, last axis)."""
    return {
        "w": normal_site(f"{layer.name}.w", shape["w"], scale, centered, gate),
        "b": normal_site(f"{layer.name}.b", shape["b"], scale, centered, gate),
    }
