"""The source papers' headline claims, checked on our results with intervals over seeds.

    python -m experiments.claims [--out results]        # reads the tables in --out, writes claims.md / claims.csv

Every claim becomes rows of ``<out>/claims.csv`` (one per claim × dataset × network where the tables
have it) and a section of ``<out>/claims.md``: the measured value, its 95 % interval over seeds
(:mod:`sparsebnn.intervals`; differences between methods paired by seed) and a verdict:

* **holds**: the whole interval satisfies the claim's condition;
* **does not hold**: the whole interval violates it;
* **inconclusive**: the interval straddles the threshold (more seeds would decide);
* **not measured**: the table or the configuration is missing (the row names the command that makes it).

With one seed there is no interval and the verdict is the point's, marked ``(1 seed)``. The claims:

* BMR paper (Marković et al. 2023; ``stochastic_bmr.csv``, the last round of each run): stochastic BMR
  prunes >= 90 % of the weights; within 1 point of MAP accuracy; with ECE no worse than Flat-FF's and than
  the tiered horseshoe's; and gets there faster than hierarchical (tiered-horseshoe) SVI run for the same
  number of steps (training-time ratio < 1).
* SS-GL / SS-GHS paper (Jantre et al. 2023; ``svi_sparsity.csv``): <= 20 % of hidden nodes kept, within
  1.5 points of MAP accuracy, and the compacted network's FLOPs and measured latency below the dense one's.
* SpaM (Dhahri et al. 2024; ``spam.csv``, unstructured pruning of the MAP of the structure with the highest
  marginal likelihood): OPD >= magnitude, SNIP and GraSP at 80 / 90 / 95 % sparsity; unit- or
  parameter-wise priors >= the scalar prior under OPD.
* Theory (``contraction_slopes.csv``): the bootstrap interval of the empirical log-log slope of
  E_q[d_H] against n contains the slope of ε_n.

A claim that does not hold here is reported as not holding, with its figure; nothing is tuned to pass.
"""

from __future__ import annotations

import operator
from collections.abc import Callable
from pathlib import Path
from typing import NamedTuple

import numpy as np
import pandas as pd

from experiments._cli import parser
from sparsebnn.intervals import paired_difference, summarise, t_interval
from sparsebnn.results import atomic_write, read_table, write_table

VERDICTS = ("holds", "does not hold", "inconclusive", "not measured")
OPS = {">=": operator.ge, "<=": operator.le, "<": operator.lt, ">": operator.gt}
SPARSITIES = (0.8, 0.9, 0.95)
COMMANDS = {"stochastic_bmr.csv": "python -m experiments.stochastic_bmr", "svi_sparsity.csv": "python -m experiments.svi_sparsity",
            "spam.csv": "python -m experiments.spam", "contraction_slopes.csv": "python -m experiments.contraction"}


class Claim(NamedTuple):
    """One checkable statement: ``value op threshold``."""

    paper: str
    claim: str
    measure: str
    op: str
    threshold: float


def verdict(mean: float, lo: float, hi: float, op: str, threshold: float) -> str:
    """Three-valued verdict of ``value op threshold`` from the interval ``[lo, hi]`` (the point when lo is NaN)."""
    if not np.isfinite(mean):
        return "not measured"
    check = OPS[op]
    if not np.isfinite(lo):
        return "holds" if check(mean, threshold) else "does not hold"
    ok_lo, ok_hi = check(lo, threshold), check(hi, threshold)
    if ok_lo and ok_hi:
        return "holds"
    if not ok_lo and not ok_hi:
        return "does not hold"
    return "inconclusive"


def _row(claim: Claim, cell: dict, mean, lo, hi, n_seeds: int, note: str = "") -> dict:
    v = verdict(mean, lo, hi, claim.op, claim.threshold)
    if v in ("holds", "does not hold") and n_seeds == 1:
        note = "; ".join(filter(None, [note, "1 seed"]))
    return {"paper": claim.paper, "claim": claim.claim, **cell, "measure": claim.measure, "value": mean, "lo": lo,
            "hi": hi, "condition": f"{claim.op} {claim.threshold:g}", "n_seeds": n_seeds, "verdict": v, "note": note}


