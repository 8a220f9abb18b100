"""The experiments as a set: the registry against README and the modules; the networks and priors each
experiment declares as data build exactly what its former own builder built."""

from __future__ import annotations

import importlib
import importlib.util
import math
import re
import sys
from pathlib import Path

import jax
import numpy as np
import pytest

from experiments import registry
from sparsebnn import data, nets, priors

ROOT = Path(__file__).resolve().parent.parent


def readme_experiments() -> list[str]:
    """The names in the first column of README's experiment table."""
    text = (ROOT / "README.md").read_text()
    section = text.split("\n## Experiments\n", 1)[1].split("\n## ", 1)[0]
    rows = [line for line in section.splitlines() if line.startswith("| `")]
    return [re.match(r"\| `([^`]+)` \|", line).group(1) for line in rows]


def test_readme_table_names_exactly_the_registry():
    names = readme_experiments()
    assert len(names) == len(set(names))
    assert names == [e.name for e in registry.EXPERIMENTS]


def test_registry_entries_are_experiment_modules():
    for name in [*registry.BY_NAME, *registry.EXTRAS]:
        assert importlib.util.find_spec(f"experiments.{name}") is not None, name
    assert all(e.reproduces for e in registry.EXPERIMENTS)
    assert not set(registry.BY_NAME) & set(registry.EXTRAS)


def test_importing_the_registry_imports_no_experiment():
    code = ("import sys, experiments.registry; "
            "print(sorted(m for m in sys.modules if m.startswith(('experiments.', 'sparsebnn', 'jax'))))")
    import subprocess

    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "['experiments.registry']"


# ----------------------------------------------------------------------------- what each experiment builds


def _same(a: nets.Network, b: nets.Network, x) -> None:
    """Same layers (kinds, fan-ins, nodes), wiring, parameter shapes and output shape (traced, not compiled)."""
    assert (a.name, a.layers, a.in_shape, a.out_dim, a.consumers) == (b.name, b.layers, b.in_shape, b.out_dim, b.consumers)
    pa, pb = (jax.eval_shape(n.init, jax.random.key(0)) for n in (a, b))
    assert pa == pb
    assert jax.eval_shape(a.apply, pa, x) == jax.eval_shape(b.apply, pb, x)


def _images(shape):
    from types import SimpleNamespace

    return SimpleNamespace(name="images", in_dim=math.prod(shape), out_dim=10, n_classes=10, image_shape=shape)


# The networks the experiments built with their own build_net before nets.build (copied from them).
FORMER = {
    "compare": {
        "mlp": lambda ds, h: nets.mlp([ds.in_dim, *h, ds.out_dim]),
        "lenet": lambda ds, h: nets.lenet5(ds.image_shape, ds.out_dim, padding="SAME"),
        "vit": lambda ds, h: nets.vit(ds.image_shape, ds.out_dim, patch=2, width=32, depth=2, heads=4),
        "mixer": lambda ds, h: nets.mixer(ds.image_shape, ds.out_dim, patch=2, width=32, depth=2),
    },
    "svi_sparsity": {
        "mlp": lambda ds, h: nets.mlp([ds.in_dim, *h, ds.out_dim]),
        "lenet5": lambda ds, h: nets.lenet5(ds.image_shape, ds.out_dim),
        "lenet5_caffe": lambda ds, h: nets.lenet5_caffe(ds.image_shape, ds.out_dim),
    },
    "stochastic_bmr": {
        "mlp": lambda ds, h: nets.mlp([ds.in_dim, *h, ds.n_classes]),
        "lenet": lambda ds, h: nets.lenet5(ds.image_shape, ds.n_classes),
        "vit": lambda ds, h: nets.vit(ds.image_shape, ds.n_classes, patch=2, width=32, depth=2, heads=4),
        "mixer": lambda ds, h: nets.mixer(ds.image_shape, ds.n_classes, patch=2, width=32, depth=2),
    },
    "spam": {
        "mlp": lambda ds, h: nets.mlp([ds.in_dim, *h, ds.n_classes]),
        "lenet": lambda ds, h: nets.lenet5(ds.image_shape, ds.n_classes),
    },
}
# added since (no former builder): LeNet-5-Caffe in the comparisons, as its builder makes it
ADDED = {"compare": {"lenet-caffe": lambda ds, h: nets.lenet5_caffe(ds.image_shape, ds.out_dim)},
         "stochastic_bmr": {"lenet-caffe": lambda ds, h: nets.lenet5_caffe(ds.image_shape, ds.n_classes)},
         "spam": {"lenet-caffe": lambda ds, h: nets.lenet5_caffe(ds.image_shape, ds.n_classes)}}
