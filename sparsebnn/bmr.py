r"""Bayesian model reduction (BMR): the evidence of a reduced prior from the full model's posterior.

Full model: prior :math:`p(w) = N(m_0, s_0^2)`, Gaussian posterior :math:`q(w) = N(\mu, s^2)`.
Reduced model: same likelihood, prior :math:`\tilde p(w) = N(\tilde m_0, \tilde s_0^2)`, where
:math:`\tilde s_0^2 = 0` (a spike at :math:`\tilde m_0`) is allowed. Then

.. math::
    \Delta F = \ln \int q(w)\,\tilde p(w) / p(w)\,dw
             = \ln p(y \mid \text{reduced}) - \ln p(y \mid \text{full})

whenever :math:`q` is the exact posterior (> 0: the reduced model is better). With precisions
:math:`\pi = 1/s^2`, :math:`\pi_0`, :math:`\tilde\pi_0`, the reduced posterior has precision
:math:`\tilde\pi = \pi + \tilde\pi_0 - \pi_0` (must be > 0) and mean
:math:`\tilde\mu = (\pi\mu + \tilde\pi_0\tilde m_0 - \pi_0 m_0)/\tilde\pi`.

Everything is computed in the prior's standardised frame (``a = s²/s₀²``, ``r = s̃₀²/s₀²``), where

    ΔF = -½ ln d - ½ (u² - r z² - a v²) / d,    d = a + r - a r = π̃ s² s̃₀² / s₀²,

with ``z = (μ - m₀)/s₀``, ``v = (m̃₀ - m₀)/s₀``, ``u = (μ - m̃₀)/s₀``. No precision is ever formed,
so ``red_var = 0`` gives the Savage–Dickey ratio ``ln q(m̃₀) - ln p(m̃₀)`` exactly, reduced prior
= full prior gives exactly 0, and variances from 1e-30 to 1e30 stay finite in float64.

The full-covariance version (:func:`delta_f_mvn`) combines ``q`` with ``p̃`` in covariance form and
then divides by ``p``, so it never inverts ``S̃`` (singular reduced covariances, i.e. dropping any
subset of coefficients, are exact too) and never forms the precision difference ``Σ⁻¹ - S₀⁻¹``.

Validation: every function checks pytree structures and shapes always (they are static), and,
when called eagerly on concrete arrays, also the values (NaN/inf, variances, symmetry and
definiteness of covariances, a reduced posterior precision ≤ 0), raising a ``ValueError`` that
names the argument. Inside ``jit``/``vmap``/``grad`` the value checks are skipped: the elementwise
functions then return NaN wherever a variance or the reduced precision is invalid; the
full-covariance ones return NaN when the reduced precision, ``prior_cov`` or ``post_cov + red_cov``
is not positive definite, but cannot detect every non-definite ``post_cov`` or ``red_cov`` alone —
check such inputs eagerly once. (XLA on CPU flushes subnormal numbers, |x| < 2.2e-308, to zero.)
"""

from __future__ import annotations

from collections.abc import Sequence
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import jax.scipy.linalg as jsl
import numpy as np
from jax.scipy.special import digamma

from sparsebnn.nets import Layer, Params, node_groups

PyTree = Any

__all__ = [
    "beta_bernoulli_rule",
    "beta_bernoulli_zeta",
    "beta_bernoulli_zeta_spiked",
    "delta_f",
    "delta_f_mvn",
    "group_delta_f",
    "node_delta_f",
    "reduced_posterior",
    "reduced_posterior_mvn",
    "spike_delta_f",
    "threshold_rule",
]

_ARGS = ("post_mean", "post_var", "prior_mean", "prior_var", "red_mean", "red_var")
_MVN_ARGS = ("post_mean", "post_cov", "prior_mean", "prior_cov", "red_mean", "red_cov")


# --------------------------------------------------------------------------------------------
# validation helpers
# --------------------------------------------------------------------------------------------


def _concrete(*trees) -> bool:
    """True when no leaf is a tracer, i.e. the call is eager and values can be checked."""
    return not any(isinstance(x, jax.core.Tracer) for x in jax.tree_util.tree_leaves(trees))


