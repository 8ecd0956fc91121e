"""Datasets read from a local folder (BEIR or Pyserini layout) or from a dataset card.

**BEIR layout** (a folder as BEIR's zips unpack)::

    corpus.jsonl          {"_id", "title", "text"} per line (.gz too)
    queries.jsonl         {"_id", "text"} per line: the queries of every split
    qrels/<split>.tsv     "query-id corpus-id score" with a header; one file per split

The splits are the ``qrels/*.tsv`` files present. A split's topics are ``queries.jsonl``
restricted to the qids judged in that split's qrels: Pyserini's BEIR topic files hold only
the test queries, and this gives the same topics (and no search spent on unjudged queries).

**Pyserini layout**::

    the corpus            a JsonCollection ({"id", "contents"} per line) or a TSV collection
                          (docid<TAB>text): either a subfolder corpus/ or collection/ of
                          *.jsonl/*.json (or *.tsv) files, or exactly one top-level *.jsonl/*.json
                          file, or collection.tsv / corpus.tsv (.gz too)
    topics.<split>.<ext>  TREC SGML, TSV (qid<TAB>text) or BEIR-style .jsonl topics;
                          ext is txt, tsv or jsonl, optionally .gz
    qrels.<split>.txt     TREC qrels (qid iter docid grade), optionally .gz

A split is the part of the name between ``topics.``/``qrels.`` and the extension, and the
two files must match exactly: ``topics.dl19-passage.txt`` pairs with
``qrels.dl19-passage.txt`` as split ``dl19-passage``; plain ``topics.tsv`` and ``qrels.txt``
are split ``all``. A topics file without its qrels (or the reverse) is an error naming both.

**Dataset card**: a ``*.yaml`` file, or ``dataset.yaml`` in a folder (it wins over the
folder's layout). See :func:`load_card` for its keys.
"""

from __future__ import annotations

import re
from pathlib import Path

from pyserini_ext.config import read_yaml_mapping
from pyserini_ext.data.dataset import Dataset, Split
from pyserini_ext.data.readers import CORPUS_LAYOUTS
from pyserini_ext.data.sources import LocalPath
from pyserini_ext.schema import InputError

CARD_NAMES = ("dataset.yaml", "dataset.yml")
CARD_SUFFIXES = (".yaml", ".yml")


class DatasetCardError(InputError):
    """A dataset card or local folder that cannot be read; the message names the file (and key)."""


def dataset_from_path(path: Path, name: str | None = None) -> Dataset:
    """The dataset at ``path``: a card file, or a folder holding a card, BEIR or Pyserini layout.
    ``name`` defaults to the absolute path."""
    path = path.expanduser().absolute()
    if path.is_file():
        if path.name.endswith(CARD_SUFFIXES):
            return load_card(path, name)
        raise DatasetCardError(f"{path}: a file given as a dataset must be a dataset card (*.yaml); "
                               f"for a corpus file, give the folder that holds it (or write a card)")
    if not path.is_dir():
        raise DatasetCardError(f"{path}: no such file or folder")
    for card in CARD_NAMES:
        if (path / card).is_file():
            return load_card(path / card, name, origin=path)
    name = name or str(path)
    if _first(path, "corpus.jsonl", "corpus.jsonl.gz"):
        return beir_folder(path, name)
    pyserini = pyserini_folder(path, name)
    if pyserini is not None:
        return pyserini
    raise DatasetCardError(
        f"{path}: not a dataset folder: expected BEIR layout (corpus.jsonl, queries.jsonl, qrels/<split>.tsv), "
        f"Pyserini layout (a corpus .jsonl/.json file or corpus/ folder, topics.<split>.txt|tsv, "
        f"qrels.<split>.txt) or a dataset card (dataset.yaml)")


def _first(folder: Path, *names: str) -> Path | None:
    return next((folder / n for n in names if (folder / n).is_file()), None)


def beir_folder(folder: Path, name: str) -> Dataset:
    corpus = _first(folder, "corpus.jsonl", "corpus.jsonl.gz")
    assert corpus is not None
    qrels = sorted((folder / "qrels").glob("*.tsv")) if (folder / "qrels").is_dir() else []
    queries = _first(folder, "queries.jsonl", "queries.jsonl.gz")
    if qrels and queries is None:
        raise DatasetCardError(f"{folder}: BEIR layout with qrels/ but no queries.jsonl")
    splits = {q.stem: Split(LocalPath(queries), LocalPath(q), judged_only=True) for q in qrels}
    return Dataset(name, LocalPath(corpus), "beir", splits, origin=str(folder))


