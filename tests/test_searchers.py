"""Our dense index and searcher inside Pyserini's own FaissSearcher and HybridSearcher."""

import numpy as np
import pytest

from pyserini_ext.data import get_dataset
from pyserini_ext.encode.dense import DenseDocumentEncoder, DenseOptions, DenseQueryEncoder
from pyserini_ext.index.dense import build_dense_index, encode_corpus, read_shards
from pyserini_ext.index.lucene import build_lucene_index
from pyserini_ext.search.dense import DenseSearcher

N_DOCS = 64


@pytest.fixture(scope="module")
def small(tmp_path_factory, minilm_path):
    root = tmp_path_factory.mktemp("small")
    docs = [d for _, d in zip(range(N_DOCS), get_dataset("beir/scifact").docs())]
    options = DenseOptions(max_doc_length=256, max_query_length=256)
    shards = encode_corpus(docs, DenseDocumentEncoder(minilm_path, options), root / "shards", shard_size=20, quiet=True)
    return {
        "docs": docs, "shards": shards,
        "flat": build_dense_index(shards, root / "flat", "flat"),
        "hnsw": build_dense_index(shards, root / "hnsw", "hnsw", hnsw_m=8),
        "lucene": build_lucene_index(docs, root / "lucene", quiet=True),
        "encoder": DenseQueryEncoder(minilm_path, options),
        "queries": [d.title for d in docs[:5]],  # a title should find its own document
    }


def test_shards_resume_without_reencoding(small, tmp_path):
    vectors, docids = read_shards(small["shards"])
    assert vectors.shape == (N_DOCS, 384) and docids == [d.docid for d in small["docs"]]
    assert sorted(p.name for p in small["shards"].glob("*.npy")) == [f"shard-0000{i}.npy" for i in range(4)]

    class Refuses:  # every shard is on disk, so a rerun must not encode anything
        def encode(self, *args, **kwargs):
            raise AssertionError("re-encoded a finished shard")

    encode_corpus(small["docs"], Refuses(), small["shards"], shard_size=20, quiet=True)


def test_pyserini_faiss_searcher_reads_our_index_with_our_encoder(small):
    from pyserini.search.faiss import FaissSearcher

    theirs = FaissSearcher(str(small["flat"]), small["encoder"])
    ours = DenseSearcher(small["flat"], small["encoder"])
    qids = [f"q{i}" for i in range(len(small["queries"]))]
    a = theirs.batch_search(small["queries"], qids, k=10)
    b = ours.batch_search(small["queries"], qids, k=10)
    for qid, doc in zip(qids, small["docs"]):
        assert [h.docid for h in a[qid]] == [h.docid for h in b[qid]]
        np.testing.assert_allclose([h.score for h in a[qid]], [h.score for h in b[qid]], rtol=1e-6)
        assert b[qid][0].docid == doc.docid
    assert ours.search(small["queries"][0], k=3)[0].docid == small["docs"][0].docid


def test_hnsw_is_approximate_and_recovers_exact_search_with_a_wide_beam(tmp_path):
    """On 3,000 random vectors a narrow beam (efSearch 1, M 8) misses true neighbours; a wide
    one finds them all: the test sees the difference between HNSW and exact search."""
    from pyserini_ext.data.readers import Document

    rng = np.random.default_rng(0)
    vectors = rng.normal(size=(3000, 32)).astype(np.float32)
    vectors /= np.linalg.norm(vectors, axis=1, keepdims=True)
    docids = [f"doc{i:04d}" for i in range(len(vectors))]

    class RowLookup:  # the "text" of document i is i: its vector is row i
        def encode(self, texts, titles=None):
            return vectors[[int(t) for t in texts]]

    shards = encode_corpus((Document(d, "", str(i)) for i, d in enumerate(docids)), RowLookup(), tmp_path / "shards",
                           quiet=True)
    searcher = DenseSearcher(build_dense_index(shards, tmp_path / "hnsw", "hnsw", hnsw_m=8, ef_construction=40), None)
    queries = rng.normal(size=(50, 32)).astype(np.float32)
    exact = np.argsort(-(queries @ vectors.T), axis=1)[:, :10]  # NumPy brute force, no FAISS
    truth = [{docids[j] for j in row} for row in exact]

    def recall(ef):
        searcher.set_hnsw_ef_search(ef)
        hits = searcher.batch_search(queries, [str(i) for i in range(len(queries))], k=10)
        return np.mean([len(truth[i] & {h.docid for h in hits[str(i)]}) / 10 for i in range(len(queries))])

    assert recall(1) < 0.9  # it can miss
    assert recall(3000) == 1.0  # and a beam as wide as the corpus does not


