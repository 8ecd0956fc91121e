"""Datasets through the ``ir_datasets`` library: ``irds:<id>``, e.g. ``irds:beir/scifact/test``.

Documents, queries and qrels come from ``ir_datasets.load(id)`` (``docs_iter``,
``queries_iter``, ``qrels_iter``); ir_datasets downloads and caches them itself, under
``$IR_DATASETS_HOME`` (default ``~/.ir_datasets``), with its own checksums.

Splits: an id names one topic set, so the dataset has one split, named after the id's last
part (``irds:beir/scifact/test`` -> ``test``, ``irds:msmarco-passage/trec-dl-2019/judged`` ->
``judged``), or ``all`` for an id without ``/`` (``irds:cacm``); ``all`` is accepted as a
second name for that split either way. An id without queries and qrels (e.g.
``irds:beir/nfcorpus``, whose qrels are in ``beir/nfcorpus/test`` and the like) has no split;
its documents can still be indexed.

Documents: ``doc_id``; ``title`` when the document type has one; ``text``, or the type's
``default_text()`` when it has no ``text`` field. Queries: ``text``, else ``default_text()``.

``ir_datasets`` is an optional dependency, imported only when an ``irds:`` id is resolved.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from pyserini_ext.data.dataset import Dataset, safe_component
from pyserini_ext.data.readers import Document, Qrels, Topics
from pyserini_ext.data.sources import DatasetNotFoundError

PREFIX = "irds:"


def _ir_datasets():
    try:
        import ir_datasets
    except ImportError:
        raise DatasetNotFoundError(
            "irds: datasets need the ir_datasets package: pip install 'ir_datasets>=0.6,<0.7'") from None
    return ir_datasets


@dataclass(frozen=True, repr=False)
class IrdsDataset(Dataset):
    irds_id: str = ""

    @classmethod
    def open(cls, irds_id: str) -> "IrdsDataset":
        if not irds_id:
            raise DatasetNotFoundError("irds: needs an ir_datasets id after the colon, e.g. irds:beir/scifact/test")
        ir_datasets = _ir_datasets()
        try:
            ir_datasets.load(irds_id)
        except KeyError:
            raise DatasetNotFoundError(
                f"ir_datasets has no dataset {irds_id!r} (see https://ir-datasets.com for the ids)") from None
        return cls(name=PREFIX + irds_id, corpus=None, layout="irds", irds_id=irds_id,
                   description=f"ir_datasets {irds_id}")

    def _load(self):
        return _ir_datasets().load(self.irds_id)

    # -- splits ----------------------------------------------------------------------------

    @property
    def split_name(self) -> str:
        return self.irds_id.rsplit("/", 1)[-1] if "/" in self.irds_id else "all"

    def split_names(self) -> list[str]:
        ds = self._load()
        return [self.split_name] if ds.has_queries() and ds.has_qrels() else []

    def _check_split(self, split: str) -> None:
        names = self.split_names()
        if split not in names and not (names and split == "all"):
            raise KeyError(f"dataset {self.name!r} has no split {split!r}; it has: {', '.join(names) or 'none'}"
                           + ("" if names else " (this ir_datasets id has no queries and qrels; "
                                                "use an id that names a topic set, e.g. .../test)"))

    def split_relevance_level(self, split: str) -> int:
        self._check_split(split)
        return self.relevance_level

    # -- reading ---------------------------------------------------------------------------

    def docs(self) -> Iterator[Document]:
        ds = self._load()
        if not ds.has_docs():
            raise DatasetNotFoundError(f"ir_datasets {self.irds_id!r} has no documents")
        for doc in ds.docs_iter():
            title = getattr(doc, "title", "")
            text = doc.text if hasattr(doc, "text") else doc.default_text()
            yield Document(str(doc.doc_id), title if isinstance(title, str) else "", text)

    def topics(self, split: str) -> Topics:
        self._check_split(split)
        return {str(q.query_id): (q.text if hasattr(q, "text") else q.default_text())
                for q in self._load().queries_iter()}

    def qrels(self, split: str) -> Qrels:
        self._check_split(split)
        qrels: Qrels = {}
        for q in self._load().qrels_iter():
            qrels.setdefault(str(q.query_id), {})[str(q.doc_id)] = int(q.relevance)
        return qrels

    def qrels_path(self, split: str) -> Path:
        """The qrels written as a TREC qrels file under ``$IR_DATASETS_HOME/pyserini_ext/``
        (rewritten on every call, so it always matches ``qrels_iter``)."""
        qrels = self.qrels(split)
        folder = Path(_ir_datasets().util.home_path()) / "pyserini_ext" / safe_component(self.irds_id.replace("/", "-"))
        folder.mkdir(parents=True, exist_ok=True)
        target = folder / f"qrels.{safe_component(split)}.txt"
        lines = "".join(f"{qid} 0 {docid} {grade}\n" for qid, docs in qrels.items() for docid, grade in docs.items())
        with tempfile.NamedTemporaryFile("w", dir=folder, delete=False, suffix=".tmp", encoding="utf-8") as f:
            f.write(lines)
        os.replace(f.name, target)
        return target

    def corpus_path(self) -> Path:
        ds = self._load()
        try:
            return Path(ds.docs_path())
        except (AttributeError, NotImplementedError):
            raise DatasetNotFoundError(f"ir_datasets {self.irds_id!r} has no single corpus file; read docs()") from None

    # -- identity --------------------------------------------------------------------------

    def where(self) -> str:
        home = os.environ.get("IR_DATASETS_HOME") or "~/.ir_datasets"
        return f"ir_datasets {self.irds_id} (cache {home})"

    def describe(self) -> str:
        return f"{self.name}  layout=irds  splits={','.join(self.split_names()) or '-'}  where={self.where()}"

    def fingerprint(self) -> str:
        """The ir_datasets id and version: ir_datasets pins each id's files by checksum."""
        version = _ir_datasets().__version__
        return hashlib.sha256(json.dumps(["irds", self.irds_id, version]).encode("utf-8")).hexdigest()
