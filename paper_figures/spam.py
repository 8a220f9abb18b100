"""SpaM: accuracy vs sparsity by prior structure and by pruning criterion (Dhahri et al. 2024).

Reads ``spam.csv`` (``python -m experiments.spam``) and draws, per network,

* ``spam_structures_<net>``: OPD pruning of the MAP of each prior structure (fixed-prior MAP and the
  marginal-likelihood-learned scalar/layer/node/unit/parameter priors), unstructured and structured;
* ``spam_criteria_<net>``: every criterion on the structure with the highest Laplace log marginal
  likelihood (SpaM's model selection), unstructured and structured.

Lines are the mean over seeds (every seed as a thin line when there are several); sparsity 0 is the
dense network.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd
from matplotlib.lines import Line2D

from paper_figures import style

TABLE = "spam.csv"
# experiments.spam structure / sparsebnn.prune criterion -> style key
STRUCTURES = {"map": "prior-fixed", "scalar": "prior-scalar", "layer": "prior-layer", "node": "prior-node",
              "unit": "prior-unit", "parameter": "prior-parameter"}
CRITERIA = {"opd": "opd", "magnitude": "magnitude", "random": "random", "snip": "snip", "grasp": "grasp",
            "synflow": "synflow"}


def _keys(values, mapping: dict, what: str) -> list[str]:
    present = list(dict.fromkeys(values))
    unknown = set(present) - set(mapping)
    if unknown:
        raise ValueError(f"unknown {what} {sorted(unknown)} in {TABLE}; known: {sorted(mapping)}")
    return [v for v in mapping if v in present]


def _curve(rows: pd.DataFrame):
    """``(x, y)`` of one seed's accuracy vs sparsity, starting at the dense network (sparsity 0)."""
    rows = rows.sort_values("sparsity")
    return [0.0, *rows["sparsity"]], [rows["dense_accuracy"].iloc[0], *rows["accuracy"]]


def _panels(table: pd.DataFrame, line: str, mapping: dict, what: str, title: str):
    values = _keys(table[line], mapping, what)
    fig, axes = style.figure("double", aspect=0.36, ncols=2, squeeze=False, sharey=True, layout="constrained")
    several = False
    for j, structured in enumerate((False, True)):
        ax = axes[0, j]
        sub = table[table["structured"] == structured]
        for value in values:
            lk = style.look(mapping[value])
            rows = sub[sub[line] == value]
            if rows.empty:
                continue
            seeds = [g for _, g in rows.groupby("seed")] if "seed" in rows else [rows]
            curves = [_curve(g) for g in seeds]
            if len(curves) > 1:
                several = True
                for x, y in curves:
                    ax.plot(x, y, color=lk.color, ls=lk.ls, lw=0.4, alpha=0.4)
            mean = pd.DataFrame({"x": [v for x, _ in curves for v in x], "y": [v for _, y in curves for v in y]})
            mean = mean.groupby("x")["y"].mean()
            ax.plot(mean.index, mean.to_numpy(), **lk.line())
            bad = rows.assign(_c=style.collapsed(rows)).groupby("sparsity")["_c"].any()
            bad = bad[bad].index
            style.mark_collapsed(ax, list(bad), mean.reindex(bad).to_numpy())
        ax.set_title(f"{title}, {'structured (nodes/filters)' if structured else 'unstructured'}")
        ax.set_xlabel("target sparsity")
    axes[0, 0].set_ylabel("test accuracy")
    axes[0, 0].set_ylim(top=1.01)
    style.zero_or_break(axes[0, 0])
    extra = [(Line2D([], [], color="0.4", lw=0.4, alpha=0.6), "one seed")] if several else []
    style.legend(fig, [mapping[v] for v in values], kind="line", extra=extra, collapsed=style.any_collapsed(table))
    return fig


def plot_structures(table: pd.DataFrame, criterion: str = "opd"):
    """Accuracy vs sparsity of ``criterion`` for every prior structure (one network's rows)."""
    title = style.look(CRITERIA[criterion]).label if criterion in CRITERIA else criterion
    return _panels(table[table["criterion"] == criterion], "structure", STRUCTURES, "structures", title)


def best_structure(table: pd.DataFrame) -> str:
    """The prior structure with the highest Laplace log marginal likelihood (mean over seeds)."""
    per_run = table.groupby(["structure", *(["seed"] if "seed" in table else [])])["log_marglik"].first()
    return str(per_run.groupby("structure").mean().idxmax())


def plot_criteria(table: pd.DataFrame, structure: str | None = None):
    """Accuracy vs sparsity of every criterion on one structure (default: the best by marginal likelihood)."""
    structure = best_structure(table) if structure is None else structure
    title = style.look(STRUCTURES[structure]).label if structure in STRUCTURES else structure
    return _panels(table[table["structure"] == structure], "criterion", CRITERIA, "criteria", title)


def make(results_dir: Path, out_dir: Path) -> list[Path]:
    table = style.read_table(results_dir, TABLE)
    if table is None:
        return []
    paths = []
    for net in dict.fromkeys(table["net"]):
        sub = table[table["net"] == net]
        if (sub["criterion"] == "opd").any():
            paths += style.save(plot_structures(sub), Path(out_dir) / f"spam_structures_{net}")
        paths += style.save(plot_criteria(sub), Path(out_dir) / f"spam_criteria_{net}")
    return paths


__all__ = ["CRITERIA", "STRUCTURES", "best_structure", "make", "plot_criteria", "plot_structures"]