def _float_dtype(*xs):
    """The floating dtype of a computation on ``xs`` (ints promote to the default float)."""
    return jnp.result_type(*xs, float)


def _broadcast_shape(names: Sequence[str], shapes: Sequence[tuple]) -> tuple:
    """The common broadcast shape; the ValueError names the first argument that does not fit."""
    out = shapes[0]
    for name, shape in zip(names[1:], shapes[1:]):
        try:
            out = np.broadcast_shapes(out, shape)
        except ValueError:
            raise ValueError(
                f"{name}: shape {shape} does not broadcast with {names[0]}'s shape (so far {out})"
            ) from None
    return out


def _check_finite(name: str, x) -> np.ndarray:
    x = np.asarray(x)
    if np.isnan(x).any():
        raise ValueError(f"{name} contains NaN ({int(np.isnan(x).sum())} of {x.size} entries)")
    if np.isinf(x).any():
        raise ValueError(f"{name} contains inf ({int(np.isinf(x).sum())} of {x.size} entries)")
    return x


def _check_positive(name: str, x, allow_zero: bool = False) -> None:
    x = np.asarray(x)
    bad = (x < 0) if allow_zero else (x <= 0)
    if bad.any():
        need = ">= 0" if allow_zero else "> 0"
        raise ValueError(f"{name} must be {need}; got {x[bad].ravel()[0]!r} ({int(bad.sum())} of {x.size} entries)")


def _tree_args(names: Sequence[str], args: Sequence[PyTree]):
    """Flatten ``args`` against the structure of the first; single arrays broadcast to every leaf."""
    treedef = jax.tree_util.tree_structure(args[0])
    columns = []
    for name, arg in zip(names, args):
        struct = jax.tree_util.tree_structure(arg)
        if struct == treedef:
            columns.append(treedef.flatten_up_to(arg))
        elif jax.tree_util.treedef_is_leaf(struct) and struct.num_leaves == 1:
            columns.append([arg] * treedef.num_leaves)
        else:
            raise ValueError(
                f"{name}: pytree structure {struct} matches neither {names[0]}'s {treedef} nor a single array"
            )
    return treedef, list(zip(*columns))


# --------------------------------------------------------------------------------------------
# elementwise (mean-field) BMR
# --------------------------------------------------------------------------------------------


def _valid(pv, v0, rv, d):
    """Where the inputs define a reduced posterior (used to return NaN, not a number, under jit)."""
    return (pv > 0) & (v0 > 0) & (rv >= 0) & (d > 0)


def _ratios(pv, v0, rv, xp=jnp):
    """a = s²/s₀², r = s̃₀²/s₀² and d = a + r - a r = π̃ s² s̃₀²/s₀² without avoidable cancellation.

    d = r + a(1 - r) when r ≤ 1 and a + r(1 - a) when a ≤ 1 (sums of non-negative terms), else
    1 - (a - 1)(r - 1); each 1 - a, 1 - r comes from an exact difference such as v0 - rv.
    """
    a, r = pv / v0, rv / v0
    one_a, one_r = (v0 - pv) / v0, (v0 - rv) / v0
    d = xp.where(r <= 1, r + a * one_r, xp.where(a <= 1, a + r * one_a, 1 - one_a * one_r))
    return a, r, d


def _standardise(pm, pv, m0, v0, rm, rv):
    """Prior-standardised quantities: a = s²/s₀², r = s̃₀²/s₀², d = a + r - a r, z, v, u."""
    s0 = jnp.sqrt(v0)
    a, r, d = _ratios(pv, v0, rv)
    z = (pm - m0) / s0
    v = (rm - m0) / s0
    u = (pm - rm) / s0
    return a, r, d, z, v, u


@jax.jit
def _delta_f_leaf(pm, pv, m0, v0, rm, rv):
    a, r, d, z, v, u = _standardise(pm, pv, m0, v0, rm, rv)
    # u² - r z² as a product of two accurate factors: exactly 0 when p̃ = p, whatever FMA contraction does.
    sr = jnp.sqrt(r)
    df = -0.5 * jnp.log(d) - 0.5 * ((u - sr * z) * (u + sr * z) - a * v * v) / d
    return jnp.where(_valid(pv, v0, rv, d), df, jnp.nan)


