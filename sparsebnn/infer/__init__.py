"""Inference engines. Each takes ``(net, prior, data, *, likelihood)`` (or ``(model, data)`` with a
:class:`sparsebnn.model.BNN`) and returns a :class:`sparsebnn.posterior.Posterior`:

* :func:`svi`: minibatch mean-field SVI with Concrete-relaxed node indicators (``docs/svi.md``), the pure
  algorithm :func:`mean_field_svi` run by the shared chunked driver :func:`run_steps`;
* :func:`nuts`: the reference sampler, NumPyro's NUTS with exactly handled indicators (``docs/nuts.md``);
* :func:`laplace`: MAP with marginal-likelihood prior learning and the Laplace posterior (``docs/laplace.md``).
"""

from ._concrete import ConcreteBernoulli as ConcreteBernoulli
from ._concrete import bernoulli_kl as bernoulli_kl
from ._curvature import Diag as Diag
from ._curvature import Kron as Kron
from ._curvature import curvature as curvature
from ._guides import MeanFieldGuide as MeanFieldGuide
from ._guides import model_sites as model_sites
from ._laplace import LaplacePosterior as LaplacePosterior
from ._laplace import PriorPrecision as PriorPrecision
from ._laplace import laplace as laplace
from ._laplace import log_marglik as log_marglik
from ._laplace import map_train as map_train
from ._laplace import neg_log_joint as neg_log_joint
from ._laplace import marginal_variance as marginal_variance
from ._laplace import optimize_prior as optimize_prior
from ._laplace import posterior_precision as posterior_precision
from ._laplace import prior_precision as prior_precision
from ._loop import Callback as Callback
from ._loop import Log as Log
from ._loop import Pool as Pool
from ._loop import load_checkpoint as load_checkpoint
from ._loop import noise_pool as noise_pool
from ._loop import run_steps as run_steps
from ._loop import save_checkpoint as save_checkpoint
from ._nuts import NUTSOptions as NUTSOptions
from ._nuts import NUTSPosterior as NUTSPosterior
from ._nuts import batched_sampler as batched_sampler
from ._nuts import kde_log_density_at_zero as kde_log_density_at_zero
from ._nuts import nuts as nuts
from ._nuts import start_values as start_values
from ._nuts import to_datatree as to_datatree
from ._svi import SVI as SVI
from ._svi import SVIPosterior as SVIPosterior
from ._svi import SVIState as SVIState
from ._svi import mean_field_svi as mean_field_svi
from ._svi import svi as svi

__all__ = [
    "SVI", "Callback", "ConcreteBernoulli", "Diag", "Kron", "LaplacePosterior", "Log", "MeanFieldGuide", "NUTSOptions",
    "NUTSPosterior", "Pool", "PriorPrecision", "SVIPosterior", "SVIState", "batched_sampler", "bernoulli_kl",
    "curvature", "kde_log_density_at_zero", "laplace", "load_checkpoint", "log_marglik", "map_train",
    "marginal_variance", "neg_log_joint", "mean_field_svi", "model_sites", "noise_pool", "nuts", "optimize_prior",
    "posterior_precision", "prior_precision", "run_steps", "save_checkpoint", "start_values", "svi", "to_datatree",
]