HIDDEN = {"compare": [(16, 16), (100, 100)], "svi_sparsity": [(32, 32), (400, 400)],
          "stochastic_bmr": [(32,), (100, 100)], "spam": [(32,), (100, 100)]}  # --quick, default


@pytest.mark.parametrize("experiment", sorted(FORMER))
@pytest.mark.parametrize("shape", [(8, 8, 1), (28, 28, 1), (32, 32, 3)])
def test_each_experiment_builds_what_it_built_before(experiment, shape):
    table = importlib.import_module(f"experiments.{experiment}").NETS
    builders = FORMER[experiment] | ADDED.get(experiment, {})
    assert set(table) == set(builders)
    ds = _images(shape)
    x = np.random.default_rng(0).normal(size=(2, *shape)).astype(np.float32)
    for key, former in builders.items():
        name, options = table[key]
        for hidden in HIDDEN[experiment] if name == "mlp" else [None]:
            net = nets.build(name, ds, **options | ({"hidden": hidden} if name == "mlp" else {}))
            _same(net, former(ds, hidden), x)


def test_experiment_priors_are_the_former_ones():
    """Each experiment's PRIORS data gives the prior its former make_prior built (same class and fields)."""
    import numpyro.distributions as dist

    from experiments import compare, contraction, sbc, stochastic_bmr, svi_sparsity, svi_vs_nuts

    def same(a, b):
        assert type(a) is type(b) and a.name == b.name
        for f in a.__dataclass_fields__:
            u, v = getattr(a, f), getattr(b, f)
            if isinstance(u, dist.Distribution):
                assert type(u) is type(v) and float(u.scale) == float(v.scale)
            else:
                assert u == v, (f, u, v)

    former = {"gaussian": priors.get("gaussian"), "horseshoe": priors.RegularizedHorseshoe(tiered=True),
              "ss-ig": priors.get("ss-ig"), "ss-gl": priors.get("ss-gl", sigma0=0.2),
              "ss-ghs": priors.get("ss-ghs", c_reg="fan_in")}
    for name, prior in former.items():
        same(priors.get(**svi_sparsity.PRIORS[name]), prior)
    method = {"gaussian-bmr": "gaussian", "horseshoe": "horseshoe", "ss-ig": "ss-ig", "ss-gl": "ss-gl"}
    for m, name in method.items():
        same(priors.get(**compare.SVI_PRIORS[m]), former[name])
    for c in (1.0, "fan_in"):
        same(priors.get(**compare.SVI_PRIORS["ss-ghs"], c_reg=c), priors.get("ss-ghs", c_reg=c))
    for name in ("gaussian", "ss-ig", "ss-gl", "ss-ghs"):
        hyper = {"pi": 0.5} if name.startswith("ss-") else {}
        same(priors.get(**svi_vs_nuts.PRIORS[name]), priors.get(name, centered=False, **hyper))
    same(priors.get(**svi_vs_nuts.PRIORS["horseshoe"]), priors.get("horseshoe", tau0=0.1, centered=False))
    for name in contraction.PRIORS:
        same(priors.get(**contraction.PRIORS[name], pi="theory"), priors.get(name, pi="theory"))
    same(priors.get(**stochastic_bmr.PRIORS["gaussian"], sigma0=0.5), priors.Gaussian(0.5))
    same(priors.get(**stochastic_bmr.PRIORS["tiered-hs"]), priors.RegularizedHorseshoe(tiered=True))
    same(sbc.make_model("horseshoe").prior,
         priors.RegularizedHorseshoe(tau0=0.5, slab_scale=2.0, slab_df=4.0, centered=False))
    same(sbc.make_model("gaussian").prior, priors.Gaussian(scale_prior=dist.HalfNormal(1.0), centered=False))


def test_digits_networks_of_compare(tmp_path):
    """On the real digits data (flat for the MLP, images otherwise), as compare.run loads it."""
    from experiments import compare

    for key in ("mlp", "lenet"):
        ds = data.load("digits", seed=0, flat=key == "mlp")
        name, options = compare.NETS[key]
        net = nets.build(name, ds, **options | ({"hidden": [16, 16]} if name == "mlp" else {}))
        _same(net, FORMER["compare"][key](ds, [16, 16]), ds.test.x[:2])
