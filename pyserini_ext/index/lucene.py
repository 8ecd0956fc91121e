"""Lucene (BM25) indexes built by Anserini from any streamed corpus.

Documents are written as a Pyserini JsonCollection (``{"id", "contents"}``) and
indexed by Anserini's ``IndexCollection``, run in a child JVM with the Java that
:mod:`pyserini_ext.jvm` found. The child process keeps Anserini's own logging and
exit code, and a crash there cannot take the Python process with it.

The index is built in ``<index>.partial`` and renamed over ``index_dir`` when Anserini
succeeds (:func:`pyserini_ext.store.building`), so a folder at ``index_dir`` is always a
complete index (an interrupted build restarts). Its ``manifest.json`` records each file's size
and SHA-256, the documents (count, first and last docid) and ``built_from``: an index is reused
only for the same ``built_from``, and only when its files still hash as recorded
(:func:`pyserini_ext.store.ensure_built`).
"""

from __future__ import annotations

import ctypes
import glob
import importlib.resources
import json
import logging
import signal
import subprocess
import tempfile
from pathlib import Path
from typing import Callable, Iterable

from tqdm import tqdm

from pyserini_ext import jvm
from pyserini_ext.data.readers import Document
from pyserini_ext.store import ensure_built

log = logging.getLogger(__name__)


def flat_contents(doc: Document) -> str:
    """Pyserini's BEIR "flat" document: title and text joined by a newline (Anserini's
    ``BeirFlatCollection``); a document without a title is its text."""
    return f"{doc.title}\n{doc.text}" if doc.title else doc.text


def anserini_jar() -> Path:
    jars = glob.glob(str(importlib.resources.files("pyserini.resources.jars") / "anserini-*-fatjar.jar"))
    if not jars:
        raise FileNotFoundError("Pyserini's Anserini fatjar is missing from pyserini/resources/jars")
    return Path(max(jars))


def _die_with_parent() -> None:
    """In the child JVM, before it starts: ask Linux to kill it when this process dies, so a
    killed index build leaves no orphan JVM writing into a folder nobody will finish."""
    try:
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    except (OSError, AttributeError):  # not Linux: the parent's kill leaves the JVM to finish alone
        pass


def run_anserini(main_class: str, args: list[str]) -> None:
    runtime = jvm.configure()
    cmd = [str(runtime.home / "bin" / "java"), "-cp", str(anserini_jar()), main_class, *args]
    if runtime.has_vector_module:
        cmd.insert(1, f"--add-modules={jvm.VECTOR_MODULE}")
    log.info("running %s", " ".join(cmd))
    proc = subprocess.run(cmd, capture_output=True, text=True, preexec_fn=_die_with_parent)
    if proc.returncode != 0:
        raise RuntimeError(f"Anserini {main_class} failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")


def build_lucene_index(
    docs: Iterable[Document],
    index_dir: Path | str,
    contents: Callable[[Document], str] = flat_contents,
    threads: int = 1,
    quiet: bool = False,
    built_from: dict | None = None,
    total: int | None = None,
) -> Path:
    """Index ``docs`` for BM25 with Anserini's defaults (Porter stemming, stopwords),
    storing positions, document vectors and raw documents as Pyserini's prebuilt indexes do.
    Reused when ``index_dir`` is current for ``built_from`` (then ``docs`` is not read)."""
    index_dir = Path(index_dir)
    identity = {**(built_from or {}), "builder": {"contents": f"{contents.__module__}.{contents.__qualname__}"}}

    def build(partial: Path) -> dict:
        count, first, last = 0, None, None
        # Inside the partial, so a killed build's collection goes with its partial (Lucene ignores it).
        with tempfile.TemporaryDirectory(prefix=".collection-", dir=partial) as collection:
            with open(Path(collection) / "docs.jsonl", "w", encoding="utf-8") as f:
                for doc in tqdm(docs, desc=f"writing {index_dir.name} collection", unit="doc", total=total,
                                disable=quiet):
                    f.write(json.dumps({"id": doc.docid, "contents": contents(doc)}, ensure_ascii=False) + "\n")
                    count, first, last = count + 1, doc.docid if first is None else first, doc.docid
            if count == 0:
                raise ValueError(f"{index_dir}: the corpus has no documents")
            run_anserini("io.anserini.index.IndexCollection", [
                "-collection", "JsonCollection",
                "-generator", "DefaultLuceneDocumentGenerator",
                "-input", collection,
                "-index", str(partial),
                "-threads", str(threads),
                "-storePositions", "-storeDocvectors", "-storeRaw",
            ])
        return {"kind": "lucene", "count": count, "docids": (first, last)}

    index_dir.parent.mkdir(parents=True, exist_ok=True)
    return ensure_built(index_dir, identity, build, "Lucene index",
                        legacy=lambda folder: any(folder.glob("segments_*")))
