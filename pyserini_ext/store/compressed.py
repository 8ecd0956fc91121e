"""A compressed late-interaction index: PLAID's residual compression of a token store.

Every token vector ``x`` becomes a centroid code ``c`` (the nearest of ``nlist`` unit-norm
k-means centroids) and its residual ``x - c`` quantised to ``nbits`` (2 or 4) per dimension
with per-dimension buckets: ``2^nbits - 1`` cutoffs (quantiles of that dimension's residuals
in a seeded training sample) and ``2^nbits`` bucket values (the midpoint quantiles). The
decompressed vector is ``c + w[bucket]``; nothing rescales it, so a query token scores it as
``q . c + sum_d q_d w_d[bucket_d]``, which :meth:`ResidualCodec.residual_tables` turns into
one table look-up per byte of packed residual (the search side: :mod:`pyserini_ext.search.compressed`).

The folder (:func:`pyserini_ext.index.compressed.build_compressed_index` writes it, with a
manifest that records every file's SHA-256, verified on open):

* ``centroids.npy`` ``nlist x dim`` FP32; ``cutoffs.npy`` ``dim x (2^b - 1)``; ``weights.npy``
  ``dim x 2^b``;
* ``codes.npy``: every token's centroid, in token (document) order, uint16;
* ``residuals.npy``: packed residuals, ``dim * nbits / 8`` bytes a token, in *centroid* order
  (all tokens of centroid 0, then 1, ...), so a probed list is one contiguous read;
* ``lengths.npy`` (tokens per document) and ``docids.txt``.

The centroid-order permutation, list sizes and each token's document are derived on open
(one stable sort of the codes) rather than stored: they would cost 8 of the ~100 bytes a
token takes at 2 bits.
"""

from __future__ import annotations

import functools
from pathlib import Path

import numpy as np

from pyserini_ext.store.manifest import ManifestError, require_manifest
from pyserini_ext.store.shards import read_docids

KIND = "compressed-tokens"
NBITS = (2, 4)


