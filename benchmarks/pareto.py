"""Effectiveness against latency on SciFact: BM25, dense (all-MiniLM-L6-v2 flat), BM25 re-ranked by
MiniLM at depths 100 and 1000, and the BM25 + MiniLM hybrid, each timed end to end (query encoding
included) over the 300 test queries, with Pyserini's own ``LuceneSearcher`` as the named peer in
the same run (the BM25 row's ratio is ours over it).

Each condition is the regression spec's pipeline (``regressions/NAME.yaml``; the re-ranking depth
overridden where named), built through the recipes in the work folder (indexes are reused),
then searched once to warm up and ``--repeat`` times, best kept; one query at a time, one thread,
as a user's query arrives. Writes ``benchmarks/results/pareto.json``, which ``pyserini-ext repro
page`` draws as the Pareto plot.

    PYSERINI_EXT_WORK=work python benchmarks/pareto.py [--repeat 2]
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import platform
import sys
import time
from pathlib import Path

HITS = 1000
CONDITIONS = [  # (condition, spec, pipeline parameters overridden)
    ("BM25", "scifact-bm25-flat", {}),
    ("MiniLM flat", "scifact-minilm-flat", {}),
    ("BM25 >> MiniLM, depth 100", "scifact-bm25-rerank-minilm", {"depth": 100}),
    ("BM25 >> MiniLM, depth 1000", "scifact-bm25-rerank-minilm", {"depth": 1000}),
    ("BM25 + MiniLM hybrid", "scifact-bm25-minilm-hybrid", {}),
]


def time_queries(search, queries: dict[str, str], repeat: int) -> tuple[float, dict]:
    """Best wall time of ``search(qid, text)`` over all queries (after one warm-up pass), and the last results."""
    results = {q: search(q, text) for q, text in queries.items()}  # warm-up: caches, JIT, lazy loads
    best = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        results = {q: search(q, text) for q, text in queries.items()}
        best = min(best, time.perf_counter() - start)
    return best, results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=2)
    parser.add_argument("--out", type=Path, default=Path(__file__).resolve().parent / "results" / "pareto.json")
    args = parser.parse_args()

    import pyserini_ext  # noqa: F401  (configures Java before pyserini)
    from pyserini_ext.encode.runtime import set_cpu_threads
    from pyserini_ext.eval.metrics import evaluate
    from pyserini_ext.recipes import bm25_index, build_searcher, workspace
    from pyserini_ext.repro.runner import find_spec
    from pyserini_ext.search.run import Hit, order_hits

    set_cpu_threads(1)  # one thread per query, ours and the peer alike
    rows = []
    for condition, name, override in CONDITIONS:
        spec = find_spec(name)
        ws = workspace(spec.dataset, quiet=True)
        params = {**spec.pipeline.params, **override}
        searcher = build_searcher(spec.pipeline.searcher, params, ws)
        queries = ws.dataset.topics(spec.split)
        qrels = ws.dataset.qrels(spec.split)
        print(f"timing {condition} ...", file=sys.stderr, flush=True)
        seconds, results = time_queries(lambda q, text: searcher.search(text, k=HITS), queries, args.repeat)
        run = {q: order_hits([Hit(h.docid, float(h.score)) for h in hits if h.docid != q]) for q, hits in results.items()}
        rows.append({"condition": condition, "spec": name, "params": params, "implementation": "pyserini_ext",
                     "ms_per_query": 1000 * seconds / len(queries),
                     "nDCG@10": evaluate(run, qrels, ["nDCG@10"], spec.relevance_level)["nDCG@10"]})
        if name == "scifact-bm25-flat":  # the peer: Pyserini's LuceneSearcher on the same index, same k1, b
            from pyserini.search.lucene import LuceneSearcher

            peer = LuceneSearcher(str(bm25_index(ws)))
            peer.set_bm25(spec.pipeline.params["k1"], spec.pipeline.params["b"])
            seconds, results = time_queries(lambda q, text: peer.search(text, k=HITS), queries, args.repeat)
            run = {q: order_hits([Hit(h.docid, float(h.score)) for h in hits if h.docid != q])
                   for q, hits in results.items()}
            rows.append({"condition": "BM25 (Pyserini LuceneSearcher, peer)", "spec": name, "params": params,
                         "implementation": "pyserini", "ms_per_query": 1000 * seconds / len(queries),
                         "nDCG@10": evaluate(run, qrels, ["nDCG@10"], spec.relevance_level)["nDCG@10"]})
            rows[-2]["ratio_to_peer"] = rows[-2]["ms_per_query"] / rows[-1]["ms_per_query"]

    result = {"benchmark": "pareto", "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
              "machine": f"{platform.node()} ({platform.machine()}, {os.cpu_count()} CPUs, {platform.processor() or '?'})",
              "command": "python benchmarks/pareto.py " + " ".join(sys.argv[1:]),
              "rows": rows}
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps(result, indent=1) + "\n")
    print(f"SciFact test, k={HITS}, one query at a time, one thread (best of {args.repeat})")
    print(f"{'condition':40s} {'ms/query':>9s} {'nDCG@10':>8s}")
    for r in rows:
        ratio = f"  ({r['ratio_to_peer']:.2f}x the peer's time)" if "ratio_to_peer" in r else ""
        print(f"{r['condition']:40s} {r['ms_per_query']:9.2f} {r['nDCG@10']:8.4f}{ratio}")
    print(f"wrote {args.out}")


if __name__ == "__main__":
    main()
