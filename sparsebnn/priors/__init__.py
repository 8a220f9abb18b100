"""Sparsity priors over whole networks (DESIGN.md §2), each a small frozen dataclass.

Inside a NumPyro model, ``params = prior(net, n_data)`` registers the prior's sample sites over
every parameter of ``net`` (names in :mod:`sparsebnn.priors.base`) and returns the effective
parameters for ``net.apply``. :func:`get` maps the command-line names to the classes.
"""

from __future__ import annotations

from .base import DECENTERED, Prior, leaf_names, normal_site, param_shapes, weight_site_path
from .gaussian import Gaussian
from .horseshoe import RegularizedHorseshoe, capped_scale
from .inclusion import inclusion_probs, theory_inclusion, theory_u
from .spike_slab import SpikeSlab, SpikeSlabGroupHorseshoe, SpikeSlabGroupLasso, SpikeSlabIG

PRIORS = {
    "gaussian": Gaussian,
    "horseshoe": RegularizedHorseshoe,
    "tiered-horseshoe": lambda **kw: RegularizedHorseshoe(tiered=True, **kw),
    "ss-ig": SpikeSlabIG,
    "ss-gl": SpikeSlabGroupLasso,
    "ss-ghs": SpikeSlabGroupHorseshoe,
}


def get(name: str, **hyper) -> Prior:
    """A prior by its command-line name (``gaussian``, ``horseshoe``, ``tiered-horseshoe``, ``ss-ig``,
    ``ss-gl``, ``ss-ghs``) with hyperparameters as keyword arguments."""
    try:
        cls = PRIORS[name]
    except KeyError:
        raise ValueError(f"unknown prior {name!r}; choose one of {sorted(PRIORS)}") from None
    return cls(**hyper)


__all__ = [
    "DECENTERED", "PRIORS", "Gaussian", "Prior", "RegularizedHorseshoe", "SpikeSlab", "SpikeSlabGroupHorseshoe",
    "SpikeSlabGroupLasso", "SpikeSlabIG", "capped_scale", "get", "inclusion_probs", "leaf_names", "normal_site",
    "param_shapes", "theory_inclusion", "theory_u", "weight_site_path",
]