def expand_ranges(starts: np.ndarray, sizes: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The concatenated ranges ``[starts[i], starts[i] + sizes[i])`` and where each range begins
    in the result (the ``firsts`` that ``np.maximum.reduceat`` wants)."""
    starts, sizes = np.asarray(starts, dtype=np.int64), np.asarray(sizes, dtype=np.int64)
    firsts = np.zeros(len(sizes), dtype=np.int64)
    np.cumsum(sizes[:-1], out=firsts[1:])
    total = int(sizes.sum())
    return np.repeat(starts - firsts, sizes) + np.arange(total, dtype=np.int64), firsts


def nearest_centroids(vectors: np.ndarray, centroids: np.ndarray, block: int = 1 << 14) -> np.ndarray:
    """The nearest centroid of each vector (largest inner product: the centroids are unit
    vectors, so for any vector this is also the smallest L2 distance)."""
    codes = np.empty(len(vectors), dtype=np.int64)
    for start in range(0, len(vectors), block):
        codes[start:start + block] = np.argmax(vectors[start:start + block] @ centroids.T, axis=1)
    return codes


class ResidualCodec:
    """Centroids plus per-dimension residual buckets (module docstring)."""

    def __init__(self, centroids: np.ndarray, cutoffs: np.ndarray, weights: np.ndarray, nbits: int):
        if nbits not in NBITS:
            raise ValueError(f"nbits must be one of {NBITS}, got {nbits!r}")
        self.centroids = np.ascontiguousarray(centroids, dtype=np.float32)
        self.cutoffs = np.ascontiguousarray(cutoffs, dtype=np.float32)
        self.weights = np.ascontiguousarray(weights, dtype=np.float32)
        self.nbits = nbits
        self.dim = self.centroids.shape[1]
        if self.dim * nbits % 8:
            raise ValueError(f"{nbits}-bit residuals of {self.dim} dimensions do not fill whole bytes")
        self.per_byte = 8 // nbits
        self.packed_width = self.dim * nbits // 8
        # (slot k, bucket b) -> byte value v, 1 where slot k of v holds b: residual_tables' matrix.
        buckets, values = 1 << nbits, np.arange(256)
        self.byte_buckets = np.zeros((self.per_byte * buckets, 256), dtype=np.float32)
        for k in range(self.per_byte):
            self.byte_buckets[k * buckets + ((values >> (k * nbits)) & (buckets - 1)), values] = 1.0

    @classmethod
    def train(cls, sample: np.ndarray, nlist: int, nbits: int, seed: int = 0, niter: int = 20) -> "ResidualCodec":
        """Spherical k-means centroids of ``sample`` (FAISS, seeded), then the buckets of the
        sample's residuals, dimension by dimension."""
        import faiss

        sample = np.ascontiguousarray(sample, dtype=np.float32)
        kmeans = faiss.Kmeans(sample.shape[1], nlist, niter=niter, seed=seed, spherical=True, verbose=False)
        kmeans.train(sample)
        centroids = kmeans.centroids
        residuals = sample - centroids[nearest_centroids(sample, centroids)]
        buckets = 1 << nbits
        cutoffs = np.quantile(residuals, np.arange(1, buckets) / buckets, axis=0).T
        weights = np.quantile(residuals, (np.arange(buckets) + 0.5) / buckets, axis=0).T
        return cls(centroids, cutoffs, weights, nbits)

    def assign(self, vectors: np.ndarray) -> np.ndarray:
        return nearest_centroids(vectors, self.centroids)

    def compress(self, vectors: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(centroid codes, packed residual bytes ``n x packed_width``) of FP32 ``vectors``."""
        vectors = np.asarray(vectors, dtype=np.float32)
        codes = self.assign(vectors)
        packed = np.empty((len(vectors), self.packed_width), dtype=np.uint8)
        # Bounded temporaries: rows x dim x cutoffs booleans per block.
        rows = max(1, (1 << 25) // (self.dim * self.cutoffs.shape[1]))
        for start in range(0, len(vectors), rows):
            residual = vectors[start:start + rows] - self.centroids[codes[start:start + rows]]
            buckets = (residual[:, :, None] > self.cutoffs[None]).sum(axis=2, dtype=np.uint8)
            packed[start:start + rows] = self._pack(buckets)
        return codes, packed

    def _pack(self, buckets: np.ndarray) -> np.ndarray:
        """Dimension ``j * per_byte + k`` goes to bits ``[k * nbits, (k + 1) * nbits)`` of byte ``j``."""
        slots = buckets.reshape(len(buckets), self.packed_width, self.per_byte)
        shifts = (np.arange(self.per_byte, dtype=np.uint8) * self.nbits)
        return np.bitwise_or.reduce(slots << shifts, axis=2).astype(np.uint8)

    def unpack(self, packed: np.ndarray) -> np.ndarray:
        """Bucket indices ``n x dim`` of packed residual bytes."""
        packed = np.asarray(packed, dtype=np.uint8)
        shifts = (np.arange(self.per_byte, dtype=np.uint8) * self.nbits)
        slots = (packed[:, :, None] >> shifts) & np.uint8((1 << self.nbits) - 1)
        return slots.reshape(len(packed), self.dim)

    def decompress(self, codes: np.ndarray, packed: np.ndarray) -> np.ndarray:
        """``c + w[bucket]``: the vectors every compressed score is the exact score of."""
        buckets = self.unpack(packed).astype(np.int64)
        return self.centroids[np.asarray(codes, dtype=np.int64)] + self.weights[np.arange(self.dim), buckets]

    def residual_tables(self, queries: np.ndarray) -> np.ndarray:
        """``(packed_width * 256) x m`` FP32: row ``j * 256 + v`` holds, for every query token,
        ``sum_k q[d_k] * w[d_k, bucket_k(v)]`` over the dimensions ``d_k`` packed in byte ``j``
        when it has value ``v``. A token's residual score is the sum of its bytes' rows."""
        queries = np.asarray(queries, dtype=np.float32)
        weighted = queries[:, :, None] * self.weights[None]  # m x dim x 2^b
        # (slot, bucket) -> byte value, as a 0/1 matrix: the tables are one matrix product.
        weighted = weighted.reshape(len(queries), self.packed_width, self.per_byte << self.nbits)
        tables = weighted.transpose(1, 0, 2) @ self.byte_buckets  # bytes x m x 256
        return np.ascontiguousarray(tables.transpose(0, 2, 1).reshape(self.packed_width * 256, len(queries)))


class CompressedIndex:
    """A compressed token index folder (module docstring), memory-mapped and verified on open."""

    def __init__(self, root: Path | str):
        self.root = Path(root)
        self.manifest = require_manifest(self.root, KIND)
        load = lambda name, **kw: np.load(self.root / name, **kw)  # noqa: E731
        self.codec = ResidualCodec(load("centroids.npy"), load("cutoffs.npy"), load("weights.npy"),
                                   int(self.manifest["nbits"]))
        self.codes = load("codes.npy")  # token order
        self.residuals = load("residuals.npy", mmap_mode="r")  # centroid order
        self.lengths = load("lengths.npy").astype(np.int64)
        self.docids = read_docids(self.root / "docids.txt")
        tokens = int(self.lengths.sum())
        if len(self.docids) != len(self.lengths) or not tokens == len(self.codes) == len(self.residuals):
            raise ManifestError(f"{self.root}: {len(self.docids)} docids, {len(self.lengths)} lengths adding up to "
                                f"{int(self.lengths.sum())} tokens, {len(self.codes)} codes, {len(self.residuals)} "
                                f"residuals")
        self.token_offsets = np.concatenate([[0], np.cumsum(self.lengths)])
        nlist = len(self.codec.centroids)
        self.token_at = np.argsort(self.codes, kind="stable")  # centroid order -> token
        self.sizes = np.bincount(self.codes, minlength=nlist).astype(np.int64)
        self.offsets = np.concatenate([[0], np.cumsum(self.sizes)[:-1]])  # each centroid's list start
        self.doc_of = np.repeat(np.arange(len(self.lengths), dtype=np.int32), self.lengths)[self.token_at]
        self.positions = np.empty(len(self.token_at), dtype=np.int64)  # token -> its place in centroid order
        self.positions[self.token_at] = np.arange(len(self.token_at))

    @property
    def num_docs(self) -> int:
        return len(self.docids)

    @property
    def digest(self) -> str:
        return self.manifest["digest"]

    def centroid_scores(self, query: np.ndarray) -> np.ndarray:
        """``m x nlist``: every query token against every centroid."""
        return np.asarray(query, dtype=np.float32) @ self.codec.centroids.T

    def token_ranges(self, docs: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(token ids of ``docs``, concatenated in that order; where each document begins)."""
        docs = np.asarray(docs, dtype=np.int64)
        return expand_ranges(self.token_offsets[docs], self.lengths[docs])

    @functools.cached_property
    def doc_codes(self) -> tuple[np.ndarray, np.ndarray]:
        """(each document's distinct centroid codes, concatenated; where each document's begin):
        what centroid interaction needs, about half as many entries as tokens (computed once)."""
        nlist = len(self.codec.centroids)
        doc_of_token = np.repeat(np.arange(self.num_docs, dtype=np.int64), self.lengths)
        pairs = np.unique(doc_of_token * nlist + self.codes)
        starts = np.searchsorted(pairs // nlist, np.arange(self.num_docs + 1))
        return (pairs % nlist).astype(np.int64), starts

    def decompressed(self, doc: int) -> np.ndarray:
        """Document ``doc``'s decompressed token vectors."""
        tokens = np.arange(self.token_offsets[doc], self.token_offsets[doc + 1])
        return self.codec.decompress(self.codes[tokens], self.residuals[self.positions[tokens]])

    def nbytes(self) -> int:
        """Bytes on disk of every file of the folder."""
        return sum(e["size"] for e in self.manifest["files"].values())
