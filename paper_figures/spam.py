"""SpaM: accuracy vs sparsity by prior structure and by pruning criterion (Dhahri et al. 2024).

Reads ``spam.csv`` (``python -m experiments.spam``) and draws, per network,

* ``spam_structures_<net>``: OPD pruning of the MAP of each prior structure (fixed-prior MAP and the
  marginal-likelihood-learned scalar/layer/node/unit/parameter priors), unstructured and structured;
* ``spam_criteria_<net>``: every criterion on the structure with the highest Laplace log marginal
  likelihood (SpaM's model selection), unstructured and structured.
"""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from paper_figures.style import PALETTE, figure, method_color, read_table, save

TABLE = "spam.csv"
STRUCTURES = ["map", "scalar", "layer", "node", "unit", "parameter"]
CRITERIA = ["opd", "magnitude", "random", "snip", "grasp", "synflow"]
LABELS = {"map": "MAP (fixed prior)", "opd": "OPD", "snip": "SNIP", "grasp": "GraSP", "synflow": "SynFlow"}


def _ordered(values, order):
    present = list(dict.fromkeys(values))
    return [v for v in order if v in present] + [v for v in present if v not in order]


def _panels(table: pd.DataFrame, line: str, order: list[str], title: str):
    fig, axes = figure("double", aspect=0.38, ncols=2, squeeze=False, sharey=True)
    for j, structured in enumerate((False, True)):
        ax = axes[0, j]
        sub = table[table["structured"] == structured]
        for i, key in enumerate(_ordered(sub[line], order)):
            rows = sub[sub[line] == key].sort_values("sparsity")
            color = method_color("map") if key == "map" else PALETTE[i % len(PALETTE)]
            x = [0.0, *rows["sparsity"]]  # sparsity 0: the dense network
            y = [rows["dense_accuracy"].iloc[0], *rows["accuracy"]]
            ax.plot(x, y, marker="o", ms=2.5, color=color, label=LABELS.get(key, key))
        ax.set_title(f"{title}, {'structured (nodes/filters)' if structured else 'unstructured'}")
        ax.set_xlabel("target sparsity")
    axes[0, 0].set_ylabel("test accuracy")
    axes[0, 1].legend(frameon=False, fontsize=6, loc="lower left")
    return fig


def plot_structures(table: pd.DataFrame, criterion: str = "opd"):
    """Accuracy vs sparsity of ``criterion`` for every prior structure (one network's rows)."""
    return _panels(table[table["criterion"] == criterion], "structure", STRUCTURES, LABELS.get(criterion, criterion))


def best_structure(table: pd.DataFrame) -> str:
    """The prior structure with the highest Laplace log marginal likelihood."""
    return str(table.groupby("structure")["log_marglik"].first().idxmax())


def plot_criteria(table: pd.DataFrame, structure: str | None = None):
    """Accuracy vs sparsity of every criterion on one structure (default: the best by marginal likelihood)."""
    structure = best_structure(table) if structure is None else structure
    return _panels(table[table["structure"] == structure], "criterion", CRITERIA, f"{LABELS.get(structure, structure)} prior")


def make(results_dir: Path, out_dir: Path) -> list[Path]:
    table = read_table(results_dir, TABLE)
    if table is None:
        return []
    paths = []
    for net in dict.fromkeys(table["net"]):
        sub = table[table["net"] == net]
        if (sub["criterion"] == "opd").any():
            paths += save(plot_structures(sub), Path(out_dir) / f"spam_structures_{net}")
        paths += save(plot_criteria(sub), Path(out_dir) / f"spam_criteria_{net}")
    return paths


__all__ = ["best_structure", "make", "plot_criteria", "plot_structures"]
