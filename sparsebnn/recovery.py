"""Node recovery: which hidden nodes a fitted network keeps, matched against a teacher's active nodes.

Hidden nodes are exchangeable, so a student node cannot be compared with a teacher node by index:
:func:`match_nodes` pairs them by the correlation of their activations (:func:`node_activations`)
on common inputs. :func:`node_signal` measures what each node contributes to the function,
``Delta_j = E_x[(eta(x) - eta^{-j}(x))^2]`` with node ``j`` switched off; a teacher meets the signal
("beta-min") condition of theory/README.md when every active node has ``Delta_j >= c sigma^2``
(:func:`min_signal_ratio`, :func:`choose_teacher_seed`).
"""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence

import jax
import numpy as np
from scipy.optimize import linear_sum_assignment

from sparsebnn import data
from sparsebnn.infer._taps import tapped_apply
from sparsebnn.nets import consumers, scale_nodes

MIN_CORR = 0.9  # activation correlation that makes a kept node a true positive
SIGNAL_N, SIGNAL_SEED = 20000, 7  # covariates of the signal check (signal_check_x)


def node_activations(net, params, x) -> dict[str, np.ndarray]:
    """``{prunable layer: (N, n_nodes)}`` outputs of every hidden node on ``x``: the inputs of the layer that reads them."""
    readers = {name: slots[0].path[0] for name, slots in consumers(net).items()}
    _, acts, _, bad = tapped_apply(net.apply, params, x, tuple(set(readers.values())))
    if bad:
        raise ValueError(f"cannot read node activations of {net.name!r}: {bad}")
    return {name: np.asarray(acts[reader], np.float64).reshape(len(x), -1) for name, reader in readers.items()}


def match_nodes(student: np.ndarray, teacher: np.ndarray, min_corr: float = MIN_CORR) -> dict:
    """True/false positives of kept ``student`` nodes ``(N, a)`` against active ``teacher`` nodes ``(N, s)``.

    Pearson correlations of the activations (0 for constant columns), Hungarian assignment maximising
    the total correlation; an assigned pair with correlation >= ``min_corr`` is a true positive.
    Returns ``tp``, ``fp = a - tp``, ``fn = s - tp`` and the mean correlation of the true positives.
    """
    student, teacher = np.asarray(student, np.float64), np.asarray(teacher, np.float64)
    if student.ndim != 2 or teacher.ndim != 2 or len(student) != len(teacher):
        raise ValueError(f"student and teacher must be (N, nodes) on the same N points; got {student.shape}, {teacher.shape}")
    if not (np.all(np.isfinite(student)) and np.all(np.isfinite(teacher))):
        raise ValueError("student and teacher activations must be finite")

    def standardise(a):
        sd = a.std(0)
        return np.where(sd > 1e-12 * (1 + np.abs(a).max(0)), (a - a.mean(0)) / np.where(sd > 0, sd, 1), 0.0)

    a, s = student.shape[1], teacher.shape[1]
    if a == 0 or s == 0:
        return {"tp": 0, "fp": a, "fn": s, "corr": float("nan")}
    corr = standardise(student).T @ standardise(teacher) / len(student)
    rows, cols = linear_sum_assignment(corr, maximize=True)
    hit = corr[rows, cols] >= min_corr
    tp = int(hit.sum())
    return {"tp": tp, "fp": a - tp, "fn": s - tp, "corr": float(corr[rows, cols][hit].mean()) if tp else float("nan")}


def node_signal(net, params, masks: Mapping[str, np.ndarray], x) -> dict[str, np.ndarray]:
    """``{layer: (kept,)}`` mean-square effect of switching off each node of ``masks``: ``E_x[(eta(x) - eta^{-j}(x))^2]``.

    ``eta^{-j}`` is the network with node ``j`` off (its incoming group zeroed) and nothing refitted,
    averaged over the rows of ``x`` (summed over outputs). One vmapped pass per layer.
    """
    x = np.asarray(x)
    if x.ndim != 2 or len(x) == 0 or not np.all(np.isfinite(x)):
        raise ValueError(f"x must be a finite non-empty (N, p) array; got shape {x.shape}")
    f0 = np.asarray(net.apply(params, x), np.float64)
    out = {}
    for layer, mask in masks.items():
        mask = np.asarray(mask, bool)
        off = 1.0 - np.eye(len(mask), dtype=np.float32)[np.flatnonzero(mask)]  # one row per node: that node off
        f = jax.vmap(lambda s: net.apply(scale_nodes(params, {layer: s}), x))(off)
        out[layer] = np.mean(np.square(np.asarray(f, np.float64) - f0), axis=1).sum(-1)
    return out


def signal_check_x(p: int) -> np.ndarray:
    """The fixed covariates on which the signal condition is checked (``SIGNAL_N`` standard normal rows)."""
    return np.random.default_rng(SIGNAL_SEED).standard_normal((SIGNAL_N, p)).astype(np.float32)


def min_signal_ratio(teacher: data.Teacher, x) -> float:
    """``min_j Delta_j / sigma^2`` over the active teacher nodes of every hidden layer (:func:`node_signal`)."""
    return float(min(v.min() for v in node_signal(teacher.net, teacher.params, teacher.masks, x).values()) / teacher.noise**2)


def teacher(p: int, widths: Sequence[int], active: Sequence[int], noise: float, seed: int) -> data.Teacher:
    """The regression teacher network of :func:`sparsebnn.data.teacher` drawn from ``seed`` (no data needed)."""
    return data.teacher(1, p=p, widths=tuple(widths), active=tuple(active), noise=noise, n_val=1, n_test=1, seed=seed,
                        data_seed=0).teacher


def choose_teacher_seed(p: int, widths: Sequence[int], active: Sequence[int], noise: float, min_signal: float,
                        start: int = 0, tries: int = 1000) -> int:
    """The first teacher seed ``>= start`` whose every active node has ``Delta_j >= min_signal * sigma^2``.

    The signal ("beta-min") condition of theory/README.md for :func:`teacher` ``(p, widths, active, noise)``,
    checked on :func:`signal_check_x`; ``min_signal = 0`` accepts ``start``. Raises when none of
    ``tries`` seeds qualifies.
    """
    if not min_signal >= 0:
        raise ValueError(f"min_signal must be >= 0; got {min_signal}")
    if min_signal == 0:
        return int(start)
    return _first_seed(int(p), tuple(int(w) for w in widths), tuple(int(a) for a in active), float(noise),
                       float(min_signal), int(start), int(tries))


@functools.lru_cache(maxsize=64)
def _first_seed(p, widths, active, noise, min_signal, start, tries) -> int:
    x = signal_check_x(p)
    for seed in range(start, start + tries):
        if min_signal_ratio(teacher(p, widths, active, noise, seed), x) >= min_signal:
            return seed
    raise ValueError(f"no teacher seed in [{start}, {start + tries}) has every active node's signal >= "
                     f"{min_signal} sigma^2; lower min_signal")
