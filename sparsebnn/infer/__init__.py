"""Inference engines. Each consumes the same NumPyro model (:class:`sparsebnn.model.BNN`) and returns a posterior.

* :func:`svi` — minibatch mean-field SVI with Concrete-relaxed node indicators (:mod:`.svi`)
"""

from .concrete import ConcreteBernoulli, bernoulli_kl
from .guides import MeanFieldGuide, model_sites
from .svi import SVIPosterior, SVIState, load_checkpoint, save_checkpoint, svi
from .nuts import NUTSPosterior, nuts
from .laplace import LaplacePosterior, laplace