@jax.jit
def _reduced_leaf(pm, pv, m0, v0, rm, rv):
    a, r, d, z, v, u = _standardise(pm, pv, m0, v0, rm, rv)
    # μ̃ - m̃₀ = (π(μ - m̃₀) - π₀(m₀ - m̃₀)) / π̃ ;  π/π̃ = r/d, π₀/π̃ = a r/d ;  s̃² = s² r/d.
    mean = rm + r * ((pm - rm) + a * (rm - m0)) / d
    var = pv * r / d
    ok = _valid(pv, v0, rv, d)
    return jnp.where(ok, mean, jnp.nan), jnp.where(ok, var, jnp.nan)


def _prepare(args: Sequence[PyTree]):
    """Check structures, shapes and (eagerly) values; return the treedef and per-leaf argument tuples."""
    treedef, leaves = _tree_args(_ARGS, args)
    eager = _concrete(*args)
    out = []
    for leaf in leaves:
        dtype = _float_dtype(*leaf)
        leaf = tuple(jnp.asarray(x, dtype) for x in leaf)
        _broadcast_shape(_ARGS, [x.shape for x in leaf])
        if eager:
            _validate_values(leaf)
        out.append(leaf)
    return treedef, out


def _validate_values(leaf) -> None:
    pm, pv, m0, v0, rm, rv = (_check_finite(n, x) for n, x in zip(_ARGS, leaf))
    _check_positive("post_var", pv)
    _check_positive("prior_var", v0)
    _check_positive("red_var", rv, allow_zero=True)
    d = _ratios(pv, v0, rv, np)[2]
    if (d <= 0).any():
        raise ValueError(
            "red_var: the reduced posterior precision 1/post_var + 1/red_var - 1/prior_var must be > 0, "
            f"but it is <= 0 at {int((d <= 0).sum())} of {d.size} entries (a reduced prior wider than "
            "the full prior needs a posterior narrower than the full prior there)"
        )


def delta_f(post_mean, post_var, prior_mean, prior_var, red_mean=0.0, red_var=0.0) -> PyTree:
    r"""Elementwise ΔF = ln ∫ q(w) p̃(w)/p(w) dw for mean-field Gaussians (arrays or pytrees).

    ``q = N(post_mean, post_var)``, ``p = N(prior_mean, prior_var)``, ``p̃ = N(red_mean, red_var)``;
    the defaults ``red_mean = red_var = 0`` are the spike at zero used for pruning, for which ΔF is the
    Savage–Dickey log ratio ``ln q(0) - ln p(0)`` (computed exactly, no small-variance surrogate).
    Each argument is a pytree shaped like ``post_mean`` or a single array broadcast to every leaf;
    leaves broadcast elementwise. Returns ΔF with ``post_mean``'s structure.
    """
    args = (post_mean, post_var, prior_mean, prior_var, red_mean, red_var)
    treedef, leaves = _prepare(args)
    return treedef.unflatten([_delta_f_leaf(*leaf) for leaf in leaves])


def spike_delta_f(post_mean, post_var, prior_var) -> PyTree:
    r"""ΔF of the spike at zero under a zero-mean prior: ``delta_f(post_mean, post_var, 0, prior_var)``.

    The Savage–Dickey ratio ``ln q(0) - ln p(0) = -½ ln(s²/s₀²) - μ²/(2 s²)`` as one cheap expression
    that XLA fuses with whatever follows (the pruning pass of :func:`sparsebnn.reduction.reduce`);
    :func:`delta_f` is the general, cancellation-free form. Arguments, broadcasting and checks as
    :func:`delta_f` (``post_var``, ``prior_var`` > 0).
    """
    names = ("post_mean", "post_var", "prior_var")
    treedef, leaves = _tree_args(names, (post_mean, post_var, prior_var))
    eager = _concrete(post_mean, post_var, prior_var)
    out = []
    for leaf in leaves:
        dtype = _float_dtype(*leaf)
        pm, pv, v0 = (jnp.asarray(x, dtype) for x in leaf)
        _broadcast_shape(names, [x.shape for x in (pm, pv, v0)])
        if eager:
            for name, x in zip(names, (pm, pv, v0)):
                _check_finite(name, x)
            _check_positive("post_var", pv)
            _check_positive("prior_var", v0)
        out.append(-0.5 * jnp.log(pv / v0) - 0.5 * pm * pm / pv)
    return treedef.unflatten(out)


