"""MCMC convergence diagnostics read off an ArviZ DataTree, with a pass/fail verdict.

    d = diagnose(trace)            # trace: DataTree with "posterior" and "sample_stats" groups
    d.ok, d.problems               # False / ("R-hat 1.04 > 1.01 (dense_0.w[3, 1])", ...)

Checks (Vehtari et al. 2021, Betancourt 2016), every one computed by ArviZ:

* R-hat: ``max(rank-normalised split R-hat, folded R-hat) <= max_rhat`` (1.01) for every element of
  every posterior variable. Each chain is split in halves, so a single chain has an R-hat too (its
  two halves; ArviZ needs two chains, so that case z-scales the halves here and uses ArviZ's R-hat);
* ESS: bulk ESS (of the rank-normalised split chains) and tail ESS ``>= min_ess`` (default
  ``100 × chains``) for every element; tail ESS is ``min(ESS(I(θ ≤ q05)), ESS(I(θ ≤ q95)))`` (passed
  to ArviZ explicitly: ArviZ 1.x's default uses the 11% and 89% quantiles);
* divergences: no divergent transition after warm-up (replica exchange: in no replica);
* E-BFMI: ``>= min_bfmi`` (0.3) in every chain (from ``sample_stats.energy``).

Elements that never change (a node indicator stuck at one value in every chain) have no R-hat or
ESS (ArviZ gives NaN); they are skipped for those two checks and counted in ``constant``.
Tree-depth saturation is reported (``treedepth_frac``) but is an efficiency warning, not a failure.
"""

from __future__ import annotations

import warnings
from typing import NamedTuple

# numpyro before arviz: arviz_base registers a lazy ``numpyro`` module, and a later
# ``import numpyro.distributions`` (without ``import numpyro`` first) then leaves
# ``numpyro.distributions.distribution`` unset, which breaks ``numpyro.factor``.
import numpyro  # noqa: F401
import arviz as az  # noqa: E402
import numpy as np  # noqa: E402
from arviz_stats.base import array_stats  # noqa: E402
from scipy import stats as _stats  # noqa: E402


TAIL_QUANTILES = (0.05, 0.95)  # tail ESS: min over the ESS of I(θ ≤ q05) and I(θ ≤ q95) (Vehtari et al. 2021)


class DiagnosticsWarning(UserWarning):
    """A sampler run failed its convergence diagnostics; its samples are not a reliable reference."""


class Diagnostics(NamedTuple):
    """Summary of one MCMC run; ``problems`` is empty exactly when the run passed."""

    max_rhat: float
    min_ess_bulk: float
    min_ess_tail: float
    divergences: int
    bfmi: tuple[float, ...]  # per chain
    treedepth_frac: float  # fraction of transitions that hit the maximum tree depth
    constant: int  # elements with no variation (no R-hat / ESS)
    n_draws: int  # chains × draws
    problems: tuple[str, ...]

    @property
    def ok(self) -> bool:
        return not self.problems

    def row(self, prefix: str = "") -> dict:
        """A flat dict for a results table."""
        return {
            f"{prefix}ok": self.ok,
            f"{prefix}max_rhat": self.max_rhat,
            f"{prefix}min_ess_bulk": self.min_ess_bulk,
            f"{prefix}min_ess_tail": self.min_ess_tail,
            f"{prefix}divergences": self.divergences,
            f"{prefix}min_bfmi": min(self.bfmi) if self.bfmi else float("nan"),
            f"{prefix}treedepth_frac": self.treedepth_frac,
            f"{prefix}problems": "; ".join(self.problems),
        }


def _worst(ds, reduce, pick) -> tuple[float, str]:
    """The extreme finite value over every element of every variable (``{name: array}``), and where it sits."""
    best, where = np.nan, ""
    for name, a in ds.items():
        a = np.asarray(a, dtype=float)
        if not np.isfinite(a).any():
            continue
        i = np.unravel_index(reduce(np.where(np.isfinite(a), a, pick)), a.shape)
        v = float(a[i])
        if np.isnan(best) or (v > best if reduce is np.argmax else v < best):
            best, where = v, f"{name}{[int(j) for j in i] if a.ndim else ''}"
    return best, where


def _z_scale(a: np.ndarray) -> np.ndarray:
    """Rank-normalise ``(chains, draws, ...)`` per element: ``Φ⁻¹((r − 3/8) / (S + 1/4))``, ``r`` the average rank
    among all ``S = chains × draws`` values (Vehtari et al. 2021, eq. 14)."""
    flat = a.reshape((-1,) + a.shape[2:])
    r = _stats.rankdata(flat, axis=0, method="average")
    return _stats.norm.ppf((r - 0.375) / (flat.shape[0] + 0.25)).reshape(a.shape)


