"""VectorStore's gather into reused buffers and DenseRerank's arrays path, on a store of many
small shards written here: the same vectors and the same score bits as a plain gather and one
matrix-vector product per query, and the total order (score descending, docid ascending)."""

import numpy as np
import pytest

from pyserini_ext.data.readers import Document
from pyserini_ext.search.rerank import DenseRerank
from pyserini_ext.search.run import Hit
from pyserini_ext.store import VectorStore, encode_corpus

DIM = 16


class Vectors:
    """A document encoder for the test: the vector is given by the text (an integer seed)."""

    def encode(self, texts, titles=None):
        return np.stack([np.random.default_rng(int(t)).standard_normal(DIM) for t in texts]).astype(np.float32)


class Queries:
    def __init__(self, vectors):
        self.vectors = vectors

    def encode_batch(self, texts):
        return np.stack([self.vectors[t] for t in texts])


@pytest.fixture(scope="module")
def store(tmp_path_factory):
    root = tmp_path_factory.mktemp("many") / "shards"
    # Docids out of string order.
    docs = [Document(f"d{(i * 37) % 101:03d}", "", str(i)) for i in range(60)]
    return VectorStore(encode_corpus(docs, Vectors(), root, shard_size=7, quiet=True))


def test_gather_into_buffers_equals_fancy_indexing(store):
    everything = store.vectors()
    rng = np.random.default_rng(0)
    for rows in (rng.integers(0, 60, 40), np.arange(60)[::-1], np.array([3, 3, 59]), np.array([], dtype=np.int64),
                 np.array([8, 9, 10])):  # rows of one shard only
        expected = everything[rows]
        assert store.gather(rows).tobytes() == expected.tobytes()
        out, staging = np.full((len(rows), DIM), np.nan, np.float32), np.empty((len(rows), DIM), np.float32)
        assert store.gather(rows, out, staging) is out and out.tobytes() == expected.tobytes()
    with pytest.raises(IndexError):
        store.gather(np.array([0, 60]))
    with pytest.raises(IndexError):
        store.gather(np.array([-1]))


def test_rerank_arrays_scores_and_orders_as_one_product_per_query(store):
    everything = store.vectors()
    rng = np.random.default_rng(1)
    queries = rng.standard_normal((5, DIM)).astype(np.float32)
    candidates = [[store.docids[j] for j in rng.permutation(60)[:n]] for n in (20, 20, 20, 60, 5)]
    candidates[4].insert(2, "missing")  # an unknown docid is dropped
    stage = DenseRerank(store, Queries({f"t{i}": q for i, q in enumerate(queries)}))
    qids = [f"q{i}" for i in range(5)]
    ranked = stage.rerank_arrays(queries, candidates, qids)
    for query, docids, (got_docids, got_scores) in zip(queries, candidates, ranked):
        kept = [d for d in docids if d in store.row_of]
        scores = everything[[store.row_of[d] for d in kept]] @ query  # one product per query
        expected = sorted(zip(kept, scores.tolist()), key=lambda h: (-h[1], h[0]))
        assert got_docids == [d for d, _ in expected]
        assert got_scores.tolist() == [s for _, s in expected]  # same bits
    # The stage's transform is the same lists as Hit objects.
    run = {q: [Hit(d, 0.0) for d in c] for q, c in zip(qids, candidates)}
    hits = stage.transform({q: f"t{i}" for i, q in enumerate(qids)}, run)
    assert [[(h.docid, h.score) for h in hits[q]] for q in qids] == [list(zip(d, s.tolist())) for d, s in ranked]
