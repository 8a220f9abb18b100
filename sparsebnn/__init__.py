"""sparsebnn: Bayesian sparsification of neural networks.

Submodules are imported on first use: ``from sparsebnn import bmr, nets, priors, infer, metrics, data``.
The method notes behind them are in ``docs/`` (index: ``docs/README.md``).
"""

import importlib

# NumPyro must be imported before ArviZ: ArviZ's lazy loading of NumPyro otherwise leaves
# ``numpyro.factor`` unbound in this environment (seen with arviz 1.3 / numpyro 0.22).
import numpyro  # noqa: F401

__version__ = "0.1.0"

_SUBMODULES = ("agreement", "bmr", "cluster", "compact", "data", "diagnostics", "infer", "intervals", "invariants",
               "likelihood", "masks", "metrics", "model", "nets", "posterior", "priors", "prune", "rates", "recovery",
               "reduction", "results", "sbc", "sites")


def __getattr__(name):
    if name in _SUBMODULES:
        return importlib.import_module(f"{__name__}.{name}")
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")


__all__ = list(_SUBMODULES)
