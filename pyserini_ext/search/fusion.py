"""Fusion of two or more ranked lists, totally ordered.

* :func:`hybrid_interpolation`: Pyserini ``HybridSearcher`` semantics for one sparse
  and one dense list: a document missing from one list takes that list's minimum
  score; optional normalisation ``(s - (min + max) / 2) / (max - min)`` per list
  (0 for a list of equal scores, where Pyserini raises ZeroDivisionError);
  ``alpha * sparse + dense``, or ``sparse + alpha * dense`` with ``weight_on_dense``.
* :func:`weighted_sum`: ``sum_i w_i * s_i(d)`` over any number of lists, a missing
  document contributing 0 (``pyserini.fusion.interpolation`` with weights
  ``alpha, 1 - alpha``, and ``average`` with equal weights).
* :func:`reciprocal_rank_fusion`: ``sum_i 1 / (k + rank_i(d))`` (Cormack et al., 2009; k = 60).

Pyserini's ``HybridSearcher`` sorts the union of documents as a ``set`` iterates,
so tied fused scores come out in hash order; here every list ends in the total
order of :mod:`pyserini_ext.search.ties` (``shuffle`` permutes the union in order of
first appearance: sparse list first, then the dense list's new documents).
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np

from pyserini_ext.search.run import Hit, ScoredDoc, hit_fields, order_arrays, search_complete
from pyserini_ext.search.ties import TieOrder

RRF_K = 60


# Vectorised: each fused list is built from NumPy arrays (the union by one C-level dict pass,
# sums by bincount in list order, so every float operation and its order is the per-document
# one); docids are string-sorted only where fused scores tie.

def _union(docids: list[str]) -> tuple[list[str], np.ndarray]:
    """Distinct docids in order of first appearance, and each input's index among them."""
    distinct = list(dict.fromkeys(docids))
    where = dict(zip(distinct, range(len(distinct))))
    return distinct, np.fromiter(map(where.__getitem__, docids), dtype=np.int64, count=len(docids))


def _last_values(index: np.ndarray, values: np.ndarray, size: int) -> tuple[np.ndarray, np.ndarray]:
    """``{docid: value}`` as a dict comprehension builds it (the last occurrence wins), per distinct index."""
    last = np.full(size, -1, dtype=np.int64)
    np.maximum.at(last, index, np.arange(len(index)))
    present = last >= 0
    return np.where(present, values[np.maximum(last, 0)] if len(values) else 0.0, 0.0), present


def hybrid_interpolation(sparse: Sequence[ScoredDoc], dense: Sequence[ScoredDoc], alpha: float = 0.1,
                         normalization: bool = False, weight_on_dense: bool = False, k: int | None = None,
                         tie_policy: str = "docid", seed: int = 0, qid: str = "") -> list[Hit]:
    (sparse_ids, sparse_scores), (dense_ids, dense_scores) = hit_fields(sparse), hit_fields(dense)
    if not sparse_ids and not dense_ids:
        return []
    distinct, index = _union(sparse_ids + dense_ids)
    n, split = len(distinct), len(sparse_ids)
    s_val, s_has = _last_values(index[:split], sparse_scores, n)
    d_val, d_has = _last_values(index[split:], dense_scores, n)
    s_min, s_max = (s_val[s_has].min(), s_val[s_has].max()) if split else (0.0, 1.0)
    d_min, d_max = (d_val[d_has].min(), d_val[d_has].max()) if len(dense_ids) else (0.0, 1.0)
    s = np.where(s_has, s_val, s_min)
    d = np.where(d_has, d_val, d_min)
    if normalization:
        s, d = _centre_scale(s, s_min, s_max), _centre_scale(d, d_min, d_max)
    fused = s + alpha * d if weight_on_dense else alpha * s + d
    return order_arrays(distinct, fused, tie_policy, seed, qid, k)


def _centre_scale(score, low: float, high: float):
    """HybridSearcher's normalisation; a list of equal scores maps to 0 (Pyserini divides by zero)."""
    return (score - (low + high) / 2) / (high - low) if high > low else np.zeros_like(score)


def _weighted(docids: list[str], contributions: np.ndarray, k, tie_policy, seed, qid) -> list[Hit]:
    if not docids:
        return []
    distinct, index = _union(docids)
    # bincount adds in input order, from 0.0: the same sums, bit for bit, as a dict of running totals.
    sums = np.bincount(index, weights=contributions, minlength=len(distinct))
    return order_arrays(distinct, sums, tie_policy, seed, qid, k)


