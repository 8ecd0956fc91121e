"""The package's top level: the README's Python example, on a small BEIR folder the test writes."""

import numpy as np
import pytest

import pyserini_ext as px
from test_any_dataset import write_beir_folder


@pytest.fixture(scope="module")
def folder(tmp_path_factory):
    path = tmp_path_factory.mktemp("api") / "tiny-beir"
    write_beir_folder(path, n_docs=40)
    return path


def test_dense_searcher_from_card_over_a_dataset_and_over_its_index_folder(folder, tmp_path):
    card = px.load_card("all-minilm-l6-v2")
    work = tmp_path / "work"
    by_dataset = px.DenseSearcher.from_card(card, str(folder), work=work)
    index_dir = next((work / "indexes").glob("tiny-beir-*.all-minilm-l6-v2")) / "flat"
    by_index = px.DenseSearcher.from_card("all-minilm-l6-v2", index_dir)
    query = "lion tiger"
    a, b = by_dataset.search(query, k=10), by_index.search(query, k=10)
    assert [h.docid for h in a] == [h.docid for h in b] and len(a) == 10
    # Scores are inner products of the card's own query and document vectors (NumPy, no FAISS).
    dataset = px.resolve_dataset(str(folder))
    docs = {d.docid: d for d in dataset.docs()}
    doc_vectors = card.document_encoder().encode([docs[h.docid].text for h in a], titles=[docs[h.docid].title for h in a])
    expected = doc_vectors @ card.query_encoder().encode(query)
    np.testing.assert_allclose([h.score for h in a], expected, rtol=1e-5, atol=1e-6)


def test_stages_compose_and_evaluate_from_the_top_level(folder, tmp_path):
    work = tmp_path / "work"
    bm25 = px.open_searcher("bm25", str(folder), work=work)
    pipeline = px.Retrieve(bm25, depth=20) >> px.rerank_stage("all-minilm-l6-v2", str(folder), work=work)
    dataset = px.resolve_dataset(str(folder))
    run = px.search_topics(pipeline, dataset.topics("test"), hits=10)
    first = px.search_topics(bm25, dataset.topics("test"), hits=20)
    for qid, hits in run.items():  # re-ranking keeps the first stage's candidates, reorders them
        assert {h.docid for h in hits} <= {h.docid for h in first[qid]}
        assert [h.score for h in hits] == sorted((h.score for h in hits), reverse=True)
    back = px.read_trec_run(px.write_trec_run(run, tmp_path / "run.txt"))
    assert {q: [h.docid for h in hs] for q, hs in back.items()} == {q: [h.docid for h in hs] for q, hs in run.items()}
    for qid in run:  # scores within float32 of what was written (ties are nudged apart by ULPs)
        np.testing.assert_allclose([h.score for h in back[qid]], [h.score for h in run[qid]], rtol=1e-6)
    scores = px.evaluate(run, dataset.qrels("test"), ["nDCG@10"])
    assert 0 < scores["nDCG@10"] <= 1
