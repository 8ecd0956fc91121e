"""Dense search throughput: our ``DenseSearcher`` versus Pyserini's ``FaissSearcher`` on the
same FAISS flat index (all-MiniLM-L6-v2, SciFact), single queries and one batch, in one run,
and the price of the total order in the rest of a run (ordering, fusion, writing).

Query vectors are encoded once by the parent and handed to both searchers, so the rows time
search alone (encoding is the same for both and is measured by ``encode_throughput.py``).
Each searcher runs in its own subprocess, so its peak memory is its own; the two alternate
for ``--rounds`` rounds (a machine whose load changes favours neither), best of all rounds.

* single: ``search(vector, k=1000)`` one query at a time, one thread, best of ``--repeat``;
* batch: ``batch_search(matrix, qids, k=1000, threads=all cores)``, best of ``--repeat``;
* ratio: ours / ``FaissSearcher`` (queries per second; above 1.00 we are faster).

The run section times, on the 300 x 1000 dense run, ``order_run`` (the total order),
``write_trec_run`` and RRF and hybrid fusion with BM25-like ties, against the per-document code
they replaced (``tests/reference_order.py``, which writes the same bytes).

    python benchmarks/search_throughput.py [--repeat 3] [--rounds 3]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

K = 1000
SEARCHERS = ("pyserini-FaissSearcher", "ours-DenseSearcher")


def worker(name: str, index_dir: str, vectors_path: Path, repeat: int, out: Path) -> None:
    import pyserini_ext  # noqa: F401  (configures Java before pyserini)
    from pyserini_ext.data import get_dataset
    from pyserini_ext.eval.metrics import evaluate
    from pyserini_ext.search.run import order_run

    vectors = np.load(vectors_path)
    scifact = get_dataset("beir/scifact")
    qids = list(scifact.topics("test"))
    if name == "pyserini-FaissSearcher":
        from pyserini.search.faiss import FaissSearcher

        searcher = FaissSearcher(index_dir, None)  # vectors are given: no query encoder needed
    else:
        from pyserini_ext.search.dense import DenseSearcher

        searcher = DenseSearcher(index_dir, None, device="cpu")
    single = float("inf")
    for _ in range(repeat):
        start = time.perf_counter()
        for vector in vectors:
            searcher.search(vector[None, :], k=K, threads=1)  # FaissSearcher wants a 1 x d array
        single = min(single, time.perf_counter() - start)
    batch, results = float("inf"), None
    for _ in range(repeat):
        start = time.perf_counter()
        results = searcher.batch_search(vectors, qids, k=K, threads=os.cpu_count())
        batch = min(batch, time.perf_counter() - start)
    run = order_run(results)
    out.write_text(json.dumps({
        "single_qps": len(qids) / single, "batch_qps": len(qids) / batch,
        "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "nDCG@10": evaluate(run, scifact.qrels("test"), ["nDCG@10"])["nDCG@10"],
    }))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--index", help=argparse.SUPPRESS)
    parser.add_argument("--vectors", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.index, args.vectors, args.repeat, args.out)
        return

    import pyserini_ext  # noqa: F401
    from pyserini_ext.encode.base import load_card
    from pyserini_ext.recipes import DenseParams, dense_index, workspace

    ws = workspace("beir/scifact", quiet=True)
    scifact = ws.dataset
    params = DenseParams(encoder="all-minilm-l6-v2", index="flat")
    index_dir = dense_index(ws, params)  # builds the index if missing or stale
    vectors = load_card(params.encoder).query_encoder().encode_batch(list(scifact.topics("test").values()))
    results: dict[str, dict] = {}
    with tempfile.TemporaryDirectory() as tmp:
        np.save(Path(tmp) / "queries.npy", vectors)
        for round_ in range(args.rounds):
            for name in SEARCHERS if round_ % 2 == 0 else SEARCHERS[::-1]:
                out = Path(tmp) / f"{name}.json"
                print(f"round {round_ + 1}: {name} ...", file=sys.stderr, flush=True)
                subprocess.run([sys.executable, __file__, "--worker", name, "--index", str(index_dir), "--vectors",
                                str(Path(tmp) / "queries.npy"), "--repeat", str(args.repeat), "--out", str(out)],
                               check=True, stderr=subprocess.DEVNULL)
                r = json.loads(out.read_text())
                best = results.setdefault(name, r)
                for key in ("single_qps", "batch_qps"):
                    best[key] = max(best[key], r[key])
                best["peak_mib"] = max(best["peak_mib"], r["peak_mib"])

    peer = results["pyserini-FaissSearcher"]
    print(f"SciFact test ({len(vectors)} queries), all-MiniLM-L6-v2 flat index, k={K}, {os.cpu_count()} cores, "
          f"best of {args.rounds} rounds x {args.repeat}")
    print(f"{'searcher':24s} {'single q/s':>10s} {'batch q/s':>10s} {'peak MiB':>9s} {'nDCG@10':>8s} "
          f"{'single x':>9s} {'batch x':>8s}")
    for name, r in results.items():
        print(f"{name:24s} {r['single_qps']:10.0f} {r['batch_qps']:10.0f} {r['peak_mib']:9.0f} {r['nDCG@10']:8.4f} "
              f"{r['single_qps'] / peer['single_qps']:9.2f} {r['batch_qps'] / peer['batch_qps']:8.2f}")
    ours = results["ours-DenseSearcher"]
    print(f"ratio against FaissSearcher: single {ours['single_qps'] / peer['single_qps']:.2f}x, "
          f"batch {ours['batch_qps'] / peer['batch_qps']:.2f}x")
    run_section(index_dir, vectors, list(scifact.topics("test")), args.repeat)


def run_section(index_dir: Path, vectors: np.ndarray, qids: list[str], repeat: int) -> None:
    """Ordering, fusion and writing of the dense run: now versus the per-document reference."""
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests"))
    import reference_order as ref
    from pyserini_ext.search.dense import DenseSearcher
    from pyserini_ext.search.fusion import fuse_runs
    from pyserini_ext.search.run import Hit, order_run, write_trec_run

    run = DenseSearcher(index_dir, None, device="cpu").batch_search(vectors, qids, k=K, threads=os.cpu_count())
    # A second input with ties (scores rounded to 2 decimals, as BM25 on short texts ties).
    tied = {q: [Hit(h.docid, round(h.score, 2)) for h in hits[::-1]] for q, hits in run.items()}
    ref_run = {q: ref.order_hits(hits) for q, hits in run.items()}
    ref_tied = {q: ref.order_hits(hits) for q, hits in tied.items()}
    new_run, new_tied = order_run(run), order_run(tied)

    def best(fn):
        times = []
        for _ in range(repeat):
            start = time.perf_counter()
            fn()
            times.append(time.perf_counter() - start)
        return min(times) * 1000

    with tempfile.TemporaryDirectory() as tmp:
        rows = [
            ("order (total order of every list)", lambda: order_run(tied),
             lambda: {q: ref.order_hits(h, qid=q) for q, h in tied.items()}),
            ("RRF of two runs", lambda: fuse_runs([new_run, new_tied], "rrf", k=K),
             lambda: {q: ref.reciprocal_rank_fusion([ref_run[q], ref_tied[q]], k=K, qid=q) for q in run}),
            ("hybrid interpolation of two runs", lambda: fuse_runs([new_tied, new_run], "hybrid", k=K),
             lambda: {q: ref.hybrid_interpolation(ref_tied[q], ref_run[q], k=K, qid=q) for q in run}),
            ("write the TREC run", lambda: write_trec_run(new_tied, Path(tmp) / "a.txt"),
             lambda: (Path(tmp) / "b.txt").write_text(ref.run_text(ref_tied))),
        ]
        print(f"\nrun of {len(run)} x {K} (ms; per-document reference = the code before, same bytes)")
        print(f"{'step':36s} {'now':>8s} {'before':>8s} {'x faster':>9s}")
        for name, now, before in rows:
            a, b = best(now), best(before)
            print(f"{name:36s} {a:8.1f} {b:8.1f} {b / a:9.2f}")


if __name__ == "__main__":
    main()
