"""Dense indexes in Pyserini's FAISS folder layout (``index`` + ``docid``), built from a
complete dense shard folder (:func:`pyserini_ext.store.encode_corpus`).

Index kinds:

* ``flat``       exact inner product, FP32 (``IndexFlatIP``);
* ``flat-fp16``  exact inner product over vectors stored in FP16 (``IndexScalarQuantizer``
  with ``QT_fp16``): half the memory, scores differ in the 4th decimal;
* ``hnsw``       HNSW graph over FP32 vectors, inner product (``IndexHNSWFlat``).

The folder has a ``manifest.json`` (:mod:`pyserini_ext.store.manifest`) with each file's size
and SHA-256, and a ``built_from`` holding the caller's dict, the shards' manifest digest
(``source``) and the kind and its options (``builder``): the index is rebuilt when any of them
changes, and refused (``ManifestError`` naming the file) when a file no longer hashes as recorded.
"""

from __future__ import annotations

import logging
from pathlib import Path

import faiss

from pyserini_ext.store import ensure_built, manifest_digest
from pyserini_ext.store.readers import VectorStore, read_shards, shard_files  # noqa: F401  (old names)
from pyserini_ext.store.shards import encode_corpus, encode_in_shards  # noqa: F401  (old names)
from pyserini_ext.store.atomic import write_atomic  # noqa: F401  (old name)

log = logging.getLogger(__name__)

INDEX_KINDS = ("flat", "flat-fp16", "hnsw")


def make_faiss_index(dim: int, kind: str = "flat", hnsw_m: int = 32, ef_construction: int = 200) -> faiss.Index:
    if kind == "flat":
        return faiss.IndexFlatIP(dim)
    if kind == "flat-fp16":
        return faiss.IndexScalarQuantizer(dim, faiss.ScalarQuantizer.QT_fp16, faiss.METRIC_INNER_PRODUCT)
    if kind == "hnsw":
        index = faiss.IndexHNSWFlat(dim, hnsw_m, faiss.METRIC_INNER_PRODUCT)
        index.hnsw.efConstruction = ef_construction
        return index
    raise ValueError(f"unknown dense index kind {kind!r}; choose one of {', '.join(INDEX_KINDS)}")


def build_dense_index(shards_dir: Path | str, index_dir: Path | str, kind: str = "flat",
                      built_from: dict | None = None, **kind_options) -> Path:
    """``index`` (FAISS) and ``docid`` (one per line) of every vector in ``shards_dir``, in
    ``index_dir``: reused when current, else built and swapped in whole."""
    if kind not in INDEX_KINDS:
        raise ValueError(f"unknown dense index kind {kind!r}; choose one of {', '.join(INDEX_KINDS)}")
    identity = {**(built_from or {}), "source": manifest_digest(shards_dir), "builder": {"kind": kind, **kind_options}}

    def build(partial: Path) -> dict:
        store = VectorStore(shards_dir)
        vectors = store.vectors()
        index = make_faiss_index(vectors.shape[1], kind, **kind_options)
        index.train(vectors)
        index.add(vectors)
        faiss.write_index(index, str(partial / "index"))
        (partial / "docid").write_text("".join(d + "\n" for d in store.docids), encoding="utf-8")
        return {"kind": f"faiss-{kind}", "count": len(store.docids), "dims": [vectors.shape[1]],
                "dtype": "float16" if kind == "flat-fp16" else "float32",
                "docids": (store.docids[0], store.docids[-1])}

    return ensure_built(index_dir, identity, build, "dense index",
                        legacy=lambda folder: (folder / "index").is_file() or (folder / "meta.json").is_file())