def _missing(claim: Claim, table: str, cell: dict | None = None, why: str = "") -> dict:
    note = why or f"no {table}: run {COMMANDS.get(table, 'its experiment')}"
    return {"paper": claim.paper, "claim": claim.claim, **(cell or {}), "measure": claim.measure, "value": np.nan,
            "lo": np.nan, "hi": np.nan, "condition": f"{claim.op} {claim.threshold:g}", "n_seeds": 0,
            "verdict": "not measured", "note": note}


# ----------------------------------------------------------------------------- BMR paper

BMR = "BMR (Marković et al. 2023)"
BMR_CLAIMS = {
    "pruned": Claim(BMR, "stochastic BMR prunes >= 90 % of the weights", "pruned fraction", ">=", 0.9),
    "accuracy": Claim(BMR, "... within 1 point of MAP accuracy", "accuracy − MAP accuracy", ">=", -0.01),
    "ece_ff": Claim(BMR, "... with ECE no worse than Flat-FF's", "ECE − Flat-FF ECE", "<=", 0.0),
    "ece_hs": Claim(BMR, "... and than the tiered horseshoe's", "ECE − tiered-HS ECE", "<=", 0.0),
    "time": Claim(BMR, "... faster than tiered-horseshoe SVI (same steps)", "train time / tiered-HS train time", "<", 1.0),
}


def _final(table: pd.DataFrame) -> pd.DataFrame:
    """The last round of every (dataset, net, method, seed, reduction) run."""
    keys = ["dataset", "net", "method", "seed", "reduction"]
    last = table.groupby(keys, dropna=False)["round"].transform("max")
    return table[table["round"] == last]


def bmr_rows(t: pd.DataFrame | None) -> list[dict]:
    if t is None:
        return [_missing(c, "stochastic_bmr.csv") for c in BMR_CLAIMS.values()]
    f = _final(t)
    f = f.assign(arm=np.where(f["method"].isin(["flat-ff", "tiered-hs"]), f["method"] + ":" + f["reduction"], f["method"]))
    rows = []
    for (dataset, net), g in f.groupby(["dataset", "net"], sort=False):
        cell = {"dataset": dataset, "net": net}
        if "bmr" not in set(g["method"]):
            rows += [_missing(c, "stochastic_bmr.csv", cell, "no 'bmr' run for this cell") for c in BMR_CLAIMS.values()]
            continue
        s = summarise(g[g["arm"] == "bmr"], ["arm"], ["pruned_fraction"]).iloc[0]
        rows.append(_row(BMR_CLAIMS["pruned"], cell, s["pruned_fraction"], s["pruned_fraction_lo"],
                         s["pruned_fraction_hi"], s["n_seeds"]))
        for key, metric, other in (("accuracy", "accuracy", "flat-map"), ("ece_ff", "ece", "flat-ff:none"),
                                   ("ece_hs", "ece", "tiered-hs:none")):
            d = paired_difference(g, [], "arm", "bmr", other, metric)
            if d.empty or d.iloc[0]["n_seeds"] == 0:
                rows.append(_missing(BMR_CLAIMS[key], "stochastic_bmr.csv", cell, f"no '{other}' run with a shared seed"))
                continue
            d = d.iloc[0]
            rows.append(_row(BMR_CLAIMS[key], cell, d["diff"], d["diff_lo"], d["diff_hi"], d["n_seeds"]))
        times = g.pivot_table(index="seed", columns="arm", values="train_time", aggfunc="mean")
        if {"bmr", "tiered-hs:none"} <= set(times.columns):
            ratio = (times["bmr"] / times["tiered-hs:none"]).dropna()
            m, lo, hi = t_interval(ratio)
            rows.append(_row(BMR_CLAIMS["time"], cell, m, lo, hi, ratio.size))
        else:
            rows.append(_missing(BMR_CLAIMS["time"], "stochastic_bmr.csv", cell, "no tiered-hs run"))
    return rows


# ----------------------------------------------------------------------------- SS-GL / SS-GHS paper

SSP = "SS-GL / SS-GHS (Jantre et al. 2023)"


