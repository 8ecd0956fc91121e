"""Issue 14, defects 5, 8 and 11 (SGML): the readers refuse what they cannot read faithfully
with a DataFormatError naming the file, the line and the field, never a raw library
exception or a silently different reading."""

import gzip
import json
import logging
import signal
import time

import pytest

from pyserini_ext.data.readers import (DataFormatError, read_beir_corpus, read_beir_qrels, read_beir_queries,
                                       read_jsonl_collection, read_sgml_topics, read_topics, read_trec_qrels,
                                       read_tsv_collection, read_tsv_topics)
from pyserini_ext.eval.metrics import evaluate
from pyserini_ext.search.run import Hit, read_trec_run


def refused(read, path, line, field=None):
    with pytest.raises(DataFormatError) as err:
        result = read(path)
        if not isinstance(result, dict):
            list(result)
    assert str(err.value).startswith(f"{path}:{line}:" if line else f"{path}:"), str(err.value)
    if field:
        assert f"field {field!r}" in str(err.value), str(err.value)
    return str(err.value)


def beir_line(docid, text="t") -> str:
    return json.dumps({"_id": docid, "title": "", "text": text}) + "\n"


# --- defect 5: docids ---------------------------------------------------------------------------

@pytest.mark.parametrize("docid, problem", [
    ("d 1", "whitespace"), ("d\n1", "whitespace"), ("d\t1", "whitespace"), ("", "empty"),
    ("d\ud800", "0xd800"), ("d\x00", "0x0000"), ("d\u2028", "whitespace"),
])
def test_a_docid_that_would_break_a_run_or_an_index_is_refused_with_its_line(tmp_path, docid, problem):
    path = tmp_path / "corpus.jsonl"
    path.write_text(beir_line("ok") + beir_line(docid), encoding="utf-8", errors="surrogatepass")
    assert problem in refused(read_beir_corpus, path, 2, "_id")
    jsonl = tmp_path / "docs.jsonl"
    jsonl.write_text(json.dumps({"id": "ok", "contents": "x"}) + "\n" + json.dumps({"id": docid, "contents": "x"}) + "\n")
    refused(read_jsonl_collection, jsonl, 2, "id")


def test_a_space_in_a_tsv_docid_and_a_repeated_docid_are_refused(tmp_path):
    path = tmp_path / "collection.tsv"
    path.write_text("a\tone\nb c\ttwo\n")
    refused(read_tsv_collection, path, 2, "docid")
    path.write_text("a\tone\nb\ttwo\na\tthree\n")
    assert "already given on line 1" in refused(read_tsv_collection, path, 3, "docid")
    path = tmp_path / "corpus.jsonl"
    path.write_text(beir_line("a") + beir_line("b") + beir_line("a"))
    assert "already given on line 1" in refused(read_beir_corpus, path, 3, "_id")


def test_a_lone_surrogate_in_a_text_is_refused_before_encoding(tmp_path):
    path = tmp_path / "corpus.jsonl"
    path.write_text(beir_line("a") + '{"_id": "b", "text": "x\\udc80y"}\n')
    refused(read_beir_corpus, path, 2, "text")


def test_docids_built_in_python_are_checked_before_any_shard_is_written(tmp_path):
    from pyserini_ext.data.readers import Document
    from pyserini_ext.store.shards import DENSE, encode_in_shards

    docs = [Document("a", "", "x"), Document("b\nc", "", "y")]
    encoded = []
    with pytest.raises(ValueError, match=r"docid 'b\\nc' \(document 2\)"):
        encode_in_shards(iter(docs), encoded.append, lambda i, chunk, parts: {}, tmp_path / "shards", DENSE,
                         shard_size=8, desc="test", quiet=True)
    assert encoded == [] and not list((tmp_path / "shards").glob("shard-*"))


# --- defect 8: raw exceptions and silent misreadings ---------------------------------------------

READERS = [
    (read_beir_corpus, "corpus.jsonl", beir_line("a")),
    (read_jsonl_collection, "docs.jsonl", json.dumps({"id": "a", "contents": "x"}) + "\n"),
    (read_tsv_collection, "collection.tsv", "a\tx\n"),
    (read_beir_queries, "queries.jsonl", beir_line("q1")),
    (read_tsv_topics, "topics.tsv", "q1\tx\n"),
    (read_sgml_topics, "topics.txt", "<top>\n<num> Number: 1\n<title> x\n</top>\n"),
    (read_beir_qrels, "qrels.tsv", "query-id\tcorpus-id\tscore\nq1\ta\t1\n"),
    (read_trec_qrels, "qrels.txt", "q1 0 a 1\n"),
    (read_trec_run, "run.txt", "q1 Q0 a 1 1.5 tag\n"),
]


@pytest.mark.parametrize("read, name, good", READERS, ids=[r[0].__name__ for r in READERS])
def test_bytes_that_are_not_utf8_are_refused_with_their_line_in_every_reader(tmp_path, read, name, good):
    path = tmp_path / name
    path.write_bytes(good.encode() + b"\xff\xfe bad \xc3\n")
    line = good.count("\n") + 1
    assert "not UTF-8" in refused(read, path, line, "<text>")


@pytest.mark.parametrize("read, name, good", READERS, ids=[r[0].__name__ for r in READERS])
def test_a_bad_or_truncated_gzip_is_refused_in_every_reader(tmp_path, read, name, good):
    path = tmp_path / (name + ".gz")
    path.write_bytes(b"this is not gzip\n")
    assert "gzip" in refused(read, path, None, "<gzip>")
    path.write_bytes(gzip.compress(good.encode())[:-6])  # the CRC and length trailer cut off
    refused(read, path, None, "<gzip>")


