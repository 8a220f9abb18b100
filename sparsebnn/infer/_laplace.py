"""Laplace approximation with marginal-likelihood learning of the prior precision (Immer et al. 2021; SpaM;
``docs/laplace.md``).

    post = laplace(net, priors.Gaussian(learn="layer"), data, curvature="diag")
    post.predict(x)                      # (n_samples, N, out): the linearised (GLM) predictive
    post.gaussian_factors()              # MAP, diag (H + P_h)⁻¹, 1 / P_h: for BMR and OPD

MAP training under a zero-mean Gaussian prior ``θ ~ N(0, P_h⁻¹)`` with Adam; every ``marglik_every``
epochs (after ``marglik_burnin``) the curvature ``H`` of the log-likelihood is recomputed on the
training set at the current θ and a few Adam steps on the log prior precision ``h`` maximise

    ln p(D | h) ≈ ln p(D | θ*) + ln p(θ* | h) + (P/2) ln 2π − ½ ln |H + P_h|
               = ln p(D | θ*) + ½ ln |P_h| − ½ θ*ᵀ P_h θ* − ½ ln |H + P_h|.

``H`` is the GGN (default) or the empirical Fisher, as the exact diagonal or KFAC (see
:func:`sparsebnn.infer.curvature`). The prior is a :class:`sparsebnn.priors.Gaussian`: its ``learn``
field names the learned structure (None: the precision ``1/σ0²`` stays fixed). Structures
(:data:`sparsebnn.priors.STRUCTURES`), for a layer with
``W̃ = [w.reshape(-1, n); b]``:

* ``scalar``: one precision for every parameter; ``layer``: one per layer;
* ``node``: one per output node (unit / filter), shared by its incoming group ``(w[..., j], b[j])``;
* ``unit``: outer product of input- and output-unit factors, ``P[..., i, j] = u_i v_j`` for
  ``w`` (i indexes ``w``'s second-to-last axis: dense inputs, conv input channels) and
  ``P[j] = u_bias v_j`` for ``b``;
* ``parameter``: one per parameter.

Parameters outside the network's layers get one precision per array (``layer``/``node``/``unit``)
or per entry (``parameter``); they get the exact diagonal curvature under KFAC too.

``ln |H + P_h|``: exact for the diagonal curvature. For KFAC, ``A⊗G + D`` with ``D`` diagonal is
evaluated in the Kronecker eigenbasis ``Q = Q_A⊗Q_G`` with ``D`` replaced by the diagonal of
``QᵀDQ`` — exact for ``scalar`` and ``layer`` priors, an upper bound (Hadamard) on the log-determinant
otherwise. Sampling and marginal variances use the same approximate posterior.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from functools import partial
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from tqdm.auto import tqdm

from sparsebnn.data import as_training, epoch_indices
from sparsebnn.likelihood import Likelihood
from sparsebnn.model import BNN
from sparsebnn.nets import Network, Params
from sparsebnn.posterior import DRAWS, GaussianFactors, Posterior, check_draws, check_inputs
from sparsebnn import masks as masks_
from sparsebnn.priors import STRUCTURES, Gaussian, Prior

from ._curvature import FISHERS, KINDS, Diag, Kron, _curvature
from ._inputs import model_and_data


# ----------------------------------------------------------------------------- prior precision


@partial(jax.tree_util.register_dataclass, data_fields=["log_prec"], meta_fields=["structure", "layers"])
@dataclass(frozen=True)
class PriorPrecision:
    """Log prior precisions ``log_prec`` of a given ``structure``; ``layers`` are the layer keys of params."""

    log_prec: Any
    structure: str
    layers: tuple[str, ...]

    def precision(self, params: Params) -> Params:
        """The prior precision of every parameter, shaped like ``params``."""
        s, lp = self.structure, self.log_prec
        if s == "scalar":
            return jax.tree.map(lambda t: jnp.full(t.shape, jnp.exp(lp), t.dtype), params)
        if s == "parameter":
            return jax.tree.map(lambda t, l: jnp.exp(l).astype(t.dtype), params, lp)
        out = {}
        for key, sub in params.items():
            if key not in self.layers:
                out[key] = jax.tree.map(lambda t, l: jnp.full(t.shape, jnp.exp(l), t.dtype), sub, lp[key])
                continue
            w, b = sub["w"], sub["b"]
            if s == "layer":
                lw, lb = jnp.full(w.shape, lp[key]), jnp.full(b.shape, lp[key])
            elif s == "node":
                lw, lb = jnp.broadcast_to(lp[key], w.shape), lp[key]
            else:  # unit
                u, v = lp[key]["in"], lp[key]["out"]
                lw, lb = jnp.broadcast_to(u[:-1, None] + v[None, :], w.shape), u[-1] + v
            out[key] = {"w": jnp.exp(lw).astype(w.dtype), "b": jnp.exp(lb).astype(b.dtype)}
        return out


def prior_precision(net: Network, params: Params, structure: str = "layer", init: float = 1.0) -> PriorPrecision:
    """A :class:`PriorPrecision` of the given structure with every precision equal to ``init``."""
    if structure not in STRUCTURES:
        raise ValueError(f"prior structure must be one of {STRUCTURES}; got {structure!r}")
    if not (isinstance(init, (int, float)) and math.isfinite(init) and init > 0):
        raise ValueError(f"prior precision init must be a finite number > 0; got {init!r}")
    layers = tuple(l.name for l in net.layers)
    for name in layers:
        if name not in params or set(params[name]) != {"w", "b"}:
            raise ValueError(f"params[{name!r}] must be a dict with exactly 'w' and 'b' (the nets convention)")
    c = float(np.log(init))
    dtype = jax.tree_util.tree_leaves(params)[0].dtype
    full = lambda shape: jnp.full(shape, c, dtype)  # noqa: E731
    if structure == "scalar":
        lp = full(())
    elif structure == "parameter":
        lp = jax.tree.map(lambda t: full(t.shape), params)
    else:
        lp = {}
        for key, sub in params.items():
            if key not in layers:
                lp[key] = jax.tree.map(lambda t: full(()), sub)
            elif structure == "layer":
                lp[key] = full(())
            elif structure == "node":
                lp[key] = full(sub["b"].shape)
            else:
                lp[key] = {"in": full((sub["w"].shape[-2] + 1,)), "out": jnp.zeros(sub["b"].shape, dtype)}
    return PriorPrecision(lp, structure, layers)


# ----------------------------------------------------------------------------- the posterior


@partial(
    jax.tree_util.register_dataclass,
    data_fields=["params", "precision", "curvature", "log_lik", "history"],
    meta_fields=["net", "prior", "likelihood", "n_data"],
)
@dataclass(frozen=True)
class LaplacePosterior(Posterior):
    """``N(params, (H + P_h)⁻¹)``: MAP ``params``, learned prior ``precision``, ``curvature`` H, ``ln p(D | params)``.

    ``history``: per marginal-likelihood update ``epoch``, ``loss``, ``log_marglik``; ``net``, ``prior`` (the
    :class:`~sparsebnn.priors.Gaussian` it started from), ``likelihood`` and ``n_data`` describe the fit.
    """

    params: Params
    precision: PriorPrecision
    curvature: Diag | Kron
    log_lik: jax.Array
    history: dict
    net: Network
    prior: Prior
    likelihood: Likelihood
    n_data: int

    def sample_params(self, key: jax.Array | None = None, n: int = DRAWS, masks=None) -> Params:
        """``n`` draws ``θ* + δ``, ``δ ~ N(0, (H + P_h)⁻¹)`` (leading axis ``n``), pruned by ``masks``."""
        key = jax.random.key(0) if key is None else key
        draws = _sample(key, self, check_draws(n, "n"))
        return draws if masks is None else jax.vmap(lambda p: masks_.apply(p, masks))(draws)

    def predict(self, x, key: jax.Array | None = None, n_samples: int = DRAWS, masks=None,
                linearized: bool = True) -> jax.Array:
        """Network outputs ``(n_samples, N, out_dim)``: ``linearized`` (default) the GLM predictive
        ``f(x; θ*) + J(x) δ`` (Immer et al. 2021), else the network at sampled parameters. ``masks`` zero
        the pruned coordinates of both ``θ*`` and ``δ``."""
        x = check_inputs(self.net, x)
        key = jax.random.key(0) if key is None else key
        m = None if masks is None else masks_.to_weights(self.net, masks, like=self.params)
        return _predictive_samples(key, self, x, check_draws(n_samples), bool(linearized), m)

    def gaussian_factors(self) -> GaussianFactors:
        """Every layer's MAP as the mean, the diagonal of ``(H + P_h)⁻¹`` as the variance, ``1/P_h`` as the prior variance."""
        names = [layer.name for layer in self.net.layers]
        pick = lambda tree: {n: {"w": tree[n]["w"], "b": tree[n]["b"]} for n in names}  # noqa: E731
        prec = self.precision.precision(self.params)
        return GaussianFactors(pick(self.params), pick(marginal_variance(self)),
                               jax.tree_util.tree_map(lambda p: 1.0 / p, pick(prec)))


