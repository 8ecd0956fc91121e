"""Dense retrieval as the corpus grows: our ``DenseSearcher`` (FAISS flat, total order) against FAISS
flat and FAISS HNSW (the peers), in one run, on SciFact's 5,183 all-MiniLM-L6-v2 vectors grown by
seeded synthetic distractors (:mod:`pyserini_ext.store.distractors`: a sampled real document's
vector, perturbed and re-normalised, never a copy) to each size N, so nDCG@10 on SciFact's 300 test
queries stays measurable while the index grows.

For each N and engine:

* build seconds: the index built from the store's vectors and written to disk (ours:
  ``build_dense_index``, which also hashes the file into its manifest; the peers: ``faiss.write_index``);
  an index already built for the same store is reused and its recorded build time (and the build's
  peak memory from the earlier row of the JSON) reported;
* bytes per document: the index folder's files / N (vectors FP32: 1,536 bytes for MiniLM);
* latency p50/p95: one query at a time, one thread, ``k`` hits, over the first
  ``--latency-queries`` test queries after one warm-up pass (query encoding excluded): wall
  time, and the process's CPU time (``time.process_time``), which waiting for a core on a
  shared machine does not inflate;
* nDCG@10: all 300 test queries (``k`` hits each, a batch on every core);
* peak memory: the peak resident set (``VmHWM`` of ``/proc/self/status``) of a fresh subprocess
  per (engine, N) and phase: ``build`` (read the store, build, write) and ``search`` (open the index
  from disk, every latency query, the nDCG batch). The search process's peak is the serving cost.

HNSW: M = 32, efConstruction = 40, efSearch = ``--ef-search`` (default 128), inner product.

    python benchmarks/dense_scale.py [--sizes 5183 50000 200000 1000000] [--latency-queries 100] [--k 100]

Writes benchmarks/results/dense_scale.json (rows merged by (N, engine), so sizes can be measured in
separate invocations) and docs/figures/dense-scale-latency.png (p50 and p95 CPU latency against N, every engine);
``--plot`` redraws the figure from the JSON alone.
"""

from __future__ import annotations

import argparse
import datetime as dt
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

HERE = Path(__file__).resolve().parent
ENGINES = ("ours DenseSearcher (flat)", "FAISS flat (peer)", "FAISS HNSW (peer)")
KEYS = {"ours DenseSearcher (flat)": "ours-flat", "FAISS flat (peer)": "faiss-flat", "FAISS HNSW (peer)": "faiss-hnsw"}
HNSW_M, EF_CONSTRUCTION = 32, 40