@pytest.mark.parametrize("read, name, good", READERS, ids=[r[0].__name__ for r in READERS])
def test_a_byte_order_mark_is_not_part_of_the_first_id(tmp_path, read, name, good):
    path = tmp_path / name
    path.write_bytes(b"\xef\xbb\xbf" + good.encode())
    plain = tmp_path / ("plain-" + name)
    plain.write_bytes(good.encode())
    result, expected = read(path), read(plain)
    assert (result if isinstance(result, dict) else list(result)) == \
        (expected if isinstance(expected, dict) else list(expected))


def test_a_qrels_field_over_128_kb_is_read_not_a_csv_error(tmp_path):
    path = tmp_path / "qrels.tsv"
    long_docid = "d" * 200_000
    path.write_text(f"query-id\tcorpus-id\tscore\nq1\t{long_docid}\t1\n")
    assert read_beir_qrels(path) == {"q1": {long_docid: 1}}


def test_deeply_nested_json_is_refused_with_its_line(tmp_path):
    path = tmp_path / "corpus.jsonl"
    path.write_text(beir_line("a") + "[" * 100_000 + "]" * 100_000 + "\n")
    assert "nested too deeply" in refused(read_beir_corpus, path, 2, "<json>")


@pytest.mark.parametrize("read, name, text, line", [
    (read_tsv_topics, "topics.tsv", "q1\tone\nq2\ttwo\nq1\tthree\n", 3),
    (read_beir_queries, "queries.jsonl", beir_line("q1") + beir_line("q1"), 2),
    (read_sgml_topics, "t.txt", "<top><num> 1 <title> a </top>\n<top><num> 1 <title> b </top>\n", 2),
])
def test_a_repeated_qid_is_refused(tmp_path, read, name, text, line):
    path = tmp_path / name
    path.write_text(text)
    assert "already given on line 1" in refused(read, path, line)


def test_conflicting_grades_are_refused_and_a_repeated_identical_one_is_kept(tmp_path):
    path = tmp_path / "qrels.txt"
    path.write_text("q1 0 a 1\nq1 0 b 0\nq1 0 a 2\n")
    assert "judged 1 earlier, 2 here" in refused(read_trec_qrels, path, 3, "relevance")
    path.write_text("q1 0 a 1\nq1 0 a 1\n")
    assert read_trec_qrels(path) == {"q1": {"a": 1}}
    path = tmp_path / "qrels.tsv"
    path.write_text("query-id\tcorpus-id\tscore\nq1\ta\t1\nq1\ta\t0\n")
    refused(read_beir_qrels, path, 3, "relevance")


@pytest.mark.parametrize("read, name, text", [
    (read_tsv_topics, "topics.tsv", "\n\n"),
    (read_beir_queries, "queries.jsonl", ""),
    (read_trec_qrels, "qrels.txt", ""),
    (read_beir_qrels, "qrels.tsv", "query-id\tcorpus-id\tscore\n"),
    (read_topics, "topics.tsv", ""),
])
def test_empty_topics_and_qrels_are_refused(tmp_path, read, name, text):
    path = tmp_path / name
    path.write_text(text)
    refused(read, path, None, "<file>")


@pytest.mark.parametrize("grade", ["abc", "1.5", "99999999999999999999", "nan"])
def test_a_grade_that_is_not_a_c_int_is_refused(tmp_path, grade):
    path = tmp_path / "qrels.txt"
    path.write_text(f"q1 0 a {grade}\n")
    refused(read_trec_qrels, path, 1, "relevance")


@pytest.mark.parametrize("score", ["nan", "inf", "-inf", "NaN", "1e999"])
def test_a_run_score_that_is_not_finite_is_refused(tmp_path, score):
    path = tmp_path / "run.txt"
    path.write_text(f"q1 Q0 a 1 2.0 t\nq1 Q0 b 2 {score} t\n")
    refused(read_trec_run, path, 2, "score")


def test_a_docid_listed_twice_in_a_run_is_refused(tmp_path):
    path = tmp_path / "run.txt"
    path.write_text("q1 Q0 a 1 2.0 t\nq1 Q0 a 2 1.0 t\n")
    refused(read_trec_run, path, 2, "docid")


def test_a_run_that_matches_no_judged_query_warns(caplog):
    with caplog.at_level(logging.WARNING, logger="pyserini_ext.eval.metrics"):
        scores = evaluate({"x1": [Hit("a", 1.0)]}, {"q1": {"a": 1}}, ["nDCG@10"])
    assert scores == {"nDCG@10": 0.0}
    assert "none of the run's 1 queries is judged" in caplog.text


# --- defect 11: the SGML topic reader is linear -------------------------------------------------

def test_a_megabyte_of_unclosed_topics_is_refused_quickly(tmp_path):
    path = tmp_path / "topics.txt"
    path.write_text("<top>\n<num> Number: 1\n<title> x\n</top>\n" + "<top> <num> 2 <title> y\n" * 40_000)
    signal.signal(signal.SIGALRM, lambda *_: (_ for _ in ()).throw(TimeoutError("SGML reader still running")))
    signal.alarm(20)  # the quadratic regex took minutes; a linear reader takes well under a second
    try:
        started = time.monotonic()
        assert "not closed" in refused(read_sgml_topics, path, 5, "<top>")
    finally:
        signal.alarm(0)
    assert time.monotonic() - started < 20


def test_a_grade_padded_with_a_separator_character_is_read_not_a_raw_error(tmp_path):
    """Found by the fuzz test: str.strip() removes \\x1c, int() does not."""
    path = tmp_path / "qrels.tsv"
    path.write_bytes(b"query-id\tcorpus-id\tscore\nq1\td1\t\x1c1\n")
    assert read_beir_qrels(path) == {"q1": {"d1": 1}}