def _to_mat(w, b):
    return jnp.concatenate([w.reshape(-1, b.shape[0]), b[None, :]], axis=0)


def _from_mat(m, w_shape):
    return {"w": m[:-1].reshape(w_shape), "b": m[-1]}


def _eig(curv: Kron) -> dict:
    """Per layer ``(λ_A, Q_A, λ_G, Q_G)`` of the Kronecker factors (eigenvalues clipped at 0)."""
    out = {}
    for name, (a, g) in curv.factors.items():
        la, qa = jnp.linalg.eigh(a)
        lg, qg = jnp.linalg.eigh(g)
        out[name] = (jnp.maximum(la, 0.0), qa, jnp.maximum(lg, 0.0), qg)
    return out


def _eigen_precision(eig, d):
    """Posterior precision eigenvalues λ_A,i λ_G,j + (QᵀDQ)_(ij),(ij) as an ``(fan_in + 1, n)`` grid."""
    la, qa, lg, qg = eig
    return la[:, None] * lg[None, :] + (qa**2).T @ d @ (qg**2)


def _logdet_posterior(curv, eig, prec: Params) -> jax.Array:
    """``ln |H + P|`` (exact for Diag; eigenbasis approximation for KFAC layers)."""
    if isinstance(curv, Diag):
        return sum(jnp.sum(jnp.log(h + p)) for h, p in zip(jax.tree.leaves(curv.h), jax.tree.leaves(prec)))
    total = 0.0
    for name, e in eig.items():
        d = _to_mat(prec[name]["w"], prec[name]["b"])
        total = total + jnp.sum(jnp.log(_eigen_precision(e, d)))
    for key, sub in curv.diag.items():
        total = total + sum(jnp.sum(jnp.log(h + p)) for h, p in zip(jax.tree.leaves(sub), jax.tree.leaves(prec[key])))
    return total


