"""Static INT8 recipes for all-MiniLM-L6-v2 on SciFact: speed, effectiveness and batch dependence
of each, against the FP32 ONNX export and today's dynamic INT8, in one run.

Each condition quantises the FP32 export (cached by ``pyserini_ext``) with one recipe
(:data:`pyserini_ext.encode.runtime.STATIC_INT8` with one entry changed) and a calibration
(``--calibration-size`` SciFact corpus documents drawn with ``--seed``; never queries), then

* encodes the whole corpus (length-sorted batches of 8, as ``pyserini-ext index`` runs) and the
  300 test queries, timing the corpus: docs/s, and the ratio to FP32 in the same run;
* nDCG@10 of exact inner-product search, and its loss against FP32's;
* the smallest cosine between a document's vector and its FP32 vector;
* batch dependence: the largest difference (max abs over coordinates) between the vectors of
  ``--batch-docs`` documents encoded alone and in batches of 8 and 32.

    python benchmarks/int8_static_sweep.py [--conditions a,b,...] [--calibration-size 256] [--seed 0]

Conditions: ``fp32``, ``dynamic`` (``precision: int8``), ``static`` (the recipe as shipped),
``static-<change>`` (see :data:`CHANGES` and :data:`SMOOTH`). All run in this one process, one after the other, with the same thread settings.
"""

from __future__ import annotations

import argparse
import copy
import os
import sys
import time
from pathlib import Path

import numpy as np

# One entry of the shipped recipe changed per name; "last-ffn": the last block's two feed-forward
# MatMuls kept FP32 (positions 34 and 35 of the 36 linear MatMuls), "ffn-out": every block's second
# feed-forward MatMul (input: GELU's output, the widest activation range) kept FP32.
CHANGES = {
    "tensor": {"per_channel": False},
    "s8s8": {"activation": "QInt8"},
    "all-matmul": {"extra_options": {"MatMulConstBOnly": False}},
    "last-layer": {"exclude_linear": list(range(30, 36))},
    "last-ffn": {"exclude_linear": [34, 35]},
    "ffn-out": {"exclude_linear": [5, 11, 17, 23, 29, 35]},
    "first-last": {"exclude_linear": list(range(0, 6)) + list(range(30, 36))},
    "moving-average": {"extra_options": {"MatMulConstBOnly": True, "CalibMovingAverage": True}},
}


# SmoothQuant's migration strength per condition: the FP32 export smoothed (see smooth), then
# quantised with the shipped recipe.
SMOOTH = {"smooth": 0.5, "smooth-0.7": 0.7}


