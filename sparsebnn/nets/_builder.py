"""One builder for the compared architectures, sized for a dataset: :func:`build`."""

from __future__ import annotations

import inspect

from ._base import Network
from ._lenet import lenet5, lenet5_caffe
from ._mixer import mixer
from ._mlp import mlp
from ._resnet import resnet
from ._vit import vit

IMAGE_NETS = {"lenet5": lenet5, "lenet5_caffe": lenet5_caffe, "vit": vit, "mixer": mixer, "resnet": resnet}
ARCHITECTURES = ("mlp", *IMAGE_NETS)


def build(name: str, dataset, /, **options) -> Network:
    """The architecture ``name`` for ``dataset`` (a :class:`sparsebnn.data.Dataset`: its ``in_dim``,
    ``image_shape`` and ``out_dim``, the class count or 1 for regression).

    * ``"mlp"``: ``mlp([in_dim, *hidden, out_dim], act=..., name=...)``; ``hidden`` (the hidden widths) is required
      (``name`` among the options is the network's name);
    * ``"lenet5"``, ``"lenet5_caffe"``, ``"vit"``, ``"mixer"``, ``"resnet"``: the builder of that name on
      ``(image_shape, out_dim)`` with ``options`` as its keyword arguments, e.g. ``padding="SAME"`` for
      LeNet-5 (default: VALID where the image is large enough), ``patch=2, width=32, depth=2, heads=4``
      for a ViT on 8×8 images.

    Every choice is an explicit option, so one call names exactly the network it builds.
    """
    if name == "mlp":
        if "hidden" not in options:
            raise ValueError("net 'mlp' needs hidden=[widths] (its hidden layer widths)")
        _check_options(name, mlp, options, extra=("hidden",), fixed=("widths",))
        hidden = [int(h) for h in options.pop("hidden")]
        return mlp([dataset.in_dim, *hidden, dataset.out_dim], **options)
    try:
        builder = IMAGE_NETS[name]
    except KeyError:
        raise ValueError(f"unknown net {name!r}; choose one of {ARCHITECTURES}") from None
    if dataset.image_shape is None:
        raise ValueError(f"net {name!r} needs image data; dataset {dataset.name!r} has none")
    _check_options(name, builder, options, fixed=("in_shape", "n_out"))
    return builder(dataset.image_shape, dataset.out_dim, **options)


def _check_options(name: str, builder, options: dict, extra: tuple = (), fixed: tuple = ()) -> None:
    allowed = (set(inspect.signature(builder).parameters) | set(extra)) - set(fixed)
    unknown = sorted(set(options) - allowed)
    if unknown:
        raise ValueError(f"net {name!r} takes no option(s) {unknown}; its options: {sorted(allowed)}")