def peak_mib() -> float:
    """This process's peak resident set: ``VmHWM`` (``getrusage``'s ``ru_maxrss`` would carry the
    parent's peak across fork and exec), MiB."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith("VmHWM:"):
            return int(line.split()[1]) / 1024
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux (not Linux: includes the parent's)


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in folder.iterdir() if p.is_file())


def build(engine: str, store_dir: Path, index_dir: Path) -> dict:
    """Builds (or reuses) ``engine``'s index of the store in ``index_dir``: build seconds and bytes."""
    import faiss

    from pyserini_ext.store import VectorStore, manifest_digest

    if engine == "ours-flat":
        from pyserini_ext.index.dense import build_dense_index

        before = (index_dir / "manifest.json").read_text() if (index_dir / "manifest.json").is_file() else None
        build_dense_index(store_dir, index_dir, "flat", built_from={"benchmark": "dense_scale"})
        manifest = (index_dir / "manifest.json").read_text()
        return {"build_s": json.loads(manifest)["build_seconds"], "bytes": folder_bytes(index_dir),
                "reused": manifest == before}
    meta = index_dir / "meta.json"
    identity = {"source": manifest_digest(store_dir), "engine": engine, "hnsw_m": HNSW_M,
                "ef_construction": EF_CONSTRUCTION}
    if meta.is_file() and json.loads(meta.read_text())["identity"] == identity:
        return {"build_s": json.loads(meta.read_text())["build_s"], "bytes": folder_bytes(index_dir) - meta.stat().st_size,
                "reused": True}
    start = time.perf_counter()
    store = VectorStore(store_dir)
    vectors = store.vectors()
    if engine == "faiss-flat":
        index = faiss.IndexFlatIP(store.dim)
    else:
        index = faiss.IndexHNSWFlat(store.dim, HNSW_M, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = EF_CONSTRUCTION
    faiss.omp_set_num_threads(os.cpu_count() or 1)
    index.add(vectors)
    index_dir.mkdir(parents=True, exist_ok=True)
    faiss.write_index(index, str(index_dir / "index"))
    (index_dir / "docid").write_text("".join(d + "\n" for d in store.docids), encoding="utf-8")
    build_s = time.perf_counter() - start
    meta.write_text(json.dumps({"identity": identity, "build_s": build_s}))
    return {"build_s": build_s, "bytes": folder_bytes(index_dir) - meta.stat().st_size, "reused": False}


def search(engine: str, index_dir: Path, queries: np.ndarray, latency_queries: int, k: int, ef_search: int) -> dict:
    """Opens ``engine``'s index from disk; latency of single queries (one thread) and nDCG@10 of all."""
    import faiss

    import pyserini_ext  # noqa: F401
    from pyserini_ext.data import get_dataset
    from pyserini_ext.eval.metrics import evaluate
    from pyserini_ext.search.run import make_hits

    scifact = get_dataset("beir/scifact")
    qids = list(scifact.topics("test"))
    if engine == "ours-flat":
        from pyserini_ext.search.dense import DenseSearcher

        searcher = DenseSearcher(index_dir, None, device="cpu")

        def one(vector):
            return searcher.search(vector[None, :], k=k, threads=1)

        def batch():
            return {q: make_hits(d, s) for q, (d, s) in
                    searcher.batch_search_arrays(queries, qids, k=k, threads=os.cpu_count()).items()}
    else:
        index = faiss.read_index(str(index_dir / "index"))
        if engine == "faiss-hnsw":
            index.hnsw.efSearch = ef_search
        docids = np.array((index_dir / "docid").read_text(encoding="utf-8").split("\n")[:-1], dtype=object)

        def one(vector):
            return index.search(vector[None, :], k)

        def batch():
            faiss.omp_set_num_threads(os.cpu_count() or 1)
            scores, ids = index.search(queries, k)
            faiss.omp_set_num_threads(1)
            return {q: make_hits(docids[i[i >= 0]].tolist(), s[i >= 0]) for q, s, i in zip(qids, scores, ids)}

    faiss.omp_set_num_threads(1)
    sample = queries[:latency_queries]
    for vector in sample:  # warm-up: pages of the index, caches
        one(vector)
    times, cpu = [], []
    for vector in sample:
        start, start_cpu = time.perf_counter(), time.process_time()
        one(vector)
        cpu.append((time.process_time() - start_cpu) * 1000)
        times.append((time.perf_counter() - start) * 1000)
    run = batch()
    ndcg = evaluate(run, scifact.qrels("test"), ["nDCG@10"])["nDCG@10"]
    return {"p50_ms": float(np.percentile(times, 50)), "p95_ms": float(np.percentile(times, 95)),
            "cpu_p50_ms": float(np.percentile(cpu, 50)), "cpu_p95_ms": float(np.percentile(cpu, 95)), "nDCG@10": ndcg}


def child(args) -> None:
    if args.phase == "build":
        out = build(args.engine, args.store, args.index)
    else:
        out = search(args.engine, args.index, np.load(args.queries), args.latency_queries, args.k, args.ef_search)
    out["peak_mib"] = peak_mib()
    args.result.write_text(json.dumps(out))


def run_child(phase: str, engine: str, store: Path, index: Path, args, queries: Path) -> dict:
    result = index.parent / f".{index.name}.{phase}.json"
    command = [sys.executable, __file__, "--phase", phase, "--engine", engine, "--store", str(store),
               "--index", str(index), "--queries", str(queries), "--result", str(result),
               "--latency-queries", str(args.latency_queries), "--k", str(args.k), "--ef-search", str(args.ef_search)]
    subprocess.run(command, check=True)
    out = json.loads(result.read_text())
    result.unlink()
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[5183, 50_000, 200_000, 1_000_000])
    parser.add_argument("--engines", nargs="+", default=list(KEYS.values()), choices=list(KEYS.values()))
    parser.add_argument("--latency-queries", type=int, default=100)
    parser.add_argument("--k", type=int, default=100)
    parser.add_argument("--ef-search", type=int, default=128)
    parser.add_argument("--store", type=Path, help="SciFact's dense MiniLM store (default: the recipe's folder)")
    parser.add_argument("--grown", type=Path, help="folder for grown stores and indexes (default: beside the store)")
    parser.add_argument("--out", type=Path, default=HERE / "results" / "dense_scale.json")
    parser.add_argument("--figure", type=Path, default=HERE.parent / "docs" / "figures" / "dense-scale-latency.png")
    parser.add_argument("--plot", action="store_true", help="only redraw the figure from --out")
    # A subprocess's own arguments.
    parser.add_argument("--phase", choices=("build", "search"), help=argparse.SUPPRESS)
    parser.add_argument("--engine", help=argparse.SUPPRESS)
    parser.add_argument("--index", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--queries", type=Path, help=argparse.SUPPRESS)
    parser.add_argument("--result", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.phase:
        return child(args)
    if args.plot:
        return plot(json.loads(args.out.read_text())["rows"], args.figure)

    import pyserini_ext  # noqa: F401
    from pyserini_ext.data import get_dataset
    from pyserini_ext.encode.base import load_card
    from pyserini_ext.repro.results import commit, machine
    from pyserini_ext.store import VectorStore
    from pyserini_ext.store.distractors import grow_store

    if args.store is None:
        from pyserini_ext.recipes import store_dir, workspace

        args.store = store_dir(workspace("beir/scifact", quiet=True), load_card("all-minilm-l6-v2"))
    grown = args.grown or args.store.parent
    grown.mkdir(parents=True, exist_ok=True)
    real = VectorStore(args.store)
    topics = get_dataset("beir/scifact").topics("test")
    queries = grown / "scifact-test-queries.npy"
    np.save(queries, np.asarray(load_card("all-minilm-l6-v2").query_encoder().encode_batch(list(topics.values())),
                                dtype=np.float32))
    previous = json.loads(args.out.read_text())["rows"] if args.out.is_file() else []
    rows = {(r["documents"], r["engine"]): r for r in previous}
    names = {v: k for k, v in KEYS.items()}
    for size in args.sizes:
        extra = max(0, size - len(real))
        start = time.perf_counter()
        store = args.store if extra == 0 else grow_store(real, extra, grown / f"minilm+{extra}")
        n = len(VectorStore(store))
        print(f"\n# N = {n:,} ({extra:,} distractors; store ready in {time.perf_counter() - start:.1f} s)", flush=True)
        for engine in args.engines:
            index = grown / f"minilm+{extra}.{engine}"
            built = run_child("build", engine, store, index, args, queries)
            found = run_child("search", engine, store, index, args, queries)
            row = {"documents": n, "distractors": extra, "engine": names[engine], "k": args.k,
                   "latency_queries": args.latency_queries, "queries": len(topics),
                   "p50_ms": found["p50_ms"], "p95_ms": found["p95_ms"], "cpu_p50_ms": found["cpu_p50_ms"],
                   "cpu_p95_ms": found["cpu_p95_ms"], "nDCG@10": found["nDCG@10"],
                   "build_s": built["build_s"], "bytes_per_doc": built["bytes"] / n,
                   "build_peak_mib": built["peak_mib"], "search_peak_mib": found["peak_mib"]}
            if built["reused"]:  # the build's peak was measured when it was built (kept from that row)
                row["build_peak_mib"] = rows.get((n, row["engine"]), {}).get("build_peak_mib")
            if engine == "faiss-hnsw":
                row.update(hnsw_m=HNSW_M, ef_construction=EF_CONSTRUCTION, ef_search=args.ef_search)
            rows[(n, row["engine"])] = row
            print(f"{row['engine']:28s} p50 {row['p50_ms']:8.2f} ms  p95 {row['p95_ms']:8.2f} ms  "
                  f"(CPU {row['cpu_p50_ms']:8.2f} / {row['cpu_p95_ms']:8.2f})  "
                  f"nDCG@10 {row['nDCG@10']:.4f}  build {row['build_s']:7.1f} s  {row['bytes_per_doc']:6.0f} B/doc  "
                  f"peak build {row['build_peak_mib'] or float('nan'):6.0f} MiB, search {row['search_peak_mib']:6.0f} MiB",
                  flush=True)
            result = {"benchmark": "dense_scale", "dataset": "beir/scifact test + seeded dense distractors",
                      "encoder": "all-minilm-l6-v2", "noise": 0.05, "seed": 0,
                      "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "machine": machine(),
                      "commit": commit(), "command": "python benchmarks/dense_scale.py " + " ".join(sys.argv[1:]),
                      "rows": sorted(rows.values(), key=lambda r: (r["documents"], r["engine"]))}
            args.out.parent.mkdir(parents=True, exist_ok=True)
            args.out.write_text(json.dumps(result, indent=1) + "\n")  # after every row: the large sizes take long
    plot(list(rows.values()), args.figure)
    print(f"\nwrote {args.out} and {args.figure}")


def plot(rows: list[dict], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for engine in ENGINES:
        points = sorted((r["documents"], r.get("cpu_p50_ms", r["p50_ms"]), r.get("cpu_p95_ms", r["p95_ms"]))
                        for r in rows if r["engine"] == engine)
        if points:
            n, p50, p95 = zip(*points)
            line, = ax.plot(n, p50, marker="o", label=f"{engine} p50")
            ax.plot(n, p95, marker="x", linestyle=":", color=line.get_color(), label=f"{engine} p95")
    ax.set(xscale="log", yscale="log", xlabel="documents (SciFact + distractors)", ylabel="CPU ms/query (1 thread)",
           title="Dense retrieval, all-MiniLM-L6-v2, as the corpus grows (2-core CPU)")
    ax.legend(fontsize=7)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)


if __name__ == "__main__":
    main()
