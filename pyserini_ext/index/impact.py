"""Learned-sparse (impact) indexes: Lucene, by Anserini, over the JsonVectorCollection of
quantised impacts that :func:`pyserini_ext.store.encode_impact_corpus` wrote in its shard
folder (``collection/docs-i.jsonl``, ``{"id", "contents": "", "vector": {term: impact}}``,
indexed with ``-impact -pretokenized``). Like every index folder, its manifest records each
file's SHA-256, checked before reuse (:func:`pyserini_ext.store.ensure_built`)."""

from __future__ import annotations

from pathlib import Path

from pyserini_ext.index.lucene import run_anserini
from pyserini_ext.store import ensure_built, require_manifest
from pyserini_ext.store.readers import read_impact_weights  # noqa: F401  (old name)
from pyserini_ext.store.shards import IMPACT, encode_impact_corpus  # noqa: F401  (old name)


def build_impact_index(root: Path | str, index_dir: Path | str, threads: int = 1,
                       built_from: dict | None = None) -> Path:
    """Index the impact shard folder ``root`` with Anserini in ``index_dir``: reused when
    current (same ``built_from``, same shards), else built and swapped in whole."""
    root = Path(root)
    shards = require_manifest(root, IMPACT.kind)
    identity = {**(built_from or {}), "source": shards["digest"]}

    def build(partial: Path) -> dict:
        run_anserini("io.anserini.index.IndexCollection", [
            "-collection", "JsonVectorCollection",
            "-generator", "DefaultLuceneDocumentGenerator",
            "-input", str(root / "collection"),
            "-index", str(partial),
            "-threads", str(threads),
            "-impact", "-pretokenized",
        ])
        return {"kind": "lucene-impact", "count": shards["count"],
                "docids": (shards["docids"]["first"], shards["docids"]["last"])}

    return ensure_built(index_dir, identity, build, "impact index",
                        legacy=lambda folder: any(folder.glob("segments_*")))