def _ss_claims(prior: str) -> dict[str, Claim]:
    name = prior.upper()
    return {"nodes": Claim(SSP, f"{name} keeps <= 20 % of hidden nodes", "nodes kept", "<=", 0.2),
            "accuracy": Claim(SSP, f"... within 1.5 points of MAP accuracy ({name})", "accuracy − MAP accuracy", ">=",
                              -0.015),
            "flops": Claim(SSP, f"... compacted FLOPs below the dense network's ({name})", "FLOPs ratio", "<", 1.0),
            "latency": Claim(SSP, f"... measured latency below the dense network's ({name})", "latency ratio", "<",
                             1.0)}


def ss_rows(t: pd.DataFrame | None) -> list[dict]:
    rows = []
    for prior in ("ss-gl", "ss-ghs"):
        claims = _ss_claims(prior)
        if t is None:
            rows += [_missing(c, "svi_sparsity.csv") for c in claims.values()]
            continue
        for (dataset, net), g in t.groupby(["dataset", "net"], sort=False):
            cell = {"dataset": dataset, "net": net}
            mine = g[g["prior"] == prior]
            if mine.empty:
                rows += [_missing(c, "svi_sparsity.csv", cell, f"no {prior} run") for c in claims.values()]
                continue
            for key, column in (("nodes", "nodes_kept"), ("flops", "flops_ratio"), ("latency", "latency_ratio")):
                if column not in mine or mine[column].isna().all():
                    rows.append(_missing(claims[key], "svi_sparsity.csv", cell, f"the table has no {column}"))
                    continue
                s = summarise(mine, ["prior"], [column]).iloc[0]
                rows.append(_row(claims[key], cell, s[column], s[f"{column}_lo"], s[f"{column}_hi"], s["n_seeds"]))
            d = paired_difference(g, [], "prior", prior, "map", "accuracy")
            if d.empty or d.iloc[0]["n_seeds"] == 0:
                rows.append(_missing(claims["accuracy"], "svi_sparsity.csv", cell, "no MAP run with a shared seed"))
            else:
                d = d.iloc[0]
                rows.append(_row(claims["accuracy"], cell, d["diff"], d["diff_lo"], d["diff_hi"], d["n_seeds"]))
    return rows


# ----------------------------------------------------------------------------- SpaM

SPAM = "SpaM (Dhahri et al. 2024)"


def _spam_claims() -> dict[tuple, Claim]:
    out = {("opd", s, c): Claim(SPAM, f"OPD >= {c} at {s:.0%} sparsity", f"accuracy(OPD) − accuracy({c})", ">=", 0.0)
           for s in SPARSITIES for c in ("magnitude", "snip", "grasp")}
    out.update({("prior", s, w): Claim(SPAM, f"{w}-wise prior >= scalar prior (OPD, {s:.0%})",
                                       f"accuracy({w}) − accuracy(scalar)", ">=", 0.0)
                for s in SPARSITIES for w in ("unit", "parameter")})
    return out


def spam_rows(t: pd.DataFrame | None) -> list[dict]:
    claims = _spam_claims()
    if t is None:
        return [_missing(c, "spam.csv") for c in claims.values()]
    t = t[~t["structured"].astype(bool)]
    rows = []
    for (dataset, net), g in t.groupby(["dataset", "net"], sort=False):
        cell = {"dataset": dataset, "net": net}
        learned = g[g["structure"] != "map"]
        best = learned.groupby("structure")["log_marglik"].mean().idxmax() if not learned.empty else None
        for (kind, s, other), claim in claims.items():
            at = g[np.isclose(g["sparsity"].astype(float), s)]
            if kind == "opd":
                d = paired_difference(at[at["structure"] == best], [], "criterion", "opd", other, "accuracy")
                note = f"structure {best} (highest marginal likelihood)"
            else:
                d = paired_difference(at[at["criterion"] == "opd"], [], "structure", other, "scalar", "accuracy")
                note = ""
            if d.empty or d.iloc[0]["n_seeds"] == 0:
                rows.append(_missing(claim, "spam.csv", cell, f"no {s:.0%} runs of both arms"))
                continue
            d = d.iloc[0]
            rows.append(_row(claim, cell, d["diff"], d["diff_lo"], d["diff_hi"], d["n_seeds"], note))
    return rows


