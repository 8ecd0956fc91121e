"""Seeded dense distractors (store/distractors.py over a dense store): each synthetic vector is
a real document's vector, chosen and perturbed by a generator seeded with (seed, i), re-normalised
to the source's norm; the expected vectors are computed here, row by row, independently of the
batched code. Fast: a 60-document store written here, no encoder model."""

import numpy as np
import pytest

from pyserini_ext.data.readers import Document
from pyserini_ext.store import VectorStore, encode_corpus
from pyserini_ext.store.distractors import grow_store

DIM = 24


class UnitVectors:
    """A document encoder for the test: a fixed unit vector per text (its integer), no model."""

    def encode(self, texts, titles=None):
        rows = [np.random.default_rng(int(t)).standard_normal(DIM) for t in texts]
        return np.stack([r / np.linalg.norm(r) for r in rows]).astype(np.float32)


@pytest.fixture(scope="module")
def real(tmp_path_factory):
    root = tmp_path_factory.mktemp("dense") / "shards"
    docs = [Document(f"doc{i:03d}", "", str(1000 + i)) for i in range(60)]
    return VectorStore(encode_corpus(docs, UnitVectors(), root, shard_size=25, quiet=True))


def expected(real: VectorStore, i: int, seed: int, noise: float) -> np.ndarray:
    rng = np.random.default_rng([seed, i])
    source = real.vectors()[int(rng.integers(len(real)))]
    moved = source + rng.normal(0.0, noise, DIM).astype(np.float32)
    return moved * (np.linalg.norm(source) / np.linalg.norm(moved))


def test_dense_distractors_are_seeded_perturbed_copies_never_real(real, tmp_path):
    grown = VectorStore(grow_store(real, 50, tmp_path / "grown", seed=3, noise=0.05, shard_size=16))
    again = VectorStore(grow_store(real, 50, tmp_path / "again", seed=3, noise=0.05, shard_size=7))
    other = VectorStore(grow_store(real, 50, tmp_path / "other", seed=4, noise=0.05, shard_size=16))
    n = len(real)
    assert grown.docids[:n] == real.docids and grown.docids[n:] == [f"distractor-{i:08d}" for i in range(50)]
    vectors, real_vectors = grown.vectors(), real.vectors()
    np.testing.assert_array_equal(vectors[:n], real_vectors)  # the real documents, unchanged
    assert vectors.tobytes() == again.vectors().tobytes()  # same seed, other shard sizes: same bytes
    synthetic = vectors[n:]
    for i, row in enumerate(synthetic):
        np.testing.assert_allclose(row, expected(real, i, 3, 0.05), rtol=0, atol=1e-6)
    real_rows = {row.tobytes() for row in real_vectors}
    assert not any(row.tobytes() in real_rows for row in synthetic)  # never a copy of a real vector
    assert len({row.tobytes() for row in synthetic}) == 50  # nor of each other
    assert not (synthetic == other.vectors()[n:]).all(axis=1).any()  # another seed: other vectors
    np.testing.assert_allclose(np.linalg.norm(synthetic, axis=1), 1.0, atol=1e-6)  # sources are unit vectors
    # Perturbed, not replaced: each is nearer its own source than a random direction would be.
    cosines = synthetic @ real_vectors.T
    assert (cosines.max(axis=1) > 0.9).all()


def test_grown_dense_store_is_reused_and_rebuilt_for_another_seed(real, tmp_path):
    folder = grow_store(real, 10, tmp_path / "g", seed=1)
    digest = VectorStore(folder).digest
    assert VectorStore(grow_store(real, 10, folder, seed=1)).digest == digest
    assert VectorStore(grow_store(real, 10, folder, seed=2)).digest != digest
    with pytest.raises(ValueError, match="noise must be positive"):
        grow_store(real, 3, tmp_path / "copies", noise=0.0)
