"""The vectorised total order writes the same run files, byte for byte, as the per-document
code it replaced (tests/reference_order.py, the pre-change implementation): on random runs
full of ties, and end to end on SciFact for dense (FP32, and FP16 under every tie policy),
BM25, RRF and hybrid fusion, and re-ranking from stored vectors."""

import numpy as np
import pytest

import reference_order as ref
from pyserini_ext.search.fusion import FusionSearcher, fuse_runs
from pyserini_ext.search.run import Hit, order_run, run_as_dict, search_topics, write_trec_run
from pyserini_ext.search.ties import TieOrder, docid_ranks, rows_in_total_order, strictly_decreasing, total_order

POLICIES = ("docid", "reverse", "shuffle")


def written(run, path) -> str:
    return write_trec_run(run, path).read_text(encoding="utf-8")


def tied_run(seed: int, queries: int = 6, depth: int = 300) -> dict[str, list[Hit]]:
    """Scores drawn from a few FP16 values (many ties), docids numeric strings of mixed length."""
    rng = np.random.default_rng(seed)
    run = {}
    for q in range(queries):
        docids = list(dict.fromkeys(str(x) for x in rng.integers(0, 10 ** int(rng.integers(2, 7)), depth)))
        scores = rng.choice(np.float16([-1.5, -0.0, 0.0, 0.25, 0.5, 0.75, 3.0]), len(docids)).astype(np.float64)
        run[f"q{q}"] = [Hit(d, float(s)) for d, s in zip(docids, scores)]
    return run


@pytest.mark.parametrize("policy", POLICIES)
def test_order_and_written_run_equal_the_reference_on_tied_runs(policy, tmp_path):
    for seed in range(5):
        run = tied_run(seed)
        new = order_run(run, policy, seed=seed)
        old = {q: ref.order_hits(hits, policy, seed, q) for q, hits in run.items()}
        assert written(new, tmp_path / "new.txt") == ref.run_text(old)
        cut = order_run(run, policy, seed=seed, k=37)
        assert written(cut, tmp_path / "cut.txt") == ref.run_text({q: h[:37] for q, h in old.items()})


def test_primitives_equal_the_reference():
    rng = np.random.default_rng(3)
    for trial in range(200):
        n = int(rng.integers(1, 400))
        docids = list(dict.fromkeys(str(x) for x in rng.integers(0, 10 ** int(rng.integers(1, 9)), n)))
        scores = rng.choice(np.float32([-2, -0.0, 0, 1e-45, 0.5, 1, 1, 7]), len(docids))
        for policy in POLICIES:
            assert (total_order(docids, scores, policy, 3, "q") == ref.total_order(docids, scores, policy, 3, "q")).all()
        ranks = docid_ranks(docids)
        for ties in (ranks, len(docids) - 1 - ranks):
            expected = np.lexsort((ties, -scores.astype(np.float64)))
            assert (rows_in_total_order(scores[None], ties[None])[0] == expected).all()
        ranked = scores[np.argsort(-scores, kind="stable")]
        for values in (ranked, scores):  # in rank order, and not (a score above its predecessor)
            assert strictly_decreasing(values).tobytes() == ref.strictly_decreasing(values).tobytes()
    edges = [[0.0, -0.0, 0.0, -0.0], [-0.0, 1e-45, 1e-45, 0.0], [3, 3, -3.4028235e38, -3.4028235e38], [1, np.inf, 2]]
    for values in edges:
        with np.errstate(over="ignore"):
            assert strictly_decreasing(values).tobytes() == ref.strictly_decreasing(values).tobytes()


