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
    memory-mapped; by docid, only the rows a query's candidates need are read from disk."""

    def __init__(self, shards_dir: Path | str):
        self.root = Path(shards_dir)
        self.manifest, n = _open(self.root, DENSE)
        self.shards, self.docids, self.row_of = [], [], {}
        for shard in range(n):
            vectors = np.load(self.root / DENSE.payload_names(shard)[0], mmap_mode="r")
            ids = read_docids(self.root / DENSE.docid_name(shard))
            if len(ids) != len(vectors):
                raise ManifestError(f"{self.root}: shard {shard} has {len(vectors)} vectors for {len(ids)} docids")
            self.shards.append(vectors)
            self.docids.extend(ids)
            for row, docid in enumerate(ids):
                self.row_of[docid] = (shard, row)
        _check_count(self.root, self.manifest, self.docids)
        self.dim = self.shards[0].shape[1]

    @property
    def digest(self) -> str:
        return self.manifest["digest"]

    def __len__(self) -> int:
        return len(self.row_of)

    def vectors(self) -> np.ndarray:
        """Every vector, in corpus order (read into memory)."""
        return np.concatenate([np.asarray(s) for s in self.shards])

    def lookup(self, docids: Sequence[str]) -> tuple[np.ndarray, list[str]]:
        """Vectors of the docids that are stored (in the given order), and those docids."""
        found = [d for d in docids if d in self.row_of]
        out = np.empty((len(found), self.dim), dtype=np.float32)
        # Group by shard so each memory-mapped shard is read with one fancy-indexing call.
        by_shard = sorted(range(len(found)), key=lambda i: self.row_of[found[i]])
        for shard, members in itertools.groupby(by_shard, key=lambda i: self.row_of[found[i]][0]):
            members = list(members)
            out[members] = self.shards[shard][[self.row_of[found[i]][1] for i in members]]
        return out, found

    def score(self, query: np.ndarray, docids: Sequence[str]) -> tuple[np.ndarray, list[str]]:
        vectors, found = self.lookup(docids)
        return vectors @ query, found


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
        found = [d for d in docids if d in self.row_of]
        rows = self.impacts[[self.row_of[d] for d in found]]
        return np.asarray((rows @ query.T).todense()).ravel().astype(np.float64), found


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
