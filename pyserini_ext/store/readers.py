"""Readers of complete shard folders: each checks the folder's manifest first (kind, every
file present with its size, and the documents it counts), so a folder missing a shard is an
error, never a shorter corpus."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Sequence

import numpy as np

from pyserini_ext.store.manifest import ManifestError, require_manifest
from pyserini_ext.store.shards import DENSE, IMPACT, TOKENS, ShardLayout, read_docids


def _open(root: Path, layout: ShardLayout) -> tuple[dict, int]:
    manifest = require_manifest(root, layout.kind)
    return manifest, int(manifest["shards"])


def _check_count(root: Path, manifest: dict, docids: list[str]) -> None:
    if len(docids) != manifest["count"]:
        raise ManifestError(f"{root}: the shards hold {len(docids)} documents, the manifest counts {manifest['count']}")


def shard_files(shards_dir: Path | str) -> list[tuple[Path, Path]]:
    """(vectors, docids) file pairs of a complete dense shard folder, in order."""
    root = Path(shards_dir)
    _, n = _open(root, DENSE)
    return [(root / DENSE.payload_names(i)[0], root / DENSE.docid_name(i)) for i in range(n)]


class VectorStore:
    """Dense document vectors of a complete shard folder (:func:`~pyserini_ext.store.shards.encode_corpus`),
    memory-mapped; by docid, only the rows a query's candidates need are read from disk.

    Lookups are vectorised: docids map to global rows through one dict read in C
    (:meth:`rows`), rows are gathered shard by shard with one fancy index each
    (:meth:`gather`), and :meth:`score_many` scores a batch of queries' candidate lists with
    one gather and one (batched) matrix product."""

    #: bytes of gathered vectors per batch in :meth:`score_many`: a batch stays in cache
    #: (measured on 2 cores: larger batches of 1000 MiniLM candidates get slower per query).
    batch_bytes = 4 << 20

    def __init__(self, shards_dir: Path | str):
        self.root = Path(shards_dir)
        self.manifest, n = _open(self.root, DENSE)
        self.shards, self.docids = [], []
        for shard in range(n):
            vectors = np.load(self.root / DENSE.payload_names(shard)[0], mmap_mode="r")
            ids = read_docids(self.root / DENSE.docid_name(shard))
            if len(ids) != len(vectors):
                raise ManifestError(f"{self.root}: shard {shard} has {len(vectors)} vectors for {len(ids)} docids")
            self.shards.append(vectors)
            self.docids.extend(ids)
        _check_count(self.root, self.manifest, self.docids)
        # docid -> global row; a docid stored twice keeps its last row, as before.
        self.row_of = dict(zip(self.docids, range(len(self.docids))))
        self._starts = np.cumsum([0] + [len(v) for v in self.shards])
        self.dim = self.shards[0].shape[1]

    @property
    def digest(self) -> str:
        return self.manifest["digest"]

    def __len__(self) -> int:
        return len(self.row_of)

    def vectors(self) -> np.ndarray:
        """Every vector, in corpus order (read into memory)."""
        return np.concatenate([np.asarray(s) for s in self.shards])

    def rows(self, docids: Sequence[str]) -> np.ndarray:
        """Global rows of ``docids`` (``-1`` for a docid not stored), without a Python loop."""
        return np.fromiter(map(self.row_of.get, docids, itertools.repeat(-1)), dtype=np.int64, count=len(docids))

    def gather(self, rows: np.ndarray) -> np.ndarray:
        """FP32 vectors of global ``rows`` (in that order): one fancy index per shard."""
        if len(self.shards) == 1:
            return np.asarray(self.shards[0][rows], dtype=np.float32)
        out = np.empty((len(rows), self.dim), dtype=np.float32)
        shard_of = np.searchsorted(self._starts, rows, side="right") - 1
        for shard in np.unique(shard_of).tolist():
            inside = shard_of == shard
            out[inside] = self.shards[shard][rows[inside] - self._starts[shard]]
        return out

    def lookup(self, docids: Sequence[str]) -> tuple[np.ndarray, list[str]]:
        """Vectors of the docids that are stored (in the given order), and those docids."""
        rows = self.rows(docids)
        found = rows >= 0
        if not found.all():
            docids = list(itertools.compress(docids, found.tolist()))
            rows = rows[found]
        return self.gather(rows), list(docids)

    def score(self, query: np.ndarray, docids: Sequence[str]) -> tuple[np.ndarray, list[str]]:
        vectors, found = self.lookup(docids)
        return vectors @ query, found

    def score_many(self, queries: np.ndarray, candidates: Sequence[Sequence[str]]
                   ) -> list[tuple[np.ndarray, list[str]]]:
        """:meth:`score` for each query (row of ``queries``) and its candidate docids: per batch of
        queries, one gather of every candidate's vector and one batched matrix product.

        A batch holds consecutive queries with as many stored candidates each (up to
        :attr:`batch_bytes` of vectors): BLAS's matrix-vector kernels round a row's product
        differently depending on how many rows there are, so only equal lengths keep every
        score bit for bit the one :meth:`score` computes."""
        rows = [self.rows(c) for c in candidates]
        found = [r >= 0 for r in rows]
        kept = [(r if f.all() else r[f]) for r, f in zip(rows, found)]
        out: list[tuple[np.ndarray, list[str]]] = []
        start = 0
        while start < len(kept):
            width = len(kept[start])
            step = max(1, self.batch_bytes // max(1, width * self.dim * 4))
            end = start + 1
            while end < len(kept) and end - start < step and len(kept[end]) == width:
                end += 1
            vectors = self.gather(np.concatenate(kept[start:end])).reshape(end - start, width, self.dim)
            scores = np.matmul(vectors, np.asarray(queries[start:end])[:, :, None])[:, :, 0]
            for i in range(start, end):
                c, f = candidates[i], found[i]
                docids = list(c) if len(kept[i]) == len(c) else list(itertools.compress(c, f.tolist()))
                out.append((scores[i - start], docids))
            start = end
        return out


def read_shards(shards_dir: Path | str) -> tuple[np.ndarray, list[str]]:
    """Every vector of a complete dense shard folder (in memory) and the docids, in corpus order."""
    store = VectorStore(shards_dir)
    return store.vectors(), store.docids


def read_impact_weights(root: Path | str):
    """All float weights (SciPy CSR, one row per document) of a complete impact shard folder,
    and the docids, in corpus order."""
    import scipy.sparse as sp

    root = Path(root)
    manifest, n = _open(root, IMPACT)
    matrices, docids = [], []
    for i in range(n):
        weights = sp.load_npz(root / IMPACT.payload_names(i)[0])
        ids = read_docids(root / IMPACT.docid_name(i))
        if weights.shape[0] != len(ids):
            raise ManifestError(f"{root}: shard {i} has {weights.shape[0]} rows for {len(ids)} docids")
        matrices.append(weights)
        docids.extend(ids)
    _check_count(root, manifest, docids)
    return sp.vstack(matrices, format="csr"), docids


class ImpactStore:
    """Integer impacts by docid, from the float weights of a complete impact shard folder,
    quantised with ``quantization`` (default: the factor the folder's collection was
    quantised with), so scores equal those of the Lucene impact index built from it."""

    def __init__(self, root: Path | str, quantization: float | None = None):
        from pyserini_ext.encode.splade import quantize

        self.root = Path(root)
        weights, docids = read_impact_weights(self.root)
        self.manifest = require_manifest(self.root, IMPACT.kind)
        if quantization is None:
            quantization = self.manifest["quantization"]
        self.quantization = quantization
        self.impacts = quantize(weights, quantization).tocsr()
        self.docids = docids
        self.row_of = {d: i for i, d in enumerate(docids)}

    def __len__(self) -> int:
        return len(self.row_of)

    def score(self, query, docids: Sequence[str]) -> tuple[np.ndarray, list[str]]:
        rows = np.fromiter(map(self.row_of.get, docids, itertools.repeat(-1)), dtype=np.int64, count=len(docids))
        keep = rows >= 0
        found = list(docids) if keep.all() else list(itertools.compress(docids, keep.tolist()))
        matrix = self.impacts[rows[keep]]
        return np.asarray((matrix @ query.T).todense()).ravel().astype(np.float64), found

    def score_many(self, queries, candidates: Sequence[Sequence[str]]) -> list[tuple[np.ndarray, list[str]]]:
        return [self.score(queries[i], c) for i, c in enumerate(candidates)]


class TokenStore:
    """Memory-mapped token vectors (FP16) of every document of a complete token shard folder
    (:func:`~pyserini_ext.store.shards.encode_token_corpus`), in corpus order."""

    def __init__(self, root: Path | str):
        self.root = Path(root)
        self.manifest, n = _open(self.root, TOKENS)
        self._tokens = [np.load(self.root / TOKENS.payload_names(i)[0], mmap_mode="r") for i in range(n)]
        lengths = [np.load(self.root / TOKENS.payload_names(i)[1]).astype(np.int64) for i in range(n)]
        self.docids = []
        for i in range(n):
            ids = read_docids(self.root / TOKENS.docid_name(i))
            if len(ids) != len(lengths[i]) or int(lengths[i].sum()) != len(self._tokens[i]):
                raise ManifestError(f"{self.root}: shard {i} has {len(ids)} docids, {len(lengths[i])} lengths adding "
                                    f"up to {int(lengths[i].sum())} tokens, and {len(self._tokens[i])} token vectors")
            self.docids.extend(ids)
        _check_count(self.root, self.manifest, self.docids)
        self.lengths = np.concatenate(lengths)
        self.offsets = np.concatenate([[0], np.cumsum(self.lengths)])
        # Each shard's first global token, to find the shard that holds a document.
        self._shard_starts = np.concatenate([[0], np.cumsum([len(t) for t in self._tokens])])
        self.dim = self._tokens[0].shape[1]

    @property
    def digest(self) -> str:
        return self.manifest["digest"]

    @property
    def num_docs(self) -> int:
        return len(self.docids)

    @property
    def num_tokens(self) -> int:
        return int(self.offsets[-1])

    def token_doc(self) -> np.ndarray:
        """The document index (position in ``docids``) of every token, in token order."""
        return np.repeat(np.arange(self.num_docs, dtype=np.int32), self.lengths)

    def doc_tokens(self, doc: int) -> np.ndarray:
        """Document ``doc``'s vectors (FP16, a view into the memory map)."""
        start, end = self.offsets[doc], self.offsets[doc + 1]
        shard = int(np.searchsorted(self._shard_starts, start, side="right") - 1)
        base = self._shard_starts[shard]
        return self._tokens[shard][start - base:end - base]

    def iter_token_blocks(self, rows: int = 1 << 16):
        """All token vectors in order, as FP32 blocks of at most ``rows``."""
        for tokens in self._tokens:
            for start in range(0, len(tokens), rows):
                yield np.asarray(tokens[start:start + rows], dtype=np.float32)

    def gather(self, positions: np.ndarray) -> np.ndarray:
        """FP32 copies of the token vectors at sorted global ``positions``, shard by shard."""
        out, start = [], 0
        for tokens in self._tokens:
            end = start + len(tokens)
            inside = positions[(positions >= start) & (positions < end)] - start
            out.append(np.asarray(tokens[inside], dtype=np.float32))
            start = end
        return np.concatenate(out)

    def nbytes(self) -> int:
        """Bytes on disk of the shards: vectors, lengths and docids."""
        return sum(e["size"] for name, e in self.manifest["files"].items() if not name.endswith(".done"))
