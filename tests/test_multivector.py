"""Late interaction: the ColBERT encoder's input conventions, the token store, and MaxSim,
XTR and IVF scores against direct NumPy implementations written out loop by loop."""

import os

import faiss
import numpy as np
import pytest
import torch
from safetensors.torch import save_file

from pyserini_ext.data import get_dataset
from pyserini_ext.encode.colbert import ColbertDocumentEncoder, ColbertOptions, ColbertQueryEncoder
from pyserini_ext.index.multivector import TokenStore, build_token_index, encode_token_corpus, read_token_index
from pyserini_ext.scores import impute, maxsim, xtr_imputed_scores
from pyserini_ext.search.multivector import ColbertSearcher, IvfSearcher, XtrSearcher


def loop_maxsim(query, doc):
    return sum(max(float(np.dot(q, d)) for d in doc) for q in query)


def loop_xtr(query, store_tokens, token_doc, k_prime, imputation_value, combine="retrieved"):
    """XTR by hand: brute-force top-k' tokens per query token, best retrieved per (token, doc), impute
    the rest ("retrieved"); or XTR's equation literally ("max"): per query token and document, the max
    over every token of the document of its similarity if retrieved, else the estimate."""
    retrieved = []  # per query token: {doc: best score}, and the k' scores
    for q in query:
        sims = [(float(np.dot(q, t)), j) for j, t in enumerate(store_tokens)]
        sims.sort(key=lambda x: (-x[0], x[1]))
        top = sims[:k_prime]
        best = {}
        for s, j in top:
            d = int(token_doc[j])
            best[d] = max(best.get(d, -np.inf), s)
        retrieved.append((best, [s for s, _ in top]))
    docs = sorted({d for best, _ in retrieved for d in best})
    scores = {}
    if combine == "max":
        top_ids = []
        for q in query:
            sims = sorted(((float(np.dot(q, t)), j) for j, t in enumerate(store_tokens)), key=lambda x: (-x[0], x[1]))
            top_ids.append({j: s for s, j in sims[:k_prime]})
        for d in docs:
            total = 0.0
            for (_, top), ids in zip(retrieved, top_ids):
                total += max(ids[j] if j in ids else imputation_value(top) for j in np.flatnonzero(token_doc == d))
            scores[d] = total
        return scores
    for d in docs:
        scores[d] = sum(best.get(d, imputation_value(top)) for best, top in retrieved)
    return scores


@pytest.fixture(scope="module")
def sample():
    scifact = get_dataset("beir/scifact")
    docs = [d for _, d in zip(range(24), scifact.docs())]
    return docs, list(scifact.topics("test").values())[:5]


@pytest.fixture(scope="module")
def encoders(minilm_path):
    options = ColbertOptions(marker_style="none", doc_length=96, batch_size=8)
    return ColbertQueryEncoder(minilm_path, options), ColbertDocumentEncoder(minilm_path, options)


@pytest.fixture(scope="module")
def store(encoders, sample, tmp_path_factory):
    root = tmp_path_factory.mktemp("tokens") / "tokens"
    encode_token_corpus(sample[0], encoders[1], root, shard_size=10, quiet=True)
    return TokenStore(root)


def test_query_and_document_conventions(minilm_path):
    text = "Graphene, a 2-D material!"
    for style, marker_len in (("token", 1), ("text", 3), ("none", 0)):
        options = ColbertOptions(marker_style=style, query_marker="[unused0]" if style == "token" else "[Q]")
        net = ColbertQueryEncoder(minilm_path, options).net
        inputs = net.token_ids([text], options.query_marker, "", 32, augment=True)
        ids, mask = inputs["input_ids"][0], inputs["attention_mask"][0]
        body = net.tokenizer(text, add_special_tokens=False)["input_ids"]
        assert ids[0] == net.tokenizer.cls_token_id and len(ids) == 32
        assert list(ids[1 + marker_len:1 + marker_len + len(body)]) == body
        real = 1 + marker_len + len(body) + 1  # [CLS] marker text [SEP]
        assert ids[real - 1] == net.tokenizer.sep_token_id
        assert (ids[real:] == net.tokenizer.mask_token_id).all() and mask[:real].all() and not mask[real:].any()
    token = ColbertQueryEncoder(minilm_path, ColbertOptions(marker_style="token")).net
    assert token.marker_ids("[unused0]") == [token.tokenizer.convert_tokens_to_ids("[unused0]")]
    with pytest.raises(ValueError, match="not a token of this vocabulary"):
        token.marker_ids("[Q]")


