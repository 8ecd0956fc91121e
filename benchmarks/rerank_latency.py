"""Re-ranking latency: our re-rank stage over stored vectors against a flat FAISS scan of the same
vectors (the peer), sweeping the re-ranking depth and the corpus size, in one run.

The ideal: re-ranking ``depth`` candidates touches ``depth`` vectors where a flat scan touches all
N, so its cost should approach ``depth / N`` of the scan's. For each corpus size (SciFact's 5,183
all-MiniLM-L6-v2 vectors, grown to 50k and 200k by seeded distractors,
:mod:`pyserini_ext.store.distractors`) and depth (100, 1000, 5000):

* scan: FAISS ``IndexFlatIP.search(queries, 1000)`` over every vector held in memory (one
  thread; scores and ids only, FAISS's heap order: the peer's cheapest form);
* ours: ``Rerank.rerank_arrays`` (the ``DenseRerank`` stage without query encoding and result
  objects): candidate docids -> store rows, one gather and one batched matrix product per batch,
  the total order; candidates are ``depth`` distinct documents drawn (seeded) from the whole corpus,
  in random order, for each SciFact test query;
* stage: the whole stage's ``transform`` (ours plus ``Hit`` objects), for reference.

Two modes: ``batch`` (all queries in one call; ms/query = call / queries) and ``single`` (one
query per call, the first ``--single-queries``). Each is the best of ``--repeat`` passes; ours and
the scan alternate within a pass. Both wall time and the process's CPU time
(``time.process_time``) are recorded: on a shared machine waiting for a core inflates the wall
time, not the CPU time, so the CPU columns (``cpu_*``) are the ones to compare. ``x ideal`` = ours / (depth / N x scan): 1.0 is the ideal, the
issue's goal is at most 2.

    python benchmarks/rerank_latency.py [--sizes 5183 50000 200000] [--depths 100 1000 5000]
                                        [--repeat 3] [--single-queries 50]
    python benchmarks/rerank_latency.py --pipeline   # BM25 >> re-rank vs full dense retrieval (below)

Writes benchmarks/results/rerank_latency.json.

``--pipeline``: per-query latency of BM25 >> dense re-ranking of 1000 candidates versus full dense
retrieval (ours and Pyserini's ``FaissSearcher``, the same FAISS flat index), SciFact test queries;
query encoding timed once and reported separately, each row times what differs, one query at a time.
Rows: median and mean milliseconds per query, and nDCG@10 of the run each produces.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import statistics
import sys
import time
from pathlib import Path

os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")  # before NumPy loads BLAS: every timed row on one thread
import numpy as np  # noqa: E402

import pyserini_ext  # noqa: F401,E402  (configures Java before pyserini)
from pyserini_ext.encode.base import load_card
from pyserini_ext.eval.metrics import evaluate
from pyserini_ext.recipes import DenseParams, build_searcher, dense_index_dir, store_dir, workspace
from pyserini_ext.store import VectorStore
from pyserini_ext.search.run import Hit, order_hits

DEPTH = 1000
HERE = Path(__file__).resolve().parent
SCAN_K = 1000


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


def pipeline(args) -> None:
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


class CachedQueries:
    """The query vectors encoded once, by text: the stage's ``transform`` re-encodes nothing."""

    def __init__(self, vectors: dict):
        self.vectors = vectors

    def encode_batch(self, texts):
        return np.stack([self.vectors[t] for t in texts])


def timed_call(fn) -> tuple[float, float]:
    """Wall and CPU seconds (``time.process_time``: every thread of this process) of one call."""
    start, start_cpu = time.perf_counter(), time.process_time()
    fn()
    return time.perf_counter() - start, time.process_time() - start_cpu


