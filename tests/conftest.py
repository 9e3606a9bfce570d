"""Settings for the whole suite.

Hypothesis's default 200 ms deadline per example is a timed assert, and a loaded 2-core
CI box breaks it (`test_fuzz_mutated_replies` failed once that way while 60,000 examples
run here without a deadline found nothing). The suite has no timed asserts in unit tests,
so the fuzz tests check behaviour only; a slow parser shows in the benchmarks.
"""

from hypothesis import settings

settings.register_profile("packetlab", deadline=None, print_blob=True)
settings.load_profile("packetlab")