def test_prompts_follow_cls_and_marker_on_both_sides_and_in_training(minilm_path):
    """The prompt card: "search_query: " / "search_document: " tokenised with the text, right after
    [CLS] (no marker in this card), the same ids in the trainable view as in the encoders."""
    from pyserini_ext.encode.base import load_card
    from pyserini_ext.train.models import trainable

    card = load_card("colbert-minilm-l6-v2-prompts")
    assert (card.options.query_prompt, card.options.doc_prompt) == ("search_query: ", "search_document: ")
    query_net = ColbertQueryEncoder(minilm_path, card.options).net
    doc_net = ColbertDocumentEncoder(minilm_path, card.options).net
    t = query_net.tokenizer
    query, doc = "heat flow", "Heat flows."
    q = query_net.token_ids([query], card.options.query_marker, card.options.query_prompt, 32, augment=True)["input_ids"][0]
    d = doc_net.token_ids([doc], card.options.doc_marker, card.options.doc_prompt, 256, augment=False)["input_ids"][0]
    q_body = t.convert_tokens_to_ids(["search", "_", "query", ":", "heat", "flow"])
    d_body = t.convert_tokens_to_ids(["search", "_", "document", ":", "heat", "flows", "."])
    assert list(q[:len(q_body) + 2]) == [t.cls_token_id, *q_body, t.sep_token_id]
    assert list(d) == [t.cls_token_id, *d_body, t.sep_token_id]
    model = trainable(card, minilm_path)
    assert model.queries([query])["input_ids"][0].tolist() == q.tolist()
    assert model.documents([doc])["input_ids"][0].tolist()[:len(d)] == d.tolist()


def test_documents_drop_punctuation_and_queries_keep_every_position(encoders):
    query_encoder, doc_encoder = encoders
    net = doc_encoder.net
    text = "Graphene, a 2-D material!"
    inputs = net.token_ids([text], "", "", 96, augment=False)
    tokens = net.tokenizer.convert_ids_to_tokens(inputs["input_ids"][0])
    kept = [t for t, k in zip(tokens, net.keep_mask(inputs)[0]) if k]
    assert kept == ["[CLS]", "graph", "##ene", "a", "2", "d", "material", "[SEP]"]
    [vectors] = doc_encoder.encode([text])
    assert vectors.shape == (8, 384)
    np.testing.assert_allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    q = query_encoder.encode("what is graphene")
    assert q.shape == (32, 384) and np.allclose(np.linalg.norm(q, axis=1), 1.0, atol=1e-5)


def test_projection_is_loaded_from_a_pylate_layout(minilm_path, tmp_path):
    model = tmp_path / "with-projection"
    model.mkdir()
    for name in os.listdir(minilm_path):  # the checkpoint, linked, plus a 1_Dense module
        os.symlink(os.path.join(minilm_path, name), model / name)
    weight = torch.from_numpy(np.random.default_rng(0).normal(size=(16, 384)).astype(np.float32))
    (model / "1_Dense").mkdir()
    save_file({"linear.weight": weight}, str(model / "1_Dense" / "model.safetensors"))
    projected = ColbertQueryEncoder(str(model), ColbertOptions(marker_style="none")).encode("graphene")
    plain = ColbertQueryEncoder(minilm_path, ColbertOptions(marker_style="none", projection=False)).net
    hidden = plain.graph.module.transformer(**{k: torch.from_numpy(v) for k, v in plain.token_ids(
        ["graphene"], "", "", 32, augment=True).items()}).last_hidden_state[0].detach()
    expected = torch.nn.functional.normalize(hidden @ weight.T, dim=-1).numpy()
    assert projected.shape == (32, 16)
    np.testing.assert_allclose(projected, expected, atol=1e-5)


