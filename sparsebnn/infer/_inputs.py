"""What every engine is called with: ``(net, prior, data, *, likelihood)`` or ``(model, data)``."""

from __future__ import annotations

from sparsebnn.data import Training, as_training
from sparsebnn.model import BNN
from sparsebnn.nets import Network
from sparsebnn.priors import Prior


def model_and_data(net: Network | BNN, prior, data, likelihood=None, *, val=None, test=None) -> tuple[BNN, Training]:
    """The :class:`~sparsebnn.model.BNN` and the checked :class:`~sparsebnn.data.Training` data of an engine call.

    ``engine(net, prior, data, likelihood=...)`` or ``engine(model, data)`` with a BNN (which fixes the
    prior and the likelihood). The data are checked by :func:`sparsebnn.data.as_training`.
    """
    if isinstance(net, BNN):
        if data is None and prior is not None and not isinstance(prior, Prior):
            prior, data = None, prior
        if prior is not None or likelihood is not None:
            raise ValueError("with a BNN model, give only the data (the model fixes prior and likelihood)")
        if data is None:
            raise ValueError("data is required")
        return net, as_training(data, net.net, net.likelihood, val=val, test=test)
    if not isinstance(net, Network):
        raise ValueError(f"net must be a sparsebnn.nets.Network or a sparsebnn.model.BNN; got {type(net).__name__}")
    if not isinstance(prior, Prior):
        raise ValueError(f"prior must be a sparsebnn.priors.Prior; got {type(prior).__name__}")
    if data is None:
        raise ValueError("data is required")
    tr = as_training(data, net, likelihood, val=val, test=test)
    return BNN(net, prior, tr.likelihood), tr
