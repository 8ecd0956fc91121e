"""Lucene (BM25) indexes built by Anserini from any streamed corpus.

Documents are written as a Pyserini JsonCollection (``{"id", "contents"}``) and
indexed by Anserini's ``IndexCollection``, run in a child JVM with the Java that
:mod:`pyserini_ext.jvm` found. The child process keeps Anserini's own logging and
exit code, and a crash there cannot take the Python process with it.

The index is built in ``<index>.partial`` and renamed when Anserini succeeds, so a
folder at ``index_dir`` is always a complete index (an interrupted build restarts).
"""

from __future__ import annotations

import glob
import importlib.resources
import json
import logging
import shutil
import subprocess
from pathlib import Path
from typing import Callable, Iterable

from tqdm import tqdm

from pyserini_ext import jvm
from pyserini_ext.data.readers import Document

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


def run_anserini(main_class: str, args: list[str]) -> None:
    runtime = jvm.configure()
    cmd = [str(runtime.home / "bin" / "java"), "-cp", str(anserini_jar()), main_class, *args]
    if runtime.has_vector_module:
        cmd.insert(1, f"--add-modules={jvm.VECTOR_MODULE}")
    log.info("running %s", " ".join(cmd))
    proc = subprocess.run(cmd, capture_output=True, text=True)
    if proc.returncode != 0:
        raise RuntimeError(f"Anserini {main_class} failed (exit {proc.returncode}):\n{proc.stderr[-4000:]}")


def build_lucene_index(
    docs: Iterable[Document],
    index_dir: Path | str,
    contents: Callable[[Document], str] = flat_contents,
    threads: int = 1,
    quiet: bool = False,
) -> Path:
    """Index ``docs`` for BM25 with Anserini's defaults (Porter stemming, stopwords),
    storing positions, document vectors and raw documents as Pyserini's prebuilt indexes do."""
    index_dir = Path(index_dir)
    if any(index_dir.glob("segments_*")):
        log.info("Lucene index %s exists; reusing it", index_dir)
        return index_dir
    partial = index_dir.with_name(index_dir.name + ".partial")
    collection = index_dir.with_name(index_dir.name + ".collection")
    for stale in (partial, collection):
        shutil.rmtree(stale, ignore_errors=True)
    collection.mkdir(parents=True)
    with open(collection / "docs.jsonl", "w", encoding="utf-8") as f:
        for doc in tqdm(docs, desc=f"writing {collection.name}", unit="doc", disable=quiet):
            f.write(json.dumps({"id": doc.docid, "contents": contents(doc)}, ensure_ascii=False) + "\n")
    run_anserini("io.anserini.index.IndexCollection", [
        "-collection", "JsonCollection",
        "-generator", "DefaultLuceneDocumentGenerator",
        "-input", str(collection),
        "-index", str(partial),
        "-threads", str(threads),
        "-storePositions", "-storeDocvectors", "-storeRaw",
    ])
    shutil.rmtree(collection)
    partial.rename(index_dir)
    return index_dir
