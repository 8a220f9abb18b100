"""Curvature of the log-likelihood at a point: the generalised Gauss-Newton (GGN) or the empirical Fisher.

Sums over the data (never averages): with f_n = f(x_n; θ), J_n = ∂f_n/∂θ and
Λ_n = ∇²_f [−ln p(y_n | f_n)] = L_n L_nᵀ,

* GGN:               H = Σ_n J_nᵀ Λ_n J_n = Σ_n Σ_k (J_nᵀ L_n e_k)(J_nᵀ L_n e_k)ᵀ
* empirical Fisher:  H = Σ_n g_n g_nᵀ,  g_n = J_nᵀ ∇_f[−ln p(y_n | f_n)]

Both are "outer products of backpropagated output vectors" u_nk (the columns of L_n, or the single
loss gradient), which is how both forms below are computed:

* :class:`Diag` — the **exact** diagonal, ``Σ_{n,k} (J_nᵀ u_nk)²``, with ``L_n`` in closed form
  (softmax: ``L = diag(√p) − p √pᵀ``; Gaussian: ``L = I/σ``).
* :class:`Kron` — KFAC: per layer ``H_l ≈ A_l ⊗ G_l`` over ``W̃ = [w.reshape(-1, n); b]``
  (row-major ``vec``), with ``A = (1/N) Σ_{n,t} ã ãᵀ`` (ã = [a; 1]; for convolutions the patches,
  Grosse & Martens 2016) and ``G = (1/T) Σ_{n,t,k} g gᵀ``, g the backpropagated u_nk at the
  layer's op output and T the positions (pixels, tokens) per example ("KFAC-expand"). For one
  example of a dense layer this is the exact GGN block.

Which parameters get what: layers of kind ``dense``/``conv`` whose op the layer taps find
(:mod:`.taps`; every layer of the suite's MLP, LeNet, Mixer, ResNet and the ViT's dense/conv
layers) get Kronecker factors, and their exact diagonal from the same taps as BackPACK's
DiagGGN, ``Σ_{n,k} (Σ_t ã_nt g_ntkᵀ)²`` (``(ã²)ᵀ Σ_k g_k²`` without positions: K backward
passes and one matmul). Every other parameter — layers of other kinds (the ViT's attention
heads), dense/conv layers the taps cannot handle (a warning says why), parameters outside layers
(norms, embeddings, positions) — gets the exact diagonal from per-example vector-Jacobian
products (``vmap`` over examples and the K columns), under both ``kind``s.
"""

from __future__ import annotations

import warnings
from functools import partial
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from sparsebnn.data import as_training
from sparsebnn.likelihood import Likelihood
from sparsebnn.nets import Network, Params

from . import _taps as taps

FISHERS = ("ggn", "ef")
KINDS = ("diag", "kfac")
_BUDGET = 2**24  # scalars per chunk of per-example gradients


class Diag(NamedTuple):
    """``H ≈ diag(h)``, ``h`` shaped like ``params``: the exact diagonal of the GGN / empirical Fisher."""

    h: Params


class Kron(NamedTuple):
    """Per tapped layer ``H_l ≈ A_l ⊗ G_l`` over ``[w.reshape(-1, n); b]``; ``diag`` (exact) for every other parameter."""

    factors: dict[str, tuple[jax.Array, jax.Array]]
    diag: Params


def _output_vectors(lik: Likelihood, f: jax.Array, y: jax.Array, fisher: str) -> jax.Array:
    """The u_nk as ``(B, K, C)``: the columns of L_n (GGN) or the loss gradient (K = 1, EF)."""
    if fisher == "ggn":
        return jnp.swapaxes(lik.hessian_sqrt(f), 1, 2)
    return lik.grad(f, y)[:, None, :]


