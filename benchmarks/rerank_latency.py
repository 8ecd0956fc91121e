"""Per-query latency: BM25 >> dense re-ranking of 1000 candidates versus full dense retrieval.

One run, SciFact test queries, all-MiniLM-L6-v2, the same FAISS flat index for both
full-retrieval searchers (ours and Pyserini's ``FaissSearcher``). Query encoding is
timed once and reported separately, because every dense condition pays it equally;
each row below times what differs, one query at a time (single-query latency).

    python benchmarks/rerank_latency.py [--queries 300] [--repeat 3]

Rows: median and mean milliseconds per query, and nDCG@10 of the run each produces.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np

import pyserini_ext  # noqa: F401  (configures Java before pyserini)
from pyserini_ext.encode.base import load_card
from pyserini_ext.eval.metrics import evaluate
from pyserini_ext.recipes import DenseParams, build_searcher, dense_index_dir, store_dir, workspace
from pyserini_ext.store import VectorStore
from pyserini_ext.search.run import Hit, order_hits

DEPTH = 1000


def timed(fn, items, repeat):
    """Per-item latencies (best of ``repeat`` passes for each item) and the last results."""
    best = [float("inf")] * len(items)
    results = [None] * len(items)
    for _ in range(repeat):
        for i, item in enumerate(items):
            start = time.perf_counter()
            results[i] = fn(item)
            best[i] = min(best[i], time.perf_counter() - start)
    return best, results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()

    from pyserini.search.faiss import FaissSearcher

    ws = workspace("beir/scifact", quiet=True)
    scifact = ws.dataset
    topics = dict(list(scifact.topics("test").items())[: args.queries])
    qrels = {q: r for q, r in scifact.qrels("test").items() if q in topics}
    qids, texts = list(topics), list(topics.values())

    bm25 = build_searcher("bm25", {}, ws)
    params = DenseParams(encoder="all-minilm-l6-v2", index="flat")
    ours = build_searcher("dense", {"encoder": params.encoder, "index": params.index}, ws)
    theirs = FaissSearcher(str(dense_index_dir(ws, params)), ours.query_encoder)
    store = VectorStore(store_dir(ws, load_card(params.encoder)))

    start = time.perf_counter()
    query_vectors = ours.query_encoder.encode_batch(texts)
    encode_ms = (time.perf_counter() - start) / len(texts) * 1000

    candidates = {q: bm25.search(t, DEPTH) for q, t in topics.items()}  # warm the JVM
    items = list(zip(qids, texts, query_vectors))

    def bm25_stage(item):
        return bm25.search(item[1], DEPTH)

    def rerank_stage(item):
        qid, _, vector = item
        scores, docids = store.score(vector, [h.docid for h in candidates[qid]])
        return order_hits([Hit(d, float(s)) for d, s in zip(docids, scores)], qid=qid)

    def ours_full(item):
        return ours.search(item[2], k=DEPTH, threads=1)

    def theirs_full(item):
        return theirs.search(item[2].reshape(1, -1), k=DEPTH, threads=1)

    rows = {}
    for name, fn in (("BM25 first stage (Lucene, 1000 hits)", bm25_stage),
                     ("re-rank 1000 BM25 candidates from stored vectors", rerank_stage),
                     ("full dense retrieval, ours (DenseSearcher, flat)", ours_full),
                     ("full dense retrieval, Pyserini FaissSearcher (flat)", theirs_full)):
        latencies, results = timed(fn, items, args.repeat)
        run = {qid: order_hits(hits, qid=qid) for qid, hits in zip(qids, results)}
        rows[name] = (latencies, evaluate(run, qrels, ["nDCG@10"])["nDCG@10"])

    print(f"SciFact test, {len(qids)} queries, {len(store)} documents, best of {args.repeat} per query, 1 thread")
    print(f"query encoding (all-MiniLM-L6-v2, batched, shared by every dense row): {encode_ms:.2f} ms/query\n")
    print(f"{'condition':54s} {'median ms':>9s} {'mean ms':>8s} {'nDCG@10':>8s}")
    for name, (latencies, ndcg) in rows.items():
        ms = np.array(latencies) * 1000
        print(f"{name:54s} {statistics.median(ms):9.3f} {ms.mean():8.3f} {ndcg:8.4f}")
    rerank = np.median(rows["re-rank 1000 BM25 candidates from stored vectors"][0])
    ours_ms = np.median(rows["full dense retrieval, ours (DenseSearcher, flat)"][0])
    theirs_ms = np.median(rows["full dense retrieval, Pyserini FaissSearcher (flat)"][0])
    first = np.median(rows["BM25 first stage (Lucene, 1000 hits)"][0])
    print(f"\nratios (medians): full retrieval (FaissSearcher) / re-rank = {theirs_ms / rerank:.2f}; "
          f"full retrieval (ours) / re-rank = {ours_ms / rerank:.2f}; ours / FaissSearcher = {ours_ms / theirs_ms:.2f}; "
          f"BM25 + re-rank / full retrieval (FaissSearcher) = {(first + rerank) / theirs_ms:.2f}")


if __name__ == "__main__":
    main()
