"""Seeded distractors: a real store grown by synthetic documents, to measure how an engine's
latency, size and effectiveness change with the corpus while the real queries and qrels stay
measurable.

Only SciFact-sized real corpora are available offline, so growth is simulated: synthetic
document ``i`` takes the vectors of a real document chosen by a generator seeded with
``(seed, i)`` (tokens sampled with replacement, for a multi-vector store), adds Gaussian noise of
standard deviation ``noise`` per dimension and re-normalises each vector to the source vector's
norm. Noise is required to be positive, so no synthetic vector is a copy of a real one. The
synthetic documents are never relevant (the qrels do not know their docids), so any document
they push into the top of a ranking costs effectiveness, as a real distractor would.

Each synthetic document depends only on ``(seed, i)``, not on batches or shards: the grown
store is the same bytes however it is encoded, and resumes like any other shard folder. The
real documents come first, in their order, with their vectors unchanged. A dense store grows a
batch at a time (one gather of the sources, one perturbation): 50,000 MiniLM documents in 3.1 s
on 2 cores.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from pyserini_ext.data.readers import Document
from pyserini_ext.store.readers import TokenStore, VectorStore
from pyserini_ext.store.shards import DENSE, TOKENS, _describe_dense, _describe_tokens, build_shards, dense_codec, \
    token_codec

PREFIX = "distractor-"


def _perturbed(rng: np.random.Generator, vectors: np.ndarray, noise: float) -> np.ndarray:
    vectors = np.asarray(vectors, dtype=np.float32)
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    moved = vectors + rng.normal(0.0, noise, vectors.shape).astype(np.float32)
    return moved * (norms / np.maximum(np.linalg.norm(moved, axis=1, keepdims=True), 1e-12))


class _Source:
    """The ``encoder`` the shard codecs call: real documents' stored vectors, synthetic ones
    generated from their index."""

    def __init__(self, store, seed: int, noise: float, tokens: bool):
        self.store, self.seed, self.noise, self.tokens = store, seed, noise, tokens
        self.real = {docid: row for row, docid in enumerate(store.docids)}

    def vectors(self, docid: str) -> np.ndarray:
        if docid in self.real:
            row = self.real[docid]
            return (self.store.doc_tokens(row) if self.tokens else self.store.gather(np.array([row]))[0]).astype(np.float32)
        rng = np.random.default_rng([self.seed, int(docid[len(PREFIX):])])
        source = int(rng.integers(len(self.real)))
        if not self.tokens:
            return _perturbed(rng, self.store.gather(np.array([source])), self.noise)[0]
        tokens = np.asarray(self.store.doc_tokens(source), dtype=np.float32)
        return _perturbed(rng, tokens[rng.integers(len(tokens), size=len(tokens))], self.noise)

    def encode(self, texts, titles=None):  # the codecs pass text; the docid rides in the text's place
        if self.tokens:
            return [self.vectors(t) for t in texts]
        return self.dense(texts)

    def dense(self, docids) -> np.ndarray:
        """:meth:`vectors` of a batch of dense documents, the same bytes, with one gather of
        their sources and one perturbation (each row's noise still drawn from its own ``(seed, i)``)."""
        rows = np.empty(len(docids), dtype=np.int64)
        noise = np.zeros((len(docids), self.store.dim), dtype=np.float32)
        synthetic = np.zeros(len(docids), dtype=bool)
        for j, docid in enumerate(docids):
            row = self.real.get(docid)
            if row is None:
                rng = np.random.default_rng([self.seed, int(docid[len(PREFIX):])])
                row = int(rng.integers(len(self.real)))
                noise[j] = rng.normal(0.0, self.noise, (1, self.store.dim)).astype(np.float32)
                synthetic[j] = True
            rows[j] = row
        vectors = self.store.gather(rows)
        if synthetic.any():
            sources = vectors[synthetic]
            norms = np.linalg.norm(sources, axis=1, keepdims=True)
            moved = sources + noise[synthetic]
            vectors[synthetic] = moved * (norms / np.maximum(np.linalg.norm(moved, axis=1, keepdims=True), 1e-12))
        return vectors


def grow_store(store: TokenStore | VectorStore, count: int, folder: Path | str, seed: int = 0, noise: float = 0.05,
               shard_size: int = 2048, quiet: bool = True) -> Path:
    """A shard folder (the store's own kind) holding ``store``'s documents, then ``count``
    synthetic ones (module docstring); reused when current."""
    if not noise > 0:
        raise ValueError(f"noise must be positive (zero would copy real vectors), got {noise!r}")
    tokens = isinstance(store, TokenStore)
    source = _Source(store, seed, noise, tokens)
    # The codecs hand the encoder each document's text: here its docid, so it can find the vectors.
    keyed = [Document(d, "", d) for d in [*store.docids, *(f"{PREFIX}{i:08d}" for i in range(count))]]
    layout, codec, describe = (TOKENS, token_codec, _describe_tokens) if tokens else (DENSE, dense_codec,
                                                                                      _describe_dense)
    encode, write = codec(source)
    built_from = {"source": store.digest, "distractors": {"count": count, "seed": seed, "noise": noise}}
    return build_shards(keyed, encode, write, Path(folder), layout, shard_size, f"growing {Path(folder).name}",
                        "grown store", built_from, describe, total=len(keyed), quiet=quiet)
