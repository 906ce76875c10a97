"""Shared test configuration: a deterministic hypothesis profile.

`derandomize=True` makes every run draw the same examples (no flaky CI, no example
database); `deadline=None` because reversible code is slower than plain Python and the
first call of a function pays for lifting it. Select another profile with
HYPOTHESIS_PROFILE=bytrev-thorough for a longer local run.
"""
import os
import sys

from hypothesis import HealthCheck, settings

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))  # `import corpus`

_common = dict(
    derandomize=True,
    deadline=None,
    database=None,
    print_blob=False,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large,
                           HealthCheck.filter_too_much],
)
settings.register_profile("bytrev", max_examples=25, **_common)
settings.register_profile("bytrev-thorough", max_examples=500, **_common)
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "bytrev"))
