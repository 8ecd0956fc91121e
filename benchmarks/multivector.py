"""Multi-vector search on SciFact with MiniLM token vectors, in one run:

1. effectiveness against k' (tokens retrieved per query token) for ColBERT scoring (exact
   MaxSim over the candidates) versus XTR scoring (retrieved scores + min imputation): the
   curve the XTR replicability study draws. One top-``max(k')`` token search per query
   serves every k' (the top k' tokens are a prefix of the top ``max(k')``);
2. index size in bytes per document (token store, flat and IVF token indexes);
3. per-query latency of ColBERT and XTR (against k'), IVF (against nprobe), and the peer:
   brute-force NumPy MaxSim of every document (``Q @ all tokens``, max per document).

    python benchmarks/multivector.py [--queries 300] [--latency-queries 50]

The k' table (1.) is also written to ``benchmarks/results/multivector.json`` as soon as it is
measured, which ``pyserini-ext repro page`` draws as the k' curves. The indexes are the ones ``pyserini-ext index multivector --dataset beir/scifact`` builds.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import sys
import time
from pathlib import Path

import numpy as np

import pyserini_ext  # noqa: F401  (configures Java before pyserini)
from pyserini_ext.eval.metrics import evaluate
from pyserini_ext.recipes import MultiVectorParams, build_searcher, token_store_dir, workspace
from pyserini_ext.repro.results import commit, machine
from pyserini_ext.scores import maxsim, xtr_imputed_scores
from pyserini_ext.search.multivector import ColbertSearcher, XtrSearcher
from pyserini_ext.store import TokenStore
from pyserini_ext.search.run import Hit, order_hits

K_PRIMES = (10, 30, 100, 300, 1000)
NPROBES = (1, 4, 16)


def run_of(qids, docids, scored):
    """TREC-style run from per-query (candidate indices, scores)."""
    return {q: order_hits([Hit(docids[d], float(s)) for d, s in zip(docs, scores)])[:1000]
            for q, (docs, scores) in zip(qids, scored)}


def folder_bytes(path) -> int:
    """Bytes of an index: a file, or every file of a folder (the token indexes are folders with a manifest)."""
    return path.stat().st_size if path.is_file() else sum(p.stat().st_size for p in path.rglob("*") if p.is_file())


def median_ms(fn, items):
    times = []
    for item in items:
        start = time.perf_counter()
        fn(item)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--latency-queries", type=int, default=50)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "multivector.json")
    args = parser.parse_args()

    ws = workspace("beir/scifact", quiet=True)
    scifact = ws.dataset
    topics = dict(list(scifact.topics("test").items())[: args.queries])
    qrels = scifact.qrels("test")
    params = MultiVectorParams()
    ivf_searcher = build_searcher("multivector", {"scorer": "ivf"}, ws)
    colbert = build_searcher("multivector", {}, ws)
    store: TokenStore = colbert.store
    root = token_store_dir(ws, params.encoder)
    flat = colbert.index
    queries = colbert.query_encoder.encode_batch(list(topics.values()))
    qids = list(topics)

    # 1. nDCG@10 against k', from one top-max(k') search per query.
    kmax = max(K_PRIMES)
    token_doc = store.token_doc()
    started = time.perf_counter()
    m = queries.shape[1]
    all_scores, all_ids = flat.search(np.ascontiguousarray(queries.reshape(-1, queries.shape[2])), kmax)
    retrieved = [(all_scores[i * m:(i + 1) * m], all_ids[i * m:(i + 1) * m]) for i in range(len(queries))]
    search_s = time.perf_counter() - started
    print(f"# SciFact test, {len(qids)} queries, colbert-minilm-l6-v2 (zero-shot), flat token index; "
          f"one top-{kmax} token search for all queries' tokens: {search_s:.0f} s")
    print("| k' | ColBERT nDCG@10 | XTR (min) nDCG@10 | ColBERT candidates/query |")
    print("| --- | --- | --- | --- |")
    rows = []
    for k in K_PRIMES:
        col, xtr, sizes = [], [], []
        for q, (scores, ids) in zip(queries, retrieved):
            docs = np.unique(token_doc[ids[:, :k]])
            sizes.append(len(docs))
            col.append((docs, maxsim(q, [store.doc_tokens(int(d)) for d in docs])))
            xtr.append(xtr_imputed_scores(scores[:, :k], ids[:, :k], token_doc, "min"))
        c = evaluate(run_of(qids, store.docids, col), qrels, ["nDCG@10"])["nDCG@10"]
        x = evaluate(run_of(qids, store.docids, xtr), qrels, ["nDCG@10"])["nDCG@10"]
        print(f"| {k} | {c:.4f} | {x:.4f} | {statistics.mean(sizes):.0f} |")
        rows += [{"scoring": "ColBERT", "k_prime": k, "nDCG@10": c, "candidates_per_query": statistics.mean(sizes)},
                 {"scoring": "XTR (min)", "k_prime": k, "nDCG@10": x}]
    # Written now, not at the end: the latency sections below take much longer than this one.
    result = {"benchmark": "multivector", "dataset": "beir/scifact test", "queries": len(qids),
              "encoder": params.encoder, "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
              "machine": machine(), "commit": commit(),
              "command": "python benchmarks/multivector.py " + " ".join(sys.argv[1:]), "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"wrote {args.out}")

    # 2. Index sizes.
    flat_bytes = folder_bytes(root.with_name("flat.faiss"))
    ivf_bytes = folder_bytes(root.with_name(f"ivf{MultiVectorParams().nlist}.faiss"))
    n = store.num_docs
    print(f"\n# index size, {n} documents, {store.num_tokens} token vectors of {store.dim} dims")
    print("| structure | bytes/document |")
    print("| --- | --- |")
    print(f"| token store (FP16 vectors, lengths, docids) | {store.nbytes() / n:,.0f} |")
    print(f"| flat token index (FP32) | {flat_bytes / n:,.0f} |")
    print(f"| IVF token index (FP32 lists + {MultiVectorParams().nlist} centroids) | {ivf_bytes / n:,.0f} |")

    # 3. Latency per query (median over the first --latency-queries queries).
    sample = queries[: args.latency_queries]
    everything = np.concatenate(list(store.iter_token_blocks()))
    starts = store.offsets[:-1]

    def brute_force(q):
        return np.maximum.reduceat(q @ everything.T, starts, axis=1).sum(axis=0)

    peer = median_ms(brute_force, sample)
    print(f"\n# per-query latency, median of {len(sample)} queries, 1 query at a time (query encoding excluded)")
    print("| method | setting | ms/query | x brute force |")
    print("| --- | --- | --- | --- |")
    print(f"| brute-force NumPy MaxSim, all documents (peer) | - | {peer:.0f} | 1.00 |")
    for k in (10, 100, 1000):
        for name, cls in (("ColBERT", ColbertSearcher), ("XTR", XtrSearcher)):
            searcher = cls(store, flat, None, k_prime=k)
            ms = median_ms(searcher.score, sample)
            print(f"| {name} (flat token index) | k'={k} | {ms:.0f} | {peer / ms:.2f} |")
    for nprobe in NPROBES:
        ivf_searcher.nprobe = nprobe
        ms = median_ms(ivf_searcher.score, sample)
        ndcg = evaluate(run_of(qids, store.docids, [ivf_searcher.score(q) for q in queries]), qrels,
                        ["nDCG@10"])["nDCG@10"]
        print(f"| IVF ({MultiVectorParams().nlist} centroids), nDCG@10 {ndcg:.4f} | nprobe={nprobe} | {ms:.0f} | "
              f"{peer / ms:.2f} |")


if __name__ == "__main__":
    main()
