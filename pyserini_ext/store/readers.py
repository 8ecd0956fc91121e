"""Readers of complete shard folders: each checks the folder's manifest first (kind, every
file present with its size, and the documents it counts), so a folder missing a shard is an
error, never a shorter corpus."""

from __future__ import annotations

import itertools
import threading
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
    (:meth:`rows`), rows are gathered with one ``take`` per shard they fall in (:meth:`gather`),
    and :meth:`score_many` scores a batch of queries' candidate lists with one gather and one
    (batched) matrix product. Scoring gathers into a buffer kept per thread: a fresh array of a
    batch's vectors costs a page fault per 4 KiB on first touch, which measured here as most of
    the gather (1,000 MiniLM rows: 0.5-1.1 ms into a new array, 0.16-0.24 ms into a reused one,
    wall time on a loaded 2-core machine)."""

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
        # Plain ndarray views of the maps (nothing read): take() on them skips memmap's wrapping.
        self._arrays = [np.asarray(v) for v in self.shards]
        self._scratch = threading.local()
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

    def gather(self, rows: np.ndarray, out: np.ndarray | None = None, staging: np.ndarray | None = None
               ) -> np.ndarray:
        """FP32 vectors of global ``rows`` (in that order), into ``out`` (``len(rows) x dim``
        FP32) when given: one ``take`` per shard the rows fall in (rows of several shards are
        staged shard by shard in ``staging``, same shape, when given, then put in order)."""
        rows = np.asarray(rows, dtype=np.int64)
        if len(rows) and (rows.min() < 0 or rows.max() >= self._starts[-1]):
            raise IndexError(f"{self.root}: rows out of range 0..{self._starts[-1] - 1}")
        if out is None:
            out = np.empty((len(rows), self.dim), dtype=np.float32)
        if len(self._arrays) == 1:
            return _take(self._arrays[0], rows, out)
        shard_of = np.searchsorted(self._starts, rows, side="right") - 1
        first, last = (int(shard_of[0]), int(shard_of[-1])) if len(rows) else (0, 0)
        if first == last and (shard_of == first).all():
            return _take(self._arrays[first], rows - self._starts[first], out)
        # Rows grouped by shard (a stable sort: radix on 16-bit shard numbers), one take per shard
        # into a second buffer, then one take of that buffer back into the rows' order.
        key = shard_of.astype(np.int16) if len(self._arrays) < (1 << 15) else shard_of
        order = np.argsort(key, kind="stable")
        grouped = shard_of[order]
        local = rows[order] - self._starts[grouped]
        bounds = np.searchsorted(grouped, np.arange(len(self._arrays) + 1))
        staged = np.empty_like(out) if staging is None else staging
        for shard in np.flatnonzero(np.diff(bounds)).tolist():
            a, b = bounds[shard], bounds[shard + 1]
            _take(self._arrays[shard], local[a:b], staged[a:b])
        back = np.empty_like(order)
        back[order] = np.arange(len(order))
        return np.take(staged, back, axis=0, out=out, mode="clip")

    def _buffer(self, name: str, n: int) -> np.ndarray:
        """An ``n x dim`` FP32 view of this thread's buffer ``name``, grown (never shrunk) as needed."""
        buffer = getattr(self._scratch, name, None)
        if buffer is None or len(buffer) < n:
            buffer = np.empty((max(n, 1024), self.dim), dtype=np.float32)
            setattr(self._scratch, name, buffer)
        return buffer[:n]

    def _gathered(self, rows: np.ndarray) -> np.ndarray:
        """:meth:`gather` into this thread's buffer: valid until this thread's next call."""
        return self.gather(rows, self._buffer("gathered", len(rows)), self._buffer("staged", len(rows)))

    def lookup(self, docids: Sequence[str]) -> tuple[np.ndarray, list[str]]:
        """Vectors of the docids that are stored (in the given order), and those docids."""
        rows = self.rows(docids)
        found = rows >= 0
        if not found.all():
            docids = list(itertools.compress(docids, found.tolist()))
            rows = rows[found]
        return self.gather(rows), list(docids)

    def score(self, query: np.ndarray, docids: Sequence[str]) -> tuple[np.ndarray, list[str]]:
        rows = self.rows(docids)
        found = rows >= 0
        if not found.all():
            docids = list(itertools.compress(docids, found.tolist()))
            rows = rows[found]
        return self._gathered(rows) @ query, list(docids)

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
            vectors = self._gathered(np.concatenate(kept[start:end])).reshape(end - start, width, self.dim)
            scores = np.matmul(vectors, np.asarray(queries[start:end])[:, :, None])[:, :, 0]
            for i in range(start, end):
                c, f = candidates[i], found[i]
                docids = list(c) if len(kept[i]) == len(c) else list(itertools.compress(c, f.tolist()))
                out.append((scores[i - start], docids))
            start = end
        return out


def _take(source: np.ndarray, rows: np.ndarray, out: np.ndarray) -> np.ndarray:
    """``out[:] = source[rows]`` without a temporary (rows already checked: ``clip`` does not
    buffer the way ``take``'s default mode does)."""
    if source.dtype == out.dtype:
        return np.take(source, rows, axis=0, out=out, mode="clip")
    out[...] = source[rows]
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
