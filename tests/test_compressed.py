"""The compressed late-interaction index and its WARP- and PLAID-style engines, against direct
implementations: residual look-up tables against decompressed vectors, compressed MaxSim
against the quantisation bound, WARP's two-stage reduction against a loop over every query
token, list and token."""

import numpy as np
import pytest

from pyserini_ext.data import get_dataset
from pyserini_ext.encode.colbert import ColbertDocumentEncoder, ColbertOptions, ColbertQueryEncoder
from pyserini_ext.index.compressed import build_compressed_index
from pyserini_ext.index.multivector import TokenStore, encode_token_corpus
from pyserini_ext.scores import maxsim
from pyserini_ext.search.compressed import (
    PlaidSearcher, WarpSearcher, compressed_maxsim, missing_similarity, plaid_stages, warp_scores,
)
from pyserini_ext.store import ManifestError
from pyserini_ext.store.compressed import CompressedIndex, ResidualCodec, expand_ranges


def unit(rows, dim, rng):
    x = rng.standard_normal((rows, dim)).astype(np.float32)
    return x / np.linalg.norm(x, axis=1, keepdims=True)


@pytest.mark.parametrize("nbits", [2, 4])
def test_codec_tables_score_the_decompressed_residuals(nbits):
    rng = np.random.default_rng(7)
    vectors = unit(3000, 32, rng)
    codec = ResidualCodec.train(vectors, nlist=16, nbits=nbits, seed=0)
    codes, packed = codec.compress(vectors[:200])
    assert packed.shape == (200, 32 * nbits // 8)
    buckets = codec.unpack(packed)
    # Each residual lands in the bucket its cutoffs say, dimension by dimension.
    residual = vectors[:200] - codec.centroids[codes]
    for d in (0, 5, 31):
        np.testing.assert_array_equal(buckets[:, d], np.searchsorted(codec.cutoffs[d], residual[:, d], side="left"))
    decompressed = codec.decompress(codes, packed)
    queries = unit(4, 32, rng)
    tables = codec.residual_tables(queries)
    width = codec.packed_width
    by_table = tables[(packed.astype(np.int64) + np.arange(width) * 256)].sum(axis=1)  # tokens x m
    np.testing.assert_allclose(by_table, (decompressed - codec.centroids[codes]) @ queries.T, atol=1e-5)
    # More bits, smaller error.
    assert np.abs(decompressed - vectors[:200]).mean() < (0.05 if nbits == 4 else 0.1)


def test_expand_ranges():
    positions, firsts = expand_ranges(np.array([5, 0, 9]), np.array([2, 3, 1]))
    assert positions.tolist() == [5, 6, 0, 1, 2, 9] and firsts.tolist() == [0, 2, 5]


@pytest.fixture(scope="module")
def sample():
    scifact = get_dataset("beir/scifact")
    docs = [d for _, d in zip(range(40), scifact.docs())]
    return docs, list(scifact.topics("test").values())[:4]


@pytest.fixture(scope="module")
def encoders(minilm_path):
    options = ColbertOptions(marker_style="none", doc_length=64, batch_size=8)
    return ColbertQueryEncoder(minilm_path, options), ColbertDocumentEncoder(minilm_path, options)


@pytest.fixture(scope="module")
def store(encoders, sample, tmp_path_factory):
    root = tmp_path_factory.mktemp("tokens") / "tokens"
    encode_token_corpus(sample[0], encoders[1], root, shard_size=16, quiet=True)
    return TokenStore(root)


@pytest.fixture(scope="module", params=[2, 4])
def index(request, store, tmp_path_factory):
    folder = tmp_path_factory.mktemp("compressed") / f"c{request.param}"
    return CompressedIndex(build_compressed_index(store, folder, nlist=32, nbits=request.param))


def test_compressed_maxsim_is_the_decompressed_maxsim_within_the_quantisation_bound(index, store, encoders, sample):
    docs = np.arange(store.num_docs)
    for query in encoders[0].encode_batch(sample[1]):
        compressed = compressed_maxsim(index, query, docs)
        decompressed = [index.decompressed(int(d)) for d in docs]
        np.testing.assert_allclose(compressed, maxsim(query, decompressed), rtol=1e-5, atol=1e-4)
        exact = maxsim(query, [store.doc_tokens(int(d)) for d in docs])
        # |max_t a_t - max_t b_t| <= max_t |a_t - b_t| per query token, and |q . e| <= |q| . |e|.
        bound = np.array([(np.abs(query) @ np.abs(decompressed[d] - store.doc_tokens(d).astype(np.float32)).T)
                          .max(axis=1).sum() for d in docs])
        assert (np.abs(compressed - exact) <= bound + 1e-4).all()


def loop_warp(index, query, nprobe, t_prime):
    """WARP by hand: per query token its nprobe best lists, every token in them scored from its
    decompressed vector, best per document; m_i from the cumulative list sizes; then the sum."""
    centroids = index.codec.centroids
    per_doc = {}
    missing = []
    for i, q in enumerate(query):
        scores = [float(q @ c) for c in centroids]
        ranked = sorted(range(len(centroids)), key=lambda c: -scores[c])
        total, m_i = 0, scores[ranked[-1]]
        for c in ranked:
            total += int(index.sizes[c])
            if total >= t_prime:
                m_i = scores[c]
                break
        missing.append(m_i)
        for c in ranked[:nprobe]:
            for token in np.flatnonzero(index.codes == c):
                doc = int(np.searchsorted(index.token_offsets, token, side="right") - 1)
                vector = index.codec.decompress(index.codes[[token]], index.residuals[[index.positions[token]]])[0]
                best = per_doc.setdefault(doc, {})
                best[i] = max(best.get(i, -np.inf), float(q @ vector))
    return {d: sum(best.get(i, missing[i]) for i in range(len(query))) for d, best in per_doc.items()}


@pytest.mark.parametrize("nprobe,t_prime", [(1, 50), (3, 400), (8, 10 ** 6)])
def test_warp_reduction_equals_the_loop(index, encoders, sample, nprobe, t_prime):
    query = encoders[0].encode_batch(sample[1][:1])[0][:6]  # six query tokens keep the loop short
    docs, scores = warp_scores(index, query, nprobe, t_prime)
    expected = loop_warp(index, query, nprobe, t_prime)
    assert sorted(expected) == docs.tolist()
    np.testing.assert_allclose(scores, [expected[d] for d in docs.tolist()], rtol=1e-5, atol=1e-4)


def test_missing_similarity_widens_its_window():
    scores = np.array([[0.9, 0.1, 0.5, 0.3, 0.7]], dtype=np.float32)
    sizes = np.array([10, 10, 10, 10, 10])
    # Best first: 0.9 (10), 0.7 (20), 0.5 (30): 25 tokens are reached at the third list.
    assert missing_similarity(scores, sizes, 25, start=1).tolist() == pytest.approx([0.5])
    assert missing_similarity(scores, sizes, 10 ** 6, start=2).tolist() == pytest.approx([0.1])


def test_plaid_stages_narrow_the_candidates(index, encoders, sample):
    query = encoders[0].encode_batch(sample[1][:1])[0]
    candidates, shortlist, final, scores = plaid_stages(index, query, nprobe=4, ndocs=8, centroid_threshold=0.3)
    assert set(final) <= set(shortlist) <= set(candidates) and len(shortlist) <= 8 and len(final) == 2
    np.testing.assert_allclose(scores, compressed_maxsim(index, query, final), rtol=1e-6)
    # A document has a token in a probed list exactly when it is a candidate.
    probes = np.unique(np.argsort(-index.centroid_scores(query), axis=1)[:, :4])
    with_probed = {int(np.searchsorted(index.token_offsets, t, side="right") - 1)
                   for t in np.flatnonzero(np.isin(index.codes, probes))}
    assert set(candidates.tolist()) == with_probed


def test_centroid_interaction_equals_the_loop(index, encoders, sample):
    from pyserini_ext.search.compressed import interaction

    query = encoders[0].encode_batch(sample[1][:1])[0]
    scores = index.centroid_scores(query)
    docs = np.array([0, 7, 3, 39])
    expected = [sum(max(float(scores[i, index.codes[t]]) for t in range(index.token_offsets[d], index.token_offsets[d + 1]))
                    for i in range(len(query))) for d in docs]
    np.testing.assert_allclose(interaction(index, np.ascontiguousarray(scores.T), docs), expected, rtol=1e-5)


def test_searchers_rescore_exactly_and_keep_the_total_order(index, store, encoders, sample):
    queries = sample[1]
    vectors = encoders[0].encode_batch(queries)
    warp = WarpSearcher(index, encoders[0], nprobe=32, t_prime=10 ** 6, tokens=store, rescore="exact",
                        rescore_depth=store.num_docs)
    hits = warp.search(vectors[0], k=5)
    exact = maxsim(vectors[0], [store.doc_tokens(d) for d in range(store.num_docs)])
    best = np.argsort(-exact, kind="stable")[:5]
    assert [h.docid for h in hits] == [store.docids[d] for d in best]
    np.testing.assert_allclose([h.score for h in hits], exact[best], rtol=1e-5)
    plaid = PlaidSearcher(index, encoders[0], nprobe=4, ndocs=16, tokens=store)
    batch = plaid.batch_search(vectors, [f"q{i}" for i in range(len(queries))], k=10)
    for i, q in enumerate(vectors):
        assert [(h.docid, h.score) for h in batch[f"q{i}"]] == [(h.docid, h.score) for h in plaid.search(q, k=10)]
        scores = [h.score for h in batch[f"q{i}"]]
        assert scores == sorted(scores, reverse=True)


def test_a_changed_byte_is_refused_on_open(store, tmp_path):
    folder = build_compressed_index(store, tmp_path / "c", nlist=16, nbits=2)
    path = folder / "residuals.npy"
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ManifestError, match="residuals.npy has SHA-256"):
        CompressedIndex(folder)


