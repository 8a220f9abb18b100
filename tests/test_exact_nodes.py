"""theory.exact_nodes (the exact node posterior of a 1-2-1 SS-IG network) and, slow, the reference sampler against it."""

from __future__ import annotations

import numpyro  # noqa: F401  (before arviz, see sparsebnn.diagnostics)
import arviz as az
import jax
import numpy as np
import pytest
from numpyro import handlers
from numpyro.infer.util import log_density
from scipy import stats

from sparsebnn import nets, priors
from sparsebnn.infer import nuts
from sparsebnn.likelihood import Likelihood
from sparsebnn.model import BNN
from theory import exact_nodes as en

NOISE, PI = 0.3, 0.5
Z = 4.0


def _model(centered: bool = True) -> BNN:
    return BNN(nets.mlp([1, 2, 1], act="tanh"), priors.SpikeSlabIG(pi=PI, centered=centered), Likelihood("gaussian", NOISE))


def test_log_joint_is_the_packages_ss_ig_model():
    """The enumerator's prior and likelihood are exactly those of SpikeSlabIG over mlp([1, 2, 1]) (float64)."""
    x, y = en.problem()
    with jax.enable_x64(True):
        model = _model()
        for seed in range(3):
            tr = handlers.trace(handlers.seed(handlers.block(model, hide=["f"]), jax.random.key(seed))).get_trace(x)
            v = {k: s["value"] for k, s in tr.items() if s["type"] == "sample" and k != "y"}
            want = float(log_density(model, (x, y), {}, v)[0])
            got = en.log_joint(x, y, v["dense_0.z"], v["dense_0.w"][0], v["dense_0.b"], v["dense_1.w"][:, 0],
                               v["dense_1.b"][0], noise=NOISE, pi=PI)
            assert got == pytest.approx(want, rel=1e-12, abs=1e-9)


def test_enumerator_on_a_tiny_case():
    x, y = en.problem(n=6)
    rng = np.random.default_rng(0)
    # the output layer integrated in closed form = the n-dimensional Gaussian N(y; 0, σ² I + σ0² H Hᵀ)
    u, c = rng.normal(size=(3, 2)), rng.normal(size=(3, 2))
    got = en.log_marginal_given(x, y, u, c, noise=NOISE)
    for m in range(3):
        H = np.column_stack([np.tanh(x[:, 0, None] * u[m] + c[m]), np.ones(len(x))])
        want = stats.multivariate_normal.logpdf(y, np.zeros(len(x)), NOISE**2 * np.eye(len(x)) + H @ H.T)
        assert got[m] == pytest.approx(want, rel=1e-10)
    e = en.exact_posterior(x, y, 2, noise=NOISE, pi=PI, n_draws=2**15, batches=8, chunk=2**12)
    assert e.configs.tolist() == [[0, 0], [0, 1], [1, 0], [1, 1]]
    assert e.probs.sum() == pytest.approx(1.0) and np.all(e.probs_se >= 0)
    # one active node: a 2-D integral, checked by quadrature on a grid
    g = np.linspace(-7, 7, 561)
    U, C = np.meshgrid(g, g)
    lw = en.log_marginal_given(x, y, U.reshape(-1, 1), C.reshape(-1, 1), noise=NOISE)
    lw += stats.norm.logpdf(U.ravel()) + stats.norm.logpdf(C.ravel()) + 2 * np.log(g[1] - g[0])
    quad = float(np.logaddexp.reduce(lw))
    for i in (1, 2):  # (0, 1) and (1, 0): the same integral, estimated independently
        assert abs(e.log_evidence[i] - quad) < Z * e.log_evidence_se[i] + 1e-6, (e.log_evidence, quad)
    assert abs(e.probs[1] - e.probs[2]) < Z * np.hypot(e.probs_se[1], e.probs_se[2])  # node exchangeability
    with pytest.raises(ValueError, match="batches"):
        en.exact_posterior(x, y, 2, noise=NOISE, pi=PI, n_draws=1000, batches=3)


def _mean_se(draws: np.ndarray) -> tuple[float, float]:
    """Mean and Monte Carlo standard error (ESS of the mean) of ``(chains, draws)``."""
    ess = float(az.ess(az.from_dict({"posterior": {"v": draws}}), method="mean")["v"].values)
    return float(draws.mean()), float(draws.std(ddof=1) / np.sqrt(ess))


@pytest.mark.slow
@pytest.mark.parametrize("replicas", [1, 4])
def test_reference_sampler_matches_the_exact_node_posterior(replicas):
    """NUTS (indicators enumerated; plain and replica exchange) on the 1-2-1 SS-IG teacher regression: configuration
    frequencies and the posterior predictive at three inputs agree with the exact answer within 4 combined MC s.e."""
    x, y = en.problem()
    exact = en.exact_posterior(x, y, 2, noise=NOISE, pi=PI, n_draws=2**20)
    post = nuts(_model(centered=False), (x.astype(np.float32), y.astype(np.float32)), num_warmup=500,
                num_samples=1500, num_chains=4, init="dispersed", replicas=replicas, seed=0, warn=False)
    assert post.ok, post.problems
    z = post.samples["dense_0.z"]
    f = np.asarray(post.predict(exact.x_star[:, None].astype(np.float32), n_samples=None))[..., 0]
    f = f.reshape(post.num_chains, -1, len(exact.x_star))
    rows = []
    for i, c in enumerate(exact.configs):
        m, s = _mean_se(np.all(z == c, axis=-1).astype(float))
        rows.append((f"P(z={tuple(int(v) for v in c)})", m, s, exact.probs[i], exact.probs_se[i]))
    for j, xs in enumerate(exact.x_star):
        m, s = _mean_se(f[..., j])
        rows.append((f"E f({xs:+.1f})", m, s, exact.predictive[j], exact.predictive_se[j]))
    print(f"\nreplicas={replicas}: quantity, sampler (se), exact (se), |diff| / combined se")
    bad = []
    for name, m, s, e, se in rows:
        ratio = abs(m - e) / max(np.hypot(s, se), 1e-12)
        print(f"  {name:12s} {m:8.4f} ({s:.4f})  {e:8.4f} ({se:.4f})  {ratio:5.2f}")
        if ratio > Z and abs(m - e) > 1e-3:
            bad.append(name)
    assert not bad, bad
