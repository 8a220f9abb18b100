"""Sparsity priors over whole networks, each a small frozen dataclass (``docs/priors.md``).

Inside a NumPyro model, ``params = prior(net, n_data)`` registers the prior's sample sites over
every parameter of ``net`` (names in :mod:`sparsebnn.sites`) and returns the effective
parameters for ``net.apply``. :func:`get` maps the command-line names to the classes.
"""

from __future__ import annotations

from ._base import Prior as Prior
from ._base import normal_site as normal_site
from ._base import param_shapes as param_shapes
from ._gaussian import STRUCTURES as STRUCTURES
from ._gaussian import Gaussian as Gaussian
from ._horseshoe import RegularizedHorseshoe as RegularizedHorseshoe
from ._horseshoe import capped_scale as capped_scale
from ._inclusion import inclusion_probs as inclusion_probs
from ._inclusion import theory_inclusion as theory_inclusion
from ._inclusion import theory_u as theory_u
from ._spike_slab import SpikeSlab as SpikeSlab
from ._spike_slab import SpikeSlabGroupHorseshoe as SpikeSlabGroupHorseshoe
from ._spike_slab import SpikeSlabGroupLasso as SpikeSlabGroupLasso
from ._spike_slab import SpikeSlabIG as SpikeSlabIG

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
    "PRIORS", "STRUCTURES", "Gaussian", "Prior", "RegularizedHorseshoe", "SpikeSlab", "SpikeSlabGroupHorseshoe",
    "SpikeSlabGroupLasso", "SpikeSlabIG", "capped_scale", "get", "inclusion_probs", "normal_site", "param_shapes",
    "theory_inclusion", "theory_u",
]
