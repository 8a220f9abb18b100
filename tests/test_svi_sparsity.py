"""experiments.svi_sparsity: per-prior optimiser defaults and the priors it compares."""

import pytest

from experiments import svi_sparsity as exp
from sparsebnn import priors


def test_optimiser_settings_defaults_and_overrides():
    base = exp.optimiser_settings("gaussian")
    assert base == {**exp.DEFAULTS, "warmup": exp.DEFAULTS["steps"] // 3}
    ghs = exp.optimiser_settings("ss-ghs")
    assert ghs == {**exp.PRIOR_DEFAULTS["ss-ghs"], "warmup": exp.PRIOR_DEFAULTS["ss-ghs"]["steps"] // 3}
    # a flag overrides the prior's own default; the rest stay
    got = exp.optimiser_settings("ss-ghs", steps=300, warmup=0)
    assert got == {**exp.PRIOR_DEFAULTS["ss-ghs"], "steps": 300, "warmup": 0}
    assert exp.optimiser_settings("map", lr=1e-3)["lr"] == 1e-3


@pytest.mark.parametrize("name", ["gaussian", "horseshoe", "ss-ig", "ss-gl", "ss-ghs"])
def test_priors(name):
    prior = priors.get(**exp.PRIORS[name])
    assert prior.name == name or (name == "horseshoe" and isinstance(prior, priors.RegularizedHorseshoe))
    if name == "horseshoe":
        assert prior.tiered  # the tiered (node-wise) horseshoe
    if name == "ss-ghs":
        assert prior.c_reg == "fan_in"