def reduced_posterior(post_mean, post_var, prior_mean, prior_var, red_mean=0.0, red_var=0.0):
    r"""Mean and variance of the reduced posterior ``q̃ ∝ q p̃ / p`` (same arguments as :func:`delta_f`).

    ``σ̃² = 1/(π + π̃₀ - π₀)``, ``μ̃ = σ̃² (πμ + π̃₀ m̃₀ - π₀ m₀)``; a spike (``red_var = 0``) gives
    ``(red_mean, 0)`` exactly. Returns ``(mean, var)``, each with ``post_mean``'s structure.
    """
    args = (post_mean, post_var, prior_mean, prior_var, red_mean, red_var)
    treedef, leaves = _prepare(args)
    pairs = [_reduced_leaf(*leaf) for leaf in leaves]
    return treedef.unflatten([p[0] for p in pairs]), treedef.unflatten([p[1] for p in pairs])


# --------------------------------------------------------------------------------------------
# full-covariance BMR
# --------------------------------------------------------------------------------------------


def _sym(x):
    return 0.5 * (x + x.T)


def _logdet(chol):
    return 2 * jnp.sum(jnp.log(jnp.diagonal(chol)))


def _mvn_parts(pm, pc, rm, rc, c0):
    """Shared pieces of the full-covariance ΔF and reduced posterior (one model, no batch axes).

    Combine q and p̃ first (covariance form, so S̃ may be singular), then divide by p:
    K = Σ + S̃, x = m̃ + S̃K⁻¹(μ - m̃) and C = S̃K⁻¹Σ (mean and covariance of q·p̃), and
    M = S₀ - C = (S₀ - S̃) + S̃K⁻¹S̃, which is positive definite exactly when the reduced posterior
    precision Σ⁻¹ + S̃⁻¹ - S₀⁻¹ is (for S̃ ⪯ S₀ it is a sum of two PSD terms: no cancellation).
    """
    chol_k = jnp.linalg.cholesky(pc + rc)
    x = rm + rc @ jsl.cho_solve((chol_k, True), pm - rm)
    c = rc @ jsl.cho_solve((chol_k, True), pc)
    chol_m = jnp.linalg.cholesky(_sym((c0 - rc) + rc @ jsl.cho_solve((chol_k, True), rc)))
    return chol_k, chol_m, x, c


def _delta_f_mvn_one(pm, pc, m0, c0, rm, rc):
    chol_k, chol_m, x, _ = _mvn_parts(pm, pc, rm, rc, c0)
    e = jsl.solve_triangular(chol_k, pm - rm, lower=True)
    f = jsl.solve_triangular(chol_m, x - m0, lower=True)
    logdet = _logdet(jnp.linalg.cholesky(c0)) - 0.5 * (_logdet(chol_k) + _logdet(chol_m))
    return logdet - 0.5 * (e @ e - f @ f)


def _reduced_mvn_one(pm, pc, m0, c0, rm, rc):
    _, chol_m, x, c = _mvn_parts(pm, pc, rm, rc, c0)
    live = jnp.diagonal(rc) > 0  # a PSD matrix's zero diagonal entry has a zero row and column
    c = jnp.where(live[:, None] & live[None, :], _sym(c), 0)
    # (C⁻¹ - S₀⁻¹)⁻¹ = C + C M⁻¹ C  and  μ̃ = x + C M⁻¹ (x - m₀): spikes stay exactly at m̃ with variance 0.
    mean = x + c @ jsl.cho_solve((chol_m, True), x - m0)
    cov = c + c @ jsl.cho_solve((chol_m, True), c)
    return mean, _sym(cov)


_SIGNATURE = "(k),(k,k),(k),(k,k),(k),(k,k)"
_delta_f_mvn_batched = jax.jit(jnp.vectorize(_delta_f_mvn_one, signature=_SIGNATURE + "->()"))
_reduced_mvn_batched = jax.jit(jnp.vectorize(_reduced_mvn_one, signature=_SIGNATURE + "->(k),(k,k)"))


