"""Data-parallel SVI over several devices: two simulated CPU devices in a subprocess."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

SCRIPT = textwrap.dedent(
    """
    import json, jax, numpy as np
    from sklearn.datasets import load_digits
    from sparsebnn import nets, priors
    from sparsebnn.infer import svi

    assert jax.device_count() == 2, jax.devices()
    d = load_digits()
    x, y = (d.data[:256] / 16.0).astype(np.float32), d.target[:256]
    net = nets.mlp([64, 16, 10])
    kw = dict(num_steps=20, batch_size=32, chunk_size=10, progress=False, seed=1)
    both = svi(net, priors.SpikeSlabGroupHorseshoe(pi=0.3), (x, y), **kw)
    one = svi(net, priors.SpikeSlabGroupHorseshoe(pi=0.3), (x, y), devices=jax.devices()[:1], **kw)
    diff = max(float(np.max(np.abs(np.asarray(both.params[k]) - np.asarray(one.params[k])))) for k in both.params)
    print(json.dumps({"devices": [both.n_devices, one.n_devices], "loss_both": both.losses.tolist(),
                      "loss_one": one.losses.tolist(), "max_param_diff": diff}))
    """
)


def test_two_devices_match_one():
    env = {**os.environ, "XLA_FLAGS": "--xla_force_host_platform_device_count=2", "JAX_PLATFORMS": "cpu"}
    out = subprocess.run([sys.executable, "-c", SCRIPT], env=env, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr[-3000:]
    res = json.loads(out.stdout.strip().splitlines()[-1])
    assert res["devices"] == [2, 1]
    # the same numbers up to the order of floating-point reductions across the two halves of each batch
    assert max(abs(a - b) / abs(b) for a, b in zip(res["loss_both"], res["loss_one"])) < 1e-4
    assert res["max_param_diff"] < 1e-4
