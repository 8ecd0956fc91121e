"""The XTR replicability study's imputation table (its Table 2) and k' sweep (its Fig. 1) on one
token store, SciFact test:

* XTR scoring with each missing-similarity estimate m_i (min, p10, power law, zero, mean), each
  combined both ways (``max``: XTR's equation, max(best retrieved, m_i); ``retrieved``: the best
  retrieved score as it is), at every k';
* ColBERT scoring: every XTR candidate (a document with a retrieved token) re-scored by exact
  MaxSim from the token store;
* "does re-ranking help": XTR's (min) best 100 re-scored by exact MaxSim.

One top-``max(k')`` token search for all queries' tokens serves every k' (the top k' tokens are a
prefix of the top ``max(k')``). nDCG@10 and R@100, relevance level 1. The rows are written to
``--out`` (``benchmarks/results/xtr_study.json`` by default), which ``pyserini-ext repro page``
draws as k' curves.

    python benchmarks/xtr_study.py [--encoder colbert-minilm-l6-v2] [--queries 300] [--k-primes 10 30 100 300 1000]

The token store and flat token index are the ones ``pyserini-ext index multivector --dataset
beir/scifact --param encoder=...`` builds (built here if missing).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import sys
import time
from pathlib import Path

import numpy as np

import pyserini_ext  # noqa: F401  (configures Java before pyserini)
from pyserini_ext.eval.metrics import evaluate
from pyserini_ext.recipes import build_searcher, workspace
from pyserini_ext.repro.results import commit, machine
from pyserini_ext.scores import IMPUTATIONS, XTR_COMBINES, maxsim, xtr_imputed_scores
from pyserini_ext.search.run import Hit, order_hits

METRICS = ["nDCG@10", "R@100"]
RERANK_DEPTH = 100


def run_of(qids, docids, scored):
    """A run from per-query (candidate indices, scores), each list in the total order, cut at 1000."""
    return {q: order_hits([Hit(docids[d], float(s)) for d, s in zip(docs, scores)])[:1000]
            for q, (docs, scores) in zip(qids, scored)}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--encoder", default="colbert-minilm-l6-v2")
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--k-primes", type=int, nargs="+", default=[10, 30, 100, 300, 1000])
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "xtr_study.json")
    args = parser.parse_args()

    ws = workspace("beir/scifact", quiet=True)
    topics = dict(list(ws.dataset.topics("test").items())[: args.queries])
    qrels = {q: judged for q, judged in ws.dataset.qrels("test").items() if q in topics}  # --queries: those only
    colbert = build_searcher("multivector", {"encoder": args.encoder, "scorer": "colbert", "token_index": "flat"}, ws)
    store, flat = colbert.store, colbert.index
    token_doc, docids = store.token_doc(), store.docids
    qids = list(topics)
    queries = colbert.query_encoder.encode_batch(list(topics.values()))

    kmax, m = max(args.k_primes), queries.shape[1]
    started = time.perf_counter()
    all_scores, all_ids = flat.search(np.ascontiguousarray(queries.reshape(-1, queries.shape[2]), dtype=np.float32),
                                      kmax)
    retrieved = [(all_scores[i * m:(i + 1) * m], all_ids[i * m:(i + 1) * m]) for i in range(len(queries))]
    print(f"# SciFact test, {len(qids)} queries, {args.encoder}, flat token index; one top-{kmax} token search "
          f"for all {len(qids) * m} query tokens: {time.perf_counter() - started:.0f} s", flush=True)

    def measure(scored):
        return evaluate(run_of(qids, docids, scored), qrels, METRICS)

    record = {"benchmark": "xtr_study", "dataset": "beir/scifact test", "queries": len(qids), "encoder": args.encoder,
              "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "machine": machine(),
              "commit": commit(), "command": "python benchmarks/xtr_study.py " + " ".join(sys.argv[1:]), "rows": []}
    rows = record["rows"]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    for k in sorted(args.k_primes):
        cut = [(s[:, :k], i[:, :k]) for s, i in retrieved]
        for imputation in IMPUTATIONS:
            for combine in XTR_COMBINES:
                result = measure([xtr_imputed_scores(s, i, token_doc, imputation, combine) for s, i in cut])
                rows.append({"scoring": f"XTR ({imputation}, {combine})", "k_prime": k, **result})
                print(f"| {k} | XTR | {imputation} | {combine} | {result['nDCG@10']:.4f} | {result['R@100']:.4f} |",
                      flush=True)
        # Exact MaxSim of XTR's (min) best RERANK_DEPTH: the ranking below them is dropped, as a re-ranker
        # handed a depth-100 list would; R@100 is XTR's own.
        index_of = {docid: n for n, docid in enumerate(docids)}
        xtr_min = run_of(qids, docids, [xtr_imputed_scores(s, i, token_doc, "min") for s, i in cut])
        reranked = []
        for qid, q in zip(qids, queries):
            best = np.array([index_of[hit.docid] for hit in xtr_min[qid][:RERANK_DEPTH]], dtype=np.int64)
            reranked.append((best, maxsim(q, [store.doc_tokens(int(d)) for d in best])))
        result = measure(reranked)
        rows.append({"scoring": f"XTR (min) best {RERANK_DEPTH}, re-scored by MaxSim", "k_prime": k, **result})
        print(f"| {k} | XTR (min) best {RERANK_DEPTH} -> MaxSim | - | - | {result['nDCG@10']:.4f} | "
              f"{result['R@100']:.4f} |", flush=True)
        candidates = [np.unique(token_doc[i]) for _, i in cut]
        result = measure([(docs, maxsim(q, [store.doc_tokens(int(d)) for d in docs]))
                          for q, docs in zip(queries, candidates)])
        per_query = float(np.mean([len(docs) for docs in candidates]))
        rows.append({"scoring": "ColBERT (every candidate by MaxSim)", "k_prime": k, **result,
                     "candidates_per_query": per_query})
        print(f"| {k} | ColBERT, {per_query:.0f} candidates/query | - | - | {result['nDCG@10']:.4f} | "
              f"{result['R@100']:.4f} |", flush=True)

        args.out.write_text(json.dumps(record, indent=1) + "\n")  # after every k': the large ones take longest
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
