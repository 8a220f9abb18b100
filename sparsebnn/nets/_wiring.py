"""Where each prunable layer's node outputs are read: what compaction needs besides the layer list.

A layer owns ``params[name]["w"][..., j]`` and ``params[name]["b"][j]`` (the contract in ``base``).
Removing node ``j`` also removes the entries of the *consuming* parameters that read node ``j``;
a :class:`Slot` names one such parameter leaf and the axis along which it reads the nodes. Along
that axis the entries are laid out as ``(outer, n_nodes, inner)`` in C order:

* dense → dense, conv → conv: ``outer = inner = 1`` (the next layer's input rows / channels);
* conv → flatten → dense: ``outer`` = number of spatial positions (NHWC flattening puts the
  channel fastest), ``inner = 1``;
* attention heads → output projection: ``outer = 1``, ``inner`` = head dimension.

Axes are negative, counted from the end, so the same slots work on parameters that carry leading
batch axes (stacked posterior samples). Builders in :mod:`sparsebnn.nets` attach their wiring with
:func:`wire` (it lives in the ``Network.consumers`` field); :func:`consumers` reads it back.
"""

from __future__ import annotations

from types import MappingProxyType

from ._base import Consumers, Network, Slot


def wire(net: Network, consumers: Consumers) -> Network:
    """``net`` with ``consumers`` (prunable layer name → slots reading its nodes) attached, after checking them."""
    prunable = {layer.name for layer in net.prunable_layers}
    unknown = set(consumers) - prunable
    if unknown:
        raise ValueError(f"consumers names layers that are not prunable layers of {net.name!r}: {sorted(unknown)}")
    table = []
    for name, slots in consumers.items():
        slots = tuple(Slot(tuple(s[0]), *s[1:]) for s in slots)
        for s in slots:
            if s.axis >= 0 or s.inner < 1 or not s.path:
                raise ValueError(f"consumers[{name!r}]: bad slot {s} (need a key path, a negative axis, inner >= 1)")
        table.append((name, slots))
    return net._replace(consumers=tuple(table))


def consumers(net: Network) -> Consumers:
    """The wiring attached to ``net`` by its builder (or by :func:`wire`)."""
    if not net.consumers and net.prunable_layers:
        raise ValueError(
            f"network {net.name!r} carries no wiring (which parameters read each layer's nodes); "
            "build it with a sparsebnn.nets builder or attach it with sparsebnn.nets.wire(net, consumers)"
        )
    return MappingProxyType(dict(net.consumers))
