"""Dense search throughput: our ``DenseSearcher`` versus Pyserini's ``FaissSearcher`` on the
same FAISS flat index (all-MiniLM-L6-v2, SciFact), single queries and one batch, in one run.

Query vectors are encoded once by the parent and handed to both searchers, so the rows time
search alone (encoding is the same for both and is measured by ``encode_throughput.py``).
Each searcher runs in its own subprocess, so its peak memory is its own.

* single: ``search(vector, k=1000)`` one query at a time, one thread, best of ``--repeat``;
* batch: ``batch_search(matrix, qids, k=1000, threads=all cores)``, best of ``--repeat``.

    python benchmarks/search_throughput.py [--repeat 3]
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
    from pyserini_ext.search.run import Hit, order_hits

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
    run = {q: order_hits([Hit(h.docid, float(h.score)) for h in hits]) for q, hits in results.items()}
    out.write_text(json.dumps({
        "single_qps": len(qids) / single, "batch_qps": len(qids) / batch,
        "peak_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
        "nDCG@10": evaluate(run, scifact.qrels("test"), ["nDCG@10"])["nDCG@10"],
    }))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3)
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
    results = {}
    with tempfile.TemporaryDirectory() as tmp:
        np.save(Path(tmp) / "queries.npy", vectors)
        for name in SEARCHERS:
            out = Path(tmp) / f"{name}.json"
            print(f"running {name} ...", file=sys.stderr, flush=True)
            subprocess.run([sys.executable, __file__, "--worker", name, "--index", str(index_dir), "--vectors",
                            str(Path(tmp) / "queries.npy"), "--repeat", str(args.repeat), "--out", str(out)],
                           check=True, stderr=subprocess.DEVNULL)
            results[name] = json.loads(out.read_text())

    peer = results["pyserini-FaissSearcher"]
    print(f"SciFact test ({len(vectors)} queries), all-MiniLM-L6-v2 flat index, k={K}, {os.cpu_count()} cores")
    print(f"{'searcher':24s} {'single q/s':>10s} {'batch q/s':>10s} {'peak MiB':>9s} {'nDCG@10':>8s} "
          f"{'single x':>9s} {'batch x':>8s}")
    for name, r in results.items():
        print(f"{name:24s} {r['single_qps']:10.0f} {r['batch_qps']:10.0f} {r['peak_mib']:9.0f} {r['nDCG@10']:8.4f} "
              f"{r['single_qps'] / peer['single_qps']:9.2f} {r['batch_qps'] / peer['batch_qps']:8.2f}")


if __name__ == "__main__":
    main()