def _prepare_mvn(args):
    dtype = _float_dtype(*args)
    args = tuple(jnp.asarray(x, dtype) for x in args)
    for name, x, nd in zip(_MVN_ARGS, args, (1, 2) * 3):
        if x.ndim < nd:
            raise ValueError(f"{name} must have at least {nd} dimension(s); got shape {x.shape}")
    k = args[0].shape[-1]
    for name, x, nd in zip(_MVN_ARGS, args, (1, 2) * 3):
        if x.shape[x.ndim - nd :] != (k,) * nd:
            raise ValueError(f"{name}: trailing shape must be {(k,) * nd} (k = post_mean.shape[-1]); got {x.shape}")
    _broadcast_shape(_MVN_ARGS, [x.shape[: x.ndim - nd] for x, nd in zip(args, (1, 2) * 3)])
    if _concrete(*args):
        _validate_mvn(args)
    return args


def _validate_mvn(args) -> None:
    pm, pc, m0, c0, rm, rc = (_check_finite(n, np.asarray(x, np.float64)) for n, x in zip(_MVN_ARGS, args))
    eps = float(jnp.finfo(args[0].dtype).eps)
    k = pm.shape[-1]
    eig = {}
    for name, c in (("post_cov", pc), ("prior_cov", c0), ("red_cov", rc)):
        scale = np.abs(c).max(axis=(-2, -1), keepdims=True)
        if (np.abs(c - np.swapaxes(c, -1, -2)) > 100 * k * eps * scale).any():
            raise ValueError(f"{name} must be symmetric")
        eig[name] = np.linalg.eigh(0.5 * (c + np.swapaxes(c, -1, -2)))
    for name in ("post_cov", "prior_cov"):
        if (eig[name][0] <= 0).any():
            raise ValueError(f"{name} must be positive definite; smallest eigenvalue {eig[name][0].min():.3g}")
    w = eig["red_cov"][0]
    if (w < -100 * k * eps * np.abs(w).max(axis=-1, keepdims=True)).any():
        raise ValueError(f"red_cov must be positive semi-definite; smallest eigenvalue {w.min():.3g}")
    # Reduced precision Σ⁻¹ + S̃⁻¹ - S₀⁻¹ > 0  ⇔  M = (S₀ - S̃) + S̃(Σ + S̃)⁻¹S̃ > 0 (valid for singular S̃).
    m = (c0 - rc) + rc @ np.linalg.solve(pc + rc, rc)
    if (np.linalg.eigvalsh(0.5 * (m + np.swapaxes(m, -1, -2))) <= 0).any():
        raise ValueError(
            "red_cov: the reduced posterior precision inv(post_cov) + inv(red_cov) - inv(prior_cov) "
            "must be positive definite, but it is not"
        )


def delta_f_mvn(post_mean, post_cov, prior_mean, prior_cov, red_mean, red_cov) -> jax.Array:
    r"""ΔF for a full-covariance Gaussian posterior ``N(μ, Σ)``, prior ``N(m₀, S₀)``, reduced prior ``N(m̃, S̃)``.

    .. math::
        ΔF = \ln|S_0| - ½\ln|K| - ½\ln|M| - ½(μ - m̃)^⊤K^{-1}(μ - m̃) + ½(x - m_0)^⊤M^{-1}(x - m_0)

    with ``K = Σ + S̃``, ``x = m̃ + S̃K⁻¹(μ - m̃)`` and ``M = (S₀ - S̃) + S̃K⁻¹S̃``. This is the
    precision-form ΔF of docs/bmr.md rewritten with covariances only: ``S̃`` may be singular (zero
    rows/columns drop coefficients, i.e. spikes at ``m̃``; ``S̃ = 0`` gives the Savage–Dickey ratio
    ``ln q(m̃) - ln p(m̃)``), no precision difference ``Σ⁻¹ - S₀⁻¹`` is ever formed, and it is the exact
    log Bayes factor when ``q`` is the exact posterior. ``M`` is positive definite exactly when the
    reduced posterior exists. Shapes ``(..., k)`` and ``(..., k, k)``; leading axes broadcast.
    """
    args = _prepare_mvn((post_mean, post_cov, prior_mean, prior_cov, red_mean, red_cov))
    return _delta_f_mvn_batched(*args)