def test_inside_pyserini_hybrid_searcher(small):
    from pyserini.search.hybrid import HybridSearcher
    from pyserini.search.lucene import LuceneSearcher

    dense = DenseSearcher(small["flat"], small["encoder"])
    hybrid = HybridSearcher(dense, LuceneSearcher(str(small["lucene"])))
    hits = hybrid.search(small["queries"][0], k0=10, k=5)
    assert len(hits) == 5 and hits[0].docid == small["docs"][0].docid
    batch = hybrid.batch_search(small["queries"], [str(i) for i in range(5)], k0=10, k=5)
    assert [batch[str(i)][0].docid for i in range(5)] == [d.docid for d in small["docs"][:5]]


def test_fp16_scores_tie_and_the_cut_keeps_whole_tie_groups(small):
    qids = [str(i) for i in range(5)]
    fp16 = DenseSearcher(small["flat"], small["encoder"], score_precision="float16")
    full = fp16.batch_search(small["queries"], qids, k=N_DOCS)
    for qid in qids:
        scores = [h.score for h in full[qid]]
        assert scores == sorted(scores, reverse=True)
        assert all(float(np.float16(s)) == s for s in scores)
        cut = fp16.batch_search(small["queries"], qids, k=10)[qid]
        assert [h.docid for h in cut] == [h.docid for h in full[qid][:10]]  # same order as the full ranking


def test_stored_vectors_lookup_across_shards(small):
    from pyserini_ext.search.rerank import StoredVectors

    vectors, docids = read_shards(small["shards"])
    stored = StoredVectors(small["shards"])
    wanted = docids[::-3] + ["not-a-docid"]
    got, found = stored.lookup(wanted)
    assert found == docids[::-3]  # unknown docids dropped, order kept
    np.testing.assert_array_equal(got, vectors[[docids.index(d) for d in found]])


def test_dense_rerank_equals_exact_search_over_the_same_candidates(small):
    from pyserini.search.faiss import DenseSearchResult
    from pyserini.search.lucene import LuceneSearcher

    from pyserini_ext.search.rerank import DenseRerank, Retrieve, StoredVectors

    exact = DenseSearcher(small["flat"], small["encoder"])  # FAISS over all documents
    rerank = DenseRerank(StoredVectors(small["shards"]), small["encoder"])

    class AllDocs:  # a first stage that returns every document: re-ranking them is exact search
        def batch_search(self, queries, q_ids, k, threads=1):
            return {q: [DenseSearchResult(d.docid, 0.0) for d in small["docs"]] for q in q_ids}

    qids = [str(i) for i in range(5)]
    ours = (Retrieve(AllDocs()) >> rerank).batch_search(small["queries"], qids, k=N_DOCS)
    theirs = exact.batch_search(small["queries"], qids, k=N_DOCS)
    for qid in qids:
        assert [h.docid for h in ours[qid]] == [h.docid for h in theirs[qid]]
        np.testing.assert_allclose([h.score for h in ours[qid]], [h.score for h in theirs[qid]], atol=1e-6)

    bm25 = LuceneSearcher(str(small["lucene"]))
    pipeline = Retrieve(bm25, depth=10) >> rerank
    assert repr(pipeline) == "Retrieve(LuceneSearcher, depth=10) >> DenseRerank(DenseQueryEncoder)"
    hits = pipeline.batch_search(small["queries"], qids, k=10)
    for qid, query in zip(qids, small["queries"]):
        candidates = {h.docid for h in bm25.search(query, 10)}
        assert {h.docid for h in hits[qid]} == candidates
        by_dense = {h.docid: h.score for h in theirs[qid]}
        np.testing.assert_allclose([h.score for h in hits[qid]], [by_dense[h.docid] for h in hits[qid]], atol=1e-6)


def test_faiss_device_falls_back_to_cpu_without_a_gpu(caplog):
    import logging

    import faiss

    from pyserini_ext.search.dense import faiss_gpus, to_device

    index = faiss.IndexFlatIP(4)
    if faiss_gpus():
        pytest.skip("this machine has a FAISS GPU; the fallback is what is tested here")
    with caplog.at_level(logging.INFO, logger="pyserini_ext.search.dense"):
        assert to_device(index, "auto") is index
    assert "searching on CPU" in caplog.text
    with pytest.raises(RuntimeError, match="FAISS sees no GPU"):
        to_device(index, "cuda")
    with pytest.raises(ValueError, match="device must be one of"):
        to_device(index, "gpu")
