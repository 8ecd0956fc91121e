"""Ray scaling on this machine: encoding throughput against Ray worker count (1, 2) and sharded
dense search latency against shard count (1, 2, 4), each beside the single-process path in the
same run (the peer: ``encode_corpus`` with every core; ``DenseSearcher`` over one flat index).

Encoding: all-MiniLM-L6-v2 (PyTorch, FP32) over the first ``--docs`` SciFact documents, shards
of ``--shard-size``; the single-process path runs twice, on every core (the peer) and on one
thread (what each Ray worker runs). Model loading (and Ray start-up, and the actors' start) is outside the
timed region; each Ray worker holds one CPU slot and runs PyTorch on one thread. The row says
whether its shards are byte-identical to the single-process ones (PyTorch's CPU sums for some
shapes depend on the thread count, so the single-process peer, on every core, may differ in
the last bits; the tests compare against a single process on the workers' thread count).

Search: SciFact's 300 test queries, encoded once outside the timed region, k=1000, against the
shards encoded above; best of ``--repeat`` batches. Every sharded run is checked equal to the
single index's run.

    python benchmarks/ray_scaling.py [--docs 1000] [--shard-size 125] [--repeat 5]

Writes benchmarks/results/ray_scaling.json.
"""

from __future__ import annotations

import argparse
import datetime
import itertools
import json
import os
import platform
import shutil
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CARD = "all-minilm-l6-v2"
RESULTS = Path(__file__).resolve().parent / "results" / "ray_scaling.json"


def npy_files(folder: Path) -> dict[str, bytes]:
    return {p.name: p.read_bytes() for p in sorted(folder.glob("shard-*.npy"))}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=1000)
    parser.add_argument("--shard-size", type=int, default=125)
    parser.add_argument("--repeat", type=int, default=5)
    args = parser.parse_args()

    import ray
    import torch

    import pyserini_ext  # noqa: F401  (configures Java before pyserini)
    from pyserini_ext.data import get_dataset
    from pyserini_ext.distributed import connect
    from pyserini_ext.distributed.encoding import EncoderPool, encode_store
    from pyserini_ext.distributed.search import ShardedDenseSearcher
    from pyserini_ext.encode.base import load_card
    from pyserini_ext.encode.runtime import set_cpu_threads
    from pyserini_ext.index.dense import build_dense_index
    from pyserini_ext.search.dense import DenseSearcher
    from pyserini_ext.search.run import search_topics
    from pyserini_ext.store import encode_corpus

    scifact = get_dataset("beir/scifact")
    docs = list(itertools.islice(scifact.docs(), args.docs))
    topics = scifact.topics("test")
    card = load_card(CARD)
    tmp = Path(tempfile.mkdtemp(prefix="ray-scaling-"))
    rows = []
    cores = len(os.sched_getaffinity(0))
    try:
        # --- encoding -----------------------------------------------------------------------
        threads = set_cpu_threads()
        encoder = card.document_encoder()
        start = time.perf_counter()
        single = encode_corpus(iter(docs), encoder, tmp / "single" / "shards", shard_size=args.shard_size, quiet=True)
        seconds = time.perf_counter() - start
        peer_rate = len(docs) / seconds
        rows.append({"part": "encoding", "condition": "single-process", "workers": 1, "threads": threads,
                     "docs": len(docs), "seconds": round(seconds, 2), "docs_per_s": round(peer_rate, 1),
                     "ratio_to_single_process": 1.0, "identical_to_single_process": True})
        reference = npy_files(single)
        # The same path on one thread: what each Ray worker runs, so Ray's own cost shows apart from
        # the thread count's (on a busy 2-core machine, two threads can be slower than one).
        set_cpu_threads(1)
        start = time.perf_counter()
        one = encode_corpus(iter(docs), encoder, tmp / "single1" / "shards", shard_size=args.shard_size, quiet=True)
        seconds = time.perf_counter() - start
        rows.append({"part": "encoding", "condition": "single-process-1-thread", "workers": 1, "threads": 1,
                     "docs": len(docs), "seconds": round(seconds, 2), "docs_per_s": round(len(docs) / seconds, 1),
                     "ratio_to_single_process": round(len(docs) / seconds / peer_rate, 3),
                     "identical_to_single_process": npy_files(one) == reference})
        set_cpu_threads(threads)
        connect(num_cpus=cores)
        for workers in (1, 2):
            pool = EncoderPool(CARD, workers=workers).start()
            ray.get([actor.progress.remote() for actor in pool.actors])  # every actor has loaded the model
            folder = tmp / f"ray{workers}" / "shards"
            start = time.perf_counter()
            encode_store(card, iter(docs), folder, quiet=True, shard_size=args.shard_size, pool=pool)
            seconds = time.perf_counter() - start
            pool.close()
            rate = len(docs) / seconds
            rows.append({"part": "encoding", "condition": f"ray-{workers}-workers", "workers": workers, "threads": 1,
                         "docs": len(docs), "seconds": round(seconds, 2), "docs_per_s": round(rate, 1),
                         "ratio_to_single_process": round(rate / peer_rate, 3),
                         "identical_to_single_process": npy_files(folder) == reference})
            print(rows[-1], file=sys.stderr)

        # --- sharded search -----------------------------------------------------------------
        index = build_dense_index(single, tmp / "single" / "flat", "flat")
        queries = card.query_encoder()
        embeddings = np.asarray(queries.encode_batch(list(topics.values())), dtype=np.float32)
        qids = list(topics)

        def best_of(searcher) -> float:
            times = []
            for _ in range(args.repeat):
                start = time.perf_counter()
                searcher.batch_search(embeddings, qids, 1000, threads)
                times.append(time.perf_counter() - start)
            return min(times)

        peer = DenseSearcher(index, queries)
        peer_seconds = best_of(peer)
        peer_run = search_topics(peer, topics, 1000)
        rows.append({"part": "search", "condition": "single-index", "shards": 1, "queries": len(qids), "k": 1000,
                     "docs": len(docs), "batch_seconds": round(peer_seconds, 4),
                     "ms_per_query": round(1000 * peer_seconds / len(qids), 3), "ratio_to_single_index": 1.0,
                     "run_equal": True})
        for shards in (1, 2, 4):
            sharded = ShardedDenseSearcher(single, queries, shards, threads=max(1, cores // shards))
            sharded.batch_search(embeddings[:1], qids[:1], 10)  # every actor has built its index
            seconds = best_of(sharded)
            equal = search_topics(sharded, topics, 1000) == peer_run
            sharded.close()
            rows.append({"part": "search", "condition": f"ray-{shards}-shards", "shards": shards,
                         "queries": len(qids), "k": 1000, "docs": len(docs), "batch_seconds": round(seconds, 4),
                         "ms_per_query": round(1000 * seconds / len(qids), 3),
                         "ratio_to_single_index": round(peer_seconds / seconds, 3), "run_equal": equal})
            print(rows[-1], file=sys.stderr)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
        if ray.is_initialized():
            ray.shutdown()

    result = {"benchmark": "ray_scaling", "date": datetime.date.today().isoformat(),
              "machine": f"{platform.machine()}, {cores} cores ({os.cpu_count()} visible), no GPU, "
                         f"torch {torch.__version__}, ray {ray.__version__}; shared with other jobs",
              "command": "python benchmarks/ray_scaling.py " + " ".join(sys.argv[1:]), "rows": rows}
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(result, indent=2) + "\n")
    for row in rows:
        print(json.dumps(row))


if __name__ == "__main__":
    main()
