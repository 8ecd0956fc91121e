"""Dense indexes in Pyserini's FAISS folder layout (``index`` + ``docid``).

Encoding is streamed and sharded: documents are read ``shard_size`` at a time,
each shard's vectors and docids are written atomically, and a rerun skips the
shards already on disk, so an interrupted encoding resumes where it stopped and
never loses finished work. The FAISS index is built from the shards afterwards.

Index kinds:

* ``flat``       exact inner product, FP32 (``IndexFlatIP``);
* ``flat-fp16``  exact inner product over vectors stored in FP16 (``IndexScalarQuantizer``
  with ``QT_fp16``): half the memory, scores differ in the 4th decimal;
* ``hnsw``       HNSW graph over FP32 vectors, inner product (``IndexHNSWFlat``).
"""

from __future__ import annotations

import io
import itertools
import json
import logging
import os
import shutil
from pathlib import Path
from typing import Any, Callable, Iterable

import faiss
import numpy as np
from tqdm import tqdm

from pyserini_ext.data.readers import Document

log = logging.getLogger(__name__)

INDEX_KINDS = ("flat", "flat-fp16", "hnsw")


def _shard_paths(shards_dir: Path, i: int) -> tuple[Path, Path]:
    return shards_dir / f"shard-{i:05d}.npy", shards_dir / f"shard-{i:05d}.docid"


def encode_corpus(docs: Iterable[Document], encoder, shards_dir: Path | str, shard_size: int = 2048,
                  total: int | None = None, quiet: bool = False, progress_every: int = 256) -> Path:
    """Encode ``docs`` with a Pyserini ``DocumentEncoder`` into ``shards_dir``; resumable."""
    shards_dir = Path(shards_dir)
    shards_dir.mkdir(parents=True, exist_ok=True)

    def write(i: int, chunk: list[Document], parts: list[np.ndarray]) -> None:
        vectors_path, docid_path = _shard_paths(shards_dir, i)
        npy = io.BytesIO()
        np.save(npy, np.concatenate(parts))
        write_atomic(vectors_path, npy.getvalue())
        write_docids(docid_path, chunk)  # last: its presence marks the shard finished

    encode_in_shards(docs, lambda part: np.asarray(encoder.encode([d.text for d in part], titles=[d.title for d in part]),
                                                   dtype=np.float32),
                     lambda i: _shard_paths(shards_dir, i), write, shard_size, f"encoding {shards_dir.parent.name}",
                     total, quiet, progress_every)
    return shards_dir


def encode_in_shards(docs: Iterable[Document], encode: Callable[[list[Document]], Any],
                     shard_files: Callable[[int], tuple[Path, ...]], write: Callable[[int, list[Document], list], None],
                     shard_size: int, desc: str, total: int | None = None, quiet: bool = False,
                     progress_every: int = 256) -> None:
    """The resumable, sharded encoding loop every index kind shares.

    ``docs`` is read ``shard_size`` at a time. Shard ``i`` is finished when all of
    ``shard_files(i)`` exist (the last is its docid file, which ``write`` must write last); a
    finished shard is skipped after checking its docids against the corpus. Otherwise
    ``encode`` sees ``progress_every`` documents per call (it batches inside, and the
    progress bar moves during a shard) and ``write(i, chunk, parts)`` stores the results.
    """
    docs = iter(docs)
    with tqdm(total=total, desc=desc, unit="doc", disable=quiet) as bar:
        for i in itertools.count():
            chunk = list(itertools.islice(docs, shard_size))
            if not chunk:
                break
            files = shard_files(i)
            if all(f.exists() for f in files):
                if files[-1].read_text(encoding="utf-8").split("\n")[:-1] != [d.docid for d in chunk]:
                    raise RuntimeError(f"{files[-1]}: docids differ from the corpus; the corpus changed since this "
                                       f"shard was written. Delete {files[-1].parent} to re-encode.")
                bar.update(len(chunk))
                continue
            parts = []
            for start in range(0, len(chunk), progress_every):
                part = chunk[start:start + progress_every]
                parts.append(encode(part))
                bar.update(len(part))
            write(i, chunk, parts)


def write_docids(path: Path, chunk: list[Document]) -> None:
    write_atomic(path, "".join(d.docid + "\n" for d in chunk).encode("utf-8"))


def write_atomic(path: Path, data: bytes) -> None:
    """Write via a temporary name and rename, so ``path`` is never half-written."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_bytes(data)
    os.replace(tmp, path)


def shard_files(shards_dir: Path) -> list[tuple[Path, Path]]:
    """(vectors, docids) file pairs of the finished shards, in order."""
    files = []
    for i in itertools.count():
        vectors_path, docid_path = _shard_paths(shards_dir, i)
        if not (vectors_path.exists() and docid_path.exists()):
            return files
        files.append((vectors_path, docid_path))


def read_shards(shards_dir: Path | str) -> tuple[np.ndarray, list[str]]:
    vectors, docids = [], []
    for vectors_path, docid_path in shard_files(Path(shards_dir)):
        vectors.append(np.load(vectors_path))
        docids.extend(docid_path.read_text(encoding="utf-8").split("\n")[:-1])
    if not vectors:
        raise FileNotFoundError(f"no shards in {shards_dir}")
    return np.concatenate(vectors), docids


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


def build_dense_index(shards_dir: Path | str, index_dir: Path | str, kind: str = "flat", **kind_options) -> Path:
    """Write ``index`` (FAISS) and ``docid`` (one per line) into ``index_dir``, atomically."""
    index_dir = Path(index_dir)
    if (index_dir / "index").exists() and (index_dir / "docid").exists():
        log.info("dense index %s exists; reusing it", index_dir)
        return index_dir
    vectors, docids = read_shards(shards_dir)
    index = make_faiss_index(vectors.shape[1], kind, **kind_options)
    index.train(vectors)
    index.add(vectors)
    partial = index_dir.with_name(index_dir.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    partial.mkdir(parents=True)
    faiss.write_index(index, str(partial / "index"))
    (partial / "docid").write_text("".join(d + "\n" for d in docids), encoding="utf-8")
    (partial / "meta.json").write_text(json.dumps({"kind": kind, "dim": int(vectors.shape[1]),
                                                   "documents": len(docids), **kind_options}, indent=1))
    shutil.rmtree(index_dir, ignore_errors=True)
    partial.rename(index_dir)
    return index_dir