def test_token_store_round_trip_and_resume(encoders, sample, store, tmp_path):
    docs = sample[0]
    vectors = encoders[1].encode([d.text for d in docs], titles=[d.title for d in docs])
    assert store.docids == [d.docid for d in docs] and store.num_tokens == sum(len(v) for v in vectors)
    for i in (0, 9, 10, 23):  # across the shard boundary at 10
        # FP16 of the same vectors, to one FP16 step: the store was encoded in other batches, and
        # batch padding moves FP32 results in the last bits, which can flip an FP16 rounding.
        np.testing.assert_allclose(store.doc_tokens(i).astype(np.float32), vectors[i], rtol=2 ** -10, atol=1e-4)
    assert (store.token_doc()[store.offsets[12]:store.offsets[13]] == 12).all()
    # An interrupted encoding resumes: stop it during the third shard, then encode again.
    class Stops:
        def __init__(self, fail_after):
            self.texts, self.fail_after = [], fail_after

        def encode(self, texts, titles=None):
            if len(self.texts) >= self.fail_after:
                raise KeyboardInterrupt("interrupted")
            self.texts.extend(texts)
            return encoders[1].encode(texts, titles=titles)

    root = tmp_path / "tokens"
    with pytest.raises(KeyboardInterrupt):
        encode_token_corpus(docs, Stops(20), root, shard_size=10, quiet=True, progress_every=10)
    assert not root.exists() and (tmp_path / "tokens.partial" / "shard-00001.done").exists()
    resumed = Stops(len(docs))
    encode_token_corpus(docs, resumed, root, shard_size=10, quiet=True)
    assert resumed.texts == [d.text for d in docs[20:]]  # only the unfinished shard
    for name in ("shard-00000.tokens.npy", "shard-00002.tokens.npy", "shard-00002.lengths.npy"):
        np.testing.assert_array_equal(np.load(root / name), np.load(store.root / name))
    assert TokenStore(root).docids == store.docids


def test_maxsim_equals_the_loop():
    rng = np.random.default_rng(1)
    query = rng.normal(size=(4, 8)).astype(np.float32)
    docs = [rng.normal(size=(n, 8)).astype(np.float32) for n in (1, 5, 3)]
    np.testing.assert_allclose(maxsim(query, docs), [loop_maxsim(query, d) for d in docs], rtol=1e-5)


def test_exact_colbert_and_ivf_equal_brute_force(encoders, sample, store, tmp_path):
    queries = encoders[0].encode_batch(sample[1])
    all_docs = [store.doc_tokens(i).astype(np.float32) for i in range(store.num_docs)]
    flat = read_token_index(build_token_index(store, tmp_path / "flat.faiss", "flat"))
    ivf = read_token_index(build_token_index(store, tmp_path / "ivf.faiss", "ivf", nlist=32))
    # k' = every token, nprobe = every cluster: both must score every document exactly.
    colbert = ColbertSearcher(store, flat, encoders[0], k_prime=store.num_tokens)
    full_ivf = IvfSearcher(store, ivf, encoders[0], nprobe=32)
    for q in queries:
        expected = np.array([loop_maxsim(q, d) for d in all_docs])
        order = np.lexsort((np.array(store.docids), -expected))
        for searcher in (colbert, full_ivf):
            hits = searcher.search(q, k=10)
            assert [h.docid for h in hits] == [store.docids[i] for i in order[:10]]
            np.testing.assert_allclose([h.score for h in hits], expected[order[:10]], rtol=1e-5)
    # Fewer tokens or clusters: a subset of the candidates, each still scored exactly.
    narrow, one_token = IvfSearcher(store, ivf, encoders[0], nprobe=1), queries[0][3:4]
    docs, scores = narrow.score(one_token)
    quantizer = faiss.extract_index_ivf(ivf).quantizer
    _, probed = quantizer.search(one_token, 1)
    _, assigned = quantizer.search(np.concatenate(all_docs), 1)  # each token's cluster, recomputed
    assert list(docs) == sorted(set(store.token_doc()[assigned[:, 0] == probed[0, 0]]))
    np.testing.assert_allclose(scores, [loop_maxsim(one_token, all_docs[d]) for d in docs], rtol=1e-5)


