"""ONNX exports against PyTorch, family by family, on real SciFact text (onnxruntime runs for real)."""

import logging

import numpy as np
import pytest

from pyserini_ext.data import get_dataset
from pyserini_ext.encode.base import load_card
from pyserini_ext.encode.dense import DenseDocumentEncoder, DenseOptions, DenseQueryEncoder, DenseTrainable
from pyserini_ext.encode.mrl import MrlDocumentEncoder, MrlOptions, MrlQueryEncoder
from pyserini_ext.encode.runtime import CACHE_ENV, OnnxGraph, build_graph, example_inputs
from pyserini_ext.encode.tct_colbert import TctColBertDocumentEncoder, TctColBertOptions, TctColBertQueryEncoder

ATOL = 1e-4


@pytest.fixture(scope="module", autouse=True)
def fresh_cache(tmp_path_factory):
    """Every export in this module is made here, not reused from an earlier run."""
    patch = pytest.MonkeyPatch()
    patch.setenv(CACHE_ENV, str(tmp_path_factory.mktemp("cache")))
    yield
    patch.undo()


@pytest.fixture(scope="module")
def sample():
    scifact = get_dataset("beir/scifact")
    docs = [d for _, d in zip(range(10), scifact.docs())]
    return [d.text for d in docs], [d.title for d in docs], list(scifact.topics("test").values())[:8]


def both(build):
    """The same encoder under each backend."""
    return build(backend="torch"), build(backend="onnx")


def test_dense_onnx_equals_torch(sample):
    texts, titles, queries = sample
    card = load_card("all-minilm-l6-v2")
    torch_doc, onnx_doc = both(card.document_encoder)
    assert isinstance(onnx_doc.net.graph, OnnxGraph)
    np.testing.assert_allclose(onnx_doc.encode(texts, titles=titles), torch_doc.encode(texts, titles=titles), atol=ATOL)
    torch_q, onnx_q = both(card.query_encoder)
    np.testing.assert_allclose(onnx_q.encode_batch(queries), torch_q.encode_batch(queries), atol=ATOL)


def test_dense_projection_onnx_equals_torch(minilm_path, sample, tmp_path):
    """The projection is part of the graph: the export returns the projected, normalised vector."""
    texts, titles, queries = sample
    DenseTrainable(DenseOptions(projection_dim=8), minilm_path).save(tmp_path)
    torch_d, onnx_d = both(lambda backend: DenseDocumentEncoder(
        str(tmp_path), DenseOptions(projection_dim=8, max_doc_length=128, backend=backend)))
    assert onnx_d.net.graph.path.parent.name.startswith("dense-mean-p8-l2-")
    got = onnx_d.encode(texts, titles)
    assert got.shape == (len(texts), 8)
    np.testing.assert_allclose(got, torch_d.encode(texts, titles), atol=ATOL)
    torch_q, onnx_q = both(lambda backend: DenseQueryEncoder(str(tmp_path), DenseOptions(projection_dim=8,
                                                                                        backend=backend)))
    np.testing.assert_allclose(onnx_q.encode_batch(queries), torch_q.encode_batch(queries), atol=ATOL)


def test_tct_colbert_onnx_equals_torch(minilm_path, sample):
    texts, titles, queries = sample
    torch_q, onnx_q = both(lambda backend: TctColBertQueryEncoder(minilm_path, TctColBertOptions(backend=backend)))
    np.testing.assert_allclose(onnx_q.encode_batch(queries), torch_q.encode_batch(queries), atol=ATOL)
    torch_d, onnx_d = both(lambda backend: TctColBertDocumentEncoder(
        minilm_path, TctColBertOptions(backend=backend, max_doc_length=128)))
    np.testing.assert_allclose(onnx_d.encode(texts, titles), torch_d.encode(texts, titles), atol=ATOL)


def test_splade_onnx_equals_torch(sample):
    texts, titles, queries = sample
    card = load_card("splade-tiny")
    torch_doc, onnx_doc = both(card.document_encoder)
    np.testing.assert_allclose(onnx_doc.weights(texts, titles).toarray(), torch_doc.weights(texts, titles).toarray(),
                               atol=ATOL)
    torch_q, onnx_q = both(card.query_encoder)
    np.testing.assert_allclose(onnx_q.weights(queries).toarray(), torch_q.weights(queries).toarray(), atol=ATOL)


