"""Shared test configuration.

Hypothesis profiles: ``default`` (>= 200 examples per property, used by CI) and ``thorough``
(>= 5,000 examples): ``pytest --hypothesis-profile=thorough``.
"""

import os

from hypothesis import HealthCheck, settings

_common = dict(deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])
settings.register_profile("default", max_examples=200, derandomize=True, **_common)
settings.register_profile("thorough", max_examples=5000, **_common)
settings.register_profile("dev", max_examples=25, **_common)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "default"))
