"""The total order as it was written before it was vectorised (commit 219b276), kept as the
reference the fast code must reproduce byte for byte: per-document Python loops, a string
sort of the docids for every list, a loop that nudges tied scores, one f-string per run line.

Not a test module: tests/test_total_order_unchanged.py compares the package against it.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class RefHit:
    docid: str
    score: float


def total_order(docids, scores, policy="docid", seed=0, qid=""):
    scores = np.asarray(scores, dtype=np.float64)
    n = len(docids)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    if policy == "shuffle":
        rng = np.random.default_rng([seed, zlib.crc32(qid.encode("utf-8"))])
        tie_key = rng.permutation(n)
    else:
        by_docid = sorted(range(n), key=docids.__getitem__)
        tie_key = np.empty(n, dtype=np.int64)
        tie_key[by_docid] = np.arange(n)
        if policy == "reverse":
            tie_key = -tie_key
    return np.lexsort((tie_key, -scores))


def strictly_decreasing(scores):
    out = np.asarray(scores, dtype=np.float32).copy()
    for i in range(1, len(out)):
        if out[i] >= out[i - 1]:
            out[i] = np.nextafter(out[i - 1], np.float32(-np.inf))
    return out.astype(np.float64)


def order_hits(hits, policy="docid", seed=0, qid="", k=None):
    docids = [h.docid for h in hits]
    order = total_order(docids, [float(h.score) for h in hits], policy, seed, qid)
    if k is not None:
        order = order[:k]
    return [RefHit(docids[i], float(hits[i].score)) for i in order]


def run_text(run, tag="pyserini_ext") -> str:
    lines = []
    for qid, hits in run.items():
        for rank, (hit, score) in enumerate(zip(hits, strictly_decreasing([h.score for h in hits])), start=1):
            lines.append(f"{qid} Q0 {hit.docid} {rank} {float(score)!r} {tag}\n")
    return "".join(lines)


def search_complete(batch_search, topics, k, policy="docid", seed=0, drop=None):
    """``batch_search(texts, qids, fetch) -> {qid: hits}``, fetched past the k-th tie group."""
    qids, results = list(topics), {}
    fetch, pending = k + max(16, k // 10), list(topics)
    while pending:
        found = batch_search([topics[q] for q in pending], pending, fetch)
        again = []
        for qid in pending:
            hits = list(found.get(qid, []))
            scores = sorted((float(h.score) for h in hits), reverse=True)
            if k > 0 and len(hits) >= fetch and scores[-1] >= scores[k - 1]:
                again.append(qid)
            else:
                results[qid] = hits
        pending, fetch = again, fetch * 2
    for qid, hits in results.items():
        if drop is not None:
            hits = [h for h in hits if not drop(qid, h.docid)]
        results[qid] = order_hits(hits, policy, seed, qid, k)
    return {qid: results[qid] for qid in qids}


def dense_batch_search(index, docids, embeddings, q_ids, k, policy="docid", seed=0, score_precision="float32"):
    """The old ``DenseSearcher._search`` over a FAISS index (``docids`` its rows' ids)."""
    num_docs = index.ntotal
    k = min(k, num_docs)
    embeddings = embeddings.astype(np.float32)
    fetch = min(num_docs, k + max(16, k // 10))
    while True:
        scores, ids = index.search(embeddings, fetch)
        if score_precision == "float16":
            scores = scores.astype(np.float16).astype(np.float32)
        if fetch == num_docs or k == 0 or not np.any(scores[:, fetch - 1] >= scores[:, k - 1]):
            break
        fetch = min(num_docs, fetch * 2)
    results = {}
    for qid, row_scores, row_ids in zip(q_ids, scores, ids):
        keep = row_ids >= 0
        row_scores, row_ids = row_scores[keep], row_ids[keep]
        row_docids = [docids[i] for i in row_ids]
        order = total_order(row_docids, row_scores, policy, seed, qid)[:k]
        results[qid] = [RefHit(row_docids[i], float(row_scores[i])) for i in order]
    return results


def weighted_sum(lists, weights, depth=None, k=None, policy="docid", seed=0, qid=""):
    fused = {}
    for hits, weight in zip(lists, weights):
        for hit in hits[:depth]:
            fused[hit.docid] = fused.get(hit.docid, 0.0) + weight * float(hit.score)
    return order_hits([RefHit(d, s) for d, s in fused.items()], policy, seed, qid, k)


def reciprocal_rank_fusion(lists, rrf_k=60, depth=None, k=None, policy="docid", seed=0, qid=""):
    ranked = [[RefHit(h.docid, 1.0 / (rrf_k + rank)) for rank, h in enumerate(hits, start=1)] for hits in lists]
    return weighted_sum(ranked, [1.0] * len(lists), depth, k, policy, seed, qid)


def hybrid_interpolation(sparse, dense, alpha=0.1, normalization=False, weight_on_dense=False, k=None,
                         policy="docid", seed=0, qid=""):
    """The old HybridSearcher semantics. The union was iterated as a ``set`` (hash order), which
    only ``shuffle`` could see; iterated here in order of first appearance, as now."""
    sparse_scores = {h.docid: float(h.score) for h in sparse}
    dense_scores = {h.docid: float(h.score) for h in dense}
    s_min, s_max = (min(sparse_scores.values()), max(sparse_scores.values())) if sparse_scores else (0.0, 1.0)
    d_min, d_max = (min(dense_scores.values()), max(dense_scores.values())) if dense_scores else (0.0, 1.0)

    def centre_scale(score, low, high):
        return (score - (low + high) / 2) / (high - low) if high > low else 0.0

    fused = []
    for docid in dict.fromkeys([*sparse_scores, *dense_scores]):
        s = sparse_scores.get(docid, s_min)
        d = dense_scores.get(docid, d_min)
        if normalization:
            s, d = centre_scale(s, s_min, s_max), centre_scale(d, d_min, d_max)
        fused.append(RefHit(docid, s + alpha * d if weight_on_dense else alpha * s + d))
    return order_hits(fused, policy, seed, qid, k)


def rerank(vectors_of, queries, run, policy="docid", seed=0):
    """The old ``Rerank`` over a ``VectorStore``: per query, the stored candidates' vectors
    (``vectors_of(docid)``, a dict lookup each) times the query vector, then ordered."""
    out = {}
    for i, (qid, hits) in enumerate(run.items()):
        found = [h.docid for h in hits if vectors_of(h.docid) is not None]
        vectors = np.stack([vectors_of(d) for d in found]).astype(np.float32)
        scores = vectors @ queries[i]
        out[qid] = order_hits([RefHit(d, float(s)) for d, s in zip(found, scores)], policy, seed, qid)
    return out
