"""MRL: negative KL as a dot product, checked against a direct KL on random Gaussians."""

import numpy as np
import pytest

from pyserini_ext.encode.mrl import MrlDocumentEncoder, MrlOptions, MrlQueryEncoder
from pyserini_ext.scores import gaussian_kl, gaussian_kl_document_vectors, gaussian_kl_query_vectors


def gaussians(rng, n, k):
    return rng.normal(size=(n, k)), rng.uniform(0.05, 3.0, size=(n, k))


def test_kl_by_hand_one_dimension():
    # KL(N(0, 1) || N(1, 2)) = 0.5 * (log 2 + (1 + 1) / 2 - 1)
    kl = gaussian_kl(np.array([[0.0]]), np.array([[1.0]]), np.array([[1.0]]), np.array([[2.0]]))
    assert kl[0, 0] == pytest.approx(0.5 * np.log(2.0))


def test_dot_product_is_twice_kl_plus_a_query_constant():
    rng = np.random.default_rng(0)
    mu_q, s2_q = gaussians(rng, 5, 16)
    mu_d, s2_d = gaussians(rng, 200, 16)
    kl = gaussian_kl(mu_q, s2_q, mu_d, s2_d)
    dots = gaussian_kl_query_vectors(mu_q, s2_q) @ gaussian_kl_document_vectors(mu_d, s2_d).T
    offset = dots - 2 * kl  # must not depend on the document
    np.testing.assert_allclose(offset, offset[:, :1].repeat(200, axis=1), atol=1e-8)
    # the constant is what the rewrite dropped: sum log s2_Q + k
    np.testing.assert_allclose(offset[:, 0], np.log(s2_q).sum(axis=1) + 16, atol=1e-8)
    for row_dots, row_kl in zip(dots, kl):
        assert (np.argsort(row_dots, kind="stable") == np.argsort(row_kl, kind="stable")).all()


def test_original_erroneous_vectors_by_hand():
    # k = 2: mu_Q = [1, 2], s2_Q = [0.5, 2]; mu_D = [0, 1], s2_D = [1, 4].
    # The erroneous form replaces the trace term sum s2_Q / s2_D by prod s2_Q / prod s2_D:
    # query [1, prod s2_Q, mu_Q^2, mu_Q] = [1, 1, 1, 4, 1, 2]
    # document [gamma_D, 1 / prod s2_D, 1 / s2_D, -2 mu_D / s2_D] = [log 4 + 1/4, 1/4, 1, 1/4, 0, -1/2]
    mu_q, s2_q = np.array([[1.0, 2.0]]), np.array([[0.5, 2.0]])
    mu_d, s2_d = np.array([[0.0, 1.0]]), np.array([[1.0, 4.0]])
    q = gaussian_kl_query_vectors(mu_q, s2_q, "original")
    d = gaussian_kl_document_vectors(mu_d, s2_d, "original")
    np.testing.assert_array_equal(q, [[1.0, 1.0, 1.0, 4.0, 1.0, 2.0]])
    np.testing.assert_allclose(d, [[np.log(4.0) + 0.25, 0.25, 1.0, 0.25, 0.0, -0.5]], rtol=1e-15)
    # gamma_D + prod-ratio 1/4 + sum mu_Q^2 / s2_D (1 + 1) - 2 sum mu_Q mu_D / s2_D (1)
    assert (q @ d.T)[0, 0] == pytest.approx(np.log(4.0) + 0.25 + 0.25 + 2.0 - 1.0, rel=1e-15)
    # the correct form differs only in the trace slot: sum s2_Q / s2_D = 0.5 + 0.5
    correct = gaussian_kl_query_vectors(mu_q, s2_q) @ gaussian_kl_document_vectors(mu_d, s2_d).T
    assert correct[0, 0] == pytest.approx(np.log(4.0) + 0.25 + 1.0 + 2.0 - 1.0, rel=1e-15)


