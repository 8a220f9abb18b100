"""Pure-function networks sharing one description of layers and node groups (see ``base``).

Architectures: :func:`mlp`, :func:`convnet` with :func:`lenet5` and :func:`lenet5_caffe`,
:func:`vit`, :func:`mixer`, :func:`resnet`; :func:`build` makes one of them by name, sized for a dataset. Each builder also attaches its wiring (which
parameters read each prunable layer's nodes, see ``wiring``), used by :mod:`sparsebnn.compact`.
"""

from .base import ACTIVATIONS, Layer, Network, Params, activation, n_params, node_groups, scale_nodes
from .builder import ARCHITECTURES, build
from .lenet import convnet, lenet5, lenet5_caffe
from .mixer import mixer
from .mlp import mlp
from .resnet import resnet
from .vit import vit
from .wiring import Slot, consumers, wire

__all__ = [
    "ACTIVATIONS",
    "ARCHITECTURES",
    "Layer",
    "Network",
    "Params",
    "Slot",
    "activation",
    "build",
    "consumers",
    "convnet",
    "lenet5",
    "lenet5_caffe",
    "mixer",
    "mlp",
    "n_params",
    "node_groups",
    "resnet",
    "scale_nodes",
    "vit",
    "wire",
]
