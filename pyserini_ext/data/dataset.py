"""A dataset: a corpus plus the topic/qrel sets (splits) it is evaluated on."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator, Mapping, Union

from pyserini_ext.data.readers import Document, Qrels, Topics, read_corpus, read_qrels, read_topics
from pyserini_ext.data.sources import DatasetNotFoundError, LocalFile, LocalPath, md5sum

FileSource = Union[LocalFile, LocalPath]


@dataclass(frozen=True)
class Split:
    """One topic set and its judgements.

    ``judged_only``: keep only the topics that have judgements in ``qrels``. BEIR keeps every
    split's queries in one ``queries.jsonl``, while Pyserini's BEIR topic files hold only the
    judged test queries; restricting a split to its judged qids gives the same topics as
    Pyserini's file (and no search time spent on queries that evaluation ignores).
    ``relevance_level``: the minimum grade binary metrics count as relevant (None: the dataset's).

    Unpacks like the ``(topics, qrels)`` pair older code used.
    """

    topics: FileSource
    qrels: FileSource
    judged_only: bool = False
    relevance_level: int | None = None

    def __iter__(self):
        return iter((self.topics, self.qrels))

    def __getitem__(self, index: int) -> FileSource:
        return (self.topics, self.qrels)[index]

    def __len__(self) -> int:
        return 2


_UNSAFE = re.compile(r"[^A-Za-z0-9._-]+")


def safe_component(text: str) -> str:
    """``text`` as one filesystem-safe path component: only ``[A-Za-z0-9._-]``, starting with a
    letter or digit, never containing ``..`` (so never ``.`` or ``..``)."""
    out = re.sub(r"\.{2,}", ".", _UNSAFE.sub("-", text)).lstrip("._-").rstrip("-")
    return out or "dataset"


def short_hash(text: str, length: int = 8) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:length]


_VERIFIED: dict[tuple[str, int, int], str] = {}  # (path, size, mtime_ns) -> MD5 checked this process


@dataclass(frozen=True)
class Dataset:
    """A corpus plus the topic/qrel sets it is evaluated on (``splits``: name -> :class:`Split`,
    or a ``(topics, qrels)`` pair, taken as a Split with the file's topics as they are).

    ``layout``: the corpus format: ``beir`` (corpus.jsonl with _id/title/text), ``jsonl``
    (Pyserini JsonCollection: id/contents; a file or a folder) or ``tsv`` (docid<TAB>text).
    ``origin``: the folder or card a dataset was read from (None for registered datasets);
    it makes the slug unique. ``topic_sets``: Pyserini topic-set names that mean one split
    (e.g. ``dl19-passage`` -> ``dl19``). ``relevance_level``: binary metrics' minimum grade
    (a split may override it). ``remove_query``: the collection's convention of dropping a hit
    whose docid equals the qid (Pyserini runs every BEIR dataset with ``--remove-query``).
    """

    name: str
    corpus: FileSource | None
    layout: str
    splits: Mapping[str, Split] = field(default_factory=dict)
    description: str = ""
    relevance_level: int = 1
    remove_query: bool = False
    topic_sets: Mapping[str, str] = field(default_factory=dict)
    origin: str | None = None

    def __post_init__(self):
        splits = {name: s if isinstance(s, Split) else Split(*s) for name, s in self.splits.items()}
        object.__setattr__(self, "splits", splits)
        object.__setattr__(self, "topic_sets", dict(self.topic_sets))
        for alias, split in self.topic_sets.items():
            if split not in splits:
                raise ValueError(f"dataset {self.name!r}: topic set {alias!r} names split {split!r}, "
                                 f"which it does not have ({', '.join(splits) or 'none'})")

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.name!r}, layout={self.layout!r}, splits={self.split_names()!r})"

    # -- reading ---------------------------------------------------------------------------

    def corpus_path(self) -> Path:
        if self.corpus is None:
            raise DatasetNotFoundError(f"dataset {self.name!r} has no corpus file")
        return self.corpus.resolve()

    def docs(self) -> Iterator[Document]:
        return read_corpus(self.corpus_path(), self.layout)

    def topics(self, split: str) -> Topics:
        s = self._split(split)
        topics = read_topics(s.topics.resolve())
        if s.judged_only:
            judged = read_qrels(s.qrels.resolve())
            topics = {qid: text for qid, text in topics.items() if qid in judged}
        return topics

    def qrels(self, split: str) -> Qrels:
        return read_qrels(self.qrels_path(split))

    def qrels_path(self, split: str) -> Path:
        return self._split(split).qrels.resolve()

    def split_relevance_level(self, split: str) -> int:
        level = self._split(split).relevance_level
        return self.relevance_level if level is None else level

    def _split(self, split: str) -> Split:
        try:
            return self.splits[split]
        except KeyError:
            raise KeyError(f"dataset {self.name!r} has no split {split!r}; it has: "
                           f"{', '.join(self.splits) or 'none'}") from None

    # -- identity --------------------------------------------------------------------------

    def split_names(self) -> list[str]:
        return list(self.splits)

    @property
    def slug(self) -> str:
        """A single filesystem-safe path component for work folders (e.g. ``beir-scifact``);
        a dataset read from a folder or card adds a hash of its absolute path."""
        base = Path(self.name).name if Path(self.name).is_absolute() else self.name.replace("/", "-")
        if self.origin:
            return f"{safe_component(base)}-{short_hash(self.origin)}"
        return safe_component(base)

    def where(self) -> str:
        if self.origin:
            return self.origin
        return self.corpus.describe() if self.corpus is not None else "-"

    def describe(self) -> str:
        """One line: name, layout, splits, where (for ``datasets list``)."""
        splits = ",".join(self.splits) or "-"
        text = f"{self.name}  layout={self.layout}  splits={splits}  where={self.where()}"
        return f"{text}  ({self.description})" if self.description else text

    def fingerprint(self) -> str:
        """Identifies the corpus content cheaply (sha256 hex).

        A corpus file with a declared MD5 is identified by that MD5, after checking it once per
        process and file state (a mismatch is an error); any other file by its resolved path,
        size and mtime_ns (files of a folder corpus each), so appending a document changes it.
        """
        path = self.corpus_path()
        files = sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path]
        declared = getattr(self.corpus, "md5", None) if not path.is_dir() else None
        parts: list = [self.layout]
        for file in files:
            stat = file.stat()
            key = (str(file.resolve()), stat.st_size, stat.st_mtime_ns)
            if declared:
                if _VERIFIED.get(key) != declared:
                    actual = md5sum(file)
                    if actual != declared:
                        raise DatasetNotFoundError(
                            f"{file}: MD5 {actual}, but dataset {self.name!r} declares {declared}")
                    _VERIFIED[key] = declared
                parts.append(["md5", declared])
            else:
                parts.append(["stat", *key])
        return hashlib.sha256(json.dumps(parts).encode("utf-8")).hexdigest()
