"""The token store of a multi-vector index, and FAISS indexes over its token vectors.

On disk, per shard ``i`` (written whole, then renamed, so a crash never leaves half a
shard; an interrupted encoding resumes from the finished shards):

* ``tokens-i.npy``: every token vector of the shard's documents, FP16, document after document;
* ``lengths-i.npy``: how many vectors each document has (int32);
* ``docid-i.txt``: the documents' ids, one per line.

:class:`TokenStore` memory-maps the shards and gives each document's vectors by position
(``doc_tokens``), the document owning each token (``token_doc``) and the offsets. The
candidate-generation indexes (:func:`build_token_index`) hold the same vectors in FP32:
``flat`` (exact inner product) or ``ivf`` (k-means centroids, inverted lists).
"""

from __future__ import annotations

import io
import itertools
import logging
from pathlib import Path
from typing import Iterable

import faiss
import numpy as np

from pyserini_ext.data.readers import Document
from pyserini_ext.index.dense import encode_in_shards, write_atomic, write_docids

log = logging.getLogger(__name__)

TOKEN_INDEX_KINDS = ("flat", "ivf")


def _shard_paths(root: Path, i: int) -> tuple[Path, Path, Path]:
    return root / f"tokens-{i:05d}.npy", root / f"lengths-{i:05d}.npy", root / f"docid-{i:05d}.txt"


def encode_token_corpus(docs: Iterable[Document], encoder, root: Path | str, shard_size: int = 1024,
                        quiet: bool = False, progress_every: int = 256) -> Path:
    """Encode ``docs`` with a multi-vector document encoder into token-store shards; resumable."""
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)

    def write(i: int, chunk: list[Document], parts: list[list[np.ndarray]]) -> None:
        tokens_path, lengths_path, docid_path = _shard_paths(root, i)
        vectors = [v for part in parts for v in part]
        write_atomic(tokens_path, _npy(np.concatenate(vectors).astype(np.float16)))
        write_atomic(lengths_path, _npy(np.array([len(v) for v in vectors], dtype=np.int32)))
        write_docids(docid_path, chunk)  # last: its presence marks the shard finished

    encode_in_shards(docs, lambda part: encoder.encode([d.text for d in part], titles=[d.title for d in part]),
                     lambda i: _shard_paths(root, i), write, shard_size, f"encoding tokens {root.parent.name}",
                     None, quiet, progress_every)
    return root


def _npy(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


class TokenStore:
    """Memory-mapped token vectors of every document, in corpus order."""

    def __init__(self, root: Path | str):
        self.root = Path(root)
        shards = []
        for i in itertools.count():
            paths = _shard_paths(self.root, i)
            if not paths[0].exists():
                break
            shards.append(paths)
        if not shards:
            raise FileNotFoundError(f"no token-store shards in {self.root}")
        self._tokens = [np.load(t, mmap_mode="r") for t, _, _ in shards]
        lengths = np.concatenate([np.load(n) for _, n, _ in shards]).astype(np.int64)
        self.docids = [line for _, _, d in shards for line in d.read_text(encoding="utf-8").split("\n")[:-1]]
        if len(self.docids) != len(lengths):
            raise ValueError(f"{self.root}: {len(self.docids)} docids for {len(lengths)} documents")
        self.lengths = lengths
        self.offsets = np.concatenate([[0], np.cumsum(lengths)])
        # Each shard's first global token, to find the shard that holds a document.
        shard_tokens = [len(t) for t in self._tokens]
        self._shard_starts = np.concatenate([[0], np.cumsum(shard_tokens)])
        if self._shard_starts[-1] != self.offsets[-1]:
            raise ValueError(f"{self.root}: lengths add up to {self.offsets[-1]} tokens, shards hold "
                             f"{self._shard_starts[-1]}")
        self.dim = self._tokens[0].shape[1]

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

    def nbytes(self) -> int:
        """Bytes on disk: vectors, lengths and docids."""
        return sum(p.stat().st_size for p in self.root.iterdir() if p.name.startswith(("tokens-", "lengths-", "docid-")))


def build_token_index(store: TokenStore, path: Path | str, kind: str = "flat", nlist: int = 1024,
                      train_tokens: int = 131072, seed: int = 0) -> Path:
    """A FAISS inner-product index over every token vector of ``store``, written to ``path``
    (reused when it exists). ``ivf``: ``nlist`` k-means centroids trained on a seeded
    sample of ``train_tokens`` vectors."""
    path = Path(path)
    if path.exists():
        return path
    if kind not in TOKEN_INDEX_KINDS:
        raise ValueError(f"token index kind must be one of {TOKEN_INDEX_KINDS}, got {kind!r}")
    if kind == "flat":
        index = faiss.IndexFlatIP(store.dim)
    else:
        quantizer = faiss.IndexFlatIP(store.dim)
        index = faiss.IndexIVFFlat(quantizer, store.dim, nlist, faiss.METRIC_INNER_PRODUCT)
        rng = np.random.default_rng(seed)
        sample = np.sort(rng.choice(store.num_tokens, min(train_tokens, store.num_tokens), replace=False))
        vectors = _gather(store, sample)
        clustering = faiss.Clustering(store.dim, nlist)
        clustering.seed, clustering.niter = seed, 20
        clustering.train(vectors, quantizer)
        index.is_trained = True
    for block in store.iter_token_blocks():
        index.add(block)
    write_atomic(path, faiss.serialize_index(index).tobytes())
    log.info("token index %s: %d vectors (%s)", path, index.ntotal, kind)
    return path


def _gather(store: TokenStore, positions: np.ndarray) -> np.ndarray:
    """FP32 copies of the token vectors at sorted global ``positions``, shard by shard."""
    out, start = [], 0
    for tokens in store._tokens:
        end = start + len(tokens)
        inside = positions[(positions >= start) & (positions < end)] - start
        out.append(np.asarray(tokens[inside], dtype=np.float32))
        start = end
    return np.concatenate(out)


def read_token_index(path: Path | str) -> faiss.Index:
    return faiss.read_index(str(path))
