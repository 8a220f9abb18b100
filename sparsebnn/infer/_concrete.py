"""The binary Concrete (Gumbel-softmax) relaxation of a Bernoulli indicator, with a straight-through option.

For ``q(z) = Bernoulli(σ(θ))`` and temperature ``T > 0`` (Maddison et al. 2017; Jang et al. 2017):

    z̃ = σ((θ + ln u − ln(1 − u)) / T),   u ~ U(0, 1)

``P(z̃ ≤ y) = σ(T logit(y) − θ)``; as ``T → 0``, ``z̃ → 1[θ + ln u − ln(1 − u) > 0]``, which is exactly
``Bernoulli(σ(θ))``. With ``hard=True`` the sample's value is that hard indicator (so its mean is
``σ(θ)`` at every ``T``) while its gradient is the relaxed one (straight-through).

``kl_divergence(ConcreteBernoulli(T, θ), Bernoulli(π))`` is registered as the analytic KL of the
Bernoulli being relaxed, ``KL(Bern(σ(θ)) ‖ Bern(π))``, so ``TraceMeanField_ELBO`` uses it.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpyro.distributions as dist
from numpyro.distributions.kl import kl_divergence


class ConcreteBernoulli(dist.RelaxedBernoulliLogits):
    """``RelaxedBernoulliLogits(T, θ)``; ``hard=True`` returns straight-through hard samples.

    ``log_prob`` is the relaxed (Concrete) density: meaningful for soft samples only.
    """

    pytree_aux_fields = ("hard",)

    def __init__(self, temperature, logits, hard: bool = True, *, validate_args=None):
        self.hard = bool(hard)
        super().__init__(temperature, logits, validate_args=validate_args)

    def sample(self, key, sample_shape=()):
        shape = tuple(sample_shape) + self.batch_shape
        u = jax.random.uniform(key, shape, minval=jnp.finfo(jnp.result_type(float)).tiny)
        return concrete(self.logits, self.temperature, u, self.hard)

    @property
    def probs(self):
        """``σ(θ)``: the inclusion probability of the Bernoulli being relaxed."""
        return jax.nn.sigmoid(self.logits)


def concrete(logits, temperature, u, hard: bool = True):
    """The Concrete sample ``σ((θ + ln u − ln(1 − u)) / T)`` from uniforms ``u ∈ (0, 1)``.

    ``hard``: the value ``1[θ + ln u − ln(1 − u) > 0]`` (exactly Bernoulli(σ(θ))) with the relaxed
    sample's gradient (straight-through). ``temperature=None``: the hard indicator alone, no gradient.
    """
    noisy = logits + jnp.log(u) - jnp.log1p(-u)
    indicator = (noisy > 0).astype(noisy.dtype)
    if temperature is None:
        return indicator
    soft = jax.nn.sigmoid(noisy / temperature)
    return soft + jax.lax.stop_gradient(indicator - soft) if hard else soft


def bernoulli_kl(logits_q, logits_p):
    """``KL(Bern(σ(a)) ‖ Bern(σ(b)))`` from logits, stable for large ``|a|``, ``|b|``."""
    q = jax.nn.sigmoid(logits_q)
    log_q1, log_q0 = jax.nn.log_sigmoid(logits_q), jax.nn.log_sigmoid(-logits_q)
    log_p1, log_p0 = jax.nn.log_sigmoid(logits_p), jax.nn.log_sigmoid(-logits_p)
    return q * (log_q1 - log_p1) + (1 - q) * (log_q0 - log_p0)


@kl_divergence.register(ConcreteBernoulli, dist.BernoulliLogits)
def _kl_concrete_bernoulli_logits(p, q):
    return bernoulli_kl(p.logits, q.logits)


@kl_divergence.register(ConcreteBernoulli, dist.BernoulliProbs)
def _kl_concrete_bernoulli_probs(p, q):
    return bernoulli_kl(p.logits, q.logits)


@kl_divergence.register(dist.BernoulliLogits, dist.BernoulliProbs)
def _kl_bernoulli_logits_probs(p, q):
    return bernoulli_kl(p.logits, q.logits)


@kl_divergence.register(dist.BernoulliLogits, dist.BernoulliLogits)
def _kl_bernoulli_logits_logits(p, q):
    return bernoulli_kl(p.logits, q.logits)


__all__ = ["ConcreteBernoulli", "bernoulli_kl", "concrete"]