# ----------------------------------------------------------------------------- theory

THEORY = "Theory (contraction rate)"


def theory_rows(t: pd.DataFrame | None) -> list[dict]:
    if t is None:
        claim = Claim(THEORY, "the slope interval contains ε_n's slope", "slope − ε_n slope", "==", 0.0)
        return [_missing(claim, "contraction_slopes.csv")]
    rows = []
    for r in t.itertuples(index=False):
        claim = Claim(THEORY, f"the slope interval contains ε_n's slope ({r.prior}, π {r.pi})",
                      "log-log slope of E_q[d_H] vs n", "~", float(r.eps_slope))
        inside = r.slope_lo <= r.eps_slope <= r.slope_hi
        rows.append({"paper": claim.paper, "claim": claim.claim, "dataset": "teacher", "net": "mlp",
                     "measure": claim.measure, "value": r.slope, "lo": r.slope_lo, "hi": r.slope_hi,
                     "condition": f"contains {r.eps_slope:.3f}", "n_seeds": np.nan,
                     "verdict": "holds" if inside else "does not hold",
                     "note": f"n = {r.n_min}…{r.n_max}, {r.runs} runs (bootstrap over seeds)"})
    return rows


SOURCES: tuple[tuple[str, Callable[[pd.DataFrame | None], list[dict]]], ...] = (
    ("stochastic_bmr.csv", bmr_rows), ("svi_sparsity.csv", ss_rows), ("spam.csv", spam_rows),
    ("contraction_slopes.csv", theory_rows))


def check(results: Path) -> pd.DataFrame:
    """Every claim's rows from the tables in ``results`` (missing tables give 'not measured' rows)."""
    rows = []
    for table, fn in SOURCES:
        path = Path(results) / table
        rows += fn(read_table(path) if path.exists() else None)
    return pd.DataFrame(rows)


def _fmt(v: float) -> str:
    return "" if not np.isfinite(v) else f"{v:.3g}"


def to_markdown(claims: pd.DataFrame) -> str:
    counts = claims["verdict"].value_counts()
    lines = ["# The papers' claims, checked here", "",
             "Measured value with its 95 % interval over seeds (differences paired by seed); *holds* / *does not "
             "hold* when the whole interval is on one side of the threshold, *inconclusive* when it straddles it. "
             "Generated by `python -m experiments.claims`.", "",
             "Verdicts: " + ", ".join(f"{counts.get(v, 0)} {v}" for v in VERDICTS), ""]
    for paper, g in claims.groupby("paper", sort=False):
        lines += [f"## {paper}", "", "| claim | dataset | net | measure | value [95 % interval] | condition | seeds | verdict | note |",
                  "|---|---|---|---|---|---|---|---|---|"]
        for r in g.itertuples(index=False):
            interval = f" [{_fmt(r.lo)}, {_fmt(r.hi)}]" if np.isfinite(r.lo) else ""
            seeds = "" if not np.isfinite(r.n_seeds) else str(int(r.n_seeds))
            lines.append(f"| {r.claim} | {r.dataset if isinstance(r.dataset, str) else ''} | "
                         f"{r.net if isinstance(r.net, str) else ''} | {r.measure} | {_fmt(r.value)}{interval} | "
                         f"{r.condition} | {seeds} | **{r.verdict}** | {r.note if isinstance(r.note, str) else ''} |")
        lines.append("")
    return "\n".join(lines)


def main(argv: list[str] | None = None, quiet: bool = False) -> pd.DataFrame:
    p = parser("claims", __doc__.splitlines()[0])
    args = p.parse_args(argv)
    claims = check(args.out)
    write_table(claims, args.out / "claims.csv")
    text = to_markdown(claims)
    atomic_write(args.out / "claims.md", lambda fh: fh.write((text + "\n").encode()))
    if not quiet:
        print(text)
    return claims


if __name__ == "__main__":
    from experiments._cli import entry

    entry(main)