def test_fusion_equals_the_reference():
    for seed in range(4):
        a, b = tied_run(seed, 4, 120), tied_run(seed + 10, 4, 120)
        for policy in POLICIES:
            for q in a:
                lists = [a[q], b[q]]
                common = {"policy": policy, "seed": seed, "qid": q}
                new = fuse_runs([{q: a[q]}, {q: b[q]}], "rrf", k=50, depth=90, tie_policy=policy, seed=seed)[q]
                assert pairs(new) == pairs(ref.reciprocal_rank_fusion(lists, 60, 90, 50, **common))
                new = fuse_runs([{q: a[q]}, {q: b[q]}], "weighted", weights=[0.3, 1.7], tie_policy=policy, seed=seed)[q]
                assert pairs(new) == pairs(ref.weighted_sum(lists, [0.3, 1.7], **common))
                for norm in (False, True):
                    for on_dense in (False, True):
                        new = fuse_runs([{q: a[q]}, {q: b[q]}], "hybrid", k=80, alpha=0.3, normalization=norm,
                                        weight_on_dense=on_dense, tie_policy=policy, seed=seed)[q]
                        old = ref.hybrid_interpolation(a[q], b[q], 0.3, norm, on_dense, 80, **common)
                        assert pairs(new) == pairs(old)


def pairs(hits) -> list[tuple[str, float]]:
    return [(h.docid, h.score) for h in hits]


def test_run_as_dict_is_the_written_order():
    run = order_run(tied_run(9), "docid")
    for qid, scores in run_as_dict(run).items():
        assert list(scores) == [h.docid for h in run[qid]]
        assert list(scores.values()) == ref.strictly_decreasing([h.score for h in run[qid]]).tolist()


@pytest.mark.parametrize("policy", POLICIES)
@pytest.mark.parametrize("precision", ["float32", "float16"])
def test_dense_searcher_equals_the_reference_on_a_tied_index(tmp_path, policy, precision):
    """A FAISS flat index whose vectors repeat (tied scores, tie groups cut at k), searched one
    query at a time and in a batch, against the old DenseSearcher code."""
    import faiss

    from pyserini_ext.search.dense import DenseSearcher

    rng = np.random.default_rng(4)
    base = rng.standard_normal((40, 16)).astype(np.float32)
    vectors = base[rng.integers(0, 40, 300)]  # every vector about 7 times
    docids = [str(x) for x in rng.permutation(10 ** 6)[:300]]
    index = faiss.IndexFlatIP(16)
    index.add(vectors)
    folder = tmp_path / "index"
    folder.mkdir()
    faiss.write_index(index, str(folder / "index"))
    (folder / "docid").write_text("".join(d + "\n" for d in docids))
    queries = rng.standard_normal((25, 16)).astype(np.float32)
    qids = [f"q{i}" for i in range(25)]
    searcher = DenseSearcher(folder, None, tie_policy=policy, seed=3, score_precision=precision, device="cpu")
    for k in (1, 10, 64, 300):
        old = ref.dense_batch_search(index, docids, queries, qids, k, policy, 3, precision)
        new = searcher.batch_search(queries, qids, k=k)
        assert {q: pairs(h) for q, h in new.items()} == {q: pairs(h) for q, h in old.items()}
        for qid, query in zip(qids[:5], queries):
            single = ref.dense_batch_search(index, docids, query[None], [""], k, policy, 3, precision)[""]
            assert pairs(searcher.search(query[None], k=k)) == pairs(single)


# --- SciFact, end to end -------------------------------------------------------------------


class CachedEncoder:
    """The same query vectors for both implementations (encoded once)."""

    def __init__(self, vectors: dict[str, np.ndarray]):
        self.vectors = vectors

    def encode_batch(self, texts):
        return np.stack([self.vectors[t] for t in texts])


@pytest.fixture(scope="module")
def scifact_parts(workdir):
    from pyserini_ext.data import get_dataset
    from pyserini_ext.encode.base import load_card
    from pyserini_ext.recipes import DenseParams, dense_index, store_dir, workspace

    ws = workspace(get_dataset("beir/scifact"), workdir, quiet=True)
    topics = ws.dataset.topics("test")
    card = load_card("all-minilm-l6-v2")
    vectors = card.query_encoder().encode_batch(list(topics.values()))
    encoder = CachedEncoder(dict(zip(topics.values(), vectors)))
    indexes = {kind: dense_index(ws, DenseParams(index=kind)) for kind in ("flat", "flat-fp16")}
    return ws, topics, encoder, indexes, store_dir(ws, card)


