"""SpaM: accuracy vs sparsity for each prior structure × pruning criterion (Dhahri et al. 2024).

    python -m experiments.spam [--quick] [--net mlp lenet] [--dataset digits] [--curvature kfac|diag]
                               [--finetune-epochs E] [--seeds 0 1 2] [--out results] [--overwrite]
                               [--executor local|dask] [--scheduler ADDRESS] (--help: every option)

For every network, prior structure and seed (``--seeds``) the network is trained once:

* ``map``: MAP under a fixed N(0, 1) prior (no marginal-likelihood learning), Laplace fitted at the end;
* ``scalar``, ``layer``, ``node``, ``unit``, ``parameter``: MAP with online Laplace marginal-likelihood
  learning of the prior precision of that structure (``sparsebnn.infer.laplace``).

Then every criterion of ``sparsebnn.prune`` (OPD from the Laplace posterior precision, magnitude,
random, SNIP, GraSP, SynFlow) masks the MAP at every sparsity of the grid, unstructured (global over
all layer parameters) and structured (per node/filter of each prunable layer), optionally followed by
masked fine-tuning, and the masked network is evaluated on the test split. Writes tidy rows to
``<out>/spam.csv``: dataset, net, structure, criterion, structured, sparsity (target), weight_sparsity
(achieved, over the layers' parameters), accuracy, nll, ece, brier, log_marglik, dense_accuracy, collapsed /
collapse_reason (:func:`sparsebnn.metrics.collapse_columns` against the dense MAP: a layer emptied, accuracy not
above chance, or more than half of the dense network's margin over chance lost).
"""

from __future__ import annotations

import jax
import numpy as np

from experiments._cli import (CLASSIFICATION_DATASETS, check_data, execute, load_data, nonnegative_int, parse, parser,
                             positive_float, positive_int, schedule, schedule_options)
from sparsebnn import masks as mask_lib
from sparsebnn import metrics, nets, priors, prune
from sparsebnn.infer import laplace, log_marglik

STRUCTURES = ("map", "scalar", "layer", "node", "unit", "parameter")
QUICK_STRUCTURES = ("map", "parameter")
NETS = {"mlp": ("mlp", {}), "lenet": ("lenet5", {}), "lenet-caffe": ("lenet5_caffe", {})}  # --net -> (sparsebnn.nets.build name, options)

FULL = dict(epochs=100, marglik_every=5, marglik_burnin=10, hyper_steps=50, sparsities=prune.SPARSITIES,
            hidden=(100, 100))
QUICK = dict(epochs=10, marglik_every=5, marglik_burnin=5, hyper_steps=10, sparsities=(0.5, 0.9), hidden=(32,))


def _layer_sparsity(net, params) -> float:
    leaves = [np.asarray(params[l.name][k]) for l in net.layers for k in ("w", "b")]
    return float(sum((x == 0).sum() for x in leaves) / sum(x.size for x in leaves))


def _evaluate(net, params, test, masks=None, reference_accuracy=None) -> dict:
    """Metrics of the (pruned) MAP, flagged against the dense MAP's accuracy (``reference_accuracy``)."""
    outs = np.asarray(net.apply(params, test.x))[None]
    row = metrics.evaluate(outs, test.y, masks=masks)
    flags = metrics.collapse_columns(row, units=metrics.layer_units(net), reference_accuracy=reference_accuracy)
    return {k: row[k] for k in ("accuracy", "nll", "ece", "ece_mass", "brier", "n", "n_classes")} | flags


