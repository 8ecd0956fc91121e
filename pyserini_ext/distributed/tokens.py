"""ColBERT candidate generation that does not depend on how the token index is split.

FAISS cuts a query token's top ``k'`` tokens inside a tie group at a place its heap decides
(measured here: a flat index with tied tokens keeps neither the lowest nor the highest ids),
so :class:`~pyserini_ext.search.multivector.ColbertSearcher`'s candidates are not a function
of the scores alone. :func:`top_tokens` keeps every token scoring at least the k'-th best
score instead: one index or S shards give the same set. :class:`TieCompleteColbertSearcher`
is the single-index searcher with that candidate generation, the reference of
:class:`~pyserini_ext.distributed.search.ShardedColbertSearcher` (no Ray here).
"""

from __future__ import annotations

import numpy as np

from pyserini_ext.search.multivector import ColbertSearcher


def top_tokens(index, queries: np.ndarray, k_prime: int) -> list[tuple[np.ndarray, np.ndarray]]:
    """Per row of ``queries``: (scores, token ids) of every token of ``index`` scoring at least
    the row's k'-th best score (the k'-th tie group complete). The whole batch is searched again,
    deeper, while any row's tie group runs past what was fetched: the same batch shape each time,
    so FAISS scores every row with the same kernel."""
    queries = np.ascontiguousarray(queries, dtype=np.float32)
    total = index.ntotal
    k_prime = min(k_prime, total)
    fetch = min(total, k_prime + 16)
    while True:
        scores, ids = index.search(queries, fetch)
        if fetch == total or not np.any(scores[:, -1] >= scores[:, k_prime - 1]):
            break
        fetch = min(total, fetch * 2)
    keep = (ids >= 0) & (scores >= scores[:, k_prime - 1:k_prime])
    return [(s[m], i[m]) for s, i, m in zip(scores, ids, keep)]


class TieCompleteColbertSearcher(ColbertSearcher):
    """:class:`~pyserini_ext.search.multivector.ColbertSearcher` whose query tokens retrieve every
    token scoring at least their k'-th best (:func:`top_tokens`); exact MaxSim as before."""

    def candidates(self, query: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        rows = top_tokens(self.index, query, self.k_prime)
        width = max(len(s) for s, _ in rows)
        scores = np.full((len(rows), width), -np.inf, dtype=np.float32)
        ids = np.full((len(rows), width), -1, dtype=np.int64)  # score_retrieved skips ids < 0
        for r, (s, i) in enumerate(rows):
            scores[r, :len(s)], ids[r, :len(i)] = s, i
        return scores, ids
