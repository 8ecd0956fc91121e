"""Late-interaction search over a token store: exact MaxSim (ColBERT), XTR's imputed
scores, and IVF (PLAID-style) candidate generation.

All three take a query's token vectors ``Q`` (``m x dim``) and return Pyserini
``DenseSearchResult`` lists in the foundation's total order (score, then tie policy):

* :class:`ColbertSearcher`: each query token retrieves its top ``k_prime`` document
  tokens from a token index (flat, or IVF with ``nprobe``); the documents owning them are
  the candidates, scored exactly by MaxSim ``sum_i max_j Q_i . D_j`` from the token store.
* :class:`XtrSearcher`: scores come only from the retrieved tokens, never from the store.
  For query token i and candidate d, ``s_i(d)`` is XTR's ``max(best retrieved score among
  d's tokens, m_i)`` (``combine="max"``, the equation; ``m_i`` alone when none of d's tokens
  was retrieved for i, the best retrieved alone when all were), or the best retrieved score
  as it is (``combine="retrieved"``, how the reference code is written); the score is
  ``sum_i s_i(d)``. ``m_i`` from token i's retrieved scores: ``min`` (the k'-th score,
  XTR's choice), ``zero``, ``mean``, ``p10`` (10th percentile) or ``power`` (a power law
  ``s(r) = a r^b`` fitted to the scores by rank, evaluated at rank k'+1).
* :class:`IvfSearcher` (PLAID-style): each query token's ``nprobe`` nearest k-means
  centroids select the documents with a token in those clusters; those documents are
  ranked by centroid interaction (the MaxSim of the query against the centroids standing in
  for the document's tokens) and the best ``ndocs`` are scored by exact MaxSim.

The scores themselves (:func:`~pyserini_ext.scores.maxsim`,
:func:`~pyserini_ext.scores.xtr_imputed_scores`) live in :mod:`pyserini_ext.scores`.
"""

from __future__ import annotations

import numpy as np
from pyserini.search.faiss import DenseSearchResult

from pyserini_ext.store import TokenStore
from pyserini_ext.scores import IMPUTATIONS, XTR_COMBINES, maxsim, xtr_imputed_scores
from pyserini_ext.search.run import gc_paused
from pyserini_ext.search.ties import check_policy, docid_ranks, total_order


