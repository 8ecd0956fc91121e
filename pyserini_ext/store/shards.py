"""One shard layout, the resumable sharded encoding loop, and the three kinds of shards.

A shard folder holds, for each shard ``i`` (``shard_size`` documents of the corpus, in order):

* the kind's payload files (:data:`DENSE`: ``shard-i.npy``; :data:`TOKENS`:
  ``shard-i.tokens.npy`` + ``shard-i.lengths.npy``; :data:`IMPACT`: ``shard-i.npz`` +
  ``collection/docs-i.jsonl``), each written atomically;
* ``shard-i.docid``: the documents' ids, one per line;
* ``shard-i.done``: written last, it marks the shard finished and records its files' sizes
  and SHA-256, and the SHA-256 of the documents it was encoded from.

and, once every shard is finished, ``manifest.json`` (:mod:`pyserini_ext.store.manifest`).
The folder is built in ``<folder>.partial`` (:func:`pyserini_ext.store.atomic.building`), so
an interrupted encoding resumes there, and a finished shard is reused only when its
documents (ids, titles, texts) are the corpus's. When a stale folder is rebuilt because
only the corpus changed, its shards whose documents did not change are linked into the new
one instead of being encoded again.
"""

from __future__ import annotations

import hashlib
import io
import itertools
import json
import logging
import os
import re
import shutil
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import numpy as np
from tqdm import tqdm

from pyserini_ext.data.readers import Document
from pyserini_ext.store.atomic import write_atomic
from pyserini_ext.store.manifest import ManifestError, canonical, ensure_built, read_manifest

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ShardLayout:
    kind: str  # the manifest's kind
    payload: tuple[str, ...]  # shard i's payload files, relative to the folder, formatted with i
    legacy: tuple[str, ...] = ()  # files whose presence marks an earlier release's folder of this kind

    def payload_names(self, i: int) -> list[str]:
        return [p.format(i=i) for p in self.payload]

    @staticmethod
    def docid_name(i: int) -> str:
        return f"shard-{i:05d}.docid"

    @staticmethod
    def done_name(i: int) -> str:
        return f"shard-{i:05d}.done"

    def names(self, i: int) -> list[str]:
        """Shard ``i``'s files, its docids last."""
        return [*self.payload_names(i), self.docid_name(i)]

    def is_legacy(self, folder: Path) -> bool:
        return folder.is_dir() and any((folder / name).exists() for name in self.legacy)


DENSE = ShardLayout("dense-shards", ("shard-{i:05d}.npy",), legacy=("shard-00000.docid", "complete"))
TOKENS = ShardLayout("token-shards", ("shard-{i:05d}.tokens.npy", "shard-{i:05d}.lengths.npy"),
                     legacy=("docid-00000.txt", "tokens-00000.npy", "complete"))
IMPACT = ShardLayout("impact-shards", ("shard-{i:05d}.npz", "collection/docs-{i:05d}.jsonl"),
                     legacy=("weights", "collection", "complete"))


def docs_sha256(docs: Iterable[Document]) -> str:
    """SHA-256 of documents' ids, titles and texts, in order."""
    h = hashlib.sha256()
    for d in docs:
        h.update(json.dumps([d.docid, d.title, d.text], ensure_ascii=False).encode("utf-8") + b"\n")
    return h.hexdigest()


def npy_bytes(array: np.ndarray) -> bytes:
    buffer = io.BytesIO()
    np.save(buffer, array)
    return buffer.getvalue()


_PLAIN_ID = re.compile(r"[^\s\ud800-\udfff]+")


def read_docids(path: Path) -> list[str]:
    return path.read_text(encoding="utf-8").split("\n")[:-1]


