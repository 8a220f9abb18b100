"""Contraction rate of the variational posterior of node-sparse BNNs, and the distances to check it.

Notation (derivation and assumptions in ``theory/README.md``). An MLP with ``L`` hidden layers has
node-layer widths ``widths = (k_0, k_1, ..., k_L, k_{L+1})`` (input, hidden..., output); weight
layer ``l = 0..L`` maps ``k_l -> k_{l+1}``. The approximating node-sparse network has
``active = (s_1, ..., s_L)`` active hidden nodes and entries of weight layer ``l`` bounded by
``bounds[l] = B_l >= 1``; inputs and outputs are never pruned (``s_0 = k_0``, ``s_{L+1} = k_{L+1}``).

* ``u_terms``              u_l = (L+1)^2 [ln n + ln(L+1) + ln(k_l+1) + ln k_{l+1}]          (Jantre et al.'s code)
* ``inclusion_log_prob``   -ln pi_{l+1} = ln k_{l+1} + 1e-9 (k_l+1) v_l                      (Jantre et al.'s code)
* ``r_terms``              n r_l = P_l c_l + s_{l+1} ln(1/pi_{l+1}) + (k_{l+1}-s_{l+1}) ln(1/(1-pi_{l+1}))
                           P_l = s_{l+1}(s_l+1),  c_l = ln(sigma0/sigma_l) + B_l^2/sigma0^2 - 1/2 (our derivation)
* ``contraction_rate``     eps_n = sqrt((sum_l r_l + xi) sum_l u_l)                         (Jantre et al.)
* ``hellinger_sq``         d_H^2 = E_x[1 - exp(-(eta_theta(x) - eta_0(x))^2 / (8 sigma^2))]
* ``mass_outside``         fraction of posterior draws with d_H > radius

The rate formulas are cheap closed forms evaluated in float64 NumPy (broadcasting over ``n``);
the distances are pure, jittable JAX functions.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from sparsebnn.nets import Network, Params, node_groups
from sparsebnn.priors import theory_inclusion, theory_u


class Architecture(NamedTuple):
    """What the rate depends on: node-layer widths, active hidden nodes, per-weight-layer bounds."""

    widths: tuple[int, ...]
    active: tuple[int, ...]
    bounds: tuple[float, ...]


# ----------------------------------------------------------------------------- validation


def _array(name: str, x, dtype=None) -> np.ndarray:
    try:
        return np.asarray(x, dtype=dtype)
    except (TypeError, ValueError):
        raise ValueError(f"{name} must be numeric; got {x!r}") from None


def _int_seq(name: str, x, minimum: int) -> np.ndarray:
    arr = _array(name, x)
    if arr.ndim != 1 or arr.dtype == bool or not (
        np.issubdtype(arr.dtype, np.integer)
        or (np.issubdtype(arr.dtype, np.floating) and np.all(np.isfinite(arr)) and np.all(arr == np.round(arr)))
    ):
        raise ValueError(f"{name} must be a 1-D sequence of integers; got {x!r}")
    arr = arr.astype(np.int64)
    if arr.size and arr.min() < minimum:
        raise ValueError(f"{name} must be >= {minimum} everywhere; got {x!r}")
    return arr


def _widths(widths) -> np.ndarray:
    k = _int_seq("widths", widths, 1)
    if k.size < 2:
        raise ValueError(f"widths must list at least the input and output sizes (k_0, ..., k_(L+1)); got {widths!r}")
    return k


def _active(active, k: np.ndarray) -> np.ndarray:
    s = _int_seq("active", active, 1)
    hidden = k[1:-1]
    if s.size != hidden.size:
        raise ValueError(f"active must give one count per hidden layer ({hidden.size}); got {active!r}")
    if np.any(s > hidden):
        raise ValueError(f"active nodes must not exceed the widths {tuple(hidden)}; got {active!r}")
    return s


def _bounds(bounds, n_layers: int) -> np.ndarray:
    b = _array("bounds", bounds, np.float64)
    if b.ndim == 0:
        b = np.full((n_layers,), float(b))
    if b.shape != (n_layers,):
        raise ValueError(f"bounds must be a scalar or give one B_l per weight layer ({n_layers}); got {bounds!r}")
    if not np.all(np.isfinite(b)) or np.any(b < 1.0):
        raise ValueError(f"bounds must be finite and >= 1 (a bound can always be enlarged); got {bounds!r}")
    return b


def _n(n) -> np.ndarray:
    arr = _array("n", n, np.float64)
    if not np.all(np.isfinite(arr)) or np.any(arr < 2) or np.any(arr != np.round(arr)):
        raise ValueError(f"n (sample size) must be an integer >= 2; got {n!r}")
    return arr


def _scalar(name: str, x) -> float:
    arr = _array(name, x, np.float64)
    if arr.ndim != 0:
        raise ValueError(f"{name} must be a scalar; got shape {arr.shape}")
    return float(arr)


def _nonneg(name: str, x) -> float:
    x = _scalar(name, x)
    if not np.isfinite(x) or x < 0:
        raise ValueError(f"{name} must be finite and >= 0; got {x!r}")
    return x


def _positive(name: str, x) -> float:
    x = _scalar(name, x)
    if not np.isfinite(x) or x <= 0:
        raise ValueError(f"{name} must be finite and > 0; got {x!r}")
    return x


# ----------------------------------------------------------------------------- rate ingredients


def _per_n(f, n: np.ndarray) -> np.ndarray:
    """Evaluate ``f(int n) -> (m,)`` on every entry of ``n``: shape ``(*n.shape, m)``."""
    out = [f(int(m)) for m in n.ravel()]
    return np.stack(out).reshape(n.shape + out[0].shape) if out else np.zeros(n.shape + (0,))


def u_terms(widths: Sequence[int], n) -> np.ndarray:
    """u_l = (L+1)^2 [ln n + ln(L+1) + ln(k_l+1) + ln k_{l+1}], l = 0..L; shape ``(*n.shape, L+1)``.

    Delegates to :func:`sparsebnn.priors.theory_u`.
    """
    k = _widths(widths)
    return _per_n(lambda m: theory_u(k[:-1], k[1:], m), _n(n))


def inclusion_log_prob(widths: Sequence[int], n) -> np.ndarray:
    """Theory-driven ln pi_{l+1} of the hidden layers l+1 = 1..L; shape ``(*n.shape, L)``.

    v_l = (k_l+1)^2 + sum_{m=0}^{L} ln(k_m+1) + L + ln k_{l+1} + ln n + ln sum_{j=0}^{L} u_j,
    -ln pi_{l+1} = ln k_{l+1} + 1e-9 (k_l+1) v_l. Delegates to
    :func:`sparsebnn.priors.theory_inclusion` (the prior's own choice).
    """
    k = _widths(widths)
    prunable = np.arange(k.size - 1) < k.size - 2  # every weight layer but the output one
    pi = _per_n(lambda m: theory_inclusion(k[:-1], k[1:], m, prunable)[:-1], _n(n))
    if np.any(pi <= 0):
        raise ValueError(f"the theory-driven pi underflows to 0 for widths {tuple(k)}; pass pi explicitly")
    return np.log(pi)


def _log_pi(pi, k: np.ndarray, n: np.ndarray) -> np.ndarray:
    depth = k.size - 2
    if pi is None:
        return inclusion_log_prob(k, n)
    p = _array("pi", pi, np.float64)
    if p.ndim == 0:
        p = np.full((depth,), float(p))
    if p.shape != (depth,):
        raise ValueError(f"pi must be None, a scalar, or one probability per hidden layer ({depth}); got {pi!r}")
    if not np.all((p > 0) & (p < 1)):
        raise ValueError(f"pi must lie in (0, 1); got {pi!r}")
    return np.broadcast_to(np.log(p), n.shape + (depth,))


def r_terms(
    widths: Sequence[int],
    active: Sequence[int],
    bounds,
    n,
    *,
    pi=None,
    slab_scale: float = 1.0,
    input_bound: float = 1.0,
) -> np.ndarray:
    """Per-layer rate terms r_l, l = 0..L (our derivation, see README); shape ``(*n.shape, L+1)``.

    n r_l = P_l c_l + [l < L] (s_{l+1} ln(1/pi_{l+1}) + (k_{l+1} - s_{l+1}) ln(1/(1 - pi_{l+1}))), where
    P_l = s_{l+1}(s_l + 1) active parameters (s_0 = k_0, s_{L+1} = k_{L+1}),
    c_l = ln(sigma0/sigma_l) + B_l^2/sigma0^2 - 1/2 the KL cost of one of them, with
    sigma_l = B_l / (2 X G (L+1) sqrt(n ln(2P))), G = prod_m 2 (s_m+1) B_m, P = sum_l P_l.

    ``pi``: None for the theory-driven inclusion probabilities, else a fixed pi (scalar or one per
    hidden layer). ``slab_scale``: the slab standard deviation sigma0. ``input_bound``: X >= 1 with
    ||x||_inf <= X on the support of the covariates.
    """
    k = _widths(widths)
    depth = k.size - 2
    s_hidden = _active(active, k)
    b = _bounds(bounds, depth + 1)
    sigma0 = _positive("slab_scale", slab_scale)
    x_bound = _scalar("input_bound", input_bound)
    if not (np.isfinite(x_bound) and x_bound >= 1):
        raise ValueError(f"input_bound must be finite and >= 1; got {input_bound!r}")
    n = _n(n)

    s = np.concatenate([k[:1], s_hidden, k[-1:]]).astype(np.float64)  # s_0 .. s_{L+1}
    n_active = s[1:] * (s[:-1] + 1.0)  # P_l
    log_g = np.sum(np.log(2.0 * (s[:-1] + 1.0) * b))
    log_sigma0_over_sigma = (
        np.log(sigma0 / b)
        + np.log(2.0 * x_bound * (depth + 1))
        + log_g
        + 0.5 * np.log(n)[..., None]
        + 0.5 * np.log(np.log(2.0 * n_active.sum()))
    )
    cost = log_sigma0_over_sigma + b**2 / sigma0**2 - 0.5  # c_l

    log_pi = _log_pi(pi, k, n)
    log_one_minus_pi = np.log(-np.expm1(log_pi))
    s_next, k_next = s[1 : depth + 1], k[1 : depth + 1]
    selection = -s_next * log_pi - (k_next - s_next) * log_one_minus_pi
    selection = np.concatenate([selection, np.zeros(n.shape + (1,))], axis=-1)  # output layer: no selection

    return (n_active * cost + selection) / n[..., None]


def contraction_rate(widths: Sequence[int], active: Sequence[int], bounds, n, xi: float = 0.0, **options):
    """eps_n = sqrt((sum_l r_l + xi) sum_l u_l), broadcasting over ``n``.

    ``xi``: approximation error of the best node-sparse network, ||eta* - eta_0||^2_{L2(P_X)} / sigma^2
    (0 when the truth is itself such a network). ``options``: ``pi``, ``slab_scale``, ``input_bound``
    as in :func:`r_terms`.
    """
    xi = _nonneg("xi", xi)
    r = r_terms(widths, active, bounds, n, **options)
    u = u_terms(widths, n)
    return np.sqrt((r.sum(-1) + xi) * u.sum(-1))


def rate_slope(widths: Sequence[int], active: Sequence[int], bounds, n1, n2, xi: float = 0.0, **options):
    """Slope of the rate on a log-log scale, (ln eps_{n2} - ln eps_{n1}) / (ln n2 - ln n1).

    About -1/2 + O(1/ln n) when xi = 0; ``options`` as in :func:`contraction_rate`.
    """
    n1, n2 = _n(n1), _n(n2)
    if np.any(n1 == n2):
        raise ValueError(f"n1 and n2 must differ; got {n1!r} and {n2!r}")
    e1, e2 = (contraction_rate(widths, active, bounds, m, xi, **options) for m in (n1, n2))
    return (np.log(e2) - np.log(e1)) / (np.log(n2) - np.log(n1))


def architecture(net: Network, params: Params) -> Architecture:
    """Widths, active hidden nodes and bounds of a dense network's parameters (e.g. a teacher).

    A hidden node is active when its incoming group (weights and bias) is not all zero;
    B_l = max(1, max |entries| of weight layer l).
    """
    if any(layer.kind != "dense" for layer in net.layers):
        raise ValueError(f"architecture() needs a dense network; {net.name!r} has layers {[l.kind for l in net.layers]}")
    widths = (net.layers[0].fan_in,) + tuple(layer.n_nodes for layer in net.layers)
    for prev, layer in zip(net.layers[:-1], net.layers[1:]):
        if layer.fan_in != prev.n_nodes:
            raise ValueError(f"layer {layer.name!r} has fan-in {layer.fan_in} but follows {prev.n_nodes} nodes")
    groups = [np.asarray(node_groups(params, layer)) for layer in net.layers]
    active = tuple(int(np.sum(np.any(g != 0, axis=1))) for g in groups[:-1])
    bounds = tuple(max(1.0, float(np.max(np.abs(g)))) for g in groups)
    return Architecture(widths, active, bounds)


# ----------------------------------------------------------------------------- distances


def _check_concrete(name: str, x, *, positive: bool = False, nonneg: bool = False) -> None:
    """Value checks, only when ``x`` is concrete (inside ``jit`` the caller is trusted)."""
    if isinstance(x, jax.core.Tracer):
        return
    arr = np.asarray(x)
    if np.any(np.isnan(arr)):
        raise ValueError(f"{name} contains NaN")
    if positive and not np.all(arr > 0):
        raise ValueError(f"{name} must be > 0; got {x!r}")
    if nonneg and not np.all(arr >= 0):
        raise ValueError(f"{name} must be >= 0")


def hellinger_sq(pred: jax.Array, truth: jax.Array, noise_scale) -> jax.Array:
    """Squared Hellinger distance between the Gaussian regression models eta_theta and eta_0.

    d_H^2 = E_x[1 - exp(-(eta_theta(x) - eta_0(x))^2 / (8 sigma^2))], with the convention
    d_H^2 = 1 - int sqrt(l_theta l_0); the expectation is the mean over the last axis (the x points).
    ``pred`` (..., N) and ``truth`` (..., N) broadcast (e.g. posterior draws (S, N) against (N,)).
    """
    pred, truth = jnp.asarray(pred), jnp.asarray(truth)
    if pred.ndim == 0 or truth.ndim == 0:
        raise ValueError(f"pred and truth need a last axis of x points; got shapes {pred.shape}, {truth.shape}")
    if pred.shape[-1] != truth.shape[-1] or pred.shape[-1] == 0:
        raise ValueError(f"pred and truth must share a non-empty last (x) axis; got {pred.shape} and {truth.shape}")
    try:
        jnp.broadcast_shapes(pred.shape, truth.shape)
    except ValueError:
        raise ValueError(f"pred {pred.shape} and truth {truth.shape} do not broadcast") from None
    if jnp.ndim(noise_scale) != 0:
        raise ValueError(f"noise_scale must be a scalar; got shape {jnp.shape(noise_scale)}")
    _check_concrete("pred", pred)
    _check_concrete("truth", truth)
    _check_concrete("noise_scale", noise_scale, positive=True)
    z = (pred - truth) / noise_scale
    return jnp.mean(-jnp.expm1(-(z**2) / 8.0), axis=-1)


def hellinger(pred: jax.Array, truth: jax.Array, noise_scale) -> jax.Array:
    """d_H = sqrt(hellinger_sq(pred, truth, noise_scale))."""
    return jnp.sqrt(hellinger_sq(pred, truth, noise_scale))


def mass_outside(dists: jax.Array, radius) -> jax.Array:
    """Fraction of posterior draws farther than ``radius``: mean over the last axis of 1{d > radius}.

    ``dists`` (..., S) are per-draw distances; ``radius`` is a scalar or broadcasts against ``dists.shape[:-1]``.
    """
    dists, radius = jnp.asarray(dists), jnp.asarray(radius)
    if dists.ndim == 0 or dists.shape[-1] == 0:
        raise ValueError(f"dists needs a non-empty last axis of posterior draws; got shape {dists.shape}")
    try:
        jnp.broadcast_shapes(dists.shape[:-1], radius.shape)
    except ValueError:
        raise ValueError(f"radius {radius.shape} does not broadcast against dists {dists.shape[:-1]}") from None
    _check_concrete("dists", dists, nonneg=True)
    _check_concrete("radius", radius, nonneg=True)
    return jnp.mean(dists > radius[..., None], axis=-1)
