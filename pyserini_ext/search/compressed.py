"""Late-interaction search over a compressed index (:mod:`pyserini_ext.index.compressed` builds it,
:mod:`pyserini_ext.store.compressed` reads it):
WARP-style and PLAID-style engines, both scoring tokens as ``q . c + q . w[code]`` from the
query x centroid product and per-query look-up tables, never from decompressed vectors.

:class:`WarpSearcher` (Jha et al., 2025):

1. *select*: each query token ``q_i`` probes its ``nprobe`` best centroids; its missing
   similarity ``m_i`` (XTR's estimate for a document none of whose tokens it retrieved) is
   the score of the first centroid, best first, at which the lists' cumulative size reaches
   ``t_prime`` tokens;
2. *score*: every token in a probed list gets ``q_i . c + q_i . w[code]`` for the query
   tokens that probed its list (look-up tables, one embedding-bag sum per token);
3. *reduce*, twice: per query token and document the best token score (``s_i(d)``), then per
   document ``sum_i s_i(d)``, with ``m_i`` where ``q_i`` retrieved none of ``d``'s tokens.

:class:`PlaidSearcher` (Santhanam et al., 2022): candidates are the documents with a token in
a probed list; they are ranked by centroid interaction (``sum_i max_{t in d} q_i . c_t``) with
centroids whose best query-token score is below ``centroid_threshold`` pruned (scored 0), the
best ``ndocs`` again without pruning, and the best ``ndocs / 4`` by the full compressed score
``sum_i max_t (q_i . c_t + q_i . w[code_t])``.

Either can re-score its best ``rescore_depth`` documents by exact MaxSim from the FP16 token
store (``rescore="exact"``) and return only those.
"""

from __future__ import annotations

import numpy as np
import torch

from pyserini_ext.store.compressed import CompressedIndex, expand_ranges
from pyserini_ext.scores import maxsim
from pyserini_ext.search.multivector import _LateInteractionSearcher

RESCORE = ("none", "exact")


def residual_scores(index: CompressedIndex, queries: np.ndarray, positions: np.ndarray,
                    block: int = 1 << 14) -> np.ndarray:
    """``len(positions) x m``: ``q_i . w[code]`` of the tokens at ``positions`` (centroid order)
    for every query token, from the packed bytes and the query's look-up tables."""
    tables = torch.from_numpy(index.codec.residual_tables(queries))
    shift = np.arange(index.codec.packed_width, dtype=np.int32) * 256
    out = np.empty((len(positions), tables.shape[1]), dtype=np.float32)
    for start in range(0, len(positions), block):
        rows = np.add(index.residuals[positions[start:start + block]], shift, dtype=np.int32)  # one pass: widen + shift
        out[start:start + len(rows)] = torch.nn.functional.embedding_bag(torch.from_numpy(rows), tables, mode="sum")
    return out


def missing_similarity(centroid_scores: np.ndarray, sizes: np.ndarray, t_prime: int, start: int = 64) -> np.ndarray:
    """WARP's ``m_i`` per query token: the score of the first centroid (best first) at which
    the cumulative size of the lists reaches ``t_prime`` tokens (the last centroid's when the
    whole index holds fewer)."""
    m, nlist = centroid_scores.shape
    width = min(nlist, start)
    while True:
        if width < nlist:
            top = np.argpartition(-centroid_scores, width - 1, axis=1)[:, :width]
        else:
            top = np.broadcast_to(np.arange(nlist), (m, nlist))
        values = np.take_along_axis(centroid_scores, top, axis=1)
        order = np.argsort(-values, axis=1, kind="stable")
        values, top = np.take_along_axis(values, order, axis=1), np.take_along_axis(top, order, axis=1)
        cumulative = np.cumsum(sizes[top], axis=1)
        if width == nlist or (cumulative[:, -1] >= t_prime).all():
            reach = np.minimum((cumulative < t_prime).sum(axis=1), width - 1)
            return values[np.arange(m), reach]
        width = min(nlist, width * 4)