def _log_marglik(params, prior: PriorPrecision, curv, eig, log_lik) -> jax.Array:
    prec = prior.precision(params)
    logdet_prior = sum(jnp.sum(jnp.log(p)) for p in jax.tree.leaves(prec))
    quad = sum(jnp.sum(p * t**2) for p, t in zip(jax.tree.leaves(prec), jax.tree.leaves(params)))
    return log_lik + 0.5 * logdet_prior - 0.5 * quad - 0.5 * _logdet_posterior(curv, eig, prec)


def log_marglik(post: LaplacePosterior, prior: PriorPrecision | None = None) -> jax.Array:
    """The Laplace log marginal likelihood ``ln p(D | h)`` (of ``prior``, default the posterior's own)."""
    eig = _eig(post.curvature) if isinstance(post.curvature, Kron) else None
    return _log_marglik(post.params, post.precision if prior is None else prior, post.curvature, eig, post.log_lik)


def posterior_precision(post: LaplacePosterior) -> Params:
    """The diagonal of the posterior precision ``H + P_h`` (KFAC: ``diag(A) diag(G)ᵀ + D``), like params."""
    prec = post.precision.precision(post.params)
    curv = post.curvature
    if isinstance(curv, Diag):
        return jax.tree.map(jnp.add, curv.h, prec)
    out = {k: jax.tree.map(jnp.add, curv.diag[k], prec[k]) for k in curv.diag}
    for name, (a, g) in curv.factors.items():
        d = _to_mat(prec[name]["w"], prec[name]["b"])
        out[name] = _from_mat(jnp.diag(a)[:, None] * jnp.diag(g)[None, :] + d, post.params[name]["w"].shape)
    return {k: out[k] for k in post.params}


