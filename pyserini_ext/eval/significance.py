"""Significance of a condition against its baseline: paired t-test over per-query scores, Bonferroni-corrected.

A spec naming ``baseline: OTHER`` is compared with OTHER metric by metric, on the queries both
were scored on (the same qrels, so the same queries). The p-values of every row compared with one
baseline form one family and are multiplied by the family's size (Bonferroni, capped at 1): with
several conditions and metrics against one BM25 run, an uncorrected 0.05 would flag a difference
by chance far more often than one time in twenty.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from scipy import stats

BETTER, WORSE = "▲", "▼"
ALPHA = 0.05


@dataclass(frozen=True)
class Comparison:
    spec: str
    baseline: str
    metric: str
    queries: int
    mean_difference: float  # spec minus baseline
    t: float
    p: float
    p_corrected: float  # Bonferroni over the rows compared with the same baseline

    @property
    def significant(self) -> bool:
        return self.p_corrected < ALPHA

    @property
    def mark(self) -> str:
        if not self.significant:
            return ""
        return BETTER if self.mean_difference > 0 else WORSE

    def describe(self) -> str:
        return (f"vs {self.baseline}: {self.mean_difference:+.4f} over {self.queries} queries, paired t = {self.t:.3f}, "
                f"p = {self.p:.3g}, Bonferroni-corrected p = {self.p_corrected:.3g}")


def paired_t_test(scores: dict[str, float], baseline: dict[str, float]) -> tuple[int, float, float, float]:
    """``(queries, mean difference, t, two-sided p)`` over the queries both score.

    Identical scores on every query give t = 0 and p = 1 (scipy says nan: no variance, no evidence).
    """
    qids = sorted(set(scores) & set(baseline))
    a = np.array([scores[q] for q in qids], dtype=float)
    b = np.array([baseline[q] for q in qids], dtype=float)
    if len(qids) < 2:
        return len(qids), float(np.mean(a - b)) if qids else 0.0, 0.0, 1.0
    difference = float(np.mean(a - b))
    if np.all(a == b):
        return len(qids), 0.0, 0.0, 1.0
    result = stats.ttest_rel(a, b)
    return len(qids), difference, float(result.statistic), float(result.pvalue)


def bonferroni(pvalues: list[float]) -> list[float]:
    return [min(1.0, p * len(pvalues)) for p in pvalues]


def compare_with_baselines(records: dict[str, dict]) -> dict[tuple[str, str], Comparison]:
    """Every ``(spec, metric)`` of a record naming a baseline whose record has the same metric per query.

    ``records`` maps spec names to results records (``pyserini_ext.repro.results``): each with
    ``baseline`` and ``per_query`` ``{metric: {qid: score}}``.
    """
    families: dict[str, list[tuple[str, str, tuple]]] = {}
    for name, record in sorted(records.items()):
        base = record.get("baseline")
        if not base or base not in records or record.get("error"):
            continue
        ours, theirs = record.get("per_query") or {}, records[base].get("per_query") or {}
        for metric in sorted(set(ours) & set(theirs)):
            families.setdefault(base, []).append((name, metric, paired_t_test(ours[metric], theirs[metric])))
    comparisons = {}
    for base, rows in families.items():
        corrected = bonferroni([row[2][3] for row in rows])
        for (name, metric, (n, diff, t, p)), p_corrected in zip(rows, corrected):
            comparisons[(name, metric)] = Comparison(name, base, metric, n, diff, t, p, p_corrected)
    return comparisons