def top_columns(scores: np.ndarray, count: int) -> np.ndarray:
    """The ``count`` best columns of each row (unordered)."""
    if count >= scores.shape[1]:
        return np.broadcast_to(np.arange(scores.shape[1]), scores.shape)
    return np.argpartition(-scores, count - 1, axis=1)[:, :count]


def distinct_docs(index: CompressedIndex, docs: np.ndarray) -> np.ndarray:
    """The distinct documents of ``docs``, ascending, in O(N) (no sort)."""
    mark = np.zeros(index.num_docs, dtype=bool)
    mark[docs] = True
    return np.flatnonzero(mark)


def warp_scores(index: CompressedIndex, query: np.ndarray, nprobe: int, t_prime: int
                ) -> tuple[np.ndarray, np.ndarray]:
    """(documents, scores) of WARP's select, score and two-stage reduction (module docstring)."""
    query = np.asarray(query, dtype=np.float32)
    scores = index.centroid_scores(query)  # m x nlist
    m, nlist = scores.shape
    probes = top_columns(scores, nprobe)
    probed = np.zeros((m, nlist), dtype=bool)
    probed[np.arange(m)[:, None], probes] = True
    missing = missing_similarity(scores, index.sizes, t_prime)
    clusters = np.flatnonzero(probed.any(axis=0) & (index.sizes > 0))
    positions, _ = expand_ranges(index.offsets[clusters], index.sizes[clusters])
    if not len(positions):
        return np.zeros(0, dtype=np.int64), np.zeros(0, dtype=np.float32)
    cluster_of = np.repeat(clusters, index.sizes[clusters])
    token_scores = residual_scores(index, query, positions)
    token_scores += scores.T[cluster_of]
    token_scores[~probed.T[cluster_of]] = -np.inf  # a query token scores only the lists it probed
    # Reduction 1: per (document, query token), the best of the document's scored tokens. Token
    # ids run in document order, so sorting them groups each document's tokens for one reduceat.
    by_doc = np.argsort(index.token_at[positions])
    doc_of = index.doc_of[positions[by_doc]]
    firsts = np.flatnonzero(np.concatenate([[True], doc_of[1:] != doc_of[:-1]]))
    docs = doc_of[firsts].astype(np.int64)
    best = np.maximum.reduceat(token_scores[by_doc], firsts, axis=0)
    # Reduction 2: per document, the sum over query tokens, m_i where q_i retrieved none of its tokens.
    return docs, np.where(np.isneginf(best), missing[None, :], best).sum(axis=1)


def interaction(index: CompressedIndex, centroid_scores_t: np.ndarray, docs: np.ndarray) -> np.ndarray:
    """PLAID's centroid interaction of ``docs``: ``sum_i max_{t in d} S[i, code_t]`` from the
    ``nlist x m`` transposed centroid scores, over each document's distinct codes."""
    codes, starts = index.doc_codes
    docs = np.asarray(docs, dtype=np.int64)
    entries, firsts = expand_ranges(starts[docs], starts[docs + 1] - starts[docs])
    return np.maximum.reduceat(centroid_scores_t[codes[entries]], firsts, axis=0).sum(axis=1)


def compressed_maxsim(index: CompressedIndex, query: np.ndarray, docs: np.ndarray,
                      centroid_scores: np.ndarray | None = None) -> np.ndarray:
    """``sum_i max_{t in d} (q_i . c_t + q_i . w[code_t])`` of each document in ``docs``:
    the exact MaxSim of the decompressed vectors, scored without decompressing them."""
    query = np.asarray(query, dtype=np.float32)
    if centroid_scores is None:
        centroid_scores = index.centroid_scores(query)
    docs = np.asarray(docs, dtype=np.int64)
    if not len(docs):
        return np.zeros(0, dtype=np.float32)
    tokens, firsts = index.token_ranges(docs)
    token_scores = residual_scores(index, query, index.positions[tokens])
    token_scores += centroid_scores.T[np.asarray(index.codes[tokens], dtype=np.int64)]
    return np.maximum.reduceat(token_scores, firsts, axis=0).sum(axis=1)


