"""Size and speed of the architectures, dense and compacted.

1. ``bench_compact_size.csv``: parameter count, prunable nodes and FLOPs per example (2 × MACs of
   all matrix products and convolutions, see ``sparsebnn.compact``) of every network on the
   digits (8×8×1), MNIST (28×28×1) and CIFAR-10 (32×32×3) input shapes.
2. ``bench_compact_latency.csv``: prune 90 % of the nodes of every prunable layer (a random 10 % is
   kept, seeded; parameters are the initial values plus small noise), compact, and compare parameters, FLOPs and the median jitted batch latency of the
   compacted network with the dense one (``sparsebnn.compact.compare``); ``max_abs_diff`` checks
   that the compacted outputs equal the masked dense outputs.

    python -m experiments.bench_compact [--quick] [--seed 0] [--out results] [--overwrite]
"""

from __future__ import annotations

import math

import jax
import numpy as np
import pandas as pd

from experiments._cli import parse, parser
from sparsebnn import compact, nets
from sparsebnn.results import run_grid

SHAPES = {"digits": (8, 8, 1), "mnist": (28, 28, 1), "cifar10": (32, 32, 3)}


def architectures(shape: tuple[int, int, int]) -> dict:
    """The benchmarked configurations (name → (description, builder))."""
    patch = 2 if shape[0] == 8 else 4
    d = math.prod(shape)
    return {
        "mlp": (f"{d}-400-400-10", lambda: nets.mlp([d, 400, 400, 10])),
        "lenet5_caffe": ("conv20-conv50-fc500", lambda: nets.lenet5_caffe(shape)),
        "lenet5": ("conv6-conv16-fc120-fc84", lambda: nets.lenet5(shape)),
        "vit": (
            f"patch{patch} width128 depth6 heads4 mlp512",
            lambda: nets.vit(shape, 10, patch=patch, width=128, depth=6, heads=4, mlp_hidden=512),
        ),
        "mixer": (
            f"patch{patch} width128 depth6 tok64 ch512",
            lambda: nets.mixer(shape, 10, patch=patch, width=128, depth=6, token_hidden=64, channel_hidden=512),
        ),
        "resnet20": ("widths 16-32-64, Fixup-style, no BN", lambda: nets.resnet(shape, 10, depth=20)),
    }


def size_row(config: dict) -> dict:
    shape = SHAPES[config["dataset"]]
    description, build = architectures(shape)[config["network"]]
    net = build()
    params = jax.eval_shape(net.init, jax.random.PRNGKey(0))
    return {
        "config": description,
        "params": nets.n_params(params),
        "prunable_nodes": sum(layer.n_nodes for layer in net.prunable_layers),
        "flops": compact.flops(net),
    }


LATENCY_NETS = {
    "mlp 784-400-400-10": lambda: nets.mlp([784, 400, 400, 10]),
    "mlp 784-2000-2000-10": lambda: nets.mlp([784, 2000, 2000, 10]),
    "lenet5_caffe mnist": lambda: nets.lenet5_caffe((28, 28, 1)),
    "resnet20 cifar10": lambda: nets.resnet((32, 32, 3), 10, depth=20),
}


def latency_row(config: dict) -> dict:
    net = LATENCY_NETS[config["network"]]()
    rng = np.random.default_rng(config["seed"])
    # init plus N(0, 0.01²) noise, so that zero-initialised leaves (biases, Fixup branches) take part in the check
    params = jax.tree_util.tree_map(
        lambda a: a + 0.01 * rng.normal(size=a.shape).astype(a.dtype), net.init(jax.random.PRNGKey(config["seed"]))
    )
    masks = {}
    for layer in net.prunable_layers:
        keep = max(1, round(config["keep"] * layer.n_nodes))
        masks[layer.name] = np.isin(np.arange(layer.n_nodes), rng.choice(layer.n_nodes, keep, replace=False))
    x = jax.random.normal(jax.random.PRNGKey(config["seed"] + 1), (config["batch"], *net.in_shape))
    return compact.compare(net, params, masks, x, repeats=config["repeats"])


def main(argv=None) -> tuple[pd.DataFrame, pd.DataFrame]:
    args = parse(parser("bench_compact", __doc__.split("\n")[0]), argv)
    sizes = [{"dataset": ds, "network": name} for ds in SHAPES for name in architectures(SHAPES[ds])]
    size = run_grid(sizes, size_row, args.out / "bench_compact_size.csv", args.overwrite, desc="sizes")
    if args.quick:
        grid = [("mlp 784-400-400-10", 128)]
    else:
        grid = [(n, b) for n in list(LATENCY_NETS)[:3] for b in (1, 128, 1024)] + [("resnet20 cifar10", 128)]
    repeats = 3 if args.quick else 30
    configs = [{"network": n, "batch": b, "keep": 0.1, "repeats": repeats, "seed": args.seed} for n, b in grid]
    lat = run_grid(configs, latency_row, args.out / "bench_compact_latency.csv", args.overwrite, desc="latency")

    pd.set_option("display.width", 200)
    print(size.pivot_table(index="network", columns="dataset", values=["params", "flops"], aggfunc="first", sort=False).to_string())
    cols = ["network", "batch", "params_dense", "params_compact", "flops_ratio", "latency_dense_s", "latency_compact_s",
            "latency_ratio", "max_abs_diff"]
    print(lat[cols].to_string(index=False))
    return size, lat


if __name__ == "__main__":
    from experiments._cli import entry

    entry(main)
