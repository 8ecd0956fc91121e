"""Streamed readers for the formats Pyserini and BEIR use.

Corpora are yielded one document at a time (never loaded whole); topics and qrels
are small and come back as dicts. A malformed line raises :class:`DataFormatError`
naming the file, the 1-based line number and the field.
"""

from __future__ import annotations

import csv
import gzip
import io
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

Qrels = dict[str, dict[str, int]]  # qid -> docid -> relevance grade (pytrec_eval's layout)
Topics = dict[str, str]  # qid -> query text, in file order


class DataFormatError(ValueError):
    def __init__(self, path: Path | str, line: int | None, field: str, problem: str):
        self.path, self.line, self.field = Path(path), line, field
        where = f"{path}:{line}" if line is not None else str(path)
        super().__init__(f"{where}: field {field!r}: {problem}")


@dataclass(frozen=True)
class Document:
    docid: str
    title: str
    text: str


def open_text(path: Path | str) -> io.TextIOBase:
    """Open a text file, transparently gunzipping ``*.gz``."""
    path = Path(path)
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8")
    return open(path, encoding="utf-8")


def _json_lines(path: Path) -> Iterator[tuple[int, dict]]:
    with open_text(path) as f:
        for lineno, line in enumerate(f, start=1):
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as err:
                raise DataFormatError(path, lineno, "<json>", f"not valid JSON ({err.msg})") from None
            if not isinstance(obj, dict):
                raise DataFormatError(path, lineno, "<json>", "expected a JSON object")
            yield lineno, obj


def _string_field(path: Path, lineno: int, obj: dict, field: str, required: bool = True) -> str:
    if field not in obj:
        if required:
            raise DataFormatError(path, lineno, field, "missing")
        return ""
    value = obj[field]
    if isinstance(value, (int, float)) and not isinstance(value, bool) and field in ("_id", "id"):
        return str(value)
    if not isinstance(value, str):
        raise DataFormatError(path, lineno, field, f"expected a string, got {type(value).__name__}")
    return value


def read_beir_corpus(path: Path | str) -> Iterator[Document]:
    """BEIR ``corpus.jsonl``: ``{"_id", "title", "text"}`` per line (title may be absent)."""
    path = Path(path)
    for lineno, obj in _json_lines(path):
        yield Document(
            _string_field(path, lineno, obj, "_id"),
            _string_field(path, lineno, obj, "title", required=False),
            _string_field(path, lineno, obj, "text"),
        )


def read_jsonl_collection(path: Path | str) -> Iterator[Document]:
    """Pyserini JsonCollection: ``{"id", "contents"}`` per line; a file or a folder of them."""
    path = Path(path)
    files = sorted(p for p in path.iterdir() if p.suffix in (".json", ".jsonl", ".gz")) if path.is_dir() else [path]
    for file in files:
        for lineno, obj in _json_lines(file):
            yield Document(_string_field(file, lineno, obj, "id"), "", _string_field(file, lineno, obj, "contents"))


def read_tsv_collection(path: Path | str) -> Iterator[Document]:
    """A TSV collection (MS MARCO's ``collection.tsv``): ``docid<TAB>text`` per line; a file
    (``.gz`` too) or a folder of ``*.tsv``/``*.tsv.gz`` files read in name order."""
    path = Path(path)
    files = [path]
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.name.removesuffix(".gz").endswith(".tsv"))
    for file in files:
        for docid, text in _key_tab_text(file, "docid"):
            yield Document(docid, "", text)


def _key_tab_text(path: Path, key: str) -> Iterator[tuple[str, str]]:
    """``(key, text)`` from the ``key<TAB>text`` lines of ``path``; blank lines are skipped."""
    with open_text(path) as f:
        for lineno, line in enumerate(f, start=1):
            line = line.rstrip("\r\n")
            if not line.strip():
                continue
            value, tab, text = line.partition("\t")
            if not tab:
                raise DataFormatError(path, lineno, "<row>", f"expected '{key}<TAB>text'")
            if not value.strip():
                raise DataFormatError(path, lineno, key, "empty")
            yield value.strip(), text


CORPUS_LAYOUTS = ("beir", "jsonl", "tsv")


def read_corpus(path: Path | str, layout: str) -> Iterator[Document]:
    """A corpus in one of :data:`CORPUS_LAYOUTS`: BEIR ``corpus.jsonl`` (``_id``/``title``/``text``),
    Pyserini JsonCollection (``id``/``contents``) or TSV (``docid<TAB>text``)."""
    if layout == "beir":
        return read_beir_corpus(path)
    if layout == "jsonl":
        return read_jsonl_collection(path)
    if layout == "tsv":
        return read_tsv_collection(path)
    raise ValueError(f"unknown corpus layout {layout!r}; known: {', '.join(CORPUS_LAYOUTS)}")