def sweep(args) -> None:
    import faiss

    from pyserini_ext.data import get_dataset
    from pyserini_ext.repro.results import commit, machine
    from pyserini_ext.search.rerank import DenseRerank
    from pyserini_ext.search.run import Hit
    from pyserini_ext.store.distractors import grow_store

    faiss.omp_set_num_threads(1)
    scifact = get_dataset("beir/scifact")
    topics = scifact.topics("test")
    real = VectorStore(args.store)
    card = load_card("all-minilm-l6-v2")
    queries = np.asarray(card.query_encoder().encode_batch(list(topics.values())), dtype=np.float32)
    qids = list(topics)
    stage = None
    rows = []
    for size in args.sizes:
        extra = size - len(real)
        store = real if extra <= 0 else VectorStore(grow_store(real, extra, args.grown / f"minilm+{extra}"))
        n = len(store)
        index = faiss.IndexFlatIP(store.dim)
        index.add(store.vectors())
        stage = DenseRerank(store, CachedQueries(dict(zip(topics.values(), queries))))
        for depth in args.depths:
            depth = min(depth, n)
            rng = np.random.default_rng([size, depth])
            candidates = [[store.docids[j] for j in rng.choice(n, depth, replace=False)] for _ in qids]
            run = {q: [Hit(d, 0.0) for d in c] for q, c in zip(qids, candidates)}
            single = args.single_queries
            modes = {
                "batch": (lambda: index.search(queries, SCAN_K),
                          lambda: stage.rerank_arrays(queries, candidates, qids),
                          lambda: stage.transform(topics, run), len(qids)),
                "single": (lambda: [index.search(queries[i:i + 1], SCAN_K) for i in range(single)],
                           lambda: [stage.rerank_arrays(queries[i:i + 1], candidates[i:i + 1], qids[i:i + 1])
                                    for i in range(single)],
                           lambda: [stage.transform({qids[i]: topics[qids[i]]}, run) for i in range(single)], single),
            }
            for mode, (scan_fn, ours_fn, stage_fn, count) in modes.items():
                timings = {"scan": [], "ours": [], "stage": []}
                for _ in range(args.repeat):  # alternate, so a change of load favours neither
                    for name, fn in (("scan", scan_fn), ("ours", ours_fn), ("stage", stage_fn)):
                        timings[name].append(timed_call(fn))
                row = {"documents": n, "distractors": max(extra, 0), "depth": depth, "mode": mode, "queries": count}
                for clock, column in (("", 0), ("cpu_", 1)):
                    best = {name: min(t[column] for t in ts) / count * 1000 for name, ts in timings.items()}
                    ideal = depth / n * best["scan"]
                    row.update({f"{clock}scan_ms": best["scan"], f"{clock}ours_ms": best["ours"],
                                f"{clock}stage_ms": best["stage"], f"{clock}ideal_ms": ideal,
                                f"{clock}x_ideal": best["ours"] / ideal,
                                f"{clock}ours_ms_per_1000": best["ours"] * 1000 / depth})
                rows.append(row)
                print(f"N={n:>7,} depth={depth:>5} {mode:6s} CPU: scan {row['cpu_scan_ms']:8.3f} ms  ours "
                      f"{row['cpu_ours_ms']:7.3f} ms (stage {row['cpu_stage_ms']:7.3f})  ideal {row['cpu_ideal_ms']:7.3f}"
                      f"  x ideal {row['cpu_x_ideal']:6.2f}  per 1000 {row['cpu_ours_ms_per_1000']:6.3f} ms | wall: scan "
                      f"{row['scan_ms']:8.3f} ours {row['ours_ms']:7.3f} x ideal {row['x_ideal']:6.2f}", flush=True)
        result = {"benchmark": "rerank_latency", "dataset": "beir/scifact test + seeded distractors",
                  "encoder": "all-minilm-l6-v2", "scan_k": SCAN_K, "threads": 1, "repeat": args.repeat,
                  "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "machine": machine(),
                  "commit": commit(), "command": "python benchmarks/rerank_latency.py " + " ".join(sys.argv[1:]),
                  "rows": rows}
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1) + "\n")  # after every size
    print(f"\nwrote {args.out}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--pipeline", action="store_true", help="BM25 >> re-rank vs full retrieval instead")
    parser.add_argument("--queries", type=int, default=300, help="--pipeline: SciFact test queries")
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--sizes", type=int, nargs="+", default=[5183, 50_000, 200_000])
    parser.add_argument("--depths", type=int, nargs="+", default=[100, 1000, 5000])
    parser.add_argument("--single-queries", type=int, default=50)
    parser.add_argument("--store", type=Path, help="a dense MiniLM store of SciFact (default: the recipe's folder)")
    parser.add_argument("--grown", type=Path, help="folder for the grown stores (default: beside the store)")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "rerank_latency.json")
    args = parser.parse_args()
    if args.pipeline:
        return pipeline(args)
    if args.store is None:
        args.store = store_dir(workspace("beir/scifact", quiet=True), load_card("all-minilm-l6-v2"))
    args.grown = args.grown or args.store.parent
    sweep(args)


if __name__ == "__main__":
    main()