def reference_dense(index_dir, encoder, policy="docid", seed=0, precision="float32"):
    import faiss

    index = faiss.read_index(str(index_dir / "index"))
    docids = (index_dir / "docid").read_text(encoding="utf-8").split("\n")[:-1]

    def batch_search(texts, qids, k):
        return ref.dense_batch_search(index, docids, encoder.encode_batch(texts), qids, k, policy, seed, precision)

    return batch_search


@pytest.mark.e2e
def test_scifact_runs_are_byte_for_byte_the_reference(scifact_parts, tmp_path):
    from pyserini.search.lucene import LuceneSearcher

    from pyserini_ext.recipes import bm25_index
    from pyserini_ext.search.dense import DenseSearcher
    from pyserini_ext.search.rerank import DenseRerank, Retrieve
    from pyserini_ext.store import VectorStore

    ws, topics, encoder, indexes, shards = scifact_parts
    checked = {}

    def same(name, new_run, old_run):
        new_text, old_text = written(new_run, tmp_path / f"{name}.txt"), ref.run_text(old_run)
        assert new_text == old_text, name
        checked[name] = len(new_text)

    # Dense, FP32 scores, docid ties.
    dense = DenseSearcher(indexes["flat"], encoder)
    old_dense = ref.search_complete(reference_dense(indexes["flat"], encoder), topics, 1000)
    same("dense", search_topics(dense, topics, 1000), old_dense)
    # Dense, FP16 scores (tens of thousands of ties), every policy.
    for policy in POLICIES:
        searcher = DenseSearcher(indexes["flat-fp16"], encoder, tie_policy=policy, seed=13, score_precision="float16")
        old = ref.search_complete(reference_dense(indexes["flat-fp16"], encoder, policy, 13, "float16"), topics, 1000,
                                  policy, 13)
        same(f"dense-fp16-{policy}", search_topics(searcher, topics, 1000, ties=TieOrder(policy, 13)), old)
    # BM25 (Lucene), with and without removing a query's own id.
    bm25 = LuceneSearcher(str(bm25_index(ws)))
    bm25.set_bm25(0.9, 0.4)

    def lucene(texts, qids, k):
        return bm25.batch_search(texts, qids, k, 2)

    old_bm25 = ref.search_complete(lucene, topics, 1000)
    same("bm25", search_topics(bm25, topics, 1000), old_bm25)
    same("bm25-remove-query", search_topics(bm25, topics, 1000, remove_query=True),
         ref.search_complete(lucene, topics, 1000, drop=lambda q, d: d == q))
    # Fusion: RRF and HybridSearcher interpolation of BM25 and dense.
    for method in ("rrf", "hybrid"):
        fused = FusionSearcher([bm25, dense], method, depth=1000).batch_search(list(topics.values()), list(topics),
                                                                                1000)
        if method == "rrf":
            old = {q: ref.reciprocal_rank_fusion([old_bm25[q], old_dense[q]], k=1000, qid=q) for q in topics}
        else:
            old = {q: ref.hybrid_interpolation(old_bm25[q], old_dense[q], 0.1, k=1000, qid=q) for q in topics}
        same(f"fusion-{method}", fused, old)
    # Re-ranking BM25's top 1000 from the stored MiniLM vectors.
    store = VectorStore(shards)
    pipeline = Retrieve(bm25, 1000) >> DenseRerank(store, encoder)
    rows = dict(zip(store.docids, range(len(store.docids))))
    all_vectors = store.vectors()

    def vector_of(docid):
        return all_vectors[rows[docid]] if docid in rows else None

    old_rerank = ref.rerank(vector_of, encoder.encode_batch(list(topics.values())), old_bm25)
    same("rerank", pipeline.batch_search(list(topics.values()), list(topics), 1000), old_rerank)
    assert len(checked) == 9 and min(checked.values()) > 1_000_000  # 300 queries x 1000 lines each