def test_the_index_is_reused_and_rebuilt_when_its_parameters_change(store, tmp_path):
    folder = build_compressed_index(store, tmp_path / "c", nlist=16, nbits=2)
    first = CompressedIndex(folder).digest
    assert CompressedIndex(build_compressed_index(store, folder, nlist=16, nbits=2)).digest == first
    rebuilt = CompressedIndex(build_compressed_index(store, folder, nlist=16, nbits=4))
    assert rebuilt.digest != first and rebuilt.codec.nbits == 4
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c"]  # no scratch, partial or lock left beside it


def test_distractors_are_seeded_and_never_copies(store, tmp_path):
    from pyserini_ext.store.distractors import grow_store

    grown = TokenStore(grow_store(store, 30, tmp_path / "grown", seed=3, noise=0.05, shard_size=16))
    again = TokenStore(grow_store(store, 30, tmp_path / "again", seed=3, noise=0.05, shard_size=7))
    other = TokenStore(grow_store(store, 30, tmp_path / "other", seed=4, noise=0.05, shard_size=16))
    n = store.num_docs
    assert grown.docids[:n] == store.docids and grown.docids[n:] == [f"distractor-{i:08d}" for i in range(30)]
    for d in range(n):  # the real documents, unchanged
        np.testing.assert_array_equal(grown.doc_tokens(d), store.doc_tokens(d))
    real = {row.tobytes() for d in range(n) for row in store.doc_tokens(d)}
    real_norms = np.linalg.norm(np.concatenate(list(store.iter_token_blocks())), axis=1)
    for d in range(n, n + 30):
        synthetic = grown.doc_tokens(d)
        np.testing.assert_array_equal(synthetic, again.doc_tokens(d))  # same seed, other shard sizes: same bytes
        assert not any(row.tobytes() in real for row in synthetic)  # never a real vector
        assert not np.array_equal(synthetic, other.doc_tokens(d))  # another seed, other documents
        norms = np.linalg.norm(synthetic.astype(np.float32), axis=1)
        assert real_norms.min() - 1e-2 <= norms.min() and norms.max() <= real_norms.max() + 1e-2
    with pytest.raises(ValueError, match="noise must be positive"):
        grow_store(store, 3, tmp_path / "copies", noise=0.0)
