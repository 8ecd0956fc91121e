"""The compressed late-interaction engines (PLAID- and WARP-style, :mod:`pyserini_ext.search.compressed`)
against brute-force NumPy MaxSim (the peer: every token vector held in memory as FP32, one product
per query), in one run, as the corpus grows: SciFact's 5,183 real documents plus seeded synthetic distractors
(:mod:`pyserini_ext.store.distractors`), so nDCG@10 on SciFact's test queries stays measurable.

For each corpus size and engine setting: nDCG@10 and R@100 (all test queries), latency per
query p50/p95 (query encoding excluded, one query at a time), speed-up over the peer's p50,
index bytes per document, build seconds, and the peak of NumPy allocations while searching
one query (tracemalloc; memory-mapped index pages are not allocations). The peer's nDCG@10 is
exact MaxSim over every document: the reference each engine's loss is measured against.

    python benchmarks/compressed.py [--distractors 0 20000] [--queries 300] [--latency-queries 20]

Writes benchmarks/results/compressed.json and docs/figures/compressed-latency.png (latency
against corpus size, every engine).
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import statistics
import sys
import time
import tracemalloc
from pathlib import Path

import numpy as np

import pyserini_ext  # noqa: F401  (configures Java before pyserini)
from pyserini_ext.eval.metrics import evaluate
from pyserini_ext.index.compressed import build_compressed_index
from pyserini_ext.recipes import build_searcher, token_store_dir, workspace
from pyserini_ext.repro.results import commit, machine
from pyserini_ext.search.compressed import PlaidSearcher, WarpSearcher
from pyserini_ext.search.multivector import _LateInteractionSearcher
from pyserini_ext.store import TokenStore
from pyserini_ext.store.compressed import CompressedIndex
from pyserini_ext.store.distractors import grow_store

HERE = Path(__file__).resolve().parent
NLIST = 1024
ENGINES = [  # (name, class, bits, parameters): the settings of the scifact-colbert-minilm-{plaid,warp}-*bit specs
    ("PLAID 2-bit", PlaidSearcher, 2, {"nprobe": 4, "ndocs": 1024, "centroid_threshold": 0.45}),
    ("PLAID 4-bit", PlaidSearcher, 4, {"nprobe": 4, "ndocs": 1024, "centroid_threshold": 0.45}),
    ("WARP 2-bit", WarpSearcher, 2, {"nprobe": 4, "t_prime": 10_000}),
    ("WARP 4-bit", WarpSearcher, 4, {"nprobe": 4, "t_prime": 10_000}),
    ("WARP 2-bit + exact MaxSim of its best 100", WarpSearcher, 2,
     {"nprobe": 4, "t_prime": 10_000, "rescore": "exact", "rescore_depth": 100}),
]


class BruteForce(_LateInteractionSearcher):
    """The peer: every document's exact MaxSim, ``Q @ all tokens`` in one product, with every
    token vector held in memory as FP32 (converted once, not per query: the fastest scan NumPy
    offers while the tokens fit in memory), then the maximum per document."""

    def __init__(self, store: TokenStore):
        super().__init__(store, None)
        self.tokens = np.concatenate(list(store.iter_token_blocks()))
        self.starts = store.offsets[:-1]

    def score(self, query):
        return np.arange(self.store.num_docs), np.maximum.reduceat(query @ self.tokens.T, self.starts, axis=1).sum(axis=0)


def latencies(searcher, queries) -> list[float]:
    times = []
    for q in queries:
        start = time.perf_counter()
        searcher.score(q)
        times.append((time.perf_counter() - start) * 1000)
    return times


def peak_mib(searcher, query) -> float:
    tracemalloc.start()
    searcher.score(query)
    peak = tracemalloc.get_traced_memory()[1]
    tracemalloc.stop()
    return peak / 2 ** 20


def effectiveness(searcher, vectors, qids, qrels) -> dict:
    run = searcher.batch_search(vectors, qids, k=1000)
    return evaluate(run, qrels, ["nDCG@10", "R@100"])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--distractors", type=int, nargs="+", default=[0, 20_000])
    parser.add_argument("--queries", type=int, default=300)
    parser.add_argument("--latency-queries", type=int, default=20)
    parser.add_argument("--out", type=Path, default=HERE / "results" / "compressed.json")
    parser.add_argument("--figure", type=Path, default=HERE.parent / "docs" / "figures" / "compressed-latency.png")
    args = parser.parse_args()

    ws = workspace("beir/scifact", quiet=True)
    topics = dict(list(ws.dataset.topics("test").items())[: args.queries])
    qrels = ws.dataset.qrels("test")
    colbert = build_searcher("multivector", {}, ws)  # builds (or reuses) the SciFact token store
    real = colbert.store
    vectors = colbert.query_encoder.encode_batch(list(topics.values()))
    qids = list(topics)
    sample = vectors[: args.latency_queries]
    root = token_store_dir(ws, "colbert-minilm-l6-v2")
    rows = []
    for extra in args.distractors:
        store = real if extra == 0 else TokenStore(grow_store(real, extra, root.with_name(f"tokens+{extra}")))
        n = store.num_docs
        print(f"\n# {n:,} documents ({extra:,} distractors), {store.num_tokens:,} token vectors; "
              f"{len(qids)} SciFact test queries, latency over {len(sample)}")
        print("| engine | nDCG@10 | R@100 | p50 ms | p95 ms | x peer (p50) | bytes/doc | build s | peak MiB |")
        print("| --- | --- | --- | --- | --- | --- | --- | --- | --- |")
        peer = BruteForce(store)
        times = latencies(peer, sample)
        peer_p50 = statistics.median(times)
        measured = effectiveness(peer, vectors, qids, qrels)
        row = {"documents": n, "distractors": extra, "tokens": store.num_tokens, "engine": "brute-force MaxSim (peer)",
               "nDCG@10": measured["nDCG@10"], "R@100": measured["R@100"], "p50_ms": peer_p50,
               "p95_ms": float(np.percentile(times, 95)), "speedup": 1.0, "bytes_per_doc": store.nbytes() / n,
               "build_s": None, "peak_mib": peak_mib(peer, sample[0])}
        rows.append(row)
        print(f"| {row['engine']} | {row['nDCG@10']:.4f} | {row['R@100']:.4f} | {peer_p50:.0f} | {row['p95_ms']:.0f} "
              f"| 1.00 | {row['bytes_per_doc']:,.0f} | - | {row['peak_mib']:.0f} |")
        indexes = {}
        for name, cls, nbits, options in ENGINES:
            if nbits not in indexes:
                if extra == 0:  # the index the specs use
                    index = build_searcher("multivector", {"scorer": "warp", "nbits": nbits, "nlist": NLIST}, ws).index
                else:
                    index = CompressedIndex(build_compressed_index(
                        store, root.with_name(f"compressed{NLIST}-{nbits}bit+{extra}"), NLIST, nbits,
                        built_from={"benchmark": "compressed", "distractors": extra}))
                indexes[nbits] = index
            index = indexes[nbits]
            build_s = index.manifest["build_seconds"]  # recorded when it was built, also when reused here
            searcher = cls(index, None, tokens=store, **options)
            times = latencies(searcher, sample)
            measured = effectiveness(searcher, vectors, qids, qrels)
            row = {"documents": n, "distractors": extra, "tokens": store.num_tokens, "engine": name,
                   "options": options, "nDCG@10": measured["nDCG@10"], "R@100": measured["R@100"],
                   "p50_ms": statistics.median(times), "p95_ms": float(np.percentile(times, 95)),
                   "bytes_per_doc": index.nbytes() / n, "build_s": build_s, "peak_mib": peak_mib(searcher, sample[0])}
            row["speedup"] = peer_p50 / row["p50_ms"]
            rows.append(row)
            print(f"| {name} | {row['nDCG@10']:.4f} | {row['R@100']:.4f} | {row['p50_ms']:.0f} | {row['p95_ms']:.0f} | "
                  f"{row['speedup']:.2f} | {row['bytes_per_doc']:,.0f} | {build_s:.0f} | {row['peak_mib']:.0f} |")
        result = {"benchmark": "compressed", "dataset": "beir/scifact test + seeded distractors",
                  "queries": len(qids), "latency_queries": len(sample), "nlist": NLIST,
                  "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "machine": machine(),
                  "commit": commit(), "command": "python benchmarks/compressed.py " + " ".join(sys.argv[1:]),
                  "rows": rows}
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(json.dumps(result, indent=1) + "\n")  # after every size: the larger ones take long
    plot(rows, args.figure)
    print(f"\nwrote {args.out} and {args.figure}")


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for engine in dict.fromkeys(r["engine"] for r in rows):
        points = sorted((r["documents"], r["p50_ms"]) for r in rows if r["engine"] == engine)
        ax.plot(*zip(*points), marker="o", label=engine)
    ax.set(xscale="log", yscale="log", xlabel="documents", ylabel="ms/query (p50)",
           title="Late interaction on SciFact + distractors (2-core CPU)")
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
