"""Learned-sparse (impact) indexes: Anserini's JsonVectorCollection, indexed by Lucene.

Encoding writes, per shard of documents, atomically and resumably:

* ``collection/docs-NNNNN.jsonl``: ``{"id", "contents": "", "vector": {term: impact}}``,
  what Anserini indexes with ``-impact -pretokenized``;
* ``weights/weights-NNNNN.npz`` + ``.docid``: the float weights before quantisation
  (SciPy CSR), for exact scoring outside Lucene and for re-ranking.
"""

from __future__ import annotations

import io
import itertools
import json
import shutil
from pathlib import Path
from typing import Iterable

import numpy as np
import scipy.sparse as sp

from pyserini_ext.data.readers import Document
from pyserini_ext.encode.splade import as_term_dicts, quantize
from pyserini_ext.index.dense import encode_in_shards, write_atomic, write_docids
from pyserini_ext.index.lucene import run_anserini


def _shard(root: Path, i: int) -> tuple[Path, Path, Path]:
    return (root / "collection" / f"docs-{i:05d}.jsonl", root / "weights" / f"weights-{i:05d}.npz",
            root / "weights" / f"weights-{i:05d}.docid")


def encode_impact_corpus(docs: Iterable[Document], encoder, root: Path | str, shard_size: int = 2048,
                         quiet: bool = False, progress_every: int = 256) -> Path:
    """Encode ``docs`` with a SPLADE ``DocumentEncoder`` (it needs ``weights`` and ``options.quantization``)."""
    root = Path(root)
    (root / "collection").mkdir(parents=True, exist_ok=True)
    (root / "weights").mkdir(parents=True, exist_ok=True)

    def write(i: int, chunk: list[Document], parts: list[sp.csr_matrix]) -> None:
        jsonl, npz, docid_path = _shard(root, i)
        weights = sp.vstack(parts, format="csr")
        vectors = as_term_dicts(quantize(weights, encoder.options.quantization), encoder.net.terms)
        lines = "".join(json.dumps({"id": d.docid, "contents": "", "vector": v}, ensure_ascii=False) + "\n"
                        for d, v in zip(chunk, vectors))
        buffer = io.BytesIO()
        sp.save_npz(buffer, weights.astype(np.float32))
        write_atomic(npz, buffer.getvalue())
        write_atomic(jsonl, lines.encode("utf-8"))
        write_docids(docid_path, chunk)  # last: its presence marks the shard finished

    encode_in_shards(docs, lambda part: encoder.weights([d.text for d in part], [d.title for d in part]),
                     lambda i: _shard(root, i), write, shard_size, f"encoding {root.name}", None, quiet, progress_every)
    return root


def read_impact_weights(root: Path | str) -> tuple[sp.csr_matrix, list[str]]:
    """All float weights (CSR, one row per document) and the docids, in collection order."""
    root = Path(root)
    matrices, docids = [], []
    for i in itertools.count():
        _, npz, docid_path = _shard(root, i)
        if not npz.exists():
            break
        matrices.append(sp.load_npz(npz))
        docids.extend(docid_path.read_text(encoding="utf-8").split("\n")[:-1])
    if not matrices:
        raise FileNotFoundError(f"no encoded shards under {root}")
    return sp.vstack(matrices, format="csr"), docids


def build_impact_index(root: Path | str, index_dir: Path | str, threads: int = 1) -> Path:
    """Index ``root/collection`` with Anserini (``-impact -pretokenized``), atomically."""
    index_dir = Path(index_dir)
    if any(index_dir.glob("segments_*")):
        return index_dir
    partial = index_dir.with_name(index_dir.name + ".partial")
    shutil.rmtree(partial, ignore_errors=True)
    run_anserini("io.anserini.index.IndexCollection", [
        "-collection", "JsonVectorCollection",
        "-generator", "DefaultLuceneDocumentGenerator",
        "-input", str(Path(root) / "collection"),
        "-index", str(partial),
        "-threads", str(threads),
        "-impact", "-pretokenized",
    ])
    partial.rename(index_dir)
    return index_dir