def _read_done(root: Path, layout: ShardLayout, i: int) -> dict | None:
    """Shard ``i``'s finished mark, if the shard is finished and its files are all there."""
    try:
        done = json.loads((root / layout.done_name(i)).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    files = done.get("files", {}) if isinstance(done, dict) else {}
    if set(files) != set(layout.names(i)):
        return None
    for name, entry in files.items():
        path = root / name
        if not path.is_file() or path.stat().st_size != entry.get("size"):
            return None
    return done


def _remove_shard(root: Path, layout: ShardLayout, i: int) -> bool:
    found = False
    for name in [layout.done_name(i), *layout.names(i)]:  # the mark first: never a mark without files
        if (root / name).exists():
            (root / name).unlink()
            found = True
    return found


def _link(src: Path, dst: Path) -> None:
    dst.parent.mkdir(parents=True, exist_ok=True)
    dst.unlink(missing_ok=True)
    try:
        os.link(src, dst)  # files are only ever replaced, never written in place: sharing is safe
    except OSError:
        shutil.copy2(src, dst)


def encode_shard(root: Path, layout: ShardLayout, i: int, chunk: list[Document], digest: str,
                 encode: Callable[[list[Document]], Any], write: Callable[[int, list[Document], list], dict[str, bytes]],
                 progress_every: int = 256, progress: Callable[[int], Any] | None = None) -> dict:
    """Encode shard ``i`` (``chunk``, whose :func:`docs_sha256` is ``digest``) into ``root``: ``encode``
    sees ``progress_every`` documents per call, ``write`` turns the parts into the payload files,
    written atomically with the docid file, then the finished mark (last). Returns the mark.
    The same bytes whichever process runs it: the parts depend only on the chunk."""
    parts = []
    for start in range(0, len(chunk), progress_every):
        part = chunk[start:start + progress_every]
        parts.append(encode(part))
        if progress is not None:
            progress(len(part))
    payload = write(i, chunk, parts)
    if sorted(payload) != sorted(layout.payload_names(i)):
        raise ValueError(f"shard writer returned {sorted(payload)}, expected {layout.payload_names(i)}")
    payload[layout.docid_name(i)] = "".join(d.docid + "\n" for d in chunk).encode("utf-8")
    files = {}
    for name, data in payload.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        write_atomic(root / name, data)
        files[name] = {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}
    done = {"count": len(chunk), "docs_sha256": digest, "files": files}
    write_atomic(root / layout.done_name(i), json.dumps(done, sort_keys=True))  # last: finished
    return done


def encode_in_shards(docs: Iterable[Document], encode: Callable[[list[Document]], Any],
                     write: Callable[[int, list[Document], list], dict[str, bytes]], root: Path,
                     layout: ShardLayout, shard_size: int, desc: str, total: int | None = None,
                     quiet: bool = False, progress_every: int = 256, seed: Path | None = None,
                     pool=None) -> dict:
    """The resumable, sharded encoding loop every kind shares, in folder ``root``.

    ``docs`` is read ``shard_size`` at a time. A shard already finished in ``root`` (or in
    ``seed``, a folder of the same layout, whose files are then linked in) is kept when its
    documents' SHA-256 is that of the chunk; otherwise ``encode`` sees ``progress_every``
    documents per call and ``write(i, chunk, parts)`` returns the payload files' bytes
    (``{name: bytes}`` for ``layout.payload_names(i)``), written here with the docid file and
    then the finished mark. Shards past the corpus's end are removed. Returns the manifest
    fields: ``count``, ``docids``, ``hashes`` and ``extra`` (``shards``, ``shard_size``,
    ``corpus_sha256``).

    ``pool`` (:class:`pyserini_ext.distributed.encoding.EncoderPool`) encodes the shards to be
    encoded in other processes instead: ``pool.submit(root, i, chunk, digest, progress_every,
    progress)`` hands one over (each runs :func:`encode_shard` into ``root``; ``progress(n)`` as
    shards come back), ``pool.finish()`` returns ``{i: finished mark}`` once all are written.
    Everything else is decided here.
    """
    root = Path(root)
    root.mkdir(parents=True, exist_ok=True)
    docs = iter(docs)
    hashes: dict[str, str] = {}
    marks: dict[int, dict] = {}  # shard -> its finished mark
    corpus = hashlib.sha256()
    count, first, last, reused, linked = 0, None, None, 0, 0
    with tqdm(total=total, desc=desc, unit="doc", disable=quiet) as bar:
        for i in itertools.count():
            chunk = list(itertools.islice(docs, shard_size))
            if not chunk:
                n_shards = i
                break
            for doc in chunk:  # the readers refuse these with file and line; documents built in Python too
                if not _PLAIN_ID.fullmatch(doc.docid) or not doc.docid.isprintable():
                    raise ValueError(f"docid {doc.docid!r} (document {count + chunk.index(doc) + 1}) is empty or holds "
                                     f"whitespace or a control character; docids are stored one per line")
            digest = docs_sha256(chunk)
            corpus.update(digest.encode("ascii"))
            count, first, last = count + len(chunk), first if first is not None else chunk[0].docid, chunk[-1].docid
            done = _read_done(root, layout, i)
            if done is not None and done.get("docs_sha256") != digest:
                log.warning("%s: shard %d was encoded from other documents than the corpus's; encoding it again",
                            root, i)
                _remove_shard(root, layout, i)
                done = None
            if done is None and seed is not None:
                old = _read_done(seed, layout, i)
                if old is not None and old.get("docs_sha256") == digest:
                    for name in [*layout.names(i), layout.done_name(i)]:
                        _link(seed / name, root / name)
                    done, linked = old, linked + 1
            elif done is not None:
                reused += 1
            if done is None and pool is not None:
                pool.submit(root, i, chunk, digest, progress_every, bar.update)  # encoded and written elsewhere; its mark comes back below
                continue
            if done is None:
                done = encode_shard(root, layout, i, chunk, digest, encode, write, progress_every, bar.update)
            else:
                bar.update(len(chunk))
            marks[i] = done
        if pool is not None:
            marks.update(pool.finish())
    for i in sorted(marks):
        hashes.update({name: entry["sha256"] for name, entry in marks[i]["files"].items()})
    stray = n_shards
    while _remove_shard(root, layout, stray):  # an earlier, longer corpus's shards
        log.warning("%s: removed shard %d, past the end of the corpus", root, stray)
        stray += 1
    if count == 0:
        raise ValueError(f"{desc}: the corpus has no documents")
    if reused or linked:
        log.info("%s: %d shards kept from an interrupted run, %d from the previous build, %d encoded",
                 root, reused, linked, n_shards - reused - linked)
    return {"count": count, "docids": (first, last), "hashes": hashes,
            "extra": {"shards": n_shards, "shard_size": shard_size, "corpus_sha256": corpus.hexdigest()}}


def _seed(target: Path, layout: ShardLayout, built_from: dict | None) -> Path | None:
    """The old ``target`` when it is a shard folder of ``layout`` whose ``built_from`` differs from
    ``built_from`` at most in ``corpus``: its shards of unchanged documents can be reused."""
    try:
        manifest = read_manifest(target)
    except ManifestError:
        return None
    if manifest is None or manifest.get("kind") != layout.kind:
        return None
    old, new = dict(manifest.get("built_from") or {}), dict(canonical(built_from or {}))
    old.pop("corpus", None)
    new.pop("corpus", None)
    return target if old == new else None


def build_shards(docs: Iterable[Document], encode: Callable[[list[Document]], Any],
                 write: Callable[[int, list[Document], list], dict[str, bytes]], root: Path | str,
                 layout: ShardLayout, shard_size: int, desc: str, what: str, built_from: dict | None,
                 describe: Callable[[Path], dict], total: int | None = None, quiet: bool = False,
                 progress_every: int = 256, pool=None) -> Path:
    """A complete shard folder at ``root`` for ``built_from`` (:func:`ensure_built` around
    :func:`encode_in_shards`); ``describe(folder)`` adds ``dtype`` and ``dims``."""
    root = Path(root)

    def build(partial: Path) -> dict:
        fields = encode_in_shards(docs, encode, write, partial, layout, shard_size, desc, total, quiet,
                                  progress_every, seed=_seed(root, layout, built_from), pool=pool)
        described = describe(partial)
        extra = {**fields.pop("extra"), **described.pop("extra", {})}
        return {"kind": layout.kind, **fields, **described, "extra": extra}

    return ensure_built(root, built_from, build, what, resume=True, legacy=layout.is_legacy)


# --- the three kinds -----------------------------------------------------------------------
#
# Each kind's ``encode(part)`` and ``write(i, chunk, parts)`` come from one codec function of the
# document encoder, so a process that encodes shards for another (``pyserini_ext.distributed``)
# writes the same bytes: ``SHARD_CODECS[family.store](encoder)``.

def dense_codec(encoder):
    """Dense vectors (FP32) by a Pyserini ``DocumentEncoder``: shard ``i`` is ``shard-i.npy``."""
    def encode(part: list[Document]) -> np.ndarray:
        return np.asarray(encoder.encode([d.text for d in part], titles=[d.title for d in part]), dtype=np.float32)

    def write(i: int, chunk: list[Document], parts: list[np.ndarray]) -> dict[str, bytes]:
        return {f"shard-{i:05d}.npy": npy_bytes(np.concatenate(parts).astype(np.float32, copy=False))}

    return encode, write


def token_codec(encoder):
    """Token vectors (FP16) by a multi-vector document encoder: per shard the vectors document
    after document, and each document's count."""
    def encode(part: list[Document]):
        return encoder.encode([d.text for d in part], titles=[d.title for d in part])

    def write(i: int, chunk: list[Document], parts: list[list[np.ndarray]]) -> dict[str, bytes]:
        vectors = [v for part in parts for v in part]
        return {f"shard-{i:05d}.tokens.npy": npy_bytes(np.concatenate(vectors).astype(np.float16)),
                f"shard-{i:05d}.lengths.npy": npy_bytes(np.array([len(v) for v in vectors], dtype=np.int32))}

    return encode, write


def impact_codec(encoder):
    """SPLADE weights: the float weights (SciPy CSR) and Anserini's JsonVectorCollection of the
    quantised impacts. The encoder needs ``weights``, ``options.quantization`` and ``net.terms``."""
    import scipy.sparse as sp

    from pyserini_ext.encode.splade import as_term_dicts, quantize

    def encode(part: list[Document]):
        return encoder.weights([d.text for d in part], [d.title for d in part])

    def write(i: int, chunk: list[Document], parts: list) -> dict[str, bytes]:
        weights = sp.vstack(parts, format="csr")
        vectors = as_term_dicts(quantize(weights, encoder.options.quantization), encoder.net.terms)
        lines = "".join(json.dumps({"id": d.docid, "contents": "", "vector": v}, ensure_ascii=False) + "\n"
                        for d, v in zip(chunk, vectors))
        buffer = io.BytesIO()
        sp.save_npz(buffer, weights.astype(np.float32))
        return {f"shard-{i:05d}.npz": buffer.getvalue(), f"collection/docs-{i:05d}.jsonl": lines.encode("utf-8")}

    return encode, write


SHARD_CODECS = {"vectors": (DENSE, dense_codec), "tokens": (TOKENS, token_codec), "impacts": (IMPACT, impact_codec)}


def _describe_dense(folder: Path) -> dict:
    return {"dtype": "float32", "dims": list(np.load(folder / "shard-00000.npy", mmap_mode="r").shape[1:])}


def _describe_tokens(folder: Path) -> dict:
    return {"dtype": "float16", "dims": list(np.load(folder / "shard-00000.tokens.npy", mmap_mode="r").shape[1:])}


def _describe_impacts(quantization: float):
    def describe(folder: Path) -> dict:
        import scipy.sparse as sp

        return {"dtype": "float32", "dims": [int(sp.load_npz(folder / "shard-00000.npz").shape[1])],
                "extra": {"quantization": float(quantization)}}

    return describe


def _codec(make, encoder, pool):
    """The kind's (encode, write) in this process, or none when ``pool`` encodes elsewhere."""
    return (None, None) if pool is not None else make(encoder)


def encode_corpus(docs: Iterable[Document], encoder, shards_dir: Path | str, shard_size: int = 2048,
                  total: int | None = None, quiet: bool = False, progress_every: int = 256,
                  built_from: dict | None = None, pool=None) -> Path:
    """Dense vectors (FP32) of ``docs``, by a Pyserini ``DocumentEncoder``, in shards (:data:`DENSE`).
    With ``pool`` (see :func:`encode_in_shards`) the encoder lives in the pool's processes and
    ``encoder`` may be None."""
    shards_dir = Path(shards_dir)
    encode, write = _codec(dense_codec, encoder, pool)
    return build_shards(docs, encode, write, shards_dir, DENSE, shard_size, f"encoding {shards_dir.parent.name}",
                        "dense shards", built_from, _describe_dense, total, quiet, progress_every, pool)


def encode_token_corpus(docs: Iterable[Document], encoder, root: Path | str, shard_size: int = 1024,
                        quiet: bool = False, progress_every: int = 256, built_from: dict | None = None,
                        pool=None, total: int | None = None) -> Path:
    """Every token vector (FP16) of ``docs``, by a multi-vector document encoder, in shards
    (:data:`TOKENS`): per shard the vectors document after document, and each document's count."""
    root = Path(root)
    encode, write = _codec(token_codec, encoder, pool)
    return build_shards(docs, encode, write, root, TOKENS, shard_size, f"encoding tokens {root.parent.name}",
                        "token shards", built_from, _describe_tokens, total, quiet, progress_every, pool)


def encode_impact_corpus(docs: Iterable[Document], encoder, root: Path | str, shard_size: int = 2048,
                         quiet: bool = False, progress_every: int = 256, built_from: dict | None = None,
                         pool=None, quantization: float | None = None, total: int | None = None) -> Path:
    """SPLADE weights of ``docs`` in shards (:data:`IMPACT`): the float weights (SciPy CSR, for
    exact scoring and re-ranking) and Anserini's JsonVectorCollection of the quantised impacts
    (``collection/docs-i.jsonl``: ``{"id", "contents": "", "vector": {term: impact}}``, what
    :func:`pyserini_ext.index.impact.build_impact_index` indexes). The encoder needs
    ``weights`` and ``options.quantization``; with ``pool``, give ``quantization`` instead."""
    root = Path(root)
    encode, write = _codec(impact_codec, encoder, pool)
    quantization = quantization if quantization is not None else encoder.options.quantization
    return build_shards(docs, encode, write, root, IMPACT, shard_size, f"encoding {root.name}", "impact shards",
                        built_from, _describe_impacts(quantization), total, quiet, progress_every, pool)