def test_original_erroneous_form_ranks_differently():
    rng = np.random.default_rng(1)
    mu_q, s2_q = gaussians(rng, 5, 16)
    mu_d, s2_d = gaussians(rng, 200, 16)
    kl_order = np.argsort(gaussian_kl(mu_q, s2_q, mu_d, s2_d), axis=1)
    original_dots = gaussian_kl_query_vectors(mu_q, s2_q, "original") @ gaussian_kl_document_vectors(mu_d, s2_d, "original").T
    original = np.argsort(-original_dots, axis=1)
    assert (kl_order != original).any(axis=1).all()  # every query's ranking changes


@pytest.mark.parametrize("variance", ["softplus", "logvar"])
def test_encoders_on_a_real_checkpoint(minilm_path, variance):
    options = MrlOptions(dim=32, variance=variance, beta=2.0)
    queries, docs = ["what causes fever", "graphene conductivity"], ["Fever is caused by infection.", "Graphene.", "x"]
    query_encoder, doc_encoder = MrlQueryEncoder(minilm_path, options), MrlDocumentEncoder(minilm_path, options)
    assert "[VAR]" in query_encoder.net.tokenizer.get_vocab()  # added: MiniLM's vocabulary has no [VAR]
    ids = query_encoder.net.tokenizer("[VAR] text")["input_ids"]
    assert ids[1] == query_encoder.net.tokenizer.convert_tokens_to_ids("[VAR]")  # [CLS] [VAR] text [SEP]
    mu_q, s2_q = query_encoder.gaussians(queries)
    mu_d, s2_d = doc_encoder.gaussians(docs)
    np.testing.assert_allclose(s2_q, 1.0, rtol=1e-6)  # heads start from the dense checkpoint: unit variance
    q, d = query_encoder.encode_batch(queries), doc_encoder.encode(docs)
    assert q.shape == (2, 3 * 32 + 1) and d.shape == (3, 3 * 32 + 1)
    scores = q.astype(np.float64) @ d.astype(np.float64).T
    expected = -(2 * gaussian_kl(mu_q, s2_q, mu_d, s2_d) + (np.log(s2_q).sum(axis=1) + 32)[:, None])
    np.testing.assert_allclose(scores, expected, rtol=1e-4, atol=1e-3)
    # the added [VAR] embedding is deterministic: a second load gives the same vectors
    np.testing.assert_array_equal(MrlQueryEncoder(minilm_path, options).encode_batch(queries), q)


def test_ablation_scorings_on_a_real_checkpoint(minilm_path):
    queries, docs = ["what causes fever"], ["Fever is caused by infection.", "Graphene."]
    base = MrlOptions(dim=8)
    mu_q, s2_q = MrlQueryEncoder(minilm_path, base).gaussians(queries)
    mu_d, s2_d = MrlDocumentEncoder(minilm_path, base).gaussians(docs)
    mean = MrlOptions(dim=8, scoring="mean")
    np.testing.assert_array_equal(MrlQueryEncoder(minilm_path, mean).encode_batch(queries), mu_q.astype(np.float32))
    np.testing.assert_array_equal(MrlDocumentEncoder(minilm_path, mean).encode(docs), mu_d.astype(np.float32))
    original = MrlOptions(dim=8, scoring="original")
    q = MrlQueryEncoder(minilm_path, original).encode_batch(queries)
    d = MrlDocumentEncoder(minilm_path, original).encode(docs)
    assert q.shape == (1, 2 * 8 + 2) and d.shape == (2, 2 * 8 + 2)
    np.testing.assert_array_equal(q, (-gaussian_kl_query_vectors(mu_q, s2_q, "original")).astype(np.float32))


def test_overflowing_erroneous_vectors_are_refused():
    from pyserini_ext.encode.mrl import mrl_document_vectors

    mu, s2 = np.zeros((2, 128)), np.full((2, 128), 0.25)  # prod s2 = 4^-128: 1 / prod leaves float32
    with pytest.raises(ValueError, match="overflow float32 in 2 of 2 texts"):
        mrl_document_vectors(mu, s2, "original")


def test_bad_options_are_refused():
    with pytest.raises(ValueError, match="variance must be one of"):
        MrlOptions(variance="exp")
    with pytest.raises(ValueError, match="scoring must be one of"):
        MrlOptions(scoring="kl2")
