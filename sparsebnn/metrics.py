"""Evaluation metrics (``docs/metrics.md``), computed on the host in float64.

Predictive inputs are posterior samples: classification ``logits`` of shape ``(S, N, C)`` (any
log-probabilities work: ``log_softmax`` is applied per sample) and regression means ``(S, N)`` or
``(S, N, D)``; a point estimate is ``S = 1``. With ``p_s = softmax(logits_s)`` the posterior
predictive is ``p̄ = (1/S) Σ_s p_s``.

* ``accuracy = mean_n [argmax_c p̄_nc = y_n]``
* ``nll = -mean_n ln((1/S) Σ_s p_s(y_n | x_n))``, by ``logsumexp`` over samples
* ``brier = mean_n Σ_c (p̄_nc - [c = y_n])²`` (sum over classes; range [0, 2])
* ``ece = Σ_b (|B_b| / N) |acc(B_b) - conf(B_b)|`` over bins of the confidence ``max_c p̄_nc``:
  equal-width bins ``((b-1)/M, b/M]`` (default ``M = 10``, as SpaM) or equal-mass bins (the
  sorted confidences cut into ``M`` near-equal chunks; Marković et al.'s code uses ``M = 20``)
* ``rmse = sqrt(mean_{n,d} (ȳ_nd - y_nd)²)`` with ``ȳ`` the mean over samples
* ``gaussian_nll = -mean_n ln((1/S) Σ_s Π_d N(y_nd; μ_snd, σ_snd²))`` (mixture over samples)
* ``weight_sparsity`` = fraction of parameters exactly 0; ``compression_ratio`` = total / nonzero
* ``node_sparsity`` = per layer, the fraction of nodes kept by a node mask
* ``flops_ratio`` = FLOPs(compacted) / FLOPs(dense); the counts come from ``sparsebnn.compact.flops``
* ``collapse_reason``: why a run is a collapse, not a result ("" when it is not): a layer emptied by
  pruning, accuracy not above chance ``1/C`` (one-sided binomial test), or more than half of the
  reference's (MAP's) margin over chance lost
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any

import jax
import numpy as np
from scipy.special import log_softmax, logsumexp
from scipy.stats import binom

PROB_ATOL = 1e-4  # tolerance on Σ_c p_nc = 1 (float32 softmax outputs pass)
BINNINGS = ("width", "mass")
CHANCE_ALPHA = 0.01  # collapse_reason: accuracy above chance needs a one-sided binomial p-value below this
MARGIN_LOSS = 0.5  # collapse_reason: a run that lost more than this fraction of the reference's margin over chance


# ----------------------------------------------------------------------------- validation


def _finite(a, name: str) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    if not np.all(np.isfinite(a)):
        raise ValueError(f"{name} contains {a.size - np.isfinite(a).sum()} NaN/inf values")
    return a


def _labels(y, n: int, n_classes: int, name: str = "y") -> np.ndarray:
    y = np.asarray(y)
    if y.shape != (n,):
        raise ValueError(f"{name} must have shape ({n},) to match the predictions; got {y.shape}")
    if not np.issubdtype(y.dtype, np.integer):
        if not (np.issubdtype(y.dtype, np.floating) and np.all(np.isfinite(y)) and np.all(np.mod(y, 1) == 0)):
            raise ValueError(f"{name} must hold integer class labels; got dtype {y.dtype} with non-integer values")
    y = y.astype(np.int64)
    if n and (y.min() < 0 or y.max() >= n_classes):
        raise ValueError(f"{name} labels must lie in [0, {n_classes}); found range [{y.min()}, {y.max()}]")
    return y


def _probs(probs, name: str = "probs") -> np.ndarray:
    p = _finite(probs, name)
    if p.ndim != 2 or p.shape[1] < 2:
        raise ValueError(f"{name} must have shape (N, C) with C >= 2; got {p.shape}")
    if np.any(p < 0):
        raise ValueError(f"{name} must be non-negative; found minimum {p.min()}")
    dev = np.abs(p.sum(axis=1) - 1.0).max(initial=0.0)
    if dev > PROB_ATOL:
        raise ValueError(f"{name} rows must sum to 1 (within {PROB_ATOL}); worst row is off by {dev:.3g}")
    return p


def _logits(logits, name: str = "logits") -> np.ndarray:
    """``(S, N, C)`` log-probabilities up to a per-row constant; ``(N, C)`` is taken as ``S = 1``."""
    a = np.asarray(logits, dtype=np.float64)
    if a.ndim == 2:
        a = a[None]
    if a.ndim != 3 or a.shape[2] < 2 or a.shape[0] < 1:
        raise ValueError(f"{name} must have shape (S, N, C) or (N, C) with C >= 2; got {np.shape(logits)}")
    if np.any(np.isnan(a)) or np.any(a == np.inf):
        raise ValueError(f"{name} contains NaN or +inf values")
    if a.size and not np.all(np.isfinite(a.max(axis=2))):
        raise ValueError(f"{name} has rows that are -inf for every class")
    return a


# ----------------------------------------------------------------------------- classification


def predictive_probs(logits) -> np.ndarray:
    """Posterior predictive ``p̄ = (1/S) Σ_s softmax(logits_s)``, shape ``(N, C)``."""
    return np.exp(log_softmax(_logits(logits), axis=2)).mean(axis=0)


def accuracy(probs, y) -> float:
    """Fraction of points whose most probable class (first on ties) is the label."""
    p = _probs(probs)
    y = _labels(y, len(p), p.shape[1])
    return float(np.mean(p.argmax(axis=1) == y))


def nll(logits, y) -> float:
    """Posterior-predictive negative log-likelihood ``-mean_n ln((1/S) Σ_s p_s(y_n))`` (nats per point)."""
    a = _logits(logits)
    y = _labels(y, a.shape[1], a.shape[2])
    logp = np.take_along_axis(log_softmax(a, axis=2), y[None, :, None], axis=2)[..., 0]  # (S, N)
    return float(-np.mean(logsumexp(logp, axis=0) - np.log(a.shape[0])))


def brier(probs, y) -> float:
    """Multi-class Brier score ``mean_n Σ_c (p_nc - onehot(y_n)_c)²``."""
    p = _probs(probs)
    y = _labels(y, len(p), p.shape[1])
    onehot = np.eye(p.shape[1])[y]
    return float(np.mean(np.sum((p - onehot) ** 2, axis=1)))


def ece(probs, y, n_bins: int = 10, binning: str = "width") -> float:
    """Expected calibration error of the top-class confidence.

    ``ECE = Σ_b |B_b| / N · |acc(B_b) − conf(B_b)|``. ``binning="width"``: bins ``((b-1)/M, b/M]``
    (Guo et al. 2017), the first one closed at 0; the edges are the doubles nearest ``k/M``
    (``k / M`` is correctly rounded), so a confidence equal to one of them lies on that edge and every
    other confidence is binned by its exact value. ``"mass"``: the points sorted by confidence and cut
    into ``M`` chunks whose sizes differ by at most one (``np.array_split``). Empty bins contribute 0.
    """
    p = _probs(probs)
    y = _labels(y, len(p), p.shape[1])
    if isinstance(n_bins, bool) or not isinstance(n_bins, (int, np.integer)) or n_bins < 1:
        raise ValueError(f"n_bins must be a positive integer; got {n_bins!r}")
    if binning not in BINNINGS:
        raise ValueError(f"binning must be one of {BINNINGS}; got {binning!r}")
    if len(p) == 0:
        raise ValueError("ece needs at least one prediction")
    conf, correct = p.max(axis=1), (p.argmax(axis=1) == y).astype(np.float64)
    if binning == "width":
        edges = np.arange(1, n_bins) / n_bins  # not linspace: k · fl(1/M) can miss the double nearest k/M
        bins = np.searchsorted(edges, conf, side="left")  # edges[b-1] < conf <= edges[b]
    else:
        bins = np.empty(len(conf), np.int64)
        for b, idx in enumerate(np.array_split(np.argsort(conf, kind="stable"), n_bins)):
            bins[idx] = b
    gap = np.bincount(bins, weights=correct - conf, minlength=n_bins)  # |B_b| (acc(B_b) - conf(B_b))
    return float(np.sum(np.abs(gap)) / len(p))


# ----------------------------------------------------------------------------- regression


def _regression(means, y) -> tuple[np.ndarray, np.ndarray]:
    """Means as ``(S, N, D)`` and targets as ``(N, D)``; ``(S, N, 1)`` with ``y`` of shape ``(N,)`` allowed."""
    m, t = _finite(means, "means"), _finite(y, "y")
    if m.ndim == t.ndim + 2 and m.shape[-1] == 1:
        m = m[..., 0]
    if m.ndim != t.ndim + 1 or m.shape[1:] != t.shape or t.ndim not in (1, 2) or m.shape[0] < 1:
        raise ValueError(f"means must have shape (S, *y.shape) with y of shape (N,) or (N, D); "
                         f"got means {np.shape(means)} and y {np.shape(y)}")
    if t.ndim == 1:
        m, t = m[..., None], t[:, None]
    return m, t


def rmse(means, y) -> float:
    """Root mean squared error of the posterior-predictive mean ``ȳ = (1/S) Σ_s μ_s``."""
    m, t = _regression(means, y)
    return float(np.sqrt(np.mean((m.mean(axis=0) - t) ** 2)))


def gaussian_nll(means, y, noise_std) -> float:
    """NLL of the Gaussian mixture predictive ``(1/S) Σ_s N(y; μ_s, σ_s²)`` (nats per point, summed over D).

    ``noise_std`` is a scalar or any array broadcastable to ``means`` (``(S, 1)`` for a per-sample σ).
    """
    m, t = _regression(means, y)
    s = _finite(noise_std, "noise_std")
    if np.any(s <= 0):
        raise ValueError(f"noise_std must be > 0; found minimum {s.min()}")
    try:
        s = np.broadcast_to(s, np.shape(means)).reshape(m.shape)  # m is a reshape of means
    except ValueError:
        raise ValueError(f"noise_std of shape {np.shape(noise_std)} does not broadcast to means {np.shape(means)}") from None
    logp = -0.5 * (((t - m) / s) ** 2 + np.log(2 * np.pi)) - np.log(s)  # (S, N, D)
    return float(-np.mean(logsumexp(logp.sum(axis=2), axis=0) - np.log(m.shape[0])))


# ----------------------------------------------------------------------------- sparsity and cost


def _leaves(params) -> list[np.ndarray]:
    leaves = [np.asarray(x) for x in jax.tree_util.tree_leaves(params)]
    if not leaves or sum(x.size for x in leaves) == 0:
        raise ValueError("params holds no parameters")
    for x in leaves:
        if np.any(np.isnan(x)):
            raise ValueError("params contains NaN values")
    return leaves


def weight_sparsity(params) -> float:
    """Fraction of all parameter entries in the pytree that are exactly zero."""
    leaves = _leaves(params)
    return float(sum(np.count_nonzero(x == 0) for x in leaves) / sum(x.size for x in leaves))


def compression_ratio(params) -> float:
    """Total parameters / nonzero parameters (``inf`` if every parameter is zero)."""
    leaves = _leaves(params)
    kept = sum(np.count_nonzero(x) for x in leaves)
    return float(sum(x.size for x in leaves) / kept) if kept else float("inf")


def node_sparsity(masks: Mapping[str, Any]) -> dict[str, float]:
    """Per layer, the fraction of nodes kept: ``{layer: mean(mask)}`` for boolean / 0-1 ``(n_nodes,)`` masks."""
    if not isinstance(masks, Mapping) or not masks:
        raise ValueError("masks must be a non-empty dict layer_name -> (n_nodes,) boolean array")
    out = {}
    for name, m in masks.items():
        m = np.asarray(m)
        if m.ndim != 1 or m.size == 0:
            raise ValueError(f"masks[{name!r}] must be a non-empty 1-d array; got shape {m.shape}")
        if not np.all((m == 0) | (m == 1)):
            raise ValueError(f"masks[{name!r}] must hold booleans or 0/1 values")
        out[name] = float(np.mean(m))
    return out


def flops_ratio(compact_flops: float, dense_flops: float) -> float:
    """FLOPs of the compacted network over FLOPs of the dense one."""
    c, d = float(compact_flops), float(dense_flops)
    if not np.isfinite(d) or d <= 0:
        raise ValueError(f"dense_flops must be a positive number; got {dense_flops}")
    if not np.isfinite(c) or c < 0:
        raise ValueError(f"compact_flops must be a non-negative number; got {compact_flops}")
    return c / d


# ----------------------------------------------------------------------------- collapse


def chance_pvalue(accuracy: float, n: int, n_classes: int) -> float:
    """One-sided binomial p-value of ``k = round(accuracy · n)`` correct out of ``n`` under guessing:
    ``P(X >= k)``, ``X ~ Binomial(n, 1/C)`` (``scipy.stats.binomtest(k, n, 1/C, alternative="greater")``)."""
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n < 1:
        raise ValueError(f"n must be a positive integer; got {n!r}")
    if isinstance(n_classes, bool) or not isinstance(n_classes, (int, np.integer)) or n_classes < 2:
        raise ValueError(f"n_classes must be an integer >= 2; got {n_classes!r}")
    if not (np.isfinite(accuracy) and 0.0 <= accuracy <= 1.0):
        raise ValueError(f"accuracy must be a number in [0, 1]; got {accuracy!r}")
    k = int(round(accuracy * n))
    return float(binom.sf(k - 1, n, 1.0 / n_classes))


def collapse_reason(
    accuracy: float,
    n: int,
    n_classes: int,
    *,
    nodes_kept: Mapping[str, float] | None = None,
    units: Mapping[str, str] | None = None,
    reference_accuracy: float | None = None,
    alpha: float = CHANCE_ALPHA,
    max_margin_loss: float = MARGIN_LOSS,
) -> str:
    """Why a run collapsed, ``""`` when it did not; several reasons are joined by ``"; "``.

    * a layer emptied: ``nodes_kept[layer] == 0`` → ``"pruned every <unit> of <layer>"`` (``units[layer]``,
      default ``"node"``; ``"filter"`` for conv layers, :func:`layer_units`);
    * not above chance: :func:`chance_pvalue` ``>= alpha`` (accuracy on ``n`` test points, chance ``1/C``);
    * margin lost: with ``a0 = 1/C`` and a reference accuracy ``r > a0`` (MAP),
      ``(accuracy − a0) < (1 − max_margin_loss) · (r − a0)``.
    """
    if not 0.0 < alpha < 1.0:
        raise ValueError(f"alpha must lie in (0, 1); got {alpha!r}")
    if not 0.0 < max_margin_loss < 1.0:
        raise ValueError(f"max_margin_loss must lie in (0, 1); got {max_margin_loss!r}")
    units = units or {}
    reasons = [f"pruned every {units.get(name, 'node')} of {name}" for name, kept in (nodes_kept or {}).items()
               if np.isfinite(kept) and kept == 0]
    p = chance_pvalue(accuracy, n, n_classes)
    chance = 1.0 / n_classes
    if p >= alpha:
        reasons.append(f"accuracy {accuracy:.3f} not above chance {chance:.3f} (binomial p = {p:.2g})")
    if reference_accuracy is not None and np.isfinite(reference_accuracy) and reference_accuracy > chance:
        lost = 1.0 - (accuracy - chance) / (reference_accuracy - chance)
        if lost > max_margin_loss:
            reasons.append(f"lost {lost:.0%} of the reference's margin over chance "
                           f"(accuracy {accuracy:.3f} vs {reference_accuracy:.3f})")
    return "; ".join(reasons)


def layer_units(net) -> dict[str, str]:
    """``{layer: "filter" | "node"}`` of a network's layers (conv layers have filters), for :func:`collapse_reason`."""
    return {layer.name: "filter" if layer.kind == "conv" else "node" for layer in net.layers}