@pytest.mark.parametrize("combine", ["max", "retrieved"])
@pytest.mark.parametrize("imputation", ["min", "zero", "mean", "p10"])
def test_xtr_equals_the_loop(encoders, sample, store, tmp_path, imputation, combine):
    tokens = np.concatenate([store.doc_tokens(i).astype(np.float32) for i in range(store.num_docs)])
    index = faiss.IndexFlatIP(store.dim)
    index.add(tokens)
    k_prime = 20
    searcher = XtrSearcher(store, index, encoders[0], k_prime=k_prime, imputation=imputation, combine=combine)
    value = {"min": min, "zero": lambda top: 0.0, "mean": lambda top: sum(top) / len(top),
             "p10": lambda top: float(np.percentile(top, 10))}[imputation]
    for q in encoders[0].encode_batch(sample[1][:3]):
        expected = loop_xtr(q, tokens, store.token_doc(), k_prime, value, combine)
        docs, scores = searcher.score(q)
        assert list(docs) == sorted(expected)
        np.testing.assert_allclose(scores, [expected[d] for d in docs], rtol=1e-4, atol=1e-4)


def test_imputations_by_hand():
    scores = np.array([[0.9, 0.5, 0.4, 0.2], [0.8, 0.8, 0.6, 0.6]], dtype=np.float32)
    np.testing.assert_allclose(impute(scores, "min"), [0.2, 0.6])
    np.testing.assert_allclose(impute(scores, "zero"), [0.0, 0.0])
    np.testing.assert_allclose(impute(scores, "mean"), [0.5, 0.7])
    # 10th percentile of 4 points, linear interpolation: x[0] + 0.3 * (x[1] - x[0]) in ascending order.
    np.testing.assert_allclose(impute(scores, "p10"), [0.2 + 0.3 * 0.2, 0.6], rtol=1e-6)
    power = np.array([[2.0 * r ** -0.5 for r in range(1, 11)]], dtype=np.float32)  # exactly s(r) = 2 r^-1/2
    np.testing.assert_allclose(impute(power, "power"), [2.0 * 11 ** -0.5], rtol=1e-5)
    # Scores of one query token: docs 7 and 3 retrieved, doc 5 only by the other token.
    docs, total = xtr_imputed_scores(np.array([[0.9, 0.7], [0.6, 0.5]]), np.array([[0, 1], [2, 0]]), np.array([7, 3, 5]),
                                     combine="retrieved")
    # token 0: doc7 0.9, doc3 0.7, doc5 missing -> min 0.7; token 1: doc5 0.6, doc7 0.5, doc3 missing -> 0.5
    assert list(docs) == [3, 5, 7]
    np.testing.assert_allclose(total, [0.7 + 0.5, 0.7 + 0.6, 0.9 + 0.5])


def test_xtr_combine_by_hand():
    """XTR's equation takes max(best retrieved, m_i) when a document has an unretrieved token; with the
    mean estimate a low retrieved score is lifted to it. Tokens 0-1 are doc 0's, 2-3 doc 1's, 4 doc 2's.
    Query token 0 retrieved [t0 0.9, t2 0.6, t4 0.3] (mean 0.6), query token 1 [t3 0.8, t1 0.2, t4 0.1] (mean 1.1/3)."""
    scores, ids, token_doc = np.array([[0.9, 0.6, 0.3], [0.8, 0.2, 0.1]]), np.array([[0, 2, 4], [3, 1, 4]]), np.array([0, 0, 1, 1, 2])
    m1 = 1.1 / 3
    docs, total = xtr_imputed_scores(scores, ids, token_doc, "mean", combine="retrieved")
    assert list(docs) == [0, 1, 2]
    np.testing.assert_allclose(total, [0.9 + 0.2, 0.6 + 0.8, 0.3 + 0.1])
    # "max": doc 0 for token 1: max(0.2, m1) (t0 unretrieved); doc 2 has one token, retrieved by both
    # query tokens, so it keeps 0.3 and 0.1 (nothing unretrieved to take m_i from).
    _, total = xtr_imputed_scores(scores, ids, token_doc, "mean", combine="max")
    np.testing.assert_allclose(total, [0.9 + max(0.2, m1), max(0.6, 0.6) + 0.8, 0.3 + 0.1])
    # min: both agree (m_i is the smallest retrieved score)
    for combine in ("max", "retrieved"):
        _, total = xtr_imputed_scores(scores, ids, token_doc, "min", combine=combine)
        np.testing.assert_allclose(total, [0.9 + 0.2, 0.6 + 0.8, 0.3 + 0.1])