def reduced_posterior_mvn(post_mean, post_cov, prior_mean, prior_cov, red_mean, red_cov):
    r"""Mean and covariance of the reduced posterior ``q̃ ∝ q p̃/p`` (arguments as :func:`delta_f_mvn`).

    ``Σ̃ = (Σ⁻¹ + S̃⁻¹ - S₀⁻¹)⁻¹ = C + C M⁻¹ C`` and ``μ̃ = x + C M⁻¹(x - m₀)`` with ``C = S̃(Σ + S̃)⁻¹Σ``
    (the covariance of q·p̃) and ``x``, ``M`` as in :func:`delta_f_mvn`; coefficients with a spike (zero
    rows of ``S̃``) get mean ``m̃`` and zero variance exactly.
    """
    args = _prepare_mvn((post_mean, post_cov, prior_mean, prior_cov, red_mean, red_cov))
    return _reduced_mvn_batched(*args)


# --------------------------------------------------------------------------------------------
# groups
# --------------------------------------------------------------------------------------------


def group_delta_f(df, group_index, n_groups: int) -> jax.Array:
    """ΔF of groups under a mean-field posterior: ``ΔF_g = Σ_{i: group_index[i] = g} ΔF_i``.

    Setting a whole group to its reduced prior multiplies the per-weight ratios, so with a factorised
    posterior the group's ΔF is the sum of its members' (``jax.ops.segment_sum``). ``df`` and
    ``group_index`` (integers in ``[0, n_groups)``) have the same shape; ``n_groups`` is static.
    """
    df = jnp.asarray(df)
    group_index = jnp.asarray(group_index)
    if df.shape != group_index.shape:
        raise ValueError(f"group_index: shape {group_index.shape} must equal df's shape {df.shape}")
    if not jnp.issubdtype(group_index.dtype, jnp.integer):
        raise ValueError(f"group_index must hold integers; got dtype {group_index.dtype}")
    if int(n_groups) != n_groups or n_groups < 1:
        raise ValueError(f"n_groups must be a positive integer; got {n_groups!r}")
    if _concrete(df, group_index):
        _check_finite("df", df)
        gi = np.asarray(group_index)
        if gi.size and (gi.min() < 0 or gi.max() >= n_groups):
            raise ValueError(f"group_index must lie in [0, {n_groups}); got range [{gi.min()}, {gi.max()}]")
    return jax.ops.segment_sum(df.ravel(), group_index.ravel(), num_segments=int(n_groups))


def node_delta_f(df: Params, layer: Layer) -> jax.Array:
    """Per-node ΔF of a layer, ``(n_nodes,)``: the sum over each node's incoming weights and bias.

    ``df`` is a per-parameter ΔF pytree shaped like the network's params (e.g. ``delta_f`` on the
    whole params), read with the node-group convention of :func:`sparsebnn.nets.node_groups` (output
    nodes on the last axis of ``df[layer.name]["w"]`` and ``["b"]``). Exact for a mean-field posterior.
    """
    if layer.name not in df:
        raise ValueError(f"df has no entry for layer {layer.name!r}; keys: {sorted(df)}")
    p = df[layer.name]
    if not isinstance(p, dict) or set(p) != {"w", "b"}:
        raise ValueError(f"df[{layer.name!r}] must be a dict with keys 'w' and 'b'")
    if p["w"].shape[-1] != layer.n_nodes or p["b"].shape != (layer.n_nodes,):
        raise ValueError(
            f"df[{layer.name!r}]: w {p['w'].shape} and b {p['b'].shape} must have "
            f"{layer.n_nodes} nodes on the last axis"
        )
    return node_groups(df, layer).sum(axis=1)


# --------------------------------------------------------------------------------------------
# pruning rules (return keep masks: True = keep the weight, False = move it to the spike)
# --------------------------------------------------------------------------------------------


def _check_df_tree(df) -> None:
    if _concrete(df):
        for x in jax.tree_util.tree_leaves(df):
            _check_finite("df", x)