def smooth(model, batches: list[dict], alpha: float):
    """SmoothQuant (Xiao et al., ICML 2023) on ``model`` (an ``onnx.ModelProto``, changed in place):
    for every activation that feeds linear MatMuls, a per-channel factor ``s_j = max|X_j|^alpha /
    max|W_j|^(1 - alpha)`` (maxima over the calibration tokens and over the rows of every weight it
    feeds) divides the activation (an inserted Mul) and multiplies the weights' rows ``j``: the FP32
    model computes the same function, but the few channels whose activations are far wider than the
    rest (LayerNorm's outlier channels, GELU's long tail) no longer set a per-tensor INT8 scale that
    leaves every other channel a handful of levels; per-channel weight scales absorb them instead."""
    import onnx
    import onnxruntime as ort
    from onnx import numpy_helper

    from pyserini_ext.encode.runtime import linear_matmuls

    nodes = {n.name: n for n in model.graph.node}
    groups: dict[str, list] = {}
    for name in linear_matmuls(model):
        groups.setdefault(nodes[name].input[0], []).append(nodes[name])
    probe = onnx.ModelProto()
    probe.CopyFrom(model)
    for x in groups:
        probe.graph.output.append(onnx.helper.make_tensor_value_info(x, onnx.TensorProto.FLOAT, None))
    session = ort.InferenceSession(probe.SerializeToString(), providers=["CPUExecutionProvider"])
    names = list(groups)
    peaks = dict.fromkeys(names, 0.0)
    for inputs in batches:  # one document per batch: no padding token enters a maximum
        for x, value in zip(names, session.run(names, inputs)):
            peaks[x] = np.maximum(peaks[x], np.abs(value).reshape(-1, value.shape[-1]).max(axis=0))
    initializers = {init.name: init for init in model.graph.initializer}
    position = {id(n): i for i, n in enumerate(model.graph.node)}
    inserts = []
    for x, members in groups.items():
        weights = [numpy_helper.to_array(initializers[n.input[1]]) for n in members]  # (in, out)
        w_peak = np.max([np.abs(w).max(axis=1) for w in weights], axis=0)
        factor = (np.maximum(peaks[x], 1e-5) ** alpha / np.maximum(w_peak, 1e-5) ** (1 - alpha)).astype(np.float32)
        for n, w in zip(members, weights):
            initializers[n.input[1]].CopyFrom(numpy_helper.from_array((w * factor[:, None]).astype(np.float32),
                                                                      n.input[1]))
        inverse, smoothed = f"{x}.smooth_inverse", f"{x}.smoothed"
        model.graph.initializer.append(numpy_helper.from_array((1.0 / factor).astype(np.float32), inverse))
        inserts.append((min(position[id(n)] for n in members),
                        onnx.helper.make_node("Mul", [x, inverse], [smoothed], name=f"smooth/{x}")))
        for n in members:
            n.input[0] = smoothed
    for index, node in sorted(inserts, key=lambda item: -item[0]):  # from the back: earlier indices stay valid
        model.graph.node.insert(index, node)
    return model


def recipe_for(change: str) -> dict:
    from pyserini_ext.encode.runtime import STATIC_INT8

    recipe = copy.deepcopy(STATIC_INT8)
    recipe.update(copy.deepcopy(CHANGES[change]) if change in CHANGES else {})
    return recipe