@pytest.mark.parametrize("variance", ["softplus", "logvar"])
def test_mrl_onnx_equals_torch(minilm_path, sample, variance):
    texts, titles, queries = sample
    torch_d, onnx_d = both(lambda backend: MrlDocumentEncoder(minilm_path, MrlOptions(dim=64, variance=variance,
                                                                                      backend=backend)))
    np.testing.assert_allclose(onnx_d.encode(texts, titles), torch_d.encode(texts, titles), atol=ATOL, rtol=1e-5)
    # Heads that vary with the text (the untrained start has constant variances): export them too.
    encoder = MrlQueryEncoder(minilm_path, MrlOptions(dim=64, variance=variance, beta=2.0))
    rng = np.random.default_rng(0)
    for layer in (encoder.net.heads.mean, encoder.net.heads.var):
        layer.weight.data = layer.weight.data.new_tensor(rng.normal(0, 0.05, tuple(layer.weight.shape)))
    expected = encoder.gaussians(queries)
    encoder.net.graph = build_graph(encoder.net.heads, f"mrl-{variance}", example_inputs(encoder.net.tokenizer),
                                    MrlOptions(backend="onnx"))
    assert isinstance(encoder.net.graph, OnnxGraph)
    got = encoder.gaussians(queries)
    assert expected[1].std() > 0
    for ours, theirs in zip(got, expected):
        np.testing.assert_allclose(ours, theirs, atol=ATOL, rtol=1e-5)


def net_module(card):
    """The card's torch graph (PyTorch backend), the module an export is made from."""
    return card.document_encoder().net.graph.module


def test_int8_and_fp16_exports(sample, caplog):
    texts, titles, _ = sample
    card = load_card("all-minilm-l6-v2")
    reference = card.document_encoder().encode(texts, titles=titles)
    int8 = card.document_encoder(backend="onnx", precision="int8")
    assert int8.net.graph.path.name == "model.int8.onnx"
    cosine = (int8.encode(texts, titles=titles) * reference).sum(axis=1)
    assert 0.8 < cosine.min() and cosine.max() < 1.0  # quantised: close, not equal (its cost is measured by a spec)
    with caplog.at_level(logging.WARNING, logger="pyserini_ext.encode.runtime"):
        fp16 = card.document_encoder(backend="onnx", precision="fp16")
    assert "FP16 ONNX needs the CUDA provider" in caplog.text  # no GPU here: the FP32 export runs instead
    assert fp16.net.graph.path.name == "model.onnx"
    assert not (fp16.net.graph.path.parent / "model.fp16.onnx").exists()  # decided before converting
    np.testing.assert_allclose(fp16.encode(texts, titles=titles), reference, atol=ATOL)
    # the conversion itself (what a CUDA machine runs): a valid model with float32 inputs and outputs kept
    import onnx

    from pyserini_ext.encode.runtime import example_inputs, export_onnx

    net = fp16.net
    path = export_onnx(net_module(card), "dense-mean-l2", example_inputs(net.tokenizer), "fp16")
    model = onnx.load(str(path))
    onnx.checker.check_model(model)
    assert model.graph.output[0].type.tensor_type.elem_type == onnx.TensorProto.FLOAT
    assert any(init.data_type == onnx.TensorProto.FLOAT16 for init in model.graph.initializer)


def test_exports_are_cached_by_graph_and_weights(sample):
    card = load_card("all-minilm-l6-v2")
    first = card.document_encoder(backend="onnx").net.graph.path
    stamp = first.stat().st_mtime_ns
    again = card.query_encoder(backend="onnx").net.graph.path  # same graph, same weights: same export
    assert again == first and again.stat().st_mtime_ns == stamp
    cls = card.document_encoder(backend="onnx", pooling="cls").net.graph.path
    assert cls.parent != first.parent and cls.parent.name.startswith("dense-cls-l2-")


def test_precision_needs_the_onnx_backend():
    with pytest.raises(ValueError, match="precision 'int8' needs backend 'onnx'"):
        MrlOptions(precision="int8")


def test_provider_order_and_logged_fallback(caplog):
    import onnxruntime as ort

    from pyserini_ext.encode.runtime import onnx_providers

    if "CUDAExecutionProvider" in ort.get_available_providers():
        assert onnx_providers("auto") == ["CUDAExecutionProvider", "CPUExecutionProvider"]
        return
    with caplog.at_level(logging.INFO, logger="pyserini_ext.encode.runtime"):
        assert onnx_providers("auto") == ["CPUExecutionProvider"]
    assert "no CUDA provider" in caplog.text
    with pytest.raises(RuntimeError, match="install onnxruntime-gpu"):
        onnx_providers("cuda")
    assert onnx_providers("cpu") == ["CPUExecutionProvider"]


def test_tokenizer_thread_stops_when_the_consumer_does():
    import itertools
    import threading
    import time

    from pyserini_ext.encode.runtime import _ahead

    before = threading.active_count()
    ahead = _ahead(itertools.count())  # endless: the thread would block on the full queue forever
    assert [next(ahead) for _ in range(3)] == [0, 1, 2]
    ahead.close()
    deadline = time.monotonic() + 5
    while threading.active_count() > before and time.monotonic() < deadline:
        time.sleep(0.01)
    assert threading.active_count() == before
    assert list(_ahead(range(5))) == [0, 1, 2, 3, 4]
    with pytest.raises(ZeroDivisionError):
        list(_ahead(1 // x for x in (1, 0)))