def threshold_rule(df: PyTree, margin: float = 0.0) -> PyTree:
    """Keep where ``ΔF <= margin`` (prune where the reduced model is better by more than ``margin`` nats)."""
    _check_df_tree(df)
    return jax.tree_util.tree_map(lambda x: jnp.asarray(x) <= margin, df)


@partial(jax.jit, static_argnums=1)
def _zeta(leaves, n_iter: int):
    """ζ pooled over ``leaves`` (arrays of ΔF; +inf entries count as pruned, q = 0), traceable.

    One fused reduction per leaf and iteration, no concatenation: ``σ(ζ − ΔF)`` as
    ``½ + ½ tanh(½(ζ − ΔF))`` (one transcendental) and ``Σ(1 − q) = N − Σq``.
    """
    n = sum(x.size for x in leaves)
    dtype = jnp.result_type(*leaves)

    def step(_, zeta):
        total = sum(jnp.sum(0.5 + 0.5 * jnp.tanh(0.5 * (zeta - x))) for x in leaves)
        return digamma(1 + total) - digamma(1 + n - total)

    return jax.lax.fori_loop(0, n_iter, step, jnp.zeros((), dtype))


def _check_n_iter(n_iter) -> None:
    if int(n_iter) != n_iter or n_iter < 0:
        raise ValueError(f"n_iter must be a non-negative integer; got {n_iter!r}")


def _df_leaves(df) -> list:
    leaves = [jnp.asarray(x) for x in jax.tree_util.tree_leaves(df)]
    if not leaves or sum(x.size for x in leaves) == 0:
        raise ValueError("df has no entries")
    dtype = _float_dtype(*leaves)
    return [x.astype(dtype) for x in leaves]


def beta_bernoulli_zeta(df: PyTree, n_iter: int = 4) -> jax.Array:
    r"""The Beta–Bernoulli keep threshold ζ for one layer (all leaves of ``df`` pooled).

    Iterates, from ``α = β = 1`` (``ζ = ψ(1) - ψ(1) = 0``), ``n_iter`` times:
    ``q = σ(ζ - ΔF)``, ``α = 1 + Σq``, ``β = 1 + Σ(1 - q)``, ``ζ = ψ(α) - ψ(β)``
    (the keep probability's Beta posterior, as in Marković et al.'s code, 4 iterations; docs/bmr.md).
    """
    _check_n_iter(n_iter)
    _check_df_tree(df)
    return _zeta(_df_leaves(df), int(n_iter))


def beta_bernoulli_zeta_spiked(df: PyTree, spike: PyTree, n_iter: int = 4) -> jax.Array:
    r""":func:`beta_bernoulli_zeta` of a layer some of whose coordinates are already at the spike.

    ``spike`` (bool, shaped like ``df``) marks them: they count among the ``N`` coordinates as
    pruned (``q = 0``) whatever ``df`` holds there, i.e. ``Σq`` runs over the free coordinates only
    and ``β = 1 + N - Σq``. With no spike this is :func:`beta_bernoulli_zeta`. Jit-compatible.
    """
    _check_n_iter(n_iter)
    if jax.tree_util.tree_structure(spike) != jax.tree_util.tree_structure(df) or any(
        jnp.shape(s) != jnp.shape(d) for s, d in zip(jax.tree_util.tree_leaves(spike), jax.tree_util.tree_leaves(df))
    ):
        raise ValueError("spike must be a pytree shaped like df")
    leaves = _df_leaves(df)
    spikes = [jnp.asarray(s, bool) for s in jax.tree_util.tree_leaves(spike)]
    if _concrete(df, spike):
        for d, s in zip(leaves, spikes):
            _check_finite("df", np.asarray(d)[~np.asarray(s)])
    return _zeta([jnp.where(s, jnp.inf, d) for d, s in zip(leaves, spikes)], int(n_iter))


def beta_bernoulli_rule(df: PyTree, n_iter: int = 4) -> PyTree:
    """Keep where ``ΔF <= ζ`` with ζ from :func:`beta_bernoulli_zeta` (apply once per layer)."""
    zeta = beta_bernoulli_zeta(df, n_iter)
    return jax.tree_util.tree_map(lambda x: jnp.asarray(x) <= zeta, df)