def marginal_variance(post: LaplacePosterior) -> Params:
    """The diagonal of the posterior covariance ``(H + P_h)⁻¹`` (KFAC: of the eigenbasis approximation)."""
    prec = post.precision.precision(post.params)
    curv = post.curvature
    if isinstance(curv, Diag):
        return jax.tree.map(lambda h, p: 1.0 / (h + p), curv.h, prec)
    out = {k: jax.tree.map(lambda h, p: 1.0 / (h + p), curv.diag[k], prec[k]) for k in curv.diag}
    for name, e in _eig(curv).items():
        _, qa, _, qg = e
        lam = _eigen_precision(e, _to_mat(prec[name]["w"], prec[name]["b"]))
        out[name] = _from_mat((qa**2) @ (1.0 / lam) @ (qg**2).T, post.params[name]["w"].shape)
    return {k: out[k] for k in post.params}


def _noise_to_deviation(post: LaplacePosterior, eig, z: Params) -> Params:
    """Map standard normal noise ``z`` (shaped like params) to a draw from ``N(0, (H + P_h)⁻¹)``."""
    prec = post.precision.precision(post.params)
    curv = post.curvature
    if isinstance(curv, Diag):
        return jax.tree.map(lambda zz, h, p: zz / jnp.sqrt(h + p), z, curv.h, prec)
    out = {k: jax.tree.map(lambda zz, h, p: zz / jnp.sqrt(h + p), z[k], curv.diag[k], prec[k]) for k in curv.diag}
    for name, e in eig.items():
        _, qa, _, qg = e
        lam = _eigen_precision(e, _to_mat(prec[name]["w"], prec[name]["b"]))
        y = _to_mat(z[name]["w"], z[name]["b"]) / jnp.sqrt(lam)
        out[name] = _from_mat(qa @ y @ qg.T, post.params[name]["w"].shape)
    return {k: out[k] for k in post.params}


def _normal_like(key, params):
    leaves, tree = jax.tree.flatten(params)
    keys = jax.random.split(key, len(leaves))
    return jax.tree.unflatten(tree, [jax.random.normal(k, t.shape, t.dtype) for k, t in zip(keys, leaves)])


def _sample(key: jax.Array, post: LaplacePosterior, n_samples: int) -> Params:
    eig = _eig(post.curvature) if isinstance(post.curvature, Kron) else None

    def one(k):
        dev = _noise_to_deviation(post, eig, _normal_like(k, post.params))
        return jax.tree.map(jnp.add, post.params, dev)

    return jax.lax.map(one, jax.random.split(key, n_samples))


@partial(jax.jit, static_argnames=("n_samples", "linearized"))
def _predictive_samples(key, post, x, n_samples, linearized, mask):
    eig = _eig(post.curvature) if isinstance(post.curvature, Kron) else None
    keep = (lambda t: t) if mask is None else (lambda t: jax.tree.map(lambda a, m: a * m.astype(a.dtype), t, mask))
    theta = keep(post.params)

    def one(k):
        dev = keep(_noise_to_deviation(post, eig, _normal_like(k, post.params)))
        if linearized:
            f0, jd = jax.jvp(lambda p: post.net.apply(p, x), (theta,), (dev,))
            return f0 + jd
        return post.net.apply(jax.tree.map(jnp.add, theta, dev), x)

    return jax.lax.map(one, jax.random.split(key, n_samples))


# ----------------------------------------------------------------------------- MAP training


def neg_log_joint(net, lik, n_data, params, prec, xb, yb):
    """``(1/N)[−(N/B) Σ_b ln p(y_b | θ) + ½ Σ P θ²]``: the negative log joint per datum."""
    nll = -jnp.mean(lik.log_prob(net.apply(params, xb), yb))
    penalty = sum(jnp.sum(p * t**2) for p, t in zip(jax.tree.leaves(prec), jax.tree.leaves(params)))
    return nll + 0.5 * penalty / n_data


