"""SPLADE: the formula, parity with Pyserini's SPLADE encoders, and Lucene impact search
agreeing with an independent SciPy sparse dot product over the same vectors."""

import numpy as np
import pytest
import scipy.sparse as sp
import torch
from transformers import AutoModelForMaskedLM

from pyserini_ext.data import get_dataset
from pyserini_ext.encode.base import load_card
from pyserini_ext.encode.splade import as_term_dicts, quantize
from pyserini_ext.index.impact import build_impact_index, encode_impact_corpus, read_impact_weights
from pyserini_ext.search.rerank import ImpactRerank, Retrieve, StoredImpacts
from pyserini_ext.search.run import Hit, order_hits

N_DOCS = 300


def test_quantize_by_hand():
    weights = sp.csr_matrix(np.array([[0.123, 0.0, 2.5, 0.004], [0.0, 1.005, 0.0, 0.0]], dtype=np.float32))
    impacts = quantize(weights, 100)
    assert impacts.toarray().tolist() == [[12, 0, 250, 0], [0, 100, 0, 0]]  # 0.4 rounds to 0 and is dropped
    assert as_term_dicts(impacts, np.array(["a", "b", "c", "d"], dtype=object)) == [{"a": 12, "c": 250}, {"b": 100}]


@pytest.fixture(scope="module")
def splade():
    card = load_card("splade-tiny")
    return card, card.query_encoder(), card.document_encoder()


@pytest.fixture(scope="module")
def sample():
    scifact = get_dataset("beir/scifact")
    docs = [d for _, d in zip(range(N_DOCS), scifact.docs())]
    queries = dict(list(scifact.topics("test").items())[:20])
    return docs, queries


def test_weights_follow_the_splade_formula(splade, sample):
    card, _, doc_encoder = splade
    docs = sample[0][:6]
    texts = [f"{d.title} {d.text}" for d in docs]
    net = doc_encoder.net
    inputs = net.tokenizer(texts, max_length=doc_encoder.options.max_doc_length, truncation=True, padding=True,
                           return_tensors="pt")
    mlm = AutoModelForMaskedLM.from_pretrained(card.model.resolve()).eval()  # independent of our graph
    with torch.inference_mode():
        logits = mlm(**inputs).logits
    expected = (torch.log1p(torch.relu(logits)) * inputs["attention_mask"].unsqueeze(-1)).max(dim=1).values.numpy()
    ours = doc_encoder.weights([d.text for d in docs], [d.title for d in docs]).toarray()
    np.testing.assert_allclose(ours, expected, atol=1e-6)


def nonzero(impacts: dict) -> dict:
    return {term: w for term, w in impacts.items() if w}


def test_parity_with_pyserini_splade_encoders(splade, sample):
    """Pyserini quantises with round(w / 5 * 256); with that factor our impacts are Pyserini's
    (Pyserini also keeps terms whose impact rounds to 0, which score nothing; we drop them)."""
    from pyserini.encode import SpladeDocumentEncoder as PyseriniDoc
    from pyserini.encode import SpladeQueryEncoder as PyseriniQuery

    card, query_encoder, doc_encoder = splade
    path = card.model.resolve()
    docs, queries = sample[0][:6], list(sample[1].values())[:6]
    theirs_docs = PyseriniDoc(path, device="cpu").encode([d.text for d in docs], titles=[d.title for d in docs],
                                                         max_length=doc_encoder.options.max_doc_length)
    ours_docs = as_term_dicts(quantize(doc_encoder.weights([d.text for d in docs], [d.title for d in docs]), 256 / 5),
                              doc_encoder.net.terms)
    assert ours_docs == [nonzero(d) for d in theirs_docs]
    theirs_query = nonzero(PyseriniQuery(path).encode(queries[0]))
    assert as_term_dicts(quantize(query_encoder.weights(queries[:1]), 256 / 5), query_encoder.net.terms)[0] == theirs_query


def test_lucene_impact_search_equals_sparse_dot_product(splade, sample, tmp_path):
    from pyserini.search.lucene import LuceneImpactSearcher

    _, query_encoder, doc_encoder = splade
    docs, queries = sample
    root = encode_impact_corpus(docs, doc_encoder, tmp_path / "encoded", shard_size=128, quiet=True)
    index = build_impact_index(root, tmp_path / "index")
    weights, docids = read_impact_weights(root)
    assert docids == [d.docid for d in docs]

    qids, texts = list(queries), list(queries.values())
    lucene = LuceneImpactSearcher(str(index), query_encoder, min_idf=-1).batch_search(texts, qids, k=N_DOCS)
    factor = doc_encoder.options.quantization
    exact_int = (quantize(query_encoder.weights(texts), factor) @ quantize(weights, factor).T).toarray()
    exact_float = (query_encoder.weights(texts) @ weights.T).toarray()
    # Rounding moves each weight by at most e = 0.5 / factor, so each product q*d by at most
    # e*(q + d) + e^2: summed over the shared terms, a bound on each document's score change.
    e = 0.5 / factor
    q_float, q_on = query_encoder.weights(texts), (query_encoder.weights(texts) > 0).astype(np.float64)
    d_on = (weights > 0).astype(np.float64)
    bound = (e * (q_on @ weights.T + q_float @ d_on.T) + e * e * (q_on @ d_on.T)).toarray()
    for i, qid in enumerate(qids):
        # Lucene's impact score is the integer dot product; Anserini's tie adjuster then moves
        # tied scores by less than 1e-3 to order them, so compare rounded scores.
        assert all(abs(h.score - round(h.score)) < 1e-3 for h in lucene[qid])
        hits = order_hits([Hit(h.docid, round(h.score)) for h in lucene[qid]])
        reference = order_hits([Hit(d, s) for d, s in zip(docids, exact_int[i]) if s > 0])
        assert hits == reference
        assert np.all(np.abs(exact_int[i] / factor**2 - exact_float[i]) <= bound[i] + 1e-6)

    # Re-ranking Lucene's candidates from the stored impacts gives Lucene's scores back.
    rerank = Retrieve(LuceneImpactSearcher(str(index), query_encoder, min_idf=-1), depth=50) >> ImpactRerank(
        StoredImpacts(root, factor), query_encoder, factor)
    reranked = rerank.batch_search(texts, qids, k=50)
    for qid in qids:
        assert reranked[qid] == order_hits([Hit(h.docid, round(h.score)) for h in lucene[qid]][:50])