# Every strategy by hand on one example. Documents A = tokens {0, 1}, B = {2, 3}, C = {4}, D = {5, 6}.
# Query token 0 retrieved t0, t4, t2, t5 with scores exactly 0.8 r^-1/2 (rank r = 1..4), query token 1
# t5, t1, t4, t0 with 0.9 / r, so the power law is fitted exactly. Best retrieved per document:
#   token 0: A .8 (t1 unretrieved), B .8/sqrt3 (t3 unretrieved), C .8/sqrt2 (its only token), D .4 (t6 unretrieved)
#   token 1: A .45 (t1 and t0: all of A), B none, C .3 (all of C), D .9 (t6 unretrieved)
S0 = [0.8 * r ** -0.5 for r in (1, 2, 3, 4)]
S1 = [0.9 / r for r in (1, 2, 3, 4)]
ESTIMATES = {  # m_0, m_1 by hand
    "min": (0.4, 0.225),
    "zero": (0.0, 0.0),
    "mean": (sum(S0) / 4, sum(S1) / 4),
    # numpy's linear interpolation: position 0.1 * (4 - 1) = 0.3 between the two smallest
    "p10": (S0[3] + 0.3 * (S0[2] - S0[3]), S1[3] + 0.3 * (S1[2] - S1[3])),
    "power": (0.8 * 5 ** -0.5, 0.9 / 5),  # the exact power laws at rank k' + 1 = 5
}


@pytest.mark.parametrize("imputation", sorted(ESTIMATES))
def test_xtr_imputed_scores_by_hand(imputation):
    scores, ids = np.array([S0, S1]), np.array([[0, 4, 2, 5], [5, 1, 4, 0]])
    token_doc = np.array([0, 0, 1, 1, 2, 3, 3])
    m0, m1 = ESTIMATES[imputation]
    np.testing.assert_allclose(impute(scores, imputation), [m0, m1], rtol=1e-6, atol=1e-12)
    # "retrieved": the best retrieved as is; m_i only where nothing of the document was retrieved (B, token 1).
    retrieved = [S0[0] + S1[1], S0[2] + m1, S0[1] + S1[2], S0[3] + S1[0]]
    # "max" (XTR's equation): max(best retrieved, m_i) wherever the document has an unretrieved token (A, B, D
    # for token 0; D for token 1); C for both tokens and A for token 1 were retrieved whole and keep their scores.
    equation = [max(S0[0], m0) + S1[1], max(S0[2], m0) + m1, S0[1] + S1[2], max(S0[3], m0) + max(S1[0], m1)]
    for combine, expected in (("retrieved", retrieved), ("max", equation)):
        docs, total = xtr_imputed_scores(scores, ids, token_doc, imputation, combine=combine)
        assert list(docs) == [0, 1, 2, 3]
        np.testing.assert_allclose(total, expected, rtol=1e-6)
    # The two differ exactly where m_i exceeds a best retrieved score of a partly retrieved document:
    # mean (B and D for token 0, both .557 > .462 and .4) and p10 (D: .419 > .4); never for min and power.
    assert (retrieved != equation) == (imputation in ("mean", "p10"))


