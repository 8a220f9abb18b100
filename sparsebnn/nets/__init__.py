"""Pure-function networks sharing one description of layers and node groups (see ``base``)."""

from .base import ACTIVATIONS, Layer, Network, Params, activation, n_params, node_groups, scale_nodes
from .mlp import mlp

__all__ = ["ACTIVATIONS", "Layer", "Network", "Params", "activation", "mlp", "n_params", "node_groups", "scale_nodes"]
