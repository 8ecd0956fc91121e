"""Streamed readers for the formats Pyserini and BEIR use.

Corpora are yielded one document at a time (never loaded whole); topics and qrels
are small and come back as dicts. A malformed line raises :class:`DataFormatError`
naming the file, the 1-based line number and the field.

What is refused (each with its file and line), so nothing is read as something else:
text that is not UTF-8; a ``.gz`` that is not gzip or is cut short; a line longer than
:data:`MAX_LINE` characters; JSON nested deeper than Python can parse; an id (docid or
qid) that is empty or holds whitespace, a control character or a lone surrogate (TREC
runs are whitespace-separated; such an id would break every file written from it); a
docid or qid given twice in one corpus or topic file; a (qid, docid) judged twice with
different grades; topic and qrels files with no entries. A byte-order mark at the start
of a file is skipped.
"""

from __future__ import annotations

import gzip
import io
import json
import re
import unicodedata
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from pyserini_ext.schema import InputError

Qrels = dict[str, dict[str, int]]  # qid -> docid -> relevance grade (pytrec_eval's layout)
Topics = dict[str, str]  # qid -> query text, in file order


MAX_LINE = 64 << 20  # characters in one line: no corpus document or topic comes near it


class DataFormatError(InputError):
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
    """Open a text file, transparently gunzipping ``*.gz`` (for callers that want the raw
    stream; the readers below use :func:`text_lines`, which names bad bytes' lines)."""
    path = Path(path)
    if path.suffix == ".gz":
        return gzip.open(path, "rt", encoding="utf-8-sig")
    return open(path, encoding="utf-8-sig")


def text_lines(path: Path | str) -> Iterator[tuple[int, str]]:
    """``(line number, line)`` of a UTF-8 text file (``*.gz`` gunzipped), line endings kept.
    Bytes that are not UTF-8, a damaged gzip stream and over-long lines raise
    :class:`DataFormatError` naming the file and the line."""
    path = Path(path)
    lineno = 0
    try:
        with (gzip.open(path, "rb") if path.suffix == ".gz" else open(path, "rb")) as f:
            while True:
                raw = f.readline(MAX_LINE + 1)
                if not raw:
                    return
                lineno += 1
                if len(raw) > MAX_LINE and not raw.endswith(b"\n"):
                    raise DataFormatError(path, lineno, "<line>", f"longer than {MAX_LINE} bytes")
                try:
                    line = raw.decode("utf-8")
                except UnicodeDecodeError as err:
                    raise DataFormatError(path, lineno, "<text>", f"not UTF-8 (byte {raw[err.start]:#04x} "
                                                                  f"at column {err.start + 1})") from None
                if lineno == 1:
                    line = line.removeprefix("\ufeff")  # a byte-order mark is not part of the first key
                yield lineno, line
    except (gzip.BadGzipFile, EOFError, zlib.error) as err:
        raise DataFormatError(path, lineno + 1, "<gzip>", f"not a complete gzip stream ({err or 'cut short'})") from None
    except (IsADirectoryError, FileNotFoundError, PermissionError) as err:
        raise DataFormatError(path, None, "<file>", f"cannot read: {err.strerror}") from None


_ID_PROBLEM = re.compile(r"\s")


def check_id(path: Path, lineno: int, field: str, value: str) -> str:
    """``value`` if it is usable as a docid or qid; else :class:`DataFormatError`."""
    if not value:
        raise DataFormatError(path, lineno, field, "empty")
    if _ID_PROBLEM.search(value):
        raise DataFormatError(path, lineno, field, f"{value!r} contains whitespace (runs and qrels are "
                                                   f"whitespace-separated)")
    for char in value:
        if unicodedata.category(char) in ("Cc", "Cs"):  # control characters, lone surrogates
            raise DataFormatError(path, lineno, field, f"{value!r} contains the character {ord(char):#06x}")
    return value


def _json_lines(path: Path) -> Iterator[tuple[int, dict]]:
    for lineno, line in text_lines(path):
        if not line.strip():
            continue
        try:
            obj = json.loads(line)
        except json.JSONDecodeError as err:
            raise DataFormatError(path, lineno, "<json>", f"not valid JSON ({err.msg})") from None
        except RecursionError:
            raise DataFormatError(path, lineno, "<json>", "nested too deeply") from None
        if not isinstance(obj, dict):
            raise DataFormatError(path, lineno, "<json>", "expected a JSON object")
        yield lineno, obj


