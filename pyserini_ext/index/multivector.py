"""FAISS indexes over the token vectors of a token store (the candidate generation of a
multi-vector index).

The token store itself (shards of FP16 token vectors, per-document lengths and docids) is
:func:`pyserini_ext.store.encode_token_corpus` / :class:`pyserini_ext.store.TokenStore`.
:func:`build_token_index` writes a folder holding ``index.faiss`` and a ``manifest.json``
(sizes and SHA-256, checked before reuse and by :func:`read_token_index`);
the index holds the store's vectors in FP32: ``flat`` (exact inner product) or ``ivf``
(k-means centroids, inverted lists).
"""

from __future__ import annotations

import logging
from pathlib import Path

import faiss
import numpy as np

from pyserini_ext.store import MANIFEST, ensure_built, require_manifest
from pyserini_ext.store.readers import TokenStore  # noqa: F401  (also its old home)
from pyserini_ext.store.shards import encode_token_corpus  # noqa: F401  (old name)

log = logging.getLogger(__name__)

TOKEN_INDEX_KINDS = ("flat", "ivf")
INDEX_FILE = "index.faiss"


def build_token_index(store: TokenStore | Path | str, path: Path | str, kind: str = "flat", nlist: int = 1024,
                      train_tokens: int = 131072, seed: int = 0, built_from: dict | None = None) -> Path:
    """A FAISS inner-product index over every token vector of ``store``, in the folder ``path``
    (reused when current: same ``built_from``, same store, same parameters). ``ivf``: ``nlist``
    k-means centroids trained on a seeded sample of ``train_tokens`` vectors."""
    if kind not in TOKEN_INDEX_KINDS:
        raise ValueError(f"token index kind must be one of {TOKEN_INDEX_KINDS}, got {kind!r}")
    if not isinstance(store, TokenStore):
        store = TokenStore(store)
    params = {"kind": kind} if kind == "flat" else {"kind": kind, "nlist": nlist, "train_tokens": train_tokens,
                                                       "seed": seed}
    identity = {**(built_from or {}), "source": store.digest, "builder": params}

    def build(partial: Path) -> dict:
        if kind == "flat":
            index = faiss.IndexFlatIP(store.dim)
        else:
            quantizer = faiss.IndexFlatIP(store.dim)
            index = faiss.IndexIVFFlat(quantizer, store.dim, nlist, faiss.METRIC_INNER_PRODUCT)
            rng = np.random.default_rng(seed)
            sample = np.sort(rng.choice(store.num_tokens, min(train_tokens, store.num_tokens), replace=False))
            clustering = faiss.Clustering(store.dim, nlist)
            clustering.seed, clustering.niter = seed, 20
            clustering.train(store.gather(sample), quantizer)
            index.is_trained = True
        for block in store.iter_token_blocks():
            index.add(block)
        faiss.write_index(index, str(partial / INDEX_FILE))
        log.info("token index %s: %d vectors (%s)", path, index.ntotal, kind)
        return {"kind": f"faiss-tokens-{kind}", "count": int(index.ntotal), "dims": [store.dim], "dtype": "float32",
                "extra": {"documents": store.num_docs}}

    return ensure_built(path, identity, build, "token index", legacy=lambda p: p.is_file())


def read_token_index(path: Path | str) -> faiss.Index:
    """The index :func:`build_token_index` wrote in the folder ``path``, its files checked against
    the manifest first (hashed once per process and file state, so reopening is cheap)."""
    path = Path(path)
    if path.is_dir() and (path / MANIFEST).exists():  # a bare .faiss file or folder has nothing to check against
        require_manifest(path)
    return faiss.read_index(str(path / INDEX_FILE if path.is_dir() else path))