def collapse_columns(row: Mapping[str, Any], *, units: Mapping[str, str] | None = None,
                     reference_accuracy: float | None = None) -> dict[str, Any]:
    """``{"collapsed", "collapse_reason"}`` of one classification row of :func:`evaluate` (its ``accuracy``,
    ``n``, ``n_classes`` and ``nodes_kept/<layer>``), by :func:`collapse_reason`."""
    missing = {"accuracy", "n", "n_classes"} - set(row)
    if missing:
        raise ValueError(f"row lacks {sorted(missing)}: pass a classification row of metrics.evaluate")
    kept = {k.split("/", 1)[1]: float(v) for k, v in row.items() if k.startswith("nodes_kept/")}
    reason = collapse_reason(float(row["accuracy"]), int(row["n"]), int(row["n_classes"]), nodes_kept=kept,
                             units=units, reference_accuracy=reference_accuracy)
    return {"collapsed": bool(reason), "collapse_reason": reason}


# ----------------------------------------------------------------------------- one row per model


def evaluate(
    outputs,
    y,
    *,
    task: str = "classification",
    noise_std=None,
    params=None,
    masks: Mapping[str, Any] | None = None,
    net=None,
    compact_net=None,
    ece_bins: int = 10,
    ece_mass_bins: int = 20,
    **info,
) -> dict[str, Any]:
    """One tidy row of metrics for one model (``pd.DataFrame(rows)`` stacks models).

    ``outputs``: predictive samples, logits ``(S, N, C)`` or regression means ``(S, N[, D])``.
    Classification adds n_classes, accuracy, nll, brier, ece (``ece_bins`` equal-width) and ece_mass
    (``ece_mass_bins`` equal-mass); regression adds rmse, and nll when ``noise_std`` is given.
    ``params`` (the pruned parameters) adds n_params, weight_sparsity, compression_ratio; ``masks``
    adds ``nodes_kept`` overall and ``nodes_kept/<layer>``; ``net`` and ``compact_net`` add
    flops, flops_dense and flops_ratio via ``sparsebnn.compact.flops``. Extra keyword arguments
    (model, method, seed, latency, ...) lead the row unchanged.
    """
    row: dict[str, Any] = dict(info)
    if task == "classification":
        a = _logits(outputs, "outputs")
        probs = predictive_probs(a)
        row.update(n=a.shape[1], n_samples=a.shape[0], n_classes=a.shape[2], accuracy=accuracy(probs, y), nll=nll(a, y),
                   brier=brier(probs, y), ece=ece(probs, y, ece_bins, "width"),
                   ece_mass=ece(probs, y, ece_mass_bins, "mass"))
    elif task == "regression":
        m, _ = _regression(outputs, y)
        row.update(n=m.shape[1], n_samples=m.shape[0], rmse=rmse(outputs, y))
        if noise_std is not None:
            row["nll"] = gaussian_nll(outputs, y, noise_std)
    else:
        raise ValueError(f"task must be 'classification' or 'regression'; got {task!r}")
    if params is not None:
        row.update(n_params=sum(np.size(x) for x in _leaves(params)), weight_sparsity=weight_sparsity(params),
                   compression_ratio=compression_ratio(params))
    if masks is not None:
        kept = node_sparsity(masks)
        sizes = {k: np.size(v) for k, v in masks.items()}
        row["nodes_kept"] = sum(kept[k] * sizes[k] for k in kept) / sum(sizes.values())
        row.update({f"nodes_kept/{k}": v for k, v in kept.items()})
    if (net is None) != (compact_net is None):
        raise ValueError("pass both net and compact_net to report FLOPs, or neither")
    if net is not None:
        flops = importlib.import_module("sparsebnn.compact").flops
        row.update(flops=flops(compact_net), flops_dense=flops(net))
        row["flops_ratio"] = flops_ratio(row["flops"], row["flops_dense"])
    return row


__all__ = [
    "BINNINGS", "CHANCE_ALPHA", "MARGIN_LOSS", "PROB_ATOL", "accuracy", "brier", "chance_pvalue", "collapse_columns",
    "collapse_reason", "compression_ratio", "ece", "evaluate", "flops_ratio", "gaussian_nll", "layer_units",
    "node_sparsity", "nll", "predictive_probs", "rmse", "weight_sparsity",
]
