"""Encoders against independent implementations on real text, and inside Pyserini's searchers."""

import numpy as np
import pytest

from pyserini_ext.data import get_dataset
from pyserini_ext.encode.base import CardError, load_card, parse_card
from pyserini_ext.encode.dense import DenseDocumentEncoder, DenseOptions, DenseQueryEncoder
from pyserini_ext.encode.tct_colbert import TctColBertDocumentEncoder, TctColBertOptions, TctColBertQueryEncoder
from pyserini_ext.registry import UnknownNameError


@pytest.fixture(scope="module")
def scifact_sample():
    scifact = get_dataset("beir/scifact")
    docs = [d for _, d in zip(range(12), scifact.docs())]
    queries = list(scifact.topics("test").values())[:6]
    return docs, queries


def test_cards_name_every_instance():
    card = load_card("all-minilm-l6-v2")
    assert card.family.name == "dense" and card.options.pooling == "mean" and card.options.max_doc_length == 256
    for name in ("tct_colbert-v2-msmarco", "tct_colbert-v2-hn-msmarco", "tct_colbert-v2-hnp-msmarco"):
        card = load_card(name)
        assert card.family.name == "tct_colbert" and card.model.hub == f"castorini/{name}"


def test_unknown_encoder_lists_the_registered_ones():
    with pytest.raises(UnknownNameError) as err:
        load_card("tct_colbert")
    assert ("registered: all-minilm-l6-v2, all-minilm-l6-v2-onnx, all-minilm-l6-v2-onnx-int8, colbert-minilm-l6-v2, "
            "colbert-minilm-scifact, minilm-scifact-infonce") in str(err.value)


def test_card_with_unknown_key_names_file_and_key(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("family: dense\nmodel: some/model\npoolng: mean\n")
    with pytest.raises(CardError, match=rf"{path}: unknown key 'poolng' for family 'dense'"):
        parse_card(path)
    path.write_text("model: some/model\n")
    with pytest.raises(CardError, match="missing required key 'family'"):
        parse_card(path)


def test_card_extends_another(tmp_path):
    card = load_card("all-minilm-l6-v2-onnx-int8")  # extends all-minilm-l6-v2: its model and options, plus its own
    assert (card.options.backend, card.options.precision, card.options.max_doc_length) == ("onnx", "int8", 256)
    assert card.model == load_card("all-minilm-l6-v2").model and card.description.startswith("all-MiniLM-L6-v2's ONNX")
    (tmp_path / "a.yaml").write_text(f"extends: {tmp_path / 'b.yaml'}\n")
    (tmp_path / "b.yaml").write_text(f"extends: {tmp_path / 'a.yaml'}\n")
    with pytest.raises(CardError, match="'extends' forms a cycle"):
        parse_card(tmp_path / "a.yaml")


def test_dense_matches_sentence_transformers(minilm_path, scifact_sample):
    from sentence_transformers import SentenceTransformer

    docs, queries = scifact_sample
    reference = SentenceTransformer(minilm_path, device="cpu")  # an independent implementation
    options = DenseOptions(max_query_length=256, max_doc_length=256, batch_size=5)
    texts = [f"{d.title} {d.text}" for d in docs]
    ours = DenseDocumentEncoder(minilm_path, options).encode([d.text for d in docs], titles=[d.title for d in docs])
    np.testing.assert_allclose(ours, reference.encode(texts, normalize_embeddings=True), atol=1e-5)
    ours_q = DenseQueryEncoder(minilm_path, options).encode_batch(queries)
    np.testing.assert_allclose(ours_q, reference.encode(queries, normalize_embeddings=True), atol=1e-5)


def test_tct_colbert_parity_with_pyserini(minilm_path, scifact_sample):
    """One local BERT checkpoint in our classes and in Pyserini's: the same vectors."""
    from pyserini.encode import TctColBertDocumentEncoder as PyseriniDoc
    from pyserini.encode import TctColBertQueryEncoder as PyseriniQuery

    docs, queries = scifact_sample
    ours_q = TctColBertQueryEncoder(minilm_path, TctColBertOptions(batch_size=4))
    theirs_q = PyseriniQuery(encoder_dir=minilm_path, device="cpu")
    batched = ours_q.encode_batch(queries)  # Pyserini's encodes one query at a time
    assert batched.shape == (len(queries), 384)
    reference = np.stack([theirs_q.encode(q) for q in queries])
    np.testing.assert_allclose(batched, reference, atol=1e-5)
    np.testing.assert_allclose(ours_q.encode(queries[0]), reference[0], atol=1e-5)
    assert ours_q.net.skip == 4  # "[CLS] [Q] " is four word pieces: [CLS] [ q ]

    ours_d = TctColBertDocumentEncoder(minilm_path, TctColBertOptions(batch_size=5))
    theirs_d = PyseriniDoc(minilm_path, device="cpu")
    texts, titles = [d.text for d in docs], [d.title for d in docs]
    np.testing.assert_allclose(ours_d.encode(texts, titles=titles),
                               theirs_d.encode(texts, titles=titles, max_length=512).astype(np.float32), atol=1e-5)
