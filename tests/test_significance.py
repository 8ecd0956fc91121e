"""Significance against a baseline: the paired t statistic checked by hand, the p-value against
scipy's own t distribution, Bonferroni over the rows compared with one baseline."""

import math

import pytest
from scipy import stats

from pyserini_ext.eval.significance import BETTER, WORSE, bonferroni, compare_with_baselines, paired_t_test

SPEC = {"q1": 0.5, "q2": 0.6, "q3": 0.9, "q4": 0.3}
BASE = {"q1": 0.4, "q2": 0.4, "q3": 0.6, "q4": 0.3, "q5": 0.7}  # q5: not scored by the spec, left out


def test_paired_t_statistic_by_hand_and_p_from_the_t_distribution():
    # differences 0.1, 0.2, 0.3, 0.0: mean 0.15, sample variance (0.0025+0.0025+0.0225+0.0225)/3 = 0.05/3
    t_by_hand = 0.15 / (math.sqrt(0.05 / 3) / math.sqrt(4))
    assert t_by_hand == pytest.approx(2.3237900077, abs=1e-9)
    n, difference, t, p = paired_t_test(SPEC, BASE)
    assert (n, difference) == (4, pytest.approx(0.15))
    assert t == pytest.approx(t_by_hand, rel=1e-12)
    assert p == pytest.approx(2 * stats.t.sf(t_by_hand, df=3), rel=1e-12)  # two-sided, 3 degrees of freedom
    reference = stats.ttest_rel([0.5, 0.6, 0.9, 0.3], [0.4, 0.4, 0.6, 0.3])
    assert (t, p) == (pytest.approx(reference.statistic), pytest.approx(reference.pvalue))


def test_identical_scores_are_no_evidence():
    assert paired_t_test(SPEC, dict(SPEC)) == (4, 0.0, 0.0, 1.0)


def test_bonferroni_multiplies_by_the_family_size_capped_at_one():
    assert bonferroni([0.01, 0.02, 0.4]) == [0.03, 0.06, 1.0]


def test_comparisons_are_corrected_per_baseline_and_marked():
    better = {f"q{i}": 0.5 + 0.1 * (i % 3) + 0.05 for i in range(30)}
    base = {f"q{i}": 0.5 + 0.1 * (i % 3) + (0.01 if i % 2 else 0.0) for i in range(30)}
    worse = {q: v - 0.2 + (0.01 if int(q[1:]) % 5 else 0.0) for q, v in base.items()}
    records = {
        "base": {"baseline": None, "per_query": {"nDCG@10": base, "R@100": base}},
        "up": {"baseline": "base", "per_query": {"nDCG@10": better, "R@100": dict(base)}},
        "down": {"baseline": "base", "per_query": {"nDCG@10": worse}},
        "orphan": {"baseline": "missing", "per_query": {"nDCG@10": better}},
    }
    comparisons = compare_with_baselines(records)
    assert set(comparisons) == {("up", "nDCG@10"), ("up", "R@100"), ("down", "nDCG@10")}
    for c in comparisons.values():  # three rows against "base": Bonferroni multiplies by 3
        assert c.p_corrected == pytest.approx(min(1.0, 3 * c.p))
        if (c.spec, c.metric) != ("up", "R@100"):  # identical scores: scipy says nan, we say p = 1 (below)
            assert c.p == pytest.approx(stats.ttest_rel(list(records[c.spec]["per_query"][c.metric].values()),
                                                        [base[q] for q in records[c.spec]["per_query"][c.metric]]).pvalue)
    assert comparisons[("up", "nDCG@10")].mark == BETTER
    assert comparisons[("down", "nDCG@10")].mark == WORSE
    assert comparisons[("up", "R@100")].mark == "" and comparisons[("up", "R@100")].p == 1.0
