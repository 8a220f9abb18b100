"""Pure-function networks sharing one description of layers and node groups (:class:`Network`, :class:`Layer`).

Architectures: :func:`mlp`, :func:`convnet` with :func:`lenet5` and :func:`lenet5_caffe`,
:func:`vit`, :func:`mixer`, :func:`resnet`; :func:`build` makes one of them by name, sized for a
dataset. Each builder also attaches its wiring (which
parameters read each prunable layer's nodes, see :func:`wire`), used by :mod:`sparsebnn.compact`.
"""

from ._base import ACTIVATIONS as ACTIVATIONS
from ._base import Layer as Layer
from ._base import Network as Network
from ._base import Params as Params
from ._base import Slot as Slot
from ._base import activation as activation
from ._base import n_params as n_params
from ._base import node_groups as node_groups
from ._base import scale_nodes as scale_nodes
from ._builder import ARCHITECTURES as ARCHITECTURES
from ._builder import build as build
from ._lenet import convnet as convnet
from ._lenet import lenet5 as lenet5
from ._lenet import lenet5_caffe as lenet5_caffe
from ._mixer import mixer as mixer
from ._mlp import mlp as mlp
from ._resnet import resnet as resnet
from ._vit import vit as vit
from ._wiring import consumers as consumers
from ._wiring import wire as wire

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
