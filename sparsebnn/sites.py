"""The names of a model's NumPyro sites: the one place that builds and parses them.

* weights of layer ``L`` (``params[L] = {"w", "b"}``): ``"L.w"``, ``"L.b"`` when centred
  (``w ~ N(0, s²)``), or ``"L.w_decentered"``, ``"L.b_decentered"`` when non-centred
  (``ε ~ N(0, 1)``, ``w = s ε``; the suffix follows ``numpyro.infer.reparam.LocScaleReparam``);
* parameters outside the network's layers: their pytree path joined by ``"."`` (``"norm_0.scale"``);
* per-layer hyperparameters ``"L.<name>"`` (``"L.tau"``, ``"L.s"``, ``"L.lambda2"``, ...);
* node indicators ``"L.z"``: ``(n_nodes,)`` Bernoulli sites of the spike-and-slab priors.

See ``docs/priors.md`` for the priors behind the names.
"""

from __future__ import annotations

from collections.abc import Mapping

import jax

DECENTERED = "_decentered"
_INDICATOR = ".z"


def weight(layer: str, k: str, centered: bool = True) -> str:
    """The site of ``params[layer][k]`` (``k`` = ``"w"`` or ``"b"``): ``"L.w"`` or ``"L.w_decentered"``."""
    return f"{layer}.{k}" if centered else f"{layer}.{k}{DECENTERED}"


def indicator(layer: str) -> str:
    """The node-indicator site of a layer: ``"L.z"``."""
    return layer + _INDICATOR


def indicator_layer(site: str) -> str | None:
    """The layer of an indicator site (``"L.z"`` → ``"L"``), else None."""
    return site[: -len(_INDICATOR)] if site.endswith(_INDICATOR) else None


def by_layer(values: Mapping[str, object]) -> dict[str, object]:
    """``{layer: value}`` from ``{indicator site: value}`` (other sites dropped)."""
    return {layer: v for site, v in values.items() if (layer := indicator_layer(site)) is not None}


def leaf_names(tree) -> dict[str, tuple]:
    """``{"a.b.c": path}`` for every leaf of a (nested dict) pytree: the site name of each parameter."""
    out = {}
    for path, _ in jax.tree_util.tree_flatten_with_path(tree)[0]:
        out[jax.tree_util.keystr(path, simple=True, separator=".")] = tuple(
            getattr(k, "key", getattr(k, "idx", k)) for k in path
        )
    return out


def weight_path(site: str, names: Mapping[str, tuple]) -> tuple | None:
    """The params path behind a weight site (``"L.w"`` or ``"L.w_decentered"``; ``names`` from :func:`leaf_names`), else None."""
    base = site[: -len(DECENTERED)] if site.endswith(DECENTERED) else site
    return names.get(base)


def is_decentered(site: str) -> bool:
    return site.endswith(DECENTERED)


__all__ = ["DECENTERED", "by_layer", "indicator", "indicator_layer", "is_decentered", "leaf_names", "weight",
           "weight_path"]
