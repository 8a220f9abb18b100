"""The observation model ``p(y | f)`` shared by the NumPyro model, the inference engines and the curvature code.

    Likelihood()                            # y ~ Categorical(softmax(f))
    Likelihood("gaussian", noise=0.3)       # y ~ N(f, 0.3²) per output (known σ)
    Likelihood("gaussian", noise=dist.HalfNormal(1.0))   # σ learned (site "noise"; SVI and NUTS only)

Every engine (``svi``, ``nuts``, ``laplace``) and :class:`sparsebnn.model.BNN` take ``likelihood=`` as a
:class:`Likelihood` or the name ``"categorical"``; a Gaussian needs its noise, so it is always given
as the object. The curvature code (Laplace, SNIP, GraSP) needs a known σ (:attr:`Likelihood.sigma`).
"""

from __future__ import annotations

import dataclasses
import math

import jax
import jax.numpy as jnp
import numpyro.distributions as dist

KINDS = ("categorical", "gaussian")


@dataclasses.dataclass(frozen=True)
class Likelihood:
    """``kind="categorical"``: ``y ~ Categorical(logits=f)``; ``kind="gaussian"``: ``y ~ N(f, σ²)`` per output.

    ``noise`` (Gaussian only): the known sd σ > 0, or a scalar NumPyro distribution on the positive
    reals for a learned σ (the model then has a site ``"noise"``).
    """

    kind: str = "categorical"
    noise: float | dist.Distribution | None = None

    def __post_init__(self):
        if self.kind not in KINDS:
            raise ValueError(f"likelihood must be one of {KINDS}; got {self.kind!r}")
        if self.kind == "categorical":
            if self.noise is not None:
                raise ValueError("noise applies to the gaussian likelihood only")
            return
        if isinstance(self.noise, dist.Distribution):
            if self.noise.support is not dist.constraints.positive or self.noise.batch_shape:
                raise ValueError("noise as a distribution must be a scalar prior on the positive reals")
            return
        try:
            sd = float(self.noise)
        except (TypeError, ValueError):
            sd = float("nan")
        if not (math.isfinite(sd) and sd > 0):
            raise ValueError(f"the gaussian likelihood needs noise: a positive sd or a prior on it; got {self.noise!r}")
        object.__setattr__(self, "noise", sd)

    @property
    def learned(self) -> bool:
        """Whether σ is a latent variable (a prior on the noise) rather than known."""
        return isinstance(self.noise, dist.Distribution)

    @property
    def sigma(self) -> float:
        """The known noise sd (ValueError for a categorical or a learned-noise likelihood)."""
        if self.kind != "gaussian" or self.learned:
            raise ValueError(f"this needs a gaussian likelihood with a known noise sd; got {self}")
        return self.noise

    def distribution(self, f: jax.Array, sd=None) -> dist.Distribution:
        """``p(· | f)`` per example as a NumPyro distribution (``sd``: the noise, when learned)."""
        if self.kind == "categorical":
            return dist.Categorical(logits=f)
        sd = self.noise if sd is None else sd
        return dist.Normal(f[..., 0], sd) if f.shape[-1] == 1 else dist.Normal(f, sd).to_event(1)

    # --- closed forms used by the curvature code (known σ) -----------------------------------

    def _targets(self, f, y):
        return y.reshape(f.shape) if self.kind == "gaussian" else y

    def log_prob(self, f: jax.Array, y: jax.Array) -> jax.Array:
        """``ln p(y_n | f_n)`` per example, shape ``(B,)``."""
        y = self._targets(f, y)
        if self.kind == "categorical":
            return jnp.take_along_axis(jax.nn.log_softmax(f), y[:, None].astype(jnp.int32), axis=1)[:, 0]
        r = (y - f) / self.sigma
        return jnp.sum(-0.5 * r**2 - jnp.log(self.sigma) - 0.5 * jnp.log(2 * jnp.pi), axis=-1)

    def grad(self, f: jax.Array, y: jax.Array) -> jax.Array:
        """``∇_f [−ln p(y | f)]``, shape ``(B, C)``."""
        y = self._targets(f, y)
        if self.kind == "categorical":
            return jax.nn.softmax(f) - jax.nn.one_hot(y, f.shape[-1], dtype=f.dtype)
        return (f - y) / self.sigma**2

    def hessian_sqrt(self, f: jax.Array) -> jax.Array:
        """``L`` with ``L Lᵀ = ∇²_f [−ln p(y | f)]``, shape ``(B, C, C)``: diag(√p) − p√pᵀ, or I/σ."""
        if self.kind == "categorical":
            p = jax.nn.softmax(f)
            s = jnp.sqrt(p)
            return jax.vmap(jnp.diag)(s) - p[:, :, None] * s[:, None, :]
        eye = jnp.eye(f.shape[-1], dtype=f.dtype) / self.sigma
        return jnp.broadcast_to(eye, (*f.shape, f.shape[-1]))


def as_likelihood(value: Likelihood | str | None, default: str = "categorical") -> Likelihood:
    """A :class:`Likelihood` from itself or its kind's name (``None``: ``default``)."""
    if isinstance(value, Likelihood):
        return value
    value = default if value is None else value
    if value == "gaussian":
        raise ValueError('the gaussian likelihood needs its noise: likelihood=Likelihood("gaussian", noise=σ) '
                         "(σ a positive number, or a NumPyro prior on it)")
    if not isinstance(value, str):
        raise ValueError(f"likelihood must be a sparsebnn.Likelihood or one of {KINDS}; got {type(value).__name__}")
    return Likelihood(value)


__all__ = ["KINDS", "Likelihood", "as_likelihood"]