def _string_field(path: Path, lineno: int, obj: dict, field: str, required: bool = True) -> str:
    if field not in obj:
        if required:
            raise DataFormatError(path, lineno, field, "missing")
        return ""
    value = obj[field]
    if isinstance(value, int) and not isinstance(value, bool) and field in ("_id", "id"):
        value = str(value)  # numeric ids (e.g. SciFact's) are written as JSON numbers by some tools
    if not isinstance(value, str):
        raise DataFormatError(path, lineno, field, f"expected a string, got {type(value).__name__}")
    if field in ("_id", "id"):
        return check_id(path, lineno, field, value)
    if any(0xD800 <= ord(c) <= 0xDFFF for c in value):  # "\ud800" in JSON: not encodable as UTF-8
        raise DataFormatError(path, lineno, field, "contains a lone surrogate (\\ud800-\\udfff)")
    return value


class _Unique:
    """Refuses a key seen before in the same file (or folder of files), naming both lines."""

    def __init__(self, what: str):
        self.what, self.first = what, {}

    def add(self, path: Path, lineno: int, field: str, key: str) -> None:
        earlier = self.first.setdefault(key, (path, lineno))
        if earlier != (path, lineno):
            where = f"line {earlier[1]}" if earlier[0] == path else f"{earlier[0]}:{earlier[1]}"
            raise DataFormatError(path, lineno, field, f"{self.what} {key!r} already given on {where}")


def read_beir_corpus(path: Path | str) -> Iterator[Document]:
    """BEIR ``corpus.jsonl``: ``{"_id", "title", "text"}`` per line (title may be absent)."""
    path, seen = Path(path), _Unique("docid")
    for lineno, obj in _json_lines(path):
        doc = Document(
            _string_field(path, lineno, obj, "_id"),
            _string_field(path, lineno, obj, "title", required=False),
            _string_field(path, lineno, obj, "text"),
        )
        seen.add(path, lineno, "_id", doc.docid)
        yield doc


def read_jsonl_collection(path: Path | str) -> Iterator[Document]:
    """Pyserini JsonCollection: ``{"id", "contents"}`` per line; a file or a folder of them."""
    path = Path(path)
    files = sorted(p for p in path.iterdir() if p.suffix in (".json", ".jsonl", ".gz")) if path.is_dir() else [path]
    seen = _Unique("docid")
    for file in files:
        for lineno, obj in _json_lines(file):
            doc = Document(_string_field(file, lineno, obj, "id"), "", _string_field(file, lineno, obj, "contents"))
            seen.add(file, lineno, "id", doc.docid)
            yield doc


def read_tsv_collection(path: Path | str) -> Iterator[Document]:
    """A TSV collection (MS MARCO's ``collection.tsv``): ``docid<TAB>text`` per line; a file
    (``.gz`` too) or a folder of ``*.tsv``/``*.tsv.gz`` files read in name order."""
    path = Path(path)
    files = [path]
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.name.removesuffix(".gz").endswith(".tsv"))
    seen = _Unique("docid")
    for file in files:
        for lineno, docid, text in _key_tab_text(file, "docid"):
            seen.add(file, lineno, "docid", docid)
            yield Document(docid, "", text)


def _key_tab_text(path: Path, key: str) -> Iterator[tuple[int, str, str]]:
    """``(line number, key, text)`` from the ``key<TAB>text`` lines of ``path``; blank lines are skipped."""
    for lineno, line in text_lines(path):
        line = line.rstrip("\r\n")
        if not line.strip():
            continue
        value, tab, text = line.partition("\t")
        if not tab:
            raise DataFormatError(path, lineno, "<row>", f"expected '{key}<TAB>text'")
        yield lineno, check_id(path, lineno, key, value.strip()), text


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
    path, seen, topics = Path(path), _Unique("qid"), {}
    for lineno, obj in _json_lines(path):
        qid = _string_field(path, lineno, obj, "_id")
        seen.add(path, lineno, "_id", qid)
        topics[qid] = _string_field(path, lineno, obj, "text")
    return _non_empty(path, topics, "queries")


def _non_empty(path: Path, entries: dict, what: str) -> dict:
    if not entries:
        raise DataFormatError(path, None, "<file>", f"no {what}")
    return entries


def _judge(qrels: Qrels, path: Path, lineno: int, qid: str, docid: str, grade: int) -> None:
    """Add one judgement; the same pair judged again with another grade is an error."""
    docs = qrels.setdefault(check_id(path, lineno, "qid", qid), {})
    if docs.get(check_id(path, lineno, "docid", docid), grade) != grade:
        raise DataFormatError(path, lineno, "relevance", f"({qid}, {docid}) judged {docs[docid]} earlier, {grade} here")
    docs[docid] = grade


def read_beir_qrels(path: Path | str) -> Qrels:
    """BEIR ``qrels/*.tsv``: a ``query-id corpus-id score`` header, then tab-separated rows."""
    path = Path(path)
    qrels: Qrels = {}
    for lineno, line in text_lines(path):
        row = line.rstrip("\r\n").split("\t")
        if not line.strip() or (lineno == 1 and row[0] == "query-id"):
            continue
        if len(row) != 3:
            raise DataFormatError(path, lineno, "<row>", f"expected 3 tab-separated columns, got {len(row)}")
        _judge(qrels, path, lineno, row[0], row[1], _grade(path, lineno, row[2]))
    return _non_empty(path, qrels, "judgements")


