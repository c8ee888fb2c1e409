"""The paired-seed statistics and the verdict rule (augpro.paired)."""

import math

import pytest

from augpro.paired import MAX_SEEDS, Paired, claim_verdict, describe, pair, seeds_needed, t_quantile


def test_t_quantile_matches_tables():
    # two-sided 95 % critical values from any Student-t table
    assert t_quantile(1) == pytest.approx(12.706, abs=1e-3)
    assert t_quantile(4) == pytest.approx(2.776, abs=1e-3)
    assert t_quantile(30) == pytest.approx(2.042, abs=1e-3)


def test_pair_matches_seeds_and_ignores_unpaired_ones():
    a = {0: 80.0, 1: 82.0, 2: 84.0, 3: 99.0}
    b = {0: 79.0, 1: 80.0, 2: 81.0}
    p = pair(a, b)
    assert p.diffs == (1.0, 2.0, 3.0)  # seed 3 has no partner
    assert p.mean == 2.0 and p.sd == 1.0
    h = t_quantile(2) * 1.0 / math.sqrt(3)
    assert (p.low, p.high) == pytest.approx((2.0 - h, 2.0 + h))
    assert p.outcome == "undecided" and p.text() == "+2.0 [-0.5, +4.5]"


def test_outcomes():
    assert Paired((1.0, 1.2, 0.9, 1.1, 1.0)).outcome == "ahead"
    assert Paired((-1.0, -1.2, -0.9, -1.1, -1.0)).outcome == "behind"
    assert Paired((-1.0, 1.0, 0.5)).outcome == "undecided"
    assert Paired((5.0,)).outcome == "undecided"  # one pair never decides
    assert Paired((5.0,)).text() == "+5.0 (n=1)"
    assert Paired(()).text() == "– (n=0)"  # the two sides share no seed


def test_seeds_needed():
    assert seeds_needed(0.0, 1.0) is None
    assert seeds_needed(1.0, 0.0) == 2
    n = seeds_needed(1.0, 2.0)
    # the smallest n whose interval excludes 0 at this mean and spread
    assert t_quantile(n - 1) * 2.0 / math.sqrt(n) < 1.0 <= t_quantile(n - 2) * 2.0 / math.sqrt(n - 1)
    assert seeds_needed(0.01, 10.0) is None  # beyond MAX_SEEDS
    assert describe(Paired((0.1, -5.0, 5.0))) == f"undecided (>{MAX_SEEDS} seeds at this spread)"
    assert describe(Paired((1.0, -1.0, 3.0))).startswith("undecided (~")
    assert describe(Paired((2.0,))) == "undecided (fewer than 2 paired seeds)"


def test_claim_verdict_needs_a_strict_majority():
    assert claim_verdict(["ahead", "ahead", "undecided"]) == "reproduced"
    assert claim_verdict(["behind", "behind", "ahead"]) == "not reproduced"
    assert claim_verdict(["ahead", "behind"]) == "inconclusive"
    assert claim_verdict(["ahead", "undecided"]) == "inconclusive"
    assert claim_verdict([]) == "inconclusive"
