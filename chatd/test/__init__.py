"""
Tests for chatd.

Every Hypothesis test in the suite runs under one profile: derandomized and
without an example database, so a run on CI is the same run as on a developer's
machine, and with no per-example deadline or "input generation is slow" health
check, which only measure how busy the machine is and would fail a correct
test on a loaded runner.
"""

from hypothesis import HealthCheck, settings

settings.register_profile(
    "chatd",
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)
settings.load_profile("chatd")
