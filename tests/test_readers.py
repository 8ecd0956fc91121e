"""Readers on small hand-written files (exact values) and on the real data (counts)."""

import gzip

import pytest

from pyserini_ext.data import (
    DataFormatError,
    get_dataset,
    read_beir_corpus,
    read_beir_qrels,
    read_jsonl_collection,
    read_qrels,
    read_sgml_topics,
    read_topics,
    read_tsv_topics,
)


def test_beir_corpus_streams_documents(tmp_path):
    path = tmp_path / "corpus.jsonl"
    path.write_text('{"_id": "d1", "title": "T", "text": "x y"}\n\n{"_id": 7, "text": "no title"}\n')
    docs = [(d.docid, d.title, d.text) for d in read_beir_corpus(path)]
    assert docs == [("d1", "T", "x y"), ("7", "", "no title")]


@pytest.mark.parametrize("line, field, problem", [
    ('{"title": "T", "text": "x"}', "_id", "missing"),
    ('{"_id": "d", "title": "T", "text": 3}', "text", "expected a string"),
    ('{"_id": "d", "text": "x"', "<json>", "not valid JSON"),
])
def test_malformed_corpus_line_names_file_line_and_field(tmp_path, line, field, problem):
    path = tmp_path / "corpus.jsonl"
    path.write_text('{"_id": "ok", "title": "", "text": "fine"}\n' + line + "\n")
    with pytest.raises(DataFormatError) as err:
        list(read_beir_corpus(path))
    assert (err.value.path, err.value.line, err.value.field) == (path, 2, field)
    assert f"{path}:2: field {field!r}: {problem}" in str(err.value)


def test_jsonl_collection_folder(tmp_path):
    (tmp_path / "a.jsonl").write_text('{"id": "1", "contents": "one"}\n')
    (tmp_path / "b.json").write_text('{"id": "2", "contents": "two"}\n')
    assert [(d.docid, d.text) for d in read_jsonl_collection(tmp_path)] == [("1", "one"), ("2", "two")]


def test_tsv_topics_gz_and_bad_row(tmp_path):
    path = tmp_path / "topics.tsv.gz"
    with gzip.open(path, "wt") as f:
        f.write("1\tfirst query\n2\t second \n")
    assert read_topics(path) == {"1": "first query", "2": "second"}
    bad = tmp_path / "bad.tsv"
    bad.write_text("1\tok\nno tab here\n")
    with pytest.raises(DataFormatError, match=r"bad.tsv:2: field '<row>'"):
        read_tsv_topics(bad)


def test_sgml_topics_trec_and_cacm_styles(tmp_path):
    trec = tmp_path / "trec.txt"
    trec.write_text("<top>\n<num> Number: 301\n<title> International Organized Crime\n\n<desc> Description:\n"
                    "Identify organizations.\n</top>\n<top>\n<num> Number: 302 <title> Poliomyelitis and "
                    "Post-Polio\n<desc> x\n</top>\n")
    assert read_sgml_topics(trec) == {"301": "International Organized Crime", "302": "Poliomyelitis and Post-Polio"}
    cacm = tmp_path / "cacm.txt"
    cacm.write_text("<DOC>\n<DOCNO> 1 </DOCNO>\n\n What articles exist\nwhich deal with TSS?\n</DOC>\n")
    assert read_topics(cacm) == {"1": "What articles exist which deal with TSS?"}


def test_qrels_formats_and_bad_grade(tmp_path):
    beir = tmp_path / "test.tsv"
    beir.write_text("query-id\tcorpus-id\tscore\n1\td1\t1\n1\td2\t2\n")
    assert read_qrels(beir) == {"1": {"d1": 1, "d2": 2}}
    trec = tmp_path / "qrels.txt"
    trec.write_text("1 0 d1 1\n2 0 d9 0\n3 0 d3 high\n")
    with pytest.raises(DataFormatError, match=r"qrels.txt:3: field 'relevance'"):
        read_qrels(trec)
    with pytest.raises(DataFormatError, match=r"bad.tsv:2: field '<row>'"):
        bad = tmp_path / "bad.tsv"
        bad.write_text("query-id\tcorpus-id\tscore\n1\td1\n")
        read_beir_qrels(bad)


def test_real_scifact_counts():
    scifact = get_dataset("beir/scifact")
    assert sum(1 for _ in scifact.docs()) == 5183
    test_topics, test_qrels = scifact.topics("test"), scifact.qrels("test")
    assert len(test_topics) == 300 and len(test_qrels) == 300
    assert sum(len(d) for d in test_qrels.values()) == 339
    train_qrels = scifact.qrels("train")
    assert len(train_qrels) == 809 and sum(len(d) for d in train_qrels.values()) == 919
    # The Pyserini topic file and BEIR's queries.jsonl hold the same test queries.
    queries = scifact.topics("train")
    assert all(queries[q] == text for q, text in test_topics.items())


def test_real_cacm_counts():
    cacm = get_dataset("cacm")
    assert sum(1 for _ in cacm.docs()) == 3204
    assert len(cacm.topics("all")) == 64
    qrels = cacm.qrels("all")
    assert len(qrels) == 52 and sum(len(d) for d in qrels.values()) == 796
