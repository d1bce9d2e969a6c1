"""Standard-library special functions for the Beta and normal distributions.

Kept free of numpy/scipy so the request path and the stats Lambda stay lean; the tests
check every function here against scipy.
"""

from __future__ import annotations

import math

_TINY = 1e-300
_EPS = 1e-15


def normal_cdf(z: float) -> float:
    """Standard normal CDF through the complementary error function (accurate in both tails)."""
    return 0.5 * math.erfc(-z / math.sqrt(2.0))


def log_beta(a: float, b: float) -> float:
    return math.lgamma(a) + math.lgamma(b) - math.lgamma(a + b)


def beta_pdf(x: float, a: float, b: float) -> float:
    """Beta(a, b) density; a, b >= 1 here, so it is finite on the closed interval [0, 1]."""
    if x < 0.0 or x > 1.0:
        return 0.0
    log_density = -log_beta(a, b)
    if a != 1.0:
        log_density += (a - 1.0) * math.log(x) if x > 0.0 else -math.inf
    if b != 1.0:
        log_density += (b - 1.0) * math.log1p(-x) if x < 1.0 else -math.inf
    return math.exp(log_density)


def _beta_continued_fraction(a: float, b: float, x: float) -> float:
    """Continued fraction of I_x(a, b) by the modified Lentz method.

    Press, Teukolsky, Vetterling, Flannery, *Numerical Recipes* (3rd ed., 2007), §6.4
    (betacf). It converges fast for x < (a + 1) / (a + b + 2), in about O(sqrt(max(a, b)))
    terms, so the cap scales with the parameters.
    """
    qab, qap, qam = a + b, a + 1.0, a - 1.0
    c = 1.0
    d = 1.0 - qab * x / qap
    d = 1.0 / (d if abs(d) > _TINY else _TINY)
    h = d
    max_terms = 1000 + int(20 * math.sqrt(max(a, b)))
    for m in range(1, max_terms + 1):
        m2 = 2 * m
        aa = m * (b - m) * x / ((qam + m2) * (a + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > _TINY else _TINY)
        c = 1.0 + aa / c
        c = c if abs(c) > _TINY else _TINY
        h *= d * c
        aa = -(a + m) * (qab + m) * x / ((a + m2) * (qap + m2))
        d = 1.0 + aa * d
        d = 1.0 / (d if abs(d) > _TINY else _TINY)
        c = 1.0 + aa / c
        c = c if abs(c) > _TINY else _TINY
        delta = d * c
        h *= delta
        if abs(delta - 1.0) < _EPS:
            return h
    raise ArithmeticError(f"incomplete beta did not converge for a={a}, b={b}, x={x}")


def beta_cdf(x: float, a: float, b: float) -> float:
    """Regularized incomplete beta I_x(a, b), the Beta(a, b) CDF (Numerical Recipes §6.4)."""
    if x <= 0.0:
        return 0.0
    if x >= 1.0:
        return 1.0
    front = math.exp(a * math.log(x) + b * math.log1p(-x) - log_beta(a, b))
    if x < (a + 1.0) / (a + b + 2.0):
        return front * _beta_continued_fraction(a, b, x) / a
    return 1.0 - front * _beta_continued_fraction(b, a, 1.0 - x) / b


def beta_ppf(q: float, a: float, b: float, tol: float = 1e-12) -> float:
    """Beta(a, b) quantile: Newton steps on beta_cdf, kept inside a shrinking bisection bracket."""
    if not 0.0 <= q <= 1.0:
        raise ValueError(f"quantile level must be in [0, 1], got {q!r}")
    if q == 0.0:
        return 0.0
    if q == 1.0:
        return 1.0
    lo, hi = 0.0, 1.0
    x = a / (a + b)
    for _ in range(200):
        error = beta_cdf(x, a, b) - q
        if error > 0.0:
            hi = x
        else:
            lo = x
        density = beta_pdf(x, a, b)
        step_to = x - error / density if density > 0.0 else -1.0
        # Newton when it stays inside the bracket, bisection otherwise: never diverges.
        x_next = step_to if lo < step_to < hi else 0.5 * (lo + hi)
        if abs(x_next - x) <= tol * max(x, 1e-300) or hi - lo <= tol * max(x, 1e-300):
            return x_next
        x = x_next
    return x


def student_t_logpdf(x: float, dof: float) -> float:
    """Log density of Student's t with `dof` degrees of freedom (standard location and scale)."""
    return (
        math.lgamma(0.5 * (dof + 1.0))
        - math.lgamma(0.5 * dof)
        - 0.5 * math.log(dof * math.pi)
        - 0.5 * (dof + 1.0) * math.log1p(x * x / dof)
    )


def student_t_cdf(x: float, dof: float) -> float:
    """Student's t CDF through the incomplete beta: P(|T| > |x|) = I_{dof/(dof+x²)}(dof/2, 1/2),
    near 0 as 1 - I_{x²/(dof+x²)}(1/2, dof/2) so that the small argument keeps its digits."""
    if x == 0.0:
        return 0.5
    x2 = x * x
    if x2 < dof:
        tail = 0.5 * (1.0 - beta_cdf(x2 / (dof + x2), 0.5, 0.5 * dof))
    else:
        tail = 0.5 * beta_cdf(dof / (dof + x2), 0.5 * dof, 0.5)
    return 1.0 - tail if x > 0.0 else tail


def student_t_ppf(q: float, dof: float) -> float:
    """Student's t quantile by bisection on student_t_cdf (a few dozen CDFs: /stats only)."""
    if not 0.0 < q < 1.0:
        raise ValueError(f"quantile level must be in (0, 1), got {q!r}")
    lo, hi = -1.0, 1.0
    while student_t_cdf(lo, dof) > q:
        lo *= 2.0
    while student_t_cdf(hi, dof) < q:
        hi *= 2.0
    for _ in range(100):
        middle = 0.5 * (lo + hi)
        if student_t_cdf(middle, dof) < q:
            lo = middle
        else:
            hi = middle
        if hi - lo <= 1e-12 * max(1.0, abs(middle)):
            break
    return 0.5 * (lo + hi)