def split_rhat(a: np.ndarray) -> np.ndarray:
    """Rank-normalised split R-hat per element of ``(chains, draws, ...)`` draws, ``max`` of the bulk (ranks) and
    tail (ranks of ``|θ − median|``) versions; with ArviZ for two or more chains, and on the two halves of a
    single chain (ArviZ needs two chains)."""
    a = np.asarray(a, dtype=float)
    if a.ndim < 2 or a.shape[1] < 4:
        raise ValueError(f"need (chains, draws >= 4, ...) draws; got shape {a.shape}")
    if a.shape[0] > 1:
        return np.asarray(array_stats.rhat(a, chain_axis=0, draw_axis=1, method="rank"))
    half = a.shape[1] // 2
    halves = np.concatenate([a[:, :half], a[:, -half:]])  # (2, half, ...)
    folded = np.abs(halves - np.median(halves.reshape((-1,) + a.shape[2:]), axis=0))
    with np.errstate(invalid="ignore", divide="ignore"):
        bulk = array_stats.rhat(_z_scale(halves), chain_axis=0, draw_axis=1, method="identity")
        tail = array_stats.rhat(_z_scale(folded), chain_axis=0, draw_axis=1, method="identity")
    return np.maximum(np.asarray(bulk), np.asarray(tail))


def diagnose(trace, *, max_rhat: float = 1.01, min_ess: float | None = None, min_bfmi: float = 0.3,
             var_names: list[str] | None = None) -> Diagnostics:
    """R-hat, bulk/tail ESS, divergences and E-BFMI of ``trace`` (see the module docstring)."""
    if "posterior" not in trace.children:
        raise ValueError("trace must be an ArviZ DataTree with a 'posterior' group")
    post = trace["posterior"]
    chains, draws = post.sizes.get("chain", 1), post.sizes.get("draw", 0)
    if draws < 4:
        raise ValueError(f"trace needs at least 4 draws per chain for R-hat and ESS; got {draws}")
    min_ess = 100.0 * chains if min_ess is None else float(min_ess)
    if not max_rhat > 1 or min_ess < 0 or not 0 <= min_bfmi < 1:
        raise ValueError(f"need max_rhat > 1, min_ess >= 0, 0 <= min_bfmi < 1; got {max_rhat}, {min_ess}, {min_bfmi}")
    kw = {"var_names": var_names} if var_names else {}
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # constant elements: NaN R-hat / ESS
        rhat = {k: split_rhat(np.asarray(post[k].values)) for k in var_names or list(post.data_vars)}
        bulk = {k: v.values for k, v in az.ess(trace, method="bulk", **kw).dataset.data_vars.items()}
        # explicit quantiles: ArviZ 1.x defaults to prob = rcParams["stats.ci_prob"] (0.89, i.e. q11 and q89)
        tail = {k: v.values for k, v in az.ess(trace, method="tail", prob=TAIL_QUANTILES, **kw).dataset.data_vars.items()}
    worst_rhat, at_rhat = _worst(rhat, np.argmax, -np.inf)
    worst_bulk, at_bulk = _worst(bulk, np.argmin, np.inf)
    worst_tail, at_tail = _worst(tail, np.argmin, np.inf)
    constant = int(sum(np.isnan(np.asarray(v, float)).sum() for v in rhat.values()))

    stats = trace.children.get("sample_stats")
    stats = None if stats is None else trace["sample_stats"]
    divergences = int(stats["diverging"].values.sum()) if stats is not None and "diverging" in stats else 0
    bfmi: tuple[float, ...] = ()
    if stats is not None and "energy" in stats:
        bfmi = tuple(float(b) for b in np.atleast_1d(az.bfmi(trace)["energy"].values))
    depth = float(stats["reached_max_treedepth"].values.mean()) if stats is not None and "reached_max_treedepth" in stats else 0.0

    problems = []
    if worst_rhat > max_rhat:
        problems.append(f"R-hat {worst_rhat:.3f} > {max_rhat} ({at_rhat})")
    if worst_bulk < min_ess:
        problems.append(f"bulk ESS {worst_bulk:.0f} < {min_ess:.0f} ({at_bulk})")
    if worst_tail < min_ess:
        problems.append(f"tail ESS {worst_tail:.0f} < {min_ess:.0f} ({at_tail})")
    if divergences:
        problems.append(f"{divergences} divergent transitions of {chains * draws}")
    hot = int(stats["hot_divergences"].values.sum()) if stats is not None and "hot_divergences" in stats else 0
    if hot:  # replica exchange: a biased hot replica biases what it swaps into the cold one
        problems.append(f"{hot} divergent transitions in the hotter replicas")
    low = [i for i, b in enumerate(bfmi) if not b >= min_bfmi]
    if low:
        problems.append(f"E-BFMI < {min_bfmi} in chains {low} ({', '.join(f'{bfmi[i]:.2f}' for i in low)})")
    return Diagnostics(worst_rhat, worst_bulk, worst_tail, divergences, bfmi, depth, constant, chains * draws,
                       tuple(problems))


def warn_if_failed(diagnostics: Diagnostics, what: str, stacklevel: int = 2) -> None:
    """Issue a :class:`DiagnosticsWarning` listing the problems of a failed run (nothing when it passed)."""
    if not diagnostics.ok:
        warnings.warn(f"{what}: MCMC diagnostics FAILED — {'; '.join(diagnostics.problems)}. These samples are not "
                      "a reliable reference; run longer, raise target_accept or reparameterise.",
                      DiagnosticsWarning, stacklevel=stacklevel + 1)


__all__ = ["Diagnostics", "DiagnosticsWarning", "diagnose", "split_rhat", "warn_if_failed"]
