"""An always-valid one-sided test that a rate exceeds a limit: the guardrails' evidence.

A guardrail is checked after every aggregation, for as long as the experiment runs, so a
fixed-sample test (a Wilson or Clopper-Pearson bound at level alpha) looked at again and
again would eventually flag a variant sitting right at the limit. The test here stays
valid however often it is looked at: under H0 "the rate is at most `limit`" the mixture

    M_n = integral over q in (limit, 1] of  (q / limit)^k ((1 - q) / (1 - limit))^(n - k)
          dq / (1 - limit)

(k events in n trials) is a nonnegative supermartingale starting at 1 (each integrand is
one for q > limit, since E[(q/p0)^X ((1-q)/(1-p0))^(1-X)] <= 1 whenever P(X = 1) <= p0),
so by Ville's inequality P(M_n >= 1/alpha for some n) <= alpha. The integral is a Beta
function times a regularized incomplete Beta: closed form, standard library only.

Robbins, "Statistical methods related to the law of the iterated logarithm", Annals of
Mathematical Statistics 41(5), 1970; Howard, Ramdas, McAuliffe, Sekhon, "Time-uniform,
nonparametric, nonasymptotic confidence sequences", Annals of Statistics 49(2), 2021.
"""

from __future__ import annotations

import math

# The guardrails' level: a variant at or under its limit is demoted with probability at
# most 0.1 % over the whole experiment, however many aggregations look at it.
GUARDRAIL_ALPHA = 0.001


def log_evidence(events: int, trials: int, limit: float) -> float:
    """log M_n of the module's docstring: the evidence against "rate <= limit"."""
    if trials <= 0 or events <= 0:
        return -math.inf  # no event yet: nothing says the rate is above anything
    if not 0.0 < limit < 1.0:
        raise ValueError(f"limit must be in (0, 1), got {limit}")
    # Imported at the first evidence worked out: an API function serving endpoints without a
    # guardrail needs none of it (`bandit.thompson` says what it costs a cold start).
    from bandit.special import beta_cdf, log_beta

    k, rest = events, trials - events
    # The mass of Beta(k + 1, n - k + 1) above `limit`, by symmetry the lower tail of
    # Beta(n - k + 1, k + 1) at 1 - limit (accurate where the upper tail is tiny).
    tail = beta_cdf(1.0 - limit, rest + 1.0, k + 1.0)
    if tail <= 0.0:
        return -math.inf
    return (
        log_beta(k + 1.0, rest + 1.0)
        + math.log(tail)
        - k * math.log(limit)
        - (rest + 1) * math.log1p(-limit)
    )


def exceeds(events: int, trials: int, limit: float, alpha: float = GUARDRAIL_ALPHA) -> bool:
    """True when `events` in `trials` show, at level `alpha` and valid at any number of
    looks, that the rate is above `limit`."""
    return log_evidence(events, trials, limit) >= -math.log(alpha)


def lower_bound(events: int, trials: int, alpha: float = GUARDRAIL_ALPHA) -> float:
    """The smallest limit the test does not reject (0 if it rejects none): the rate is at
    least this, with the test's confidence. Bisection to 1e-4; for a reason shown to people."""
    if trials <= 0 or events <= 0:
        return 0.0
    low, high = 0.0, events / trials  # the test never rejects a limit at the observed rate
    while high - low > 1e-4:
        middle = (low + high) / 2.0
        if middle > 0.0 and exceeds(events, trials, middle, alpha):
            low = middle
        else:
            high = middle
    return low
