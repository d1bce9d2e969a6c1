"""How many trials an experiment plans for: where its confidence sequences are tightest.

Apart from `bandit.estimates` (the math that uses it), so that a configuration surface can
default an endpoint's `planned_sample_size` without importing the estimates and the
posterior and special functions under them: about 3 ms of an API function's cold start
(`bench/coldstart.py`), which reads no estimate.
"""

# Trials at which the confidence sequence is tightest by default (`bandit.estimates` gives
# why); an endpoint planned for another sample size passes its own (`tightest_at`).
TIGHTEST_AT = 40_000
