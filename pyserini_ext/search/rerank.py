"""Pipelines of stages, ``first_stage >> rerank``, and re-ranking from stored vectors.

A *stage* maps ``(topics, run)`` to a new run. :class:`Retrieve` wraps any searcher
with Pyserini's ``batch_search`` as a first stage; :class:`DenseRerank` re-scores a
candidate list with a query vector against document vectors already on disk (looked
up by docid, memory-mapped, no ANN search: :class:`pyserini_ext.store.VectorStore`);
:class:`ImpactRerank` and :class:`TokenRerank` do the same from stored impacts and stored
token vectors (exact MaxSim: a ColBERT model as a re-ranker).
Stages compose with ``>>``, and the composition is itself a searcher (``batch_search``),
so it runs wherever a searcher does: in Python, in Pyserini's ``HybridSearcher``, or in a regression spec.

    pipeline = Retrieve(bm25, depth=1000) >> DenseRerank(VectorStore(shards), encoder)
    run = pipeline.batch_search(queries, qids, k=1000)
"""

from __future__ import annotations

from typing import Any, Callable, Mapping, Sequence

import numpy as np

from pyserini_ext.scores import maxsim
from pyserini_ext.search.run import Hit, hit_fields, make_hits, search_complete, take
from pyserini_ext.search.ties import TieOrder, total_order
from pyserini_ext.store.readers import ImpactStore, TokenStore, VectorStore

Run = dict[str, list[Hit]]


class Stage:
    """Maps ``(topics, run)`` to a run; ``topics`` is ``{qid: text}``, lists in their final order."""

    def transform(self, topics: Mapping[str, str], run: Run | None) -> Run:
        raise NotImplementedError

    def __rshift__(self, other: "Stage") -> "Sequential":
        return Sequential([self, other])

    def batch_search(self, queries: Sequence[str], q_ids: Sequence[str], k: int = 10, threads: int = 1) -> Run:
        run = self.transform(dict(zip(q_ids, queries)), None)
        return {qid: hits[:k] for qid, hits in run.items()}

    def search(self, query: str, k: int = 10) -> list[Hit]:
        return self.batch_search([query], [query], k)[query]


class Sequential(Stage):
    def __init__(self, stages: Sequence[Stage]):
        self.stages = [s for stage in stages for s in (stage.stages if isinstance(stage, Sequential) else [stage])]

    def transform(self, topics, run=None):
        for stage in self.stages:
            run = stage.transform(topics, run)
        return run

    def __repr__(self) -> str:
        return " >> ".join(map(repr, self.stages))


class Retrieve(Stage):
    """First stage: ``depth`` hits per query from any searcher with ``batch_search``; a tie
    group at the ``depth`` cut is cut in ``ties``' order, not the searcher's."""

    def __init__(self, searcher, depth: int = 1000, threads: int = 1, ties: TieOrder = TieOrder()):
        self.searcher, self.depth, self.threads, self.ties = searcher, depth, threads, ties

    def transform(self, topics, run=None):
        return search_complete(self.searcher, topics, self.depth, self.ties, self.threads)

    def __repr__(self) -> str:
        return f"Retrieve({type(self.searcher).__name__}, depth={self.depth})"


# The stores moved to pyserini_ext.store; the old names stay importable from here.
StoredVectors = VectorStore
StoredImpacts = ImpactStore


class Rerank(Stage):
    """Re-score each candidate against its stored representation (``store.score``).

    Candidates the store does not have are dropped (they cannot be scored); the
    result keeps the total order (score, then tie policy). The store scores a whole batch
    of queries at once (``store.score_many``: one gather, one matrix product per batch).
    """

    def __init__(self, store, encode_queries: Callable[[list[str]], Any], name: str, ties: TieOrder = TieOrder()):
        self.store, self.encode_queries, self.name, self.ties = store, encode_queries, name, ties

    def transform(self, topics, run):
        qids = [q for q in topics if q in run]
        queries = self.encode_queries([topics[q] for q in qids])
        ranked = self.rerank_arrays(queries, [hit_fields(run[q])[0] for q in qids], qids)
        return {qid: make_hits(docids, scores) for qid, (docids, scores) in zip(qids, ranked)}

    def rerank_arrays(self, queries, candidates: Sequence[Sequence[str]], qids: Sequence[str]
                      ) -> list[tuple[list[str], np.ndarray]]:
        """Each query's stored candidates as (docids, float64 scores) in the total order: the
        stage without its text encoding and result objects (what ``benchmarks/rerank_latency.py`` times)."""
        scored = self.store.score_many(queries, candidates)
        out = []
        for qid, (scores, docids) in zip(qids, scored):
            scores = np.asarray(scores, dtype=np.float64)
            order = total_order(docids, scores, self.ties.policy, self.ties.seed, qid)
            out.append((take(docids, order), scores[order]))
        return out

    def __repr__(self) -> str:
        return self.name


def DenseRerank(vectors: VectorStore, query_encoder, **order) -> Rerank:
    """Inner product of the query vector with each candidate's stored dense vector."""
    def encode(texts):
        if hasattr(query_encoder, "encode_batch"):
            return np.asarray(query_encoder.encode_batch(texts), np.float32)
        return np.asarray([query_encoder.encode(t) for t in texts], np.float32)

    return Rerank(vectors, encode, f"DenseRerank({type(query_encoder).__name__})", **order)


def ImpactRerank(impacts: ImpactStore, query_encoder, quantization: float, **order) -> Rerank:
    """Sparse dot product of the query's impacts with each candidate's stored impacts
    (what Lucene's impact search computes, restricted to the candidates)."""
    from pyserini_ext.encode.splade import quantize

    return Rerank(impacts, lambda texts: quantize(query_encoder.weights(texts), quantization),
                  f"ImpactRerank({type(query_encoder).__name__})", **order)


class StoredTokens:
    """A token store as :class:`Rerank` scores from it: each candidate by exact MaxSim of the
    query's token matrix against the candidate's stored tokens (candidates it lacks dropped)."""

    def __init__(self, store: TokenStore):
        self.store = store
        self.row = {docid: i for i, docid in enumerate(store.docids)}

    def score_many(self, queries, candidates: Sequence[Sequence[str]]) -> list[tuple[np.ndarray, list[str]]]:
        out = []
        for query, docids in zip(queries, candidates):
            kept = [d for d in docids if d in self.row]
            out.append((maxsim(np.asarray(query), [self.store.doc_tokens(self.row[d]) for d in kept]), kept))
        return out


def TokenRerank(tokens: TokenStore, query_encoder, **order) -> Rerank:
    """Exact MaxSim of the query's token vectors against each candidate's stored token vectors:
    a late-interaction model re-ranking another searcher's candidates (what the exact
    ColBERT searcher computes, restricted to the candidates)."""
    return Rerank(StoredTokens(tokens), query_encoder.encode_batch, f"TokenRerank({type(query_encoder).__name__})",
                  **order)