def chunked_sum(fn, xs, size: int):
    """``Σ_chunks fn(chunk)`` over the leading axis of the pytree ``xs`` in chunks of ``size`` (scan + remainder)."""
    n = jax.tree_util.tree_leaves(xs)[0].shape[0]
    k, r = divmod(n, size)
    total = None
    if k:
        head = jax.tree.map(lambda a: a[: k * size].reshape(k, size, *a.shape[1:]), xs)
        first = jax.tree.map(lambda a: a[0], head)
        zeros = jax.tree.map(jnp.zeros_like, jax.eval_shape(fn, first))
        total = jax.lax.scan(lambda acc, c: (jax.tree.map(jnp.add, acc, fn(c)), None), zeros, head)[0]
    if r:
        rest = fn(jax.tree.map(lambda a: a[k * size :], xs))
        total = rest if total is None else jax.tree.map(jnp.add, total, rest)
    return total


def _per_example_diag(net: Network, lik: Likelihood, fisher: str, keys: tuple, params: Params, x, y):
    """Exact diagonal over ``params[k] for k in keys`` from per-example VJPs of the u_nk (any network), plus Σ ln p."""
    sub = {k: params[k] for k in keys}

    def one(xn, yn):
        def f(s):
            return net.apply({**params, **s}, xn[None])

        out, vjp = jax.vjp(f, sub)
        u = _output_vectors(lik, out, yn[None], fisher)[0]  # (K, C)
        g = jax.vmap(lambda uk: vjp(uk[None])[0])(u)
        return jax.tree.map(lambda t: jnp.sum(t**2, axis=0), g), lik.log_prob(out, yn[None])[0]

    n_sub = max(1, sum(int(np.prod(a.shape)) for a in jax.tree_util.tree_leaves(sub)))
    k_out = net.out_dim if fisher == "ggn" else 1
    chunk = int(max(1, min(x.shape[0], _BUDGET // (k_out * n_sub))))
    return chunked_sum(lambda c: jax.tree.map(lambda t: t.sum(0), jax.vmap(one)(*c)), (x, y), chunk)


TAPPED_KINDS = ("dense", "conv")


def tappable(net: Network, params: Params, x, warn: bool = True) -> dict[str, taps.Tap]:
    """The :class:`taps.Tap` of each dense/conv layer the taps handle for a batch like ``x`` (static);
    warns about the dense/conv layers they cannot handle."""
    names = [l.name for l in net.layers if l.kind in TAPPED_KINDS]
    found: dict = {}

    def probe(p, xx):
        out, acts, tp, bad = taps.tapped_apply(net.apply, p, xx, names)
        found.update(taps=tp, bad=dict(bad), shapes={k: a.shape for k, a in acts.items()})
        return out

    jax.eval_shape(probe, params, x)
    good, bad = {}, found["bad"]
    for name, tap in found["taps"].items():
        try:
            taps.rows_per_example(tap, found["shapes"][name], x.shape[0])
            good[name] = tap
        except taps.Untappable as e:
            bad[name] = str(e)
    for name, why in bad.items() if warn else ():
        warnings.warn(f"layer {name!r}: {why}; it gets the exact diagonal instead of Kronecker factors", stacklevel=2)
    return good


def _tap_pass(net: Network, lik: Likelihood, fisher: str, params: Params, x, y, names: tuple):
    """One forward pass with probes on the layers ``names`` and K backward passes of the u_nk.

    Returns, per layer, the homogeneous input rows ``[a, 1]``, the output-gradient rows
    ``(K, rows, n)`` and the rows per example; and Σ ln p.
    """
    tp = tappable(net, params, x, warn=False)
    probes = {n: jnp.zeros(tp[n].out_shape, x.dtype) for n in names}

    def f(pr):
        out, acts, _, _ = taps.tapped_apply(net.apply, params, x, list(names), pr)
        return out, acts

    out, vjp, acts = jax.vjp(f, probes, has_aux=True)
    u = _output_vectors(lik, out, y, fisher)  # (B, K, C)
    g = jax.vmap(lambda uk: vjp(uk)[0], in_axes=1)(u)  # per layer (K, *out_shape)
    rows = {}
    for n in names:
        a = taps.input_rows(tp[n], acts[n])
        a = jnp.concatenate([a, jnp.ones((a.shape[0], 1), a.dtype)], axis=1)
        t = taps.rows_per_example(tp[n], acts[n].shape, x.shape[0])
        rows[n] = (a, jax.vmap(partial(taps.output_rows, tp[n]))(g[n]), t)
    return rows, jnp.sum(lik.log_prob(out, y))


def _kfac_batch(net: Network, lik: Likelihood, fisher: str, params: Params, tp: tuple, x, y):
    """Sums ``(Σ ã ãᵀ, (1/T) Σ g gᵀ)`` per tapped layer on a batch, plus Σ ln p."""
    rows, ll = _tap_pass(net, lik, fisher, params, x, y, tp)
    return {n: (a.T @ a, jnp.einsum("kri,krj->ij", g, g) / t) for n, (a, g, t) in rows.items()}, ll


def _diag_batch(net: Network, lik: Likelihood, fisher: str, params: Params, tp: tuple, x, y):
    """Exact diagonal on a batch: tapped layers as BackPACK, Σ_{n,k} (Σ_t ã_nt g_ntkᵀ)²; the rest per example."""
    rows, ll = _tap_pass(net, lik, fisher, params, x, y, tp)
    out = {}
    for n, (a, g, t) in rows.items():
        if t == 1:
            d = (a**2).T @ jnp.sum(g**2, axis=0)
        else:
            a3 = a.reshape(x.shape[0], t, -1)

            def per_k(acc, gk):
                return acc + jnp.sum(jnp.einsum("bti,btj->bij", a3, gk.reshape(x.shape[0], t, -1)) ** 2, axis=0), None

            d = jax.lax.scan(per_k, jnp.zeros((a.shape[1], g.shape[-1]), a.dtype), g)[0]
        out[n] = {"w": d[:-1].reshape(params[n]["w"].shape), "b": d[-1]}
    rest = tuple(k for k in params if k not in tp)
    if rest:
        out.update(_per_example_diag(net, lik, fisher, rest, params, x, y)[0])
    return {k: out[k] for k in params}, ll


@partial(jax.jit, static_argnames=("net", "lik", "kind", "fisher", "batch_size"))
def _curvature(net, lik, kind, fisher, batch_size, params, x, y):
    tp = tuple(tappable(net, params, x[: min(batch_size, x.shape[0])]))
    if kind == "diag":
        h, ll = chunked_sum(lambda c: _diag_batch(net, lik, fisher, params, tp, *c), (x, y), batch_size)
        return Diag(h), ll
    factors, ll = chunked_sum(lambda c: _kfac_batch(net, lik, fisher, params, tp, *c), (x, y), batch_size)
    factors = {k: (a / x.shape[0], g) for k, (a, g) in factors.items()}
    rest = tuple(k for k in params if k not in tp)
    diag = chunked_sum(lambda c: _per_example_diag(net, lik, fisher, rest, params, *c)[0], (x, y), batch_size) if rest else {}
    return Kron(factors, diag), ll


def curvature(
    net: Network,
    params: Params,
    x,
    y,
    likelihood: Likelihood | str = "categorical",
    *,
    kind: str = "kfac",
    fisher: str = "ggn",
    batch_size: int = 256,
) -> tuple[Diag | Kron, jax.Array]:
    """The curvature of ``Σ_n −ln p(y_n | f(x_n; params))`` and ``ln p(D | params)``.

    ``kind``: ``"diag"`` (exact diagonal) or ``"kfac"``; ``fisher``: ``"ggn"`` or ``"ef"``
    (empirical Fisher). ``batch_size`` bounds the examples processed at once.
    """
    if kind not in KINDS:
        raise ValueError(f"kind must be one of {KINDS}; got {kind!r}")
    if fisher not in FISHERS:
        raise ValueError(f"fisher must be one of {FISHERS}; got {fisher!r}")
    if int(batch_size) < 1:
        raise ValueError(f"batch_size must be >= 1; got {batch_size}")
    tr = as_training((x, y), net, likelihood)
    return _curvature(net, tr.likelihood, kind, fisher, int(batch_size), params, jnp.asarray(tr.x), jnp.asarray(tr.y))
