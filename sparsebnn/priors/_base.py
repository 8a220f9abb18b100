"""What every prior shares: walking a network's parameters and registering NumPyro sites.

A prior is a small frozen dataclass of hyperparameters. Called inside a NumPyro model,
``prior(net, n_data)`` registers sample sites over every parameter of ``net`` (named by
:mod:`sparsebnn.sites`) and returns the *effective* parameters (the pytree ``net.apply`` consumes).
Parameters outside the network's layers are always ``N(0, σ0²)``. Weight sites of a node-gated
slab carry ``infer={"gate": "L.z"}``: their node's indicator. The priors are described in
``docs/priors.md``.
"""

from __future__ import annotations

import dataclasses
import math
from typing import ClassVar

import jax
import numpyro
import numpyro.distributions as dist

from sparsebnn import sites
from sparsebnn.nets import Layer, Network, Params
from sparsebnn.sites import leaf_names


def param_shapes(net: Network) -> Params:
    """The network's parameter pytree as ``jax.ShapeDtypeStruct`` leaves (no computation)."""
    return jax.eval_shape(net.init, jax.random.key(0))


def normal_site(name: str, shape: tuple, scale, centered: bool = True, gate: str | None = None) -> jax.Array:
    """``w ~ N(0, scale²)`` of ``shape`` (``scale`` broadcasts to it).

    Centred: one site ``name``. Non-centred: site ``name + "_decentered"`` ``ε ~ N(0, 1)`` and
    ``w = scale · ε``. ``gate`` names the node indicator that switches these weights off.
    """
    infer = {"gate": gate} if gate else {}
    if centered:
        # expand (not broadcast) keeps per-node scales per node: KLs take ln s once per node
        return numpyro.sample(name, dist.Normal(0.0, scale).expand(shape), infer=infer)
    eps = numpyro.sample(name + sites.DECENTERED, dist.Normal(0.0, 1.0).expand(shape), infer=infer)
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

    def init_values(self, net: Network, params: Params) -> dict[str, jax.Array]:
        """Starting values of hyperparameter sites fitted to the initial weights ``params``
        (:meth:`sparsebnn.model.BNN.init_sites`); none by default (prior medians)."""
        return {}

    def layer_prior(self, layer: Layer, shape: dict, context: dict) -> dict:
        raise NotImplementedError

    def bmr_sites(self, net: Network) -> dict[str, dict[str, tuple[str, jax.Array]]]:
        """``{layer: {"w" | "b": (site, prior variance)}}``: where Bayesian model reduction reads each layer's weights.

        BMR needs a fixed Gaussian prior on the coordinates it moves to the spike. In non-centred form
        (``centered=False``) every prior qualifies: the coordinates are the ``ε ~ N(0, 1)`` of
        ``w = scale · ε``, and ``w = 0`` exactly when ``ε = 0`` (``docs/bmr.md``). ValueError otherwise.
        """
        if getattr(self, "centered", True):
            raise ValueError(
                f"BMR needs a fixed Gaussian prior on the weight sites: use priors.Gaussian without scale_prior, or "
                f"centered=False (non-centred weights, prior N(0, 1)); got {self!r}")
        one = jax.numpy.asarray(1.0)
        return {layer.name: {k: (sites.weight(layer.name, k, centered=False), one) for k in ("w", "b")}
                for layer in net.layers}

    def other_prior(self, key: str, sub) -> object:
        """``N(0, σ0²)`` on every leaf of a parameter subtree that belongs to no layer."""
        names = leaf_names({key: sub})
        leaves, treedef = jax.tree_util.tree_flatten(sub)
        values = [normal_site(n, tuple(leaf.shape), self.sigma0) for n, leaf in zip(names, leaves)]
        return jax.tree_util.tree_unflatten(treedef, values)


def layer_weights(layer: Layer, shape: dict, scale, centered: bool, gate: str | None = None) -> dict:
    """The ``"L.w"``, ``"L.b"`` sites of a layer with prior sd ``scale`` (scalar or per node, last axis)."""
    return {k: normal_site(sites.weight(layer.name, k), shape[k], scale, centered, gate) for k in ("w", "b")}