@partial(jax.jit, static_argnames=("net", "lik", "lr", "batch_size", "n_epochs"))
def _run_epochs(net, lik, lr, batch_size, n_epochs, params, opt_state, prec, mask, x, y, key):
    """``n_epochs`` of Adam on the negative log joint: ``(params, opt_state, mean loss per epoch)``.

    Each epoch is a shuffled pass of ``n // batch_size`` minibatches gathered on the device
    (``lax.scan`` over epochs and steps). ``mask`` (``None`` or a 0/1 pytree) freezes pruned
    parameters at zero: their gradients are masked and the update is re-masked. ``prec``: a
    :class:`PriorPrecision` or the precisions shaped like params.
    """
    optimizer = optax.adam(lr)
    n = x.shape[0]
    if isinstance(prec, PriorPrecision):
        prec = prec.precision(params)
    grad_fn = jax.value_and_grad(partial(neg_log_joint, net, lik, n))

    def step(carry, idx):
        params, opt_state = carry
        loss, g = grad_fn(params, prec, x[idx], y[idx])
        if mask is not None:
            g = jax.tree.map(jnp.multiply, g, mask)
        updates, opt_state = optimizer.update(g, opt_state, params)
        params = optax.apply_updates(params, updates)
        if mask is not None:
            params = jax.tree.map(jnp.multiply, params, mask)
        return (params, opt_state), loss

    def epoch(carry, k):
        carry, losses = jax.lax.scan(step, carry, epoch_indices(k, n, batch_size))
        return carry, losses.mean()

    (params, opt_state), losses = jax.lax.scan(epoch, (params, opt_state), jax.random.split(key, n_epochs))
    return params, opt_state, losses


def _check_training(epochs, batch_size, lr, n):
    if int(epochs) < 1:
        raise ValueError(f"epochs must be >= 1; got {epochs}")
    if not 1 <= int(batch_size) <= n:
        raise ValueError(f"batch_size must lie in [1, n={n}]; got {batch_size}")
    if not (math.isfinite(lr) and lr > 0):
        raise ValueError(f"lr must be a finite number > 0; got {lr}")


def map_train(
    net: Network,
    params: Params,
    data,
    likelihood: Likelihood | str | None = None,
    *,
    prior_prec: float | Params = 1.0,
    epochs: int = 10,
    batch_size: int = 128,
    lr: float = 1e-3,
    seed: int = 0,
    mask: Params | None = None,
) -> tuple[Params, jax.Array]:
    """MAP training with Adam under a fixed Gaussian prior precision (scalar or shaped like params).

    ``data`` and ``likelihood`` as in :func:`laplace`. With a 0/1 ``mask`` (shaped like params) masked
    entries stay exactly zero (masked Adam, used for fine-tuning after pruning). Returns the
    parameters and the mean loss of every epoch.
    """
    tr = as_training(data, net, likelihood)
    x, y = jnp.asarray(tr.x), jnp.asarray(tr.y)
    _check_training(epochs, batch_size, lr, x.shape[0])
    if isinstance(prior_prec, (int, float)):
        if not (math.isfinite(prior_prec) and prior_prec >= 0):
            raise ValueError(f"prior_prec must be finite and >= 0; got {prior_prec}")
        prior_prec = jax.tree.map(lambda t: jnp.full(t.shape, prior_prec, t.dtype), params)
    elif jax.tree.structure(prior_prec) != jax.tree.structure(params):
        raise ValueError("prior_prec must be a number or a pytree shaped like params")
    if mask is not None:
        if jax.tree.structure(mask) != jax.tree.structure(params):
            raise ValueError("mask must be a pytree shaped like params")
        mask = jax.tree.map(lambda m, t: jnp.asarray(m, t.dtype), mask, params)
        params = jax.tree.map(jnp.multiply, params, mask)
    lr, batch_size, epochs = float(lr), int(batch_size), int(epochs)
    opt_state = optax.adam(lr).init(params)
    params, _, losses = _run_epochs(net, tr.likelihood, lr, batch_size, epochs, params, opt_state, prior_prec, mask,
                                    x, y, jax.random.key(seed))
    return params, losses