def test_zero_imputation_floors_a_negative_retrieved_score():
    """zero: the equation's max(best retrieved, 0), the search-time analogue of the training score's floor."""
    scores, ids, token_doc = np.array([[0.5, -0.1]]), np.array([[0, 2]]), np.array([0, 0, 1, 1])
    _, total = xtr_imputed_scores(scores, ids, token_doc, "zero", combine="max")
    np.testing.assert_allclose(total, [0.5, 0.0])
    _, total = xtr_imputed_scores(scores, ids, token_doc, "zero", combine="retrieved")
    np.testing.assert_allclose(total, [0.5, -0.1])


def test_batch_search_equals_one_query_at_a_time(encoders, sample, store, tmp_path):
    flat = read_token_index(build_token_index(store, tmp_path / "flat.faiss", "flat"))
    queries = encoders[0].encode_batch(sample[1])
    qids = [f"q{i}" for i in range(len(queries))]
    for searcher in (ColbertSearcher(store, flat, encoders[0], k_prime=15),
                     XtrSearcher(store, flat, encoders[0], k_prime=15)):
        batched = searcher.batch_search(queries, qids, k=8)  # one token search for all queries
        for qid, q in zip(qids, queries):
            single = searcher.search(q, k=8)
            assert [h.docid for h in batched[qid]] == [h.docid for h in single]
            np.testing.assert_allclose([h.score for h in batched[qid]], [h.score for h in single], rtol=1e-6)


def test_ivf_keeps_the_best_ndocs_by_centroid_interaction(encoders, sample, store, tmp_path):
    ivf = read_token_index(build_token_index(store, tmp_path / "ivf.faiss", "ivf", nlist=32))
    searcher = IvfSearcher(store, ivf, encoders[0], nprobe=2, ndocs=5)
    query = encoders[0].encode_batch(sample[1][:1])[0]
    quantizer = faiss.extract_index_ivf(ivf).quantizer
    centroid_scores, probed = quantizer.search(query, 2)
    tokens = np.concatenate([store.doc_tokens(i).astype(np.float32) for i in range(store.num_docs)])
    _, assigned = quantizer.search(tokens, 1)
    token_doc = store.token_doc()
    approx = {}
    for i in range(len(query)):  # by hand: per query token, the best probed centroid among each document's tokens
        best = {}
        for score, c in zip(centroid_scores[i], probed[i]):
            for d in set(token_doc[assigned[:, 0] == c]):
                best[d] = max(best.get(d, -np.inf), score)
        for d, b in best.items():
            approx[d] = approx.get(d, 0.0) + b
    top5 = sorted(sorted(approx, key=lambda d: (-approx[d], d))[:5])
    docs, scores = searcher.score(query)
    assert list(docs) == top5
    np.testing.assert_allclose(searcher.centroid_scores(query)[top5], [approx[d] for d in top5], rtol=1e-5)


def test_token_rerank_scores_candidates_by_exact_maxsim_in_the_total_order(encoders, sample, store):
    """A ColBERT model as a re-ranker: each candidate (in any order, one the store lacks
    dropped) scored by the loop MaxSim against its stored tokens, ranked by score then docid."""
    from pyserini_ext.search.rerank import TokenRerank
    from pyserini_ext.search.run import Hit

    texts = sample[1][:2]
    topics = {"q1": texts[0], "q2": texts[1]}
    candidates = [store.docids[i] for i in (7, 2, 11, 0, 5)]
    run = {q: [Hit(d, 0.0) for d in candidates + ["not-in-the-store"]] for q in topics}
    reranked = TokenRerank(store, encoders[0]).transform(topics, run)
    for qid, query in zip(topics, encoders[0].encode_batch(texts)):
        expected = {d: loop_maxsim(query, store.doc_tokens(store.docids.index(d)).astype(np.float32))
                    for d in candidates}
        order = sorted(candidates, key=lambda d: (-expected[d], d))
        assert [h.docid for h in reranked[qid]] == order
        np.testing.assert_allclose([h.score for h in reranked[qid]], [expected[d] for d in order], rtol=1e-5)