def ndcg10(doc_vectors: np.ndarray, query_vectors: np.ndarray, docids, qids, qrels) -> float:
    from pyserini_ext.eval.metrics import evaluate
    from pyserini_ext.search.run import Hit, order_hits

    scores = query_vectors @ doc_vectors.T
    run = {}
    for qid, row in zip(qids, scores):
        top = np.argpartition(-row, 1000)[:1000]
        run[qid] = order_hits([Hit(docids[i], float(row[i])) for i in top])
    return evaluate(run, qrels, ["nDCG@10"])["nDCG@10"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--conditions", default="fp32,dynamic,static")
    parser.add_argument("--calibration-size", type=int, default=256)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--batch-docs", type=int, default=64, help="documents for the batch-dependence check")
    parser.add_argument("--docs", type=int, help="encode only the first N documents (no nDCG@10)")
    args = parser.parse_args()

    import pyserini_ext  # noqa: F401  (configures Java before pyserini)
    from pyserini_ext.data import get_dataset
    from pyserini_ext.encode.base import load_card
    from pyserini_ext.encode.runtime import (Calibration, OnnxGraph, RuntimeOptions, calibration_inputs,
                                             cpu_threads, quantize_static_int8, run_batches)

    scifact = get_dataset("beir/scifact")
    docs = list(scifact.docs())[:args.docs]
    topics = scifact.topics("test")
    qids, queries = list(topics), list(topics.values())
    docids = [d.docid for d in docs]
    qrels = scifact.qrels("test")
    card = load_card("all-minilm-l6-v2-onnx")
    net = card.document_encoder().net
    texts = net.doc_texts([d.text for d in docs], [d.title for d in docs])
    query_texts = net.query_texts(queries)
    fp32 = net.graph.path
    options = RuntimeOptions(backend="onnx")
    calibration = Calibration("beir/scifact", args.calibration_size, args.seed)
    print(f"all-MiniLM-L6-v2, SciFact, {len(docs)} documents, {cpu_threads(options)} onnxruntime threads, "
          f"calibration: {args.calibration_size} corpus documents, seed {args.seed}; load average "
          f"{os.getloadavg()[0]:.2f}", flush=True)

    def doc_inputs(batch):
        return net.tokenize(batch, card.options.max_doc_length)

    def query_inputs(batch):
        return net.tokenize(batch, card.options.max_query_length)

    batches = None
    results, reference = {}, None
    for condition in args.conditions.split(","):
        name = condition
        start = time.perf_counter()
        if name == "fp32":
            path = fp32
        elif name == "dynamic":
            path = load_card("all-minilm-l6-v2-onnx-int8").document_encoder().net.graph.path
        else:
            if batches is None:
                batches = calibration_inputs(calibration, lambda t, ti: doc_inputs(net.doc_texts(t, ti)))
            change = name[len("static-"):] if name != "static" else ""
            source = fp32
            if change in SMOOTH:  # quantise a smoothed copy of the export, kept beside the others
                import onnx

                source = fp32.parent / f"smoothed-{SMOOTH[change]}-{args.calibration_size}-{args.seed}" / "model.onnx"
                if not source.exists():
                    source.parent.mkdir(exist_ok=True)
                    onnx.save(smooth(onnx.load(str(fp32)), batches, SMOOTH[change]), str(source))
            path = quantize_static_int8(source, batches, recipe_for(change))
        quantise_s = time.perf_counter() - start
        graph = OnnxGraph(path, options)
        start = time.perf_counter()
        vectors = run_batches(texts, doc_inputs, graph, 8, net.dim)
        seconds = time.perf_counter() - start
        q = run_batches(query_texts, query_inputs, graph, 8, net.dim)
        sub = texts[:args.batch_docs]
        alone = run_batches(sub, doc_inputs, graph, 1, net.dim)
        spread = max(float(np.abs(run_batches(sub, doc_inputs, graph, b, net.dim) - alone).max()) for b in (8, 32))
        row = {"docs/s": len(docs) / seconds, "quantise_s": quantise_s, "batch_spread": spread,
               "size_mib": path.stat().st_size / 2**20, "load": os.getloadavg()[0]}
        if not args.docs:
            row["nDCG@10"] = ndcg10(vectors, q, docids, qids, qrels)
        if name == "fp32":
            reference = (vectors, row, q)
        elif reference is not None:
            cosines = (vectors * reference[0]).sum(axis=1)
            row["min_cos"], row["mean_cos"] = float(cosines.min()), float(cosines.mean())
            row["query_mean_cos"] = float((q * reference[2]).sum(axis=1).mean())
        results[condition] = row
        print(condition, {k: round(v, 5) for k, v in row.items()}, file=sys.stderr, flush=True)

    print(f"{'condition':22s} {'docs/s':>7s} {'x fp32':>7s} {'nDCG@10':>8s} {'loss':>8s} {'min cos':>8s} "
          f"{'mean cos':>8s} {'q cos':>8s} {'batch spread':>12s} {'MiB':>5s} {'load':>5s}")
    for condition, r in results.items():
        ratio = r["docs/s"] / reference[1]["docs/s"] if reference else float("nan")
        ndcg = f"{r['nDCG@10']:.5f}" if "nDCG@10" in r else "-"
        loss = f"{reference[1]['nDCG@10'] - r['nDCG@10']:+.5f}" if reference and "nDCG@10" in r else "-"
        cos = " ".join(f"{r[k]:8.5f}" if k in r else f"{'-':>8s}" for k in ("min_cos", "mean_cos", "query_mean_cos"))
        print(f"{condition:22s} {r['docs/s']:7.1f} {ratio:7.2f} {ndcg:>8s} {loss:>8s} {cos} "
              f"{r['batch_spread']:12.2e} {r['size_mib']:5.0f} {r['load']:5.2f}")


if __name__ == "__main__":
    main()
