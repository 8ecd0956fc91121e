"""The store layer: every folder this package builds (shards of encoded documents, and the
FAISS and Lucene indexes built from them) is written the same way and reused by the same rule.

Writing (:mod:`pyserini_ext.store.atomic`)
    ``write_atomic(path, data: bytes | str) -> None``
        one file, via a temporary sibling and a rename: never half-written.
    ``open_atomic(path, mode="w" | "wb", encoding="utf-8")`` (context manager)
        the same for a file written as a stream: yields the open temporary file; renamed over
        ``path`` when the block succeeds, deleted when it fails.
    ``building(target, *, resume=False, stamp=None, replace=True)`` (context manager)
        yields ``<target>.partial``; renamed over ``target`` only when the block succeeds, and
        only then is the old ``target`` deleted. A failed block leaves ``target`` as it was and
        removes its partial (``resume=True`` keeps it, for a build that continues where it
        stopped, when the next call's ``stamp`` is the same). A ``.partial`` that this helper
        did not make is refused, never deleted.

Deciding (:mod:`pyserini_ext.store.manifest`)
    Each built folder ends with ``manifest.json`` (written last): ``kind``, ``count``,
    ``dtype``/``dims``, ``docids`` (first, last), ``files`` (size of each; SHA-256 too for
    shard folders), ``built_from`` (the caller's dict) and a ``digest`` of all that.

    ``write_manifest(folder, *, kind, count, built_from=None, dtype=None, dims=None, docids=None,
    hashes=False, extra=None) -> dict``; ``read_manifest(folder) -> dict | None``;
    ``manifest_digest(folder) -> str``; ``require_manifest(folder, kind=None) -> dict``
    (checked: present, of ``kind``, every file there with its size; else ``ManifestError``).

    ``check_built_from(folder, built_from) -> "missing" | "current" | "stale"``
        current: a manifest whose ``built_from`` equals ``built_from`` (compared as JSON) and
        whose files are all there with their sizes. stale: anything else with content
        (other inputs, a missing or resized file, no manifest: an earlier release's folder
        or an unfinished one). ``stale_reasons(folder, built_from)`` says why, in words.
    ``ensure_built(folder, built_from, build_fn, what, *, resume=False, legacy=None) -> Path``
        the one reuse-or-rebuild decision: reuse a current folder untouched; otherwise
        ``build_fn(partial) -> manifest fields`` builds in ``<folder>.partial``, the manifest
        is written, the partial replaces ``folder``. A stale rebuild logs a WARNING naming
        the folder and what changed (``corpus fingerprint changed ("a..." -> "b...")``).

``built_from`` (a JSON dict, or None for ``{}``) is the identity of a build's inputs, what
must be equal for a folder to be reused. Callers pass::

    {"corpus": <fingerprint of the corpus's content>, "encoder": <card identity>,  # shard folders
     "params": {...}, "version": pyserini_ext.__version__}

Builders add their own keys, so these two are reserved: ``source`` (a derived index's
source shard folder's manifest digest, so re-encoded shards force a rebuilt index) and
``builder`` (the builder's own parameters: index kind, HNSW M, IVF nlist, ...).
A rebuilt shard folder whose ``built_from`` differs only in ``corpus`` reuses (links) the old
shards whose documents did not change, so appending a document re-encodes one shard.

Shards (:mod:`pyserini_ext.store.shards`): ``encode_corpus`` (dense), ``encode_token_corpus``
(multi-vector), ``encode_impact_corpus`` (SPLADE), each ``(docs, encoder, folder, shard_size=...,
quiet=False, progress_every=256, built_from=None) -> Path``, resumable, on
``encode_in_shards``. Readers (:mod:`pyserini_ext.store.readers`): ``VectorStore(folder)``,
``ImpactStore(folder, quantization=None)``, ``TokenStore(folder)``, ``read_shards(folder)``,
``read_impact_weights(folder)``: each checks the manifest (kind, files, count) first.
"""

from pyserini_ext.store.atomic import building, open_atomic, write_atomic
from pyserini_ext.store.manifest import (
    MANIFEST,
    ManifestError,
    built_from_changes,
    check_built_from,
    ensure_built,
    manifest_digest,
    read_manifest,
    require_manifest,
    stale_reasons,
    write_manifest,
)
from pyserini_ext.store.readers import (
    ImpactStore,
    TokenStore,
    VectorStore,
    read_impact_weights,
    read_shards,
    shard_files,
)
from pyserini_ext.store.shards import (
    DENSE,
    IMPACT,
    TOKENS,
    ShardLayout,
    docs_sha256,
    encode_corpus,
    encode_impact_corpus,
    encode_in_shards,
    encode_token_corpus,
)

__all__ = [
    "DENSE", "IMPACT", "MANIFEST", "TOKENS", "ImpactStore", "ManifestError", "ShardLayout", "TokenStore",
    "VectorStore", "building", "built_from_changes", "check_built_from", "docs_sha256", "encode_corpus",
    "encode_impact_corpus", "encode_in_shards", "encode_token_corpus", "ensure_built", "manifest_digest",
    "open_atomic", "read_impact_weights", "read_manifest", "read_shards", "require_manifest", "shard_files",
    "stale_reasons", "write_atomic", "write_manifest",
]