def plaid_scores(index: CompressedIndex, query: np.ndarray, nprobe: int, ndocs: int, centroid_threshold: float
                 ) -> tuple[np.ndarray, np.ndarray]:
    """(documents, scores) of PLAID's candidate generation, pruned and full centroid
    interaction, and compressed scoring of the best ``ndocs / 4`` (module docstring)."""
    stages = plaid_stages(index, query, nprobe, ndocs, centroid_threshold)
    return stages[-2], stages[-1]


def plaid_stages(index: CompressedIndex, query: np.ndarray, nprobe: int, ndocs: int, centroid_threshold: float
                 ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """PLAID's stages: the candidates, the best ``ndocs`` by pruned centroid interaction, the
    best ``ndocs / 4`` of those by full centroid interaction, and their compressed scores."""
    query = np.asarray(query, dtype=np.float32)
    scores = index.centroid_scores(query)
    clusters = np.unique(top_columns(scores, nprobe))
    clusters = clusters[index.sizes[clusters] > 0]
    positions, _ = expand_ranges(index.offsets[clusters], index.sizes[clusters])
    candidates = distinct_docs(index, np.asarray(index.doc_of[positions], dtype=np.int64))
    if not len(candidates):
        return candidates, candidates, candidates, np.zeros(0, dtype=np.float32)
    transposed = np.ascontiguousarray(scores.T)
    pruned = np.where((scores.max(axis=0) >= centroid_threshold)[:, None], transposed, 0.0).astype(np.float32)
    shortlist = _best(candidates, interaction(index, pruned, candidates), ndocs)
    final = _best(shortlist, interaction(index, transposed, shortlist), max(1, ndocs // 4))
    return candidates, shortlist, final, compressed_maxsim(index, query, final, scores)


def _best(docs: np.ndarray, scores: np.ndarray, count: int) -> np.ndarray:
    if len(docs) <= count:
        return docs
    return np.sort(docs[np.argpartition(-scores, count - 1)[:count]])


class _CompressedSearcher(_LateInteractionSearcher):
    """Pyserini's searcher interface (``search``, ``batch_search``) over a compressed index."""

    def __init__(self, index: CompressedIndex, query_encoder, tokens=None, rescore: str = "none",
                 rescore_depth: int = 1000, tie_policy: str = "docid", seed: int = 0):
        if rescore not in RESCORE:
            raise ValueError(f"rescore must be one of {RESCORE}, got {rescore!r}")
        if rescore == "exact" and tokens is None:
            raise ValueError("rescore='exact' needs the token store")
        super().__init__(index, query_encoder, tie_policy, seed)
        self.index, self.tokens, self.rescore, self.rescore_depth = index, tokens, rescore, rescore_depth

    def approximate(self, query: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        raise NotImplementedError

    def score(self, query):
        docs, scores = self.approximate(query)
        if self.rescore == "exact" and len(docs):
            docs = _best(docs, scores, self.rescore_depth)
            scores = maxsim(query, [self.tokens.doc_tokens(int(d)) for d in docs])
        return docs, scores


class WarpSearcher(_CompressedSearcher):
    def __init__(self, index: CompressedIndex, query_encoder, nprobe: int = 16, t_prime: int = 10_000, **options):
        super().__init__(index, query_encoder, **options)
        self.nprobe, self.t_prime = nprobe, t_prime

    def approximate(self, query):
        return warp_scores(self.index, query, self.nprobe, self.t_prime)


class PlaidSearcher(_CompressedSearcher):
    def __init__(self, index: CompressedIndex, query_encoder, nprobe: int = 4, ndocs: int = 4096,
                 centroid_threshold: float = 0.45, **options):
        super().__init__(index, query_encoder, **options)
        self.nprobe, self.ndocs, self.centroid_threshold = nprobe, ndocs, centroid_threshold

    def approximate(self, query):
        return plaid_scores(self.index, query, self.nprobe, self.ndocs, self.centroid_threshold)
