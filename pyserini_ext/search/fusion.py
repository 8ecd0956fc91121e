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
order of :mod:`pyserini_ext.search.ties`.
"""

from __future__ import annotations

from typing import Mapping, Sequence

from pyserini_ext.search.run import Hit, ScoredDoc, order_hits, search_complete
from pyserini_ext.search.ties import TieOrder

RRF_K = 60


def hybrid_interpolation(sparse: Sequence[ScoredDoc], dense: Sequence[ScoredDoc], alpha: float = 0.1,
                         normalization: bool = False, weight_on_dense: bool = False, k: int | None = None,
                         tie_policy: str = "docid", seed: int = 0, qid: str = "") -> list[Hit]:
    sparse_scores = {h.docid: float(h.score) for h in sparse}
    dense_scores = {h.docid: float(h.score) for h in dense}
    s_min, s_max = (min(sparse_scores.values()), max(sparse_scores.values())) if sparse_scores else (0.0, 1.0)
    d_min, d_max = (min(dense_scores.values()), max(dense_scores.values())) if dense_scores else (0.0, 1.0)
    fused = []
    for docid in sparse_scores.keys() | dense_scores.keys():
        s = sparse_scores.get(docid, s_min)
        d = dense_scores.get(docid, d_min)
        if normalization:
            s, d = _centre_scale(s, s_min, s_max), _centre_scale(d, d_min, d_max)
        fused.append(Hit(docid, s + alpha * d if weight_on_dense else alpha * s + d))
    return order_hits(fused, tie_policy, seed, qid, k)


def _centre_scale(score: float, low: float, high: float) -> float:
    """HybridSearcher's normalisation; a list of equal scores maps to 0 (Pyserini divides by zero)."""
    return (score - (low + high) / 2) / (high - low) if high > low else 0.0


def weighted_sum(lists: Sequence[Sequence[ScoredDoc]], weights: Sequence[float], depth: int | None = None,
                 k: int | None = None, tie_policy: str = "docid", seed: int = 0, qid: str = "") -> list[Hit]:
    if len(weights) != len(lists):
        raise ValueError(f"{len(weights)} weights for {len(lists)} lists")
    fused: dict[str, float] = {}
    for hits, weight in zip(lists, weights):
        for hit in hits[:depth]:
            fused[hit.docid] = fused.get(hit.docid, 0.0) + weight * float(hit.score)
    return order_hits([Hit(d, s) for d, s in fused.items()], tie_policy, seed, qid, k)


def reciprocal_rank_fusion(lists: Sequence[Sequence[ScoredDoc]], rrf_k: int = RRF_K, depth: int | None = None,
                           k: int | None = None, tie_policy: str = "docid", seed: int = 0, qid: str = "") -> list[Hit]:
    """Ranks are positions in each list as given (1-based): pass lists in their final order."""
    ranked = [[Hit(h.docid, 1.0 / (rrf_k + rank)) for rank, h in enumerate(hits, start=1)] for hits in lists]
    return weighted_sum(ranked, [1.0] * len(lists), depth, k, tie_policy, seed, qid)


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