class _LateInteractionSearcher:
    """Pyserini's searcher interface over query token matrices."""

    def __init__(self, store: TokenStore, query_encoder, tie_policy: str = "docid", seed: int = 0):
        self.store, self.query_encoder = store, query_encoder
        self.tie_policy, self.seed = check_policy(tie_policy), seed
        self.docids = store.docids
        self.ranks = docid_ranks(self.docids)  # the tie key, once per store
        self._docid_array = np.array(self.docids, dtype=object)

    def search(self, query: str | np.ndarray, k: int = 10, threads: int = 1) -> list[DenseSearchResult]:
        qid = query if isinstance(query, str) else ""
        vectors = self.query_encoder.encode_batch([query])[0] if isinstance(query, str) else query
        ranked = self._ranked(qid, *self.score(vectors), k)
        with gc_paused():
            return self._objects(*ranked)

    def batch_search(self, queries: list[str] | np.ndarray, q_ids: list[str], k: int = 10,
                     threads: int = 1) -> dict[str, list[DenseSearchResult]]:
        found = self.batch_search_arrays(queries, q_ids, k, threads)
        with gc_paused():  # one collection after the whole batch, not one per list
            return {qid: self._objects(*ranked) for qid, ranked in found.items()}

    def batch_search_arrays(self, queries: list[str] | np.ndarray, q_ids: list[str], k: int = 10,
                            threads: int = 1) -> dict[str, tuple[list[str], np.ndarray]]:
        """``batch_search`` as ``{qid: (docids, scores)}``, in the same total order."""
        vectors = queries if isinstance(queries, np.ndarray) else self.query_encoder.encode_batch(list(queries))
        return {qid: self._ranked(qid, *scored, k) for qid, scored in zip(q_ids, self.score_many(vectors))}

    @staticmethod
    def _objects(docids: list[str], scores: np.ndarray) -> list[DenseSearchResult]:
        return list(map(DenseSearchResult, docids, np.asarray(scores, dtype=np.float64).tolist()))

    def score(self, query: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(candidate document indices, their scores) for one query's token matrix."""
        raise NotImplementedError

    def score_many(self, queries: np.ndarray) -> list[tuple[np.ndarray, np.ndarray]]:
        return [self.score(q) for q in queries]

    def _ranked(self, qid: str, docs: np.ndarray, scores: np.ndarray, k: int) -> tuple[list[str], np.ndarray]:
        """(docids, scores) of candidate documents ``docs`` in the total order, cut at ``k``."""
        docs = np.asarray(docs, dtype=np.int64)
        order = total_order(None, scores, self.tie_policy, self.seed, qid, ranks=self.ranks[docs])[:k]
        return self._docid_array[docs[order]].tolist(), np.asarray(scores)[order]

    def exact(self, query: np.ndarray, docs: np.ndarray) -> np.ndarray:
        return maxsim(query, [self.store.doc_tokens(int(d)) for d in docs])


class ColbertSearcher(_LateInteractionSearcher):
    def __init__(self, store: TokenStore, token_index, query_encoder, k_prime: int = 100, nprobe: int = 32,
                 tie_policy: str = "docid", seed: int = 0):
        super().__init__(store, query_encoder, tie_policy, seed)
        self.index, self.k_prime = token_index, k_prime
        self.token_doc = store.token_doc()
        if hasattr(token_index, "nprobe"):
            token_index.nprobe = nprobe

    def candidates(self, query: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Retrieved (scores, token ids), each ``m x k'``."""
        scores, ids = self.index.search(np.ascontiguousarray(query, dtype=np.float32), self.k_prime)
        return scores, ids

    def score(self, query):
        return self.score_retrieved(query, *self.candidates(query))

    def score_retrieved(self, query, scores, ids):
        docs = np.unique(self.token_doc[ids[ids >= 0]])
        return docs, self.exact(query, docs)

    def score_many(self, queries):
        # One token search for every query's tokens: one large matrix product instead of many
        # skinny ones (several times faster on a flat index).
        m = queries.shape[1]
        scores, ids = self.candidates(queries.reshape(-1, queries.shape[2]))
        return [self.score_retrieved(q, scores[i * m:(i + 1) * m], ids[i * m:(i + 1) * m])
                for i, q in enumerate(queries)]


class XtrSearcher(ColbertSearcher):
    def __init__(self, store: TokenStore, token_index, query_encoder, k_prime: int = 100, nprobe: int = 32,
                 imputation: str = "min", tie_policy: str = "docid", seed: int = 0, combine: str = "max"):
        super().__init__(store, token_index, query_encoder, k_prime, nprobe, tie_policy, seed)
        if imputation not in IMPUTATIONS:
            raise ValueError(f"imputation must be one of {IMPUTATIONS}, got {imputation!r}")
        if combine not in XTR_COMBINES:
            raise ValueError(f"combine must be one of {XTR_COMBINES}, got {combine!r}")
        self.imputation, self.combine = imputation, combine

    def score_retrieved(self, query, scores, ids):
        return xtr_imputed_scores(scores, ids, self.token_doc, self.imputation, self.combine)


class IvfSearcher(_LateInteractionSearcher):
    def __init__(self, store: TokenStore, ivf_index, query_encoder, nprobe: int = 4, ndocs: int = 1000,
                 tie_policy: str = "docid", seed: int = 0):
        import faiss

        super().__init__(store, query_encoder, tie_policy, seed)
        self.index = ivf_index  # owns the quantizer below: it must live as long as this searcher
        ivf = faiss.extract_index_ivf(ivf_index)
        self.quantizer, self.nprobe, self.ndocs = ivf.quantizer, nprobe, ndocs
        token_doc = store.token_doc()
        lists = ivf.invlists
        # Documents with a token in each cluster, from the inverted lists themselves.
        self.cluster_docs = [
            np.unique(token_doc[faiss.rev_swig_ptr(lists.get_ids(c), lists.list_size(c)).copy()])
            if lists.list_size(c) else np.zeros(0, dtype=np.int32)
            for c in range(ivf.nlist)
        ]

    def centroid_scores(self, query: np.ndarray) -> np.ndarray:
        """PLAID's centroid interaction: for every document, ``sum_i max`` over query token i's
        probed centroids that hold one of the document's tokens of that centroid's score
        (a token whose probes miss the document adds 0; a document no probe reaches is -inf)."""
        scores, clusters = self.quantizer.search(np.ascontiguousarray(query, dtype=np.float32), self.nprobe)
        best = np.full((len(query), self.store.num_docs), -np.inf, dtype=np.float32)
        for i, (row_scores, row_clusters) in enumerate(zip(scores, clusters)):
            for score, c in zip(row_scores, row_clusters):
                if c >= 0:
                    docs = self.cluster_docs[c]
                    best[i, docs] = np.maximum(best[i, docs], score)
        reached = np.isfinite(best).any(axis=0)
        return np.where(reached, np.where(np.isfinite(best), best, 0).sum(axis=0), -np.inf)

    def score(self, query):
        approx = self.centroid_scores(query)
        hit = np.flatnonzero(np.isfinite(approx))
        keep = hit if len(hit) <= self.ndocs else hit[np.argsort(-approx[hit], kind="stable")[:self.ndocs]]
        docs = np.sort(keep)
        return docs, self.exact(query, docs)