def weighted_sum(lists: Sequence[Sequence[ScoredDoc]], weights: Sequence[float], depth: int | None = None,
                 k: int | None = None, tie_policy: str = "docid", seed: int = 0, qid: str = "") -> list[Hit]:
    if len(weights) != len(lists):
        raise ValueError(f"{len(weights)} weights for {len(lists)} lists")
    fields = [hit_fields(hits[:depth]) for hits in lists]
    docids = [d for ids, _ in fields for d in ids] if len(fields) != 1 else fields[0][0]
    contributions = np.concatenate([weight * scores for (_, scores), weight in zip(fields, weights)]) \
        if fields else np.zeros(0)
    return _weighted(docids, contributions, k, tie_policy, seed, qid)


def reciprocal_rank_fusion(lists: Sequence[Sequence[ScoredDoc]], rrf_k: int = RRF_K, depth: int | None = None,
                           k: int | None = None, tie_policy: str = "docid", seed: int = 0, qid: str = "") -> list[Hit]:
    """Ranks are positions in each list as given (1-based): pass lists in their final order."""
    docids, contributions = [], []
    for hits in lists:
        ids = hit_fields(hits[:depth])[0]
        docids.extend(ids)
        contributions.append(1.0 / (rrf_k + np.arange(1, len(ids) + 1, dtype=np.float64)))
    return _weighted(docids, np.concatenate(contributions) if contributions else np.zeros(0), k, tie_policy, seed,
                     qid)


FUSION_METHODS = ("hybrid", "weighted", "rrf")


class FusionSearcher:
    """Fuses the results of two or more searchers that have Pyserini's ``batch_search``.

    ``method="hybrid"`` takes exactly [sparse, dense] and follows ``HybridSearcher``;
    ``"weighted"`` sums weighted scores; ``"rrf"`` sums reciprocal ranks. Each input
    searcher is asked for ``depth`` hits (``HybridSearcher``'s ``k0``).
    """

    def __init__(self, searchers: Sequence, method: str = "rrf", depth: int = 1000, alpha: float = 0.1,
                 normalization: bool = False, weight_on_dense: bool = False, weights: Sequence[float] | None = None,
                 rrf_k: int = RRF_K, ties: TieOrder = TieOrder()):
        _check(method, len(searchers), "searchers")
        self.searchers, self.method, self.depth = list(searchers), method, depth
        self.alpha, self.normalization, self.weight_on_dense = alpha, normalization, weight_on_dense
        self.weights = list(weights) if weights is not None else [1.0] * len(self.searchers)
        self.rrf_k, self.ties = rrf_k, ties

    def search(self, query: str, k: int = 10) -> list[Hit]:
        return self.batch_search([query], [query], k)[query]

    def batch_search(self, queries: list[str], q_ids: list[str], k: int = 10, threads: int = 1) -> dict[str, list[Hit]]:
        # Each input list cut at ``depth`` and ranked in the run's total order first, so RRF
        # ranks depend neither on the backend nor on a tie order other than the run's.
        topics = dict(zip(q_ids, queries))
        runs = [search_complete(s, topics, self.depth, self.ties, threads) for s in self.searchers]
        return fuse_runs(runs, self.method, k, self.alpha, self.normalization, self.weight_on_dense, self.weights,
                         self.rrf_k, tie_policy=self.ties.policy, seed=self.ties.seed)


def fuse_runs(runs: Sequence[Mapping[str, Sequence[ScoredDoc]]], method: str = "rrf", k: int | None = None,
              alpha: float = 0.1, normalization: bool = False, weight_on_dense: bool = False,
              weights: Sequence[float] | None = None, rrf_k: int = RRF_K, depth: int | None = None,
              tie_policy: str = "docid", seed: int = 0) -> dict[str, list[Hit]]:
    """Fuse whole runs (``{qid: hits}``, each list in its final order) query by query.

    ``"hybrid"`` takes [sparse run, dense run]; a query missing from a run fuses an empty list.
    """
    _check(method, len(runs), "runs")
    fused = {}
    for qid in dict.fromkeys(q for run in runs for q in run):
        lists = [list(run.get(qid, []))[:depth] for run in runs]
        order = {"tie_policy": tie_policy, "seed": seed, "qid": qid, "k": k}
        if method == "hybrid":
            fused[qid] = hybrid_interpolation(lists[0], lists[1], alpha, normalization, weight_on_dense, **order)
        elif method == "weighted":
            fused[qid] = weighted_sum(lists, weights or [1.0] * len(runs), **order)
        else:
            fused[qid] = reciprocal_rank_fusion(lists, rrf_k, **order)
    return fused


def _check(method: str, count: int, what: str) -> None:
    if method not in FUSION_METHODS:
        raise ValueError(f"unknown fusion method {method!r}; choose one of {', '.join(FUSION_METHODS)}")
    if count < 2 or (method == "hybrid" and count != 2):
        raise ValueError(f"fusion {method!r} needs {'exactly' if method == 'hybrid' else 'at least'} 2 {what}")
