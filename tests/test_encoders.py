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
    # every card, in name order (a new card must not break this test: the list is read from the folder)
    from pyserini_ext.resources import resource_names

    names = sorted(resource_names("encoders"))
    assert names[:3] == ["all-minilm-l6-v2", "all-minilm-l6-v2-onnx", "all-minilm-l6-v2-onnx-int8"]
    assert f"registered: {', '.join(names)}" in str(err.value)


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


def test_tct_colbert_trains_as_it_encodes(minilm_path, scifact_sample, tmp_path):
    """The trainable view runs the family's own conventions: its forward equals the encoders'
    output, queries are [MASK]-padded to 36 with pooling after the 4-piece prefix, the score is
    the raw inner product, and a trained model saved by the view encodes as the view did."""
    import dataclasses

    import torch
    from transformers import AutoModel, AutoTokenizer

    from pyserini_ext.train.models import trainable

    docs, queries = scifact_sample
    texts = [f"{d.title} {d.text}" for d in docs[:5]]
    card = load_card("tct_colbert-v2-msmarco")  # its options, the MiniLM weights
    card = dataclasses.replace(card, options=dataclasses.replace(card.options, max_doc_length=64, batch_size=3))
    model = trainable(card, minilm_path, scale=1.0).eval()
    q_inputs, d_inputs = model.queries(queries), model.documents(texts)
    with torch.no_grad():
        q, d = model(q_inputs), model(d_inputs)
    options = card.options
    np.testing.assert_allclose(q.numpy(), TctColBertQueryEncoder(minilm_path, options).encode_batch(queries), atol=1e-5)
    np.testing.assert_allclose(d.numpy(), TctColBertDocumentEncoder(minilm_path, options).encode(texts), atol=1e-5)

    # The conventions by hand, with transformers alone: [CLS] [ q ] query [MASK]... to 36, mean after 4.
    tokenizer, bert = AutoTokenizer.from_pretrained(minilm_path), AutoModel.from_pretrained(minilm_path).eval()
    body = tokenizer(queries[0], add_special_tokens=False)["input_ids"]
    ids = tokenizer.convert_tokens_to_ids(["[CLS]", "[", "q", "]"]) + body
    ids += [tokenizer.mask_token_id] * (36 - len(ids))
    assert q_inputs["input_ids"].shape == (len(queries), 36) and q_inputs["input_ids"][0].tolist() == ids
    with torch.no_grad():
        hidden = bert(input_ids=torch.tensor([ids]), attention_mask=torch.ones(1, 36, dtype=torch.long)).last_hidden_state
    np.testing.assert_allclose(q[0].numpy(), hidden[0, 4:].mean(0).numpy(), atol=1e-5)
    assert not np.allclose(np.linalg.norm(q.numpy(), axis=1), 1.0, atol=1e-3)  # no L2 normalisation
    np.testing.assert_allclose(model.score(q, d, d_inputs).numpy(), q.numpy() @ d.numpy().T, rtol=1e-6, atol=1e-6)

    # One training step, saved in the family's layout, loads back through the family's encoders.
    model.train()
    optimizer = torch.optim.Adam(model.parameters(), lr=1e-4)
    scores = model.score(model(q_inputs), model(d_inputs), d_inputs)
    torch.nn.functional.cross_entropy(scores, torch.zeros(len(queries), dtype=torch.long)).backward()
    optimizer.step()
    model.eval()
    with torch.no_grad():
        trained_q, trained_d = model(q_inputs).numpy(), model(d_inputs).numpy()
    assert np.abs(trained_q - q.numpy()).max() > 1e-3  # the step changed the model
    model.save(tmp_path)
    np.testing.assert_allclose(card.family.query_encoder(str(tmp_path), options).encode_batch(queries), trained_q,
                               atol=1e-5)
    np.testing.assert_allclose(card.family.document_encoder(str(tmp_path), options).encode(texts), trained_d, atol=1e-5)


def test_building_an_encoder_leaves_the_thread_count_alone(minilm_path):
    import os

    import torch

    from pyserini_ext.encode.runtime import set_cpu_threads

    before = torch.get_num_threads()
    try:
        torch.set_num_threads(1)
        DenseQueryEncoder(minilm_path, DenseOptions(device="cpu", threads=2)).encode("a query")
        assert torch.get_num_threads() == 1  # the caller's setting, whatever the card says
        assert set_cpu_threads(0) == len(os.sched_getaffinity(0)) == torch.get_num_threads()
        assert set_cpu_threads(1) == 1 == torch.get_num_threads()
    finally:
        torch.set_num_threads(before)


@pytest.mark.xfail(strict=True, reason="the encoder classes subclass pyserini.encode's QueryEncoder/DocumentEncoder, "
                   "and importing pyserini.encode imports pyserini.prebuilt_index_info, which calls jnius.autoclass")
def test_importing_encoders_loads_no_java():
    import subprocess
    import sys

    code = ("import sys, pyserini_ext.encode.dense, pyserini_ext.encode.colbert, pyserini_ext.encode.tct_colbert, "
            "pyserini_ext.encode.splade, pyserini_ext.encode.mrl; "
            "loaded = [m for m in ('jnius', 'pyserini') if m in sys.modules]; assert not loaded, loaded")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
