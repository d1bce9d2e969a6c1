"""Standard-library Beta and normal functions against scipy."""

from __future__ import annotations

import pytest
from scipy import special, stats

from bandit.special import beta_cdf, beta_pdf, beta_ppf, normal_cdf

PARAMS = [(1.0, 1.0), (2.0, 5.0), (1.0, 300.0), (51.0, 951.0), (7.5, 3.25), (50_001.0, 950_001.0)]


@pytest.mark.parametrize("a, b", PARAMS)
def test_beta_cdf_and_pdf_match_scipy(a, b):
    dist = stats.beta(a, b)
    for q in (1e-6, 0.01, 0.2, 0.5, 0.8, 0.99, 1 - 1e-6):
        x = float(dist.ppf(q))
        assert beta_cdf(x, a, b) == pytest.approx(special.betainc(a, b, x), abs=1e-10, rel=1e-8)
        assert beta_pdf(x, a, b) == pytest.approx(dist.pdf(x), rel=1e-7)
    assert beta_cdf(0.0, a, b) == 0.0
    assert beta_cdf(1.0, a, b) == 1.0


@pytest.mark.parametrize("a, b", PARAMS)
def test_beta_ppf_matches_scipy(a, b):
    for q in (0.001, 0.025, 0.5, 0.975, 0.999):
        assert beta_ppf(q, a, b) == pytest.approx(stats.beta.ppf(q, a, b), rel=1e-8, abs=1e-12)
    assert beta_ppf(0.0, a, b) == 0.0
    assert beta_ppf(1.0, a, b) == 1.0


def test_beta_ppf_rejects_levels_outside_unit_interval():
    with pytest.raises(ValueError):
        beta_ppf(1.5, 2.0, 3.0)


@pytest.mark.parametrize("z", [-8.0, -3.0, -1.0, 0.0, 0.5, 1.96, 6.0])
def test_normal_cdf_matches_scipy(z):
    assert normal_cdf(z) == pytest.approx(stats.norm.cdf(z), rel=1e-12, abs=1e-300)