_TOPICS = re.compile(r"^topics(?:\.(?P<split>.+?))?\.(?:txt|tsv|jsonl)(?:\.gz)?$")
_QRELS = re.compile(r"^qrels(?:\.(?P<split>.+?))?\.txt(?:\.gz)?$")
_JSON_CORPUS = re.compile(r"\.(?:jsonl|json)(?:\.gz)?$")
_TSV_CORPUS = ("collection.tsv", "collection.tsv.gz", "corpus.tsv", "corpus.tsv.gz")


def pyserini_folder(folder: Path, name: str) -> Dataset | None:
    """The folder as a Pyserini-layout dataset, or None when it has neither topics nor a corpus."""
    files = sorted(p for p in folder.iterdir() if p.is_file())
    topics = {(m.group("split") or "all"): p for p in files if (m := _TOPICS.match(p.name))}
    qrels = {(m.group("split") or "all"): p for p in files if (m := _QRELS.match(p.name))}
    corpus, layout = _pyserini_corpus(folder, files)
    if corpus is None and not topics and not qrels:
        return None
    if corpus is None:
        raise DatasetCardError(
            f"{folder}: has topics/qrels but no corpus: expected one top-level *.jsonl/*.json file "
            f"(Pyserini JsonCollection), collection.tsv, or a corpus/ folder")
    for split in sorted(set(topics) ^ set(qrels)):
        if split in topics:
            raise DatasetCardError(f"{topics[split]}: no qrels file for split {split!r} "
                                   f"(expected {folder / _partner('qrels', split, '.txt')})")
        raise DatasetCardError(f"{qrels[split]}: no topics file for split {split!r} "
                               f"(expected {folder / _partner('topics', split, '.txt')} or .tsv)")
    splits = {s: Split(LocalPath(topics[s]), LocalPath(qrels[s])) for s in sorted(topics)}
    return Dataset(name, LocalPath(corpus), layout, splits, origin=str(folder))


def _partner(kind: str, split: str, ext: str) -> str:
    return f"{kind}{ext}" if split == "all" else f"{kind}.{split}{ext}"


def _pyserini_corpus(folder: Path, files: list[Path]) -> tuple[Path | None, str]:
    for sub in ("corpus", "collection"):
        if (folder / sub).is_dir():
            inside = [p for p in (folder / sub).iterdir() if p.is_file()]
            if any(_JSON_CORPUS.search(p.name) for p in inside):
                return folder / sub, "jsonl"
            if any(p.name.removesuffix(".gz").endswith(".tsv") for p in inside):
                return folder / sub, "tsv"
            raise DatasetCardError(f"{folder / sub}: corpus folder without *.jsonl/*.json or *.tsv files")
    tsv = _first(folder, *_TSV_CORPUS)
    if tsv is not None:
        return tsv, "tsv"
    candidates = [p for p in files if _JSON_CORPUS.search(p.name) and not _TOPICS.match(p.name)
                  and not p.name.startswith(("topics", "qrels"))]
    if len(candidates) > 1:
        raise DatasetCardError(f"{folder}: several corpus files ({', '.join(p.name for p in candidates)}); "
                               f"move them into a corpus/ subfolder to read them all as one collection")
    return (candidates[0], "jsonl") if candidates else (None, "")


# -- dataset cards -------------------------------------------------------------------------

_CARD_KEYS = {"name", "description", "layout", "corpus", "splits", "relevance_level", "remove_query", "topic_sets"}
_SPLIT_KEYS = {"topics", "qrels", "judged_only", "relevance_level"}