# ----------------------------------------------------------------------------- marginal-likelihood learning


@partial(jax.jit, static_argnames=("lr", "n_steps"))
def _fit_prior(lr, n_steps, params, prior, curv, log_lik, opt_state, n_data):
    """``n_steps`` Adam steps on ``−ln p(D | h) / N`` over ``prior.log_prec``, keeping the best iterate seen:
    ``(prior, opt_state, ln p(D | h))`` of the iterate with the highest ``ln p(D | h)`` (the last on ties)."""
    optimizer = optax.adam(lr)
    eig = _eig(curv) if isinstance(curv, Kron) else None

    def objective(lp):
        p = PriorPrecision(lp, prior.structure, prior.layers)
        return -_log_marglik(params, p, curv, eig, log_lik) / n_data

    def step(carry, _):
        lp, opt_state, best, best_value = carry
        value, g = jax.value_and_grad(objective)(lp)
        better = value <= best_value
        best = jax.tree.map(lambda a, b: jnp.where(better, a, b), lp, best)
        best_value = jnp.where(better, value, best_value)
        updates, opt_state = optimizer.update(g, opt_state, lp)
        return (optax.apply_updates(lp, updates), opt_state, best, best_value), None

    init = (prior.log_prec, opt_state, prior.log_prec, jnp.asarray(jnp.inf, jnp.result_type(log_lik, float)))
    (lp, opt_state, best, best_value), _ = jax.lax.scan(step, init, None, length=n_steps)
    last = objective(lp)
    keep_last = last <= best_value
    lp = jax.tree.map(lambda a, b: jnp.where(keep_last, a, b), lp, best)
    new = PriorPrecision(lp, prior.structure, prior.layers)
    return new, opt_state, -jnp.minimum(last, best_value) * n_data


def optimize_prior(post: LaplacePosterior, steps: int = 100, lr: float = 0.1) -> LaplacePosterior:
    """Post-hoc: ``steps`` Adam steps on the log prior precision maximising :func:`log_marglik`; the best iterate."""
    if int(steps) < 1 or not (math.isfinite(lr) and lr > 0):
        raise ValueError(f"need steps >= 1 and lr > 0; got {steps}, {lr}")
    opt_state = optax.adam(float(lr)).init(post.precision.log_prec)
    prec, _, _ = _fit_prior(float(lr), int(steps), post.params, post.precision, post.curvature, post.log_lik, opt_state,
                            post.n_data)
    return dataclasses.replace(post, precision=prec)