def read_beir_queries(path: Path | str) -> Topics:
    path = Path(path)
    return {
        _string_field(path, lineno, obj, "_id"): _string_field(path, lineno, obj, "text")
        for lineno, obj in _json_lines(path)
    }


def read_beir_qrels(path: Path | str) -> Qrels:
    """BEIR ``qrels/*.tsv``: a ``query-id corpus-id score`` header, then tab-separated rows."""
    path = Path(path)
    qrels: Qrels = {}
    with open_text(path) as f:
        rows = csv.reader(f, delimiter="\t")
        for lineno, row in enumerate(rows, start=1):
            if not row or (lineno == 1 and row[0] == "query-id"):
                continue
            if len(row) != 3:
                raise DataFormatError(path, lineno, "<row>", f"expected 3 tab-separated columns, got {len(row)}")
            qrels.setdefault(row[0], {})[row[1]] = _grade(path, lineno, row[2])
    return qrels


def whitespace_rows(path: Path, columns: tuple[str, ...]) -> Iterator[tuple[int, list[str]]]:
    """(line number, fields) of a whitespace-separated file whose rows have exactly ``columns``."""
    with open_text(path) as f:
        for lineno, line in enumerate(f, start=1):
            parts = line.split()
            if not parts:
                continue
            if len(parts) != len(columns):
                raise DataFormatError(path, lineno, "<row>",
                                      f"expected {len(columns)} columns ({' '.join(columns)}), got {len(parts)}")
            yield lineno, parts


def read_trec_qrels(path: Path | str) -> Qrels:
    """TREC qrels: ``qid iteration docid grade`` separated by whitespace."""
    path = Path(path)
    qrels: Qrels = {}
    for lineno, (qid, _, docid, grade) in whitespace_rows(path, ("qid", "iter", "docid", "grade")):
        qrels.setdefault(qid, {})[docid] = _grade(path, lineno, grade)
    return qrels


def _grade(path: Path, lineno: int, value: str) -> int:
    try:
        return int(value)
    except ValueError:
        raise DataFormatError(path, lineno, "relevance", f"expected an integer grade, got {value!r}") from None


def read_tsv_topics(path: Path | str) -> Topics:
    """Topics as ``qid<TAB>text`` lines (Anserini's TsvString/TsvInt readers)."""
    return {qid: text.strip() for qid, text in _key_tab_text(Path(path), "qid")}


_SGML_TOPIC = re.compile(r"<(top|DOC)>(.*?)</\1>", re.DOTALL | re.IGNORECASE)
_NUM = re.compile(r"<num>\s*(?:Number:)?\s*(\S+)|<DOCNO>\s*(\S+?)\s*</DOCNO>", re.IGNORECASE)
_TITLE = re.compile(r"<title>\s*(?:Topic:)?(.*?)(?=<\w+>|$)", re.DOTALL | re.IGNORECASE)


def read_sgml_topics(path: Path | str, field: str = "title") -> Topics:
    """TREC SGML topics: ``<top><num> Number: N <title> ...`` (TREC) or
    ``<DOC><DOCNO> N </DOCNO> text </DOC>`` (CACM, text after the DOCNO).

    Only ``field="title"`` is read for ``<top>`` topics, as Anserini's default.
    """
    path = Path(path)
    with open_text(path) as f:
        content = f.read()
    topics: Topics = {}
    for match in _SGML_TOPIC.finditer(content):
        body = match.group(2)
        lineno = content.count("\n", 0, match.start()) + 1
        num = _NUM.search(body)
        if not num:
            raise DataFormatError(path, lineno, "num", "topic without a number")
        qid = num.group(1) or num.group(2)
        if match.group(1).lower() == "doc":
            text = body[num.end():]
        else:
            title = _TITLE.search(body)
            if not title:
                raise DataFormatError(path, lineno, field, "topic without a title")
            text = title.group(1)
        topics[qid] = " ".join(text.split())
    if not topics:
        raise DataFormatError(path, 1, "<top>", "no <top> or <DOC> topics found")
    return topics


def read_topics(path: Path | str) -> Topics:
    """Topics in any supported format, chosen by content: TSV, SGML, or BEIR queries.jsonl."""
    path = Path(path)
    name = path.name.removesuffix(".gz")
    if name.endswith(".jsonl"):
        return read_beir_queries(path)
    with open_text(path) as f:
        head = f.read(4096)
    if re.search(r"<(top|DOC)>", head, re.IGNORECASE):
        return read_sgml_topics(path)
    return read_tsv_topics(path)


def read_qrels(path: Path | str) -> Qrels:
    """Qrels in BEIR TSV (``.tsv``) or TREC format (anything else)."""
    path = Path(path)
    return read_beir_qrels(path) if path.name.removesuffix(".gz").endswith(".tsv") else read_trec_qrels(path)