def load_card(card: Path, name: str | None = None, origin: Path | None = None) -> Dataset:
    """A dataset from a card (YAML). Paths are relative to the card's folder (absolute ones work too)::

        name: my-collection        # optional; default: the card's file name without .yaml
                                   # (the folder's name for a dataset.yaml)
        description: one line      # optional, shown by `datasets list`
        layout: beir               # the corpus format: beir (_id/title/text .jsonl),
                                   # jsonl (Pyserini JsonCollection id/contents), tsv (docid<TAB>text)
        corpus: corpus.jsonl       # a file, or a folder of files; or a mapping:
        # corpus: {path: corpus.jsonl, md5: 26537f8ae036fdb77d847ec4f7ac1858}
        #                          # the MD5 is checked by Dataset.fingerprint() and identifies the corpus
        splits:                    # optional (a corpus alone can be indexed)
          test:
            topics: queries.jsonl  # TREC SGML, TSV (qid<TAB>text) or BEIR queries .jsonl
            qrels: qrels/test.tsv  # TREC qrels, or BEIR .tsv (with header)
            judged_only: true      # keep only the topics judged in these qrels; default: true for
                                   # .jsonl topics (BEIR's queries.jsonl holds every split), else false
            relevance_level: 2     # optional: this split's binary-relevance threshold
        relevance_level: 1         # binary metrics count grades >= this as relevant (TREC DL: 2)
        remove_query: false        # true: drop a hit whose docid equals the qid (Pyserini's
                                   # --remove-query, used for every BEIR dataset)
        topic_sets:                # optional: other names for a split, e.g. Pyserini's
          my-collection-test: test

    Ids are strings: integer ``_id``/``id`` values in JSON are read with ``str()``. An error names
    the card file and the key.
    """
    card = card.absolute()
    raw = read_yaml_mapping(card, DatasetCardError)

    def fail(key: str, problem: str):
        raise DatasetCardError(f"{card}: key {key!r}: {problem}")

    for key in raw:
        if key not in _CARD_KEYS:
            fail(str(key), f"unknown key; known: {', '.join(sorted(_CARD_KEYS))}")

    def string(key: str, value, required: bool = True) -> str:
        if value is None and not required:
            return ""
        if not isinstance(value, str) or not value.strip():
            fail(key, "missing" if value is None else f"expected a non-empty string, got {value!r}")
        return value

    def existing(key: str, value) -> Path:
        path = Path(string(key, value)).expanduser()
        path = path if path.is_absolute() else card.parent / path
        if not path.exists():
            fail(key, f"{path} not found")
        return path

    def level(key: str, value) -> int:
        if isinstance(value, bool) or not isinstance(value, int) or value < 0:
            fail(key, f"expected a grade (an integer >= 0), got {value!r}")
        return value

    def flag(key: str, value) -> bool:
        if not isinstance(value, bool):
            fail(key, f"expected true or false, got {value!r}")
        return value

    default_name = (origin.name if origin is not None else card.name.removesuffix(".yaml").removesuffix(".yml"))
    card_name = string("name", raw.get("name"), required=False) or default_name
    layout = string("layout", raw.get("layout"))
    if layout not in CORPUS_LAYOUTS:
        fail("layout", f"{layout!r} is not one of {', '.join(CORPUS_LAYOUTS)}")
    corpus_raw, md5 = raw.get("corpus"), None
    if isinstance(corpus_raw, dict):
        for key in corpus_raw:
            if key not in ("path", "md5"):
                fail(f"corpus.{key}", "unknown key; known: path, md5")
        md5 = corpus_raw.get("md5")
        if md5 is not None and not (isinstance(md5, str) and re.fullmatch(r"[0-9a-fA-F]{32}", md5)):
            fail("corpus.md5", f"expected 32 hex digits, got {md5!r}")
        corpus = existing("corpus.path", corpus_raw.get("path"))
    else:
        corpus = existing("corpus", corpus_raw)
    splits_raw = raw.get("splits") or {}
    if not isinstance(splits_raw, dict):
        fail("splits", f"expected a mapping split -> {{topics, qrels}}, got {type(splits_raw).__name__}")
    splits = {}
    for split, entry in splits_raw.items():
        where = f"splits.{split}"
        if not isinstance(entry, dict):
            fail(where, "expected a mapping with topics and qrels")
        for key in entry:
            if key not in _SPLIT_KEYS:
                fail(f"{where}.{key}", f"unknown key; known: {', '.join(sorted(_SPLIT_KEYS))}")
        topics = existing(f"{where}.topics", entry.get("topics"))
        qrels = existing(f"{where}.qrels", entry.get("qrels"))
        judged = entry.get("judged_only", topics.name.removesuffix(".gz").endswith(".jsonl"))
        splits[str(split)] = Split(
            LocalPath(topics, declared_in=f"{card} key {where}.topics"),
            LocalPath(qrels, declared_in=f"{card} key {where}.qrels"),
            judged_only=flag(f"{where}.judged_only", judged),
            relevance_level=level(f"{where}.relevance_level", entry["relevance_level"])
            if "relevance_level" in entry else None,
        )
    topic_sets = raw.get("topic_sets") or {}
    if not isinstance(topic_sets, dict):
        fail("topic_sets", "expected a mapping name -> split")
    for alias, split in topic_sets.items():
        if split not in splits:
            fail(f"topic_sets.{alias}", f"names split {split!r}; the card has: {', '.join(splits) or 'none'}")
    return Dataset(
        name=name or card_name,
        corpus=LocalPath(corpus, md5.lower() if md5 else None, declared_in=f"{card} key corpus"),
        layout=layout,
        splits=splits,
        description=string("description", raw.get("description"), required=False),
        relevance_level=level("relevance_level", raw.get("relevance_level", 1)),
        remove_query=flag("remove_query", raw.get("remove_query", False)),
        topic_sets={str(k): str(v) for k, v in topic_sets.items()},
        origin=str(card if origin is None else origin),
    )
