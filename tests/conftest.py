"""Shared test configuration.

Hypothesis profiles: ``default`` (>= 200 examples per property, used by CI) and ``thorough``
(>= 5,000 examples): ``pytest --hypothesis-profile=thorough``.
"""

import os

import jax
import pytest
from hypothesis import HealthCheck, settings

_common = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("default", max_examples=200, derandomize=True, **_common)
settings.register_profile("thorough", max_examples=5000, **_common)
settings.register_profile("dev", max_examples=25, **_common)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))


@pytest.fixture
def exact_matmul():
    """Float32 matmuls and convolutions at full precision inside the test.

    On GPUs, XLA's default float32 precision may use TF32 (10-bit mantissa, relative error ~1e-3), so
    tests that compare two float32 computations of the same product to ~1e-5 ask for "highest".
    """
    with jax.default_matmul_precision("highest"):
        yield