def run(config: dict) -> list[dict]:
    sched = schedule(config, FULL, QUICK)
    ds = load_data(config["dataset"], seed=config["seed"], flat=config["net"] == "mlp")
    name, options = NETS[config["net"]]
    net = nets.build(name, ds, **options | ({"hidden": sched["hidden"]} if name == "mlp" else {}))
    structure = config["structure"]
    learn = structure != "map"
    post = laplace(
        net, priors.Gaussian(1.0, learn=structure if learn else None), ds.train, curvature=config["curvature"],
        epochs=sched["epochs"], batch_size=config["batch_size"], lr=config["lr"], marglik_every=sched["marglik_every"],
        marglik_burnin=sched["marglik_burnin"], hyper_steps=sched["hyper_steps"], seed=config["seed"], progress=False,
    )
    params = post.params
    lml = float(log_marglik(post))
    dense = _evaluate(net, params, ds.test)
    key = jax.random.key(config["seed"])
    train = (ds.train.x, ds.train.y)
    rows = []
    for criterion in prune.CRITERIA:
        one_shot = None
        if criterion != "synflow":
            one_shot = prune.scores(criterion, net, params, posterior=post, data=train, key=key)
        for structured in (False, True):
            for s in sched["sparsities"]:
                if criterion == "synflow":  # iterative SynFlow for unstructured masks, one-shot scores for nodes
                    sc = prune.synflow(net, params) if structured else prune.synflow(net, params, sparsity=s)
                else:
                    sc = one_shot
                if structured:
                    mask = mask_lib.to_weights(net, prune.node_mask(net, sc, s), like=params)
                else:
                    mask = prune.weight_mask(net, sc, s)
                nodes = mask_lib.to_nodes(net, mask)
                pruned = prune.apply_mask(params, mask)
                if config["finetune_epochs"] > 0:
                    pruned = prune.finetune(net, pruned, mask, ds.train, epochs=config["finetune_epochs"],
                                            batch_size=config["batch_size"], lr=config["lr"], seed=config["seed"])
                rows.append(dict(criterion=criterion, structured=structured, sparsity=float(s),
                                 weight_sparsity=_layer_sparsity(net, pruned), log_marglik=lml,
                                 dense_accuracy=dense["accuracy"],
                                 **_evaluate(net, pruned, ds.test, nodes, dense["accuracy"])))
    return rows


def main(argv: list[str] | None = None):
    p = parser("spam", __doc__.splitlines()[0], seeds=True, executor=True)
    p.add_argument("--net", nargs="+", default=["mlp"], choices=tuple(NETS), help="architectures (default mlp)")
    p.add_argument("--dataset", default="digits", choices=CLASSIFICATION_DATASETS,
                   help="default digits; breast_cancer (no images): --net mlp only")
    p.add_argument("--structures", nargs="+", default=None, choices=STRUCTURES,
                   help="prior structures (default: all; quick: map and parameter)")
    p.add_argument("--curvature", default="kfac", choices=("kfac", "diag"), help="Laplace curvature (default kfac)")
    p.add_argument("--finetune-epochs", type=nonnegative_int, default=0,
                   help="masked fine-tuning epochs after pruning (default 0)")
    p.add_argument("--lr", type=positive_float, default=1e-3)
    p.add_argument("--batch-size", type=positive_int, default=128)
    given = schedule_options(p, FULL, QUICK, epochs="MAP training epochs", marglik_every="epochs between prior updates",
                             marglik_burnin="epochs before the first prior update")
    args = parse(p, argv, quick=dict(structures=QUICK_STRUCTURES), full=dict(structures=STRUCTURES))
    check_data(p, args.dataset, [n for n in args.net if n != "mlp"], args.batch_size)
    overrides = given(args)
    configs = [dict(dataset=args.dataset, net=n, structure=s, curvature=args.curvature, seed=seed, lr=args.lr,
                    batch_size=args.batch_size, finetune_epochs=args.finetune_epochs, quick=args.quick,
                    **overrides)
               for seed in args.seeds for n in args.net for s in args.structures]
    table = execute(args, configs, run, args.out / "spam.csv", desc="spam")
    if len(table):
        print(summary(table).to_string(float_format=lambda v: f"{v:.3f}"))
    return table


def summary(table):
    """Accuracy at each sparsity, mean over the seeds: rows (net, structured, criterion, structure), columns the sparsity grid."""
    return table.pivot_table(index=["net", "structured", "criterion", "structure"], columns="sparsity",
                             values="accuracy").round(4)


if __name__ == "__main__":
    from experiments._cli import entry

    entry(main)