def whitespace_rows(path: Path, columns: tuple[str, ...]) -> Iterator[tuple[int, list[str]]]:
    """(line number, fields) of a whitespace-separated file whose rows have exactly ``columns``."""
    for lineno, line in text_lines(path):
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
        _judge(qrels, path, lineno, qid, docid, _grade(path, lineno, grade))
    return _non_empty(path, qrels, "judgements")


_GRADE = re.compile(r"[-+]?[0-9]{1,9}")  # trec_eval's grades are C ints


def _grade(path: Path, lineno: int, value: str) -> int:
    if not _GRADE.fullmatch(value.strip()):
        raise DataFormatError(path, lineno, "relevance", f"expected an integer grade, got {value!r}")
    return int(value.strip())  # int() strips fewer characters than str.strip() (not \x1c-\x1f)


def read_tsv_topics(path: Path | str) -> Topics:
    """Topics as ``qid<TAB>text`` lines (Anserini's TsvString/TsvInt readers)."""
    path, seen, topics = Path(path), _Unique("qid"), {}
    for lineno, qid, text in _key_tab_text(path, "qid"):
        seen.add(path, lineno, "qid", qid)
        topics[qid] = text.strip()
    return _non_empty(path, topics, "topics")


_SGML_TAG = re.compile(r"<(/?)(top|DOC)>", re.IGNORECASE)
_NUM = re.compile(r"<num>\s*(?:Number:)?\s*(\S+)|<DOCNO>\s*(\S+?)\s*</DOCNO>", re.IGNORECASE)
_TITLE = re.compile(r"<title>\s*(?:Topic:)?(.*?)(?=<\w+>|$)", re.DOTALL | re.IGNORECASE)


def read_sgml_topics(path: Path | str, field: str = "title") -> Topics:
    """TREC SGML topics: ``<top><num> Number: N <title> ...`` (TREC) or
    ``<DOC><DOCNO> N </DOCNO> text </DOC>`` (CACM, text after the DOCNO).

    Only ``field="title"`` is read for ``<top>`` topics, as Anserini's default.
    """
    path = Path(path)
    content = "".join(line for _, line in text_lines(path))
    topics: Topics = {}
    seen = _Unique("qid")
    lineno, counted = 1, 0
    for kind, start, body in _sgml_blocks(path, content):
        lineno, counted = lineno + content.count("\n", counted, start), start
        num = _NUM.search(body)
        if not num:
            raise DataFormatError(path, lineno, "num", "topic without a number")
        qid = check_id(path, lineno, "num", num.group(1) or num.group(2))
        seen.add(path, lineno, "num", qid)
        if kind == "doc":
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


def _sgml_blocks(path: Path, content: str) -> Iterator[tuple[str, int, str]]:
    """``(kind, offset, body)`` of each ``<top>...</top>`` or ``<DOC>...</DOC>`` block, found in
    one pass over the tags (a backtracking regex is quadratic in unclosed tags)."""
    opened = None
    for tag in _SGML_TAG.finditer(content):
        closing, kind = tag.group(1) == "/", tag.group(2).lower()
        if not closing:
            if opened is not None:
                line = content.count("\n", 0, opened.start()) + 1
                raise DataFormatError(path, line, f"<{opened.group(2)}>", "opened and not closed before the next topic")
            opened = tag
        elif opened is not None and opened.group(2).lower() == kind:
            yield kind, opened.start(), content[opened.end():tag.start()]
            opened = None
    if opened is not None:
        line = content.count("\n", 0, opened.start()) + 1
        raise DataFormatError(path, line, f"<{opened.group(2)}>", "opened and never closed")


def read_topics(path: Path | str) -> Topics:
    """Topics in any supported format, chosen by content: TSV, SGML, or BEIR queries.jsonl."""
    path = Path(path)
    name = path.name.removesuffix(".gz")
    if name.endswith(".jsonl"):
        return read_beir_queries(path)
    head = ""
    for lineno, line in text_lines(path):
        head += line
        if len(head) >= 4096 or lineno >= 64:
            break
    if re.search(r"<(top|DOC)>", head, re.IGNORECASE):
        return read_sgml_topics(path)
    return read_tsv_topics(path)


def read_qrels(path: Path | str) -> Qrels:
    """Qrels in BEIR TSV (``.tsv``) or TREC format (anything else)."""
    path = Path(path)
    return read_beir_qrels(path) if path.name.removesuffix(".gz").endswith(".tsv") else read_trec_qrels(path)