def laplace(
    net: Network | BNN,
    prior: Prior | None = None,
    data=None,
    *,
    likelihood: Likelihood | str | None = None,
    curvature: str = "kfac",
    fisher: str = "ggn",
    epochs: int = 100,
    batch_size: int = 128,
    lr: float = 1e-3,
    marglik_every: int = 5,
    marglik_burnin: int = 10,
    hyper_steps: int = 50,
    hyper_lr: float = 0.1,
    curvature_batch_size: int = 256,
    seed: int = 0,
    params: Params | None = None,
    progress: bool = True,
) -> LaplacePosterior:
    """MAP training with online marginal-likelihood learning of the prior precision, then the Laplace posterior.

    Args:
      net: the :class:`~sparsebnn.nets.Network`, or a :class:`~sparsebnn.model.BNN` (then ``laplace(model, data)``).
      prior: a :class:`~sparsebnn.priors.Gaussian` without scale hyperprior or spikes; ``learn`` names the
        structure of the learned precision (module docstring), None keeps ``1/σ0²`` fixed.
      data: a :class:`~sparsebnn.data.Dataset` (its train split), a ``Split`` or an ``(x, y)`` pair.
      likelihood: a :class:`~sparsebnn.likelihood.Likelihood` with a known noise, or ``"categorical"``.
      curvature: ``"kfac"`` or ``"diag"`` (exact diagonal); ``fisher``: ``"ggn"`` or ``"ef"``.
      epochs, batch_size, lr: MAP training with Adam.
      marglik_every, marglik_burnin: every ``marglik_every`` epochs from ``marglik_burnin`` on, the curvature is
        recomputed over the training set and ``hyper_steps`` Adam steps (rate ``hyper_lr``) update the log
        prior precision (keeping the best iterate).
      curvature_batch_size: examples per curvature pass.
      seed: the run's seed; ``params``: the starting parameters (default ``net.init``).
      progress: show a progress bar.

    Returns the :class:`LaplacePosterior` of the final MAP, precision and curvature, with ``history``
    (``epoch``, ``loss``, and the ``log_marglik`` after each prior update).
    """
    model, tr = model_and_data(net, prior, data, likelihood)
    net, prior, lik = model.net, model.prior, model.likelihood
    if not isinstance(prior, Gaussian) or prior.scale_prior is not None or prior.variance is not None:
        raise ValueError(f"laplace needs a priors.Gaussian without scale_prior or variance (learn= names the learned "
                         f"precision structure); got {prior!r}")
    if lik.kind == "gaussian" and lik.learned:
        raise ValueError("laplace needs a known noise sd: Likelihood('gaussian', noise=σ) with σ a number")
    if curvature not in KINDS:
        raise ValueError(f"curvature must be one of {KINDS}; got {curvature!r}")
    if fisher not in FISHERS:
        raise ValueError(f"fisher must be one of {FISHERS}; got {fisher!r}")
    x, y = jnp.asarray(tr.x), jnp.asarray(tr.y)
    n = x.shape[0]
    _check_training(epochs, batch_size, lr, n)
    for name, v in (("marglik_every", marglik_every), ("hyper_steps", hyper_steps), ("curvature_batch_size", curvature_batch_size)):
        if int(v) < 1:
            raise ValueError(f"{name} must be >= 1; got {v}")
    if int(marglik_burnin) < 0 or not (math.isfinite(hyper_lr) and hyper_lr > 0):
        raise ValueError(f"need marglik_burnin >= 0 and hyper_lr > 0; got {marglik_burnin}, {hyper_lr}")
    key_init, key_train = jax.random.split(jax.random.key(seed))
    if params is None:
        params = net.init(key_init)
    params = jax.tree.map(lambda t: jnp.asarray(t, x.dtype), params)
    prec = prior_precision(net, params, prior.learn or "scalar", 1.0 / prior.sigma0**2)

    lr, hyper_lr, batch_size = float(lr), float(hyper_lr), int(batch_size)
    opt_state, hyper_state = optax.adam(lr).init(params), optax.adam(hyper_lr).init(prec.log_prec)
    hyper = partial(_fit_prior, hyper_lr, int(hyper_steps))
    curv_fn = partial(_curvature, net, lik, curvature, fisher, int(curvature_batch_size))
    history = {"epoch": [], "loss": [], "log_marglik": []}
    curv = None
    done = 0
    with tqdm(total=int(epochs), desc=f"laplace {net.name}", disable=not progress) as bar:
        while done < epochs:
            k = min(int(marglik_every), int(epochs) - done)
            key_train, sub = jax.random.split(key_train)
            params, opt_state, losses = _run_epochs(net, lik, lr, batch_size, k, params, opt_state, prec, None, x, y, sub)
            done += k
            curv = None
            lml = np.nan
            if done >= marglik_burnin and prior.learn is not None:
                curv, log_lik = curv_fn(params, x, y)
                prec, hyper_state, lml = hyper(params, prec, curv, log_lik, hyper_state, n)
                lml = float(lml)
            history["epoch"].append(done)
            history["loss"].append(float(losses[-1]))
            history["log_marglik"].append(lml)
            bar.update(k)
            bar.set_postfix(loss=f"{float(losses[-1]):.4f}", log_marglik=f"{lml:.1f}")
    if curv is None:
        curv, log_lik = curv_fn(params, x, y)
    history = {k_: np.asarray(v) for k_, v in history.items()}
    return LaplacePosterior(params, prec, curv, log_lik, history, net, prior, lik, n)


__all__ = ["LaplacePosterior", "PriorPrecision", "laplace", "log_marglik", "map_train", "marginal_variance",
           "optimize_prior", "posterior_precision", "prior_precision"]
