"""Datasets from local folders (BEIR, Pyserini layout), dataset cards, archives, TSV corpora and
ir_datasets; each test writes its own small files and computes what it expects from them."""

import gzip
import hashlib
import io
import json
import tarfile
import uuid

import pytest

from pyserini_ext.data import DataFormatError, Document, read_tsv_collection, resolve_dataset
from pyserini_ext.data.datasets import Dataset, DatasetCardError, DatasetNotFoundError, LocalFile, Remote

DOCS = [("d1", "Alpha", "first text"), ("d2", "", "second text"), ("d3", "Gamma", "third\ttabbed? no")]


def write_beir(folder):
    (folder / "qrels").mkdir(parents=True)
    with open(folder / "corpus.jsonl", "w") as f:
        for docid, title, text in DOCS:
            f.write(json.dumps({"_id": docid, "title": title, "text": text}) + "\n")
    queries = {"q1": "alpha?", "q2": "second?", "q3": "train only"}
    (folder / "queries.jsonl").write_text("".join(json.dumps({"_id": q, "text": t}) + "\n" for q, t in queries.items()))
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\nq2\td2\t2\nq2\td3\t0\n")
    (folder / "qrels" / "train.tsv").write_text("query-id\tcorpus-id\tscore\nq3\td3\t1\n")
    return folder


def test_beir_folder_by_path_and_by_name_under_the_data_root(tmp_path, monkeypatch):
    folder = write_beir(tmp_path / "root" / "group" / "mine")
    expected_docs = [Document(*d) for d in DOCS]
    by_path = resolve_dataset(str(folder))
    assert by_path.name == str(folder) and by_path.layout == "beir"
    assert by_path.split_names() == ["test", "train"]
    assert list(by_path.docs()) == expected_docs
    # Each split's topics are the queries judged in that split's qrels.
    assert by_path.topics("test") == {"q1": "alpha?", "q2": "second?"}
    assert by_path.topics("train") == {"q3": "train only"}
    assert by_path.qrels("test") == {"q1": {"d1": 1}, "q2": {"d2": 2, "d3": 0}}
    assert by_path.qrels_path("train") == folder / "qrels" / "train.tsv"

    monkeypatch.setenv("PYSERINI_EXT_DATA", str(tmp_path / "root"))
    by_name = resolve_dataset("group/mine")
    assert by_name.name == "group/mine"
    assert list(by_name.docs()) == expected_docs and by_name.topics("test") == by_path.topics("test")
    assert "group/mine" in by_name.describe() and str(folder) in by_name.describe()


def write_pyserini(folder):
    folder.mkdir(parents=True)
    (folder / "docs.jsonl").write_text("".join(json.dumps({"id": d, "contents": f"{t} {x}".strip()}) + "\n"
                                               for d, t, x in DOCS))
    (folder / "topics.dev.tsv").write_text("1\tfirst query\n2\tsecond query\n")
    (folder / "qrels.dev.txt").write_text("1 0 d1 1\n2 0 d2 1\n")
    (folder / "topics.robust.txt").write_text(
        "<top>\n<num> Number: 301\n<title> international crime\n<desc> Description:\nx\n</top>\n")
    with gzip.open(folder / "qrels.robust.txt.gz", "wt") as f:
        f.write("301 0 d3 2\n")
    return folder


def test_pyserini_folder_pairs_topics_and_qrels_by_split_name(tmp_path, monkeypatch):
    folder = write_pyserini(tmp_path / "root" / "pys")
    dataset = resolve_dataset(str(folder))
    assert dataset.layout == "jsonl" and dataset.split_names() == ["dev", "robust"]
    assert [(d.docid, d.text) for d in dataset.docs()] == [(d, f"{t} {x}".strip()) for d, t, x in DOCS]
    assert dataset.topics("dev") == {"1": "first query", "2": "second query"}
    assert dataset.topics("robust") == {"301": "international crime"}
    assert dataset.qrels("robust") == {"301": {"d3": 2}}
    monkeypatch.setenv("PYSERINI_EXT_DATA", str(tmp_path / "root"))
    assert resolve_dataset("pys").topics("dev") == dataset.topics("dev")

    (folder / "topics.extra.tsv").write_text("9\tlonely\n")
    expected = r"topics.extra.tsv: no qrels file for split 'extra' \(expected .*qrels.extra.txt\)"
    with pytest.raises(DatasetCardError, match=expected):
        resolve_dataset(str(folder))
    (folder / "topics.extra.tsv").unlink()
    (folder / "more.jsonl").write_text('{"id": "d9", "contents": "x"}\n')
    with pytest.raises(DatasetCardError, match="several corpus files.*corpus/ subfolder"):
        resolve_dataset(str(folder))


def test_pyserini_folder_with_tsv_collection_and_plain_split(tmp_path):
    folder = tmp_path / "mm"
    folder.mkdir()
    with gzip.open(folder / "collection.tsv.gz", "wt") as f:
        f.write("0\tThe presence of communication\n1\tManhattan Project\n")
    (folder / "topics.tsv").write_text("7\tmanhattan\n")
    (folder / "qrels.txt").write_text("7 0 1 1\n")
    dataset = resolve_dataset(str(folder))
    assert dataset.layout == "tsv" and dataset.split_names() == ["all"]
    assert list(dataset.docs()) == [Document("0", "", "The presence of communication"),
                                    Document("1", "", "Manhattan Project")]


def test_folder_of_neither_layout_says_what_it_expected(tmp_path):
    (tmp_path / "x").mkdir()
    (tmp_path / "x" / "readme.txt").write_text("hi")
    with pytest.raises(DatasetCardError, match="not a dataset folder: expected BEIR layout"):
        resolve_dataset(str(tmp_path / "x"))


CARD = """\
name: tiny-tsv
description: three passages
layout: tsv
corpus: {{path: data/collection.tsv, md5: {md5}}}
splits:
  dl:
    topics: topics.tsv
    qrels: qrels.txt
    relevance_level: 2
  all-queries:
    topics: topics.tsv
    qrels: qrels.txt
relevance_level: 1
remove_query: true
topic_sets:
  tiny-dl: dl
"""


def write_card(folder):
    (folder / "data").mkdir(parents=True)
    corpus = "".join(f"{d}\t{x}\n" for d, _, x in DOCS[:2])
    (folder / "data" / "collection.tsv").write_text(corpus)
    (folder / "topics.tsv").write_text("1\tfirst\n2\tunjudged\n")
    (folder / "qrels.txt").write_text("1 0 d1 2\n1 0 d2 1\n")
    card = folder / "tiny.yaml"
    card.write_text(CARD.format(md5=hashlib.md5(corpus.encode()).hexdigest()))
    return card


def test_card_reads_every_key(tmp_path, monkeypatch):
    card = write_card(tmp_path / "root")
    dataset = resolve_dataset(str(card))
    assert (dataset.name, dataset.layout, dataset.description) == ("tiny-tsv", "tsv", "three passages")
    assert dataset.split_names() == ["dl", "all-queries"]
    assert [d.docid for d in dataset.docs()] == ["d1", "d2"]
    assert dataset.topics("dl") == {"1": "first", "2": "unjudged"}  # TSV topics: kept whole by default
    assert (dataset.split_relevance_level("dl"), dataset.split_relevance_level("all-queries")) == (2, 1)
    assert dataset.remove_query and dataset.topic_sets == {"tiny-dl": "dl"}
    # By name under the data root: <name>.yaml.
    monkeypatch.setenv("PYSERINI_EXT_DATA", str(tmp_path / "root"))
    assert resolve_dataset("tiny").qrels("dl") == {"1": {"d1": 2, "d2": 1}}
    # A folder holding dataset.yaml is that card.
    card.rename(tmp_path / "root" / "dataset.yaml")
    assert resolve_dataset(str(tmp_path / "root")).split_names() == ["dl", "all-queries"]


@pytest.mark.parametrize("edit, key, problem", [
    (lambda t: t.replace("layout: tsv\n", ""), "layout", "missing"),
    (lambda t: t.replace("layout: tsv", "layout: parquet"), "layout", "not one of beir, jsonl, tsv"),
    (lambda t: t.replace("qrels: qrels.txt\n    relevance", "qrels: nowhere.txt\n    relevance"),
     "splits.dl.qrels", "nowhere.txt not found"),
    (lambda t: t.replace("relevance_level: 2", "relevance_level: high"), "splits.dl.relevance_level",
     "expected a grade"),
    (lambda t: t.replace("remove_query: true", "remove_query: yes please"), "remove_query", "expected true or false"),
    (lambda t: t + "relevance: 2\n", "relevance", "unknown key"),
    (lambda t: t.replace("tiny-dl: dl", "tiny-dl: test"), "topic_sets.tiny-dl", "names split 'test'"),
    (lambda t: t.replace("md5: ", "md5: 12"), "corpus.md5", "expected 32 hex digits"),
])
def test_card_errors_name_the_file_and_the_key(tmp_path, edit, key, problem):
    card = write_card(tmp_path)
    card.write_text(edit(card.read_text()))
    with pytest.raises(DatasetCardError) as err:
        resolve_dataset(str(card))
    assert str(err.value).startswith(f"{card}: key {key!r}: ") and problem in str(err.value)


def test_card_that_is_not_yaml_names_the_file(tmp_path):
    card = tmp_path / "bad.yaml"
    card.write_text("name: [unclosed\n")
    with pytest.raises(DatasetCardError, match=rf"^{card}: not valid YAML"):
        resolve_dataset(str(card))


def test_tsv_collection_reader(tmp_path):
    plain = tmp_path / "c.tsv"
    plain.write_text("p1\tone two\n\np2\tthree\tfour\n")
    assert list(read_tsv_collection(plain)) == [Document("p1", "", "one two"), Document("p2", "", "three\tfour")]
    packed = tmp_path / "c.tsv.gz"
    packed.write_bytes(gzip.compress(plain.read_bytes()))
    assert list(read_tsv_collection(packed)) == list(read_tsv_collection(plain))
    bad = tmp_path / "bad.tsv"
    bad.write_text("p1\tok\nno-tab-here\n")
    with pytest.raises(DataFormatError, match=r"bad.tsv:2: field '<row>'"):
        list(read_tsv_collection(bad))


def _tar_gz(path, members: dict[str, bytes]):
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return hashlib.md5(path.read_bytes()).hexdigest()


def test_tar_gz_archive_is_verified_unpacked_and_read_as_tsv(tmp_path, monkeypatch):
    collection = b"0\tfirst passage\n1\tsecond passage\n"
    archive = tmp_path / "collectionandqueries.tar.gz"
    md5 = _tar_gz(archive, {"collection.tsv": collection, "queries.dev.tsv": b"5\tq\n"})
    monkeypatch.setenv("PYSERINI_EXT_DATA", str(tmp_path / "root"))
    corpus = LocalFile("mm/collection.tsv", hashlib.md5(collection).hexdigest(),
                       Remote(archive.as_uri(), md5, zip_folder="", unpack_to="mm"))
    dataset = Dataset("mm", corpus, "tsv")
    assert [(d.docid, d.text) for d in dataset.docs()] == [("0", "first passage"), ("1", "second passage")]
    assert (tmp_path / "root" / "mm" / "queries.dev.tsv").read_bytes() == b"5\tq\n"  # siblings arrive too

    monkeypatch.setenv("PYSERINI_EXT_DATA", str(tmp_path / "root2"))
    wrong = LocalFile("mm/collection.tsv", None, Remote(archive.as_uri(), "0" * 32, zip_folder="", unpack_to="mm"))
    with pytest.raises(DatasetNotFoundError, match="checksum mismatch"):
        wrong.resolve()
    assert not any(p.is_file() for p in (tmp_path / "root2").rglob("*"))


def test_tar_gz_with_a_folder_inside(tmp_path, monkeypatch):
    archive = tmp_path / "x.tgz"
    md5 = _tar_gz(archive, {"x/corpus.jsonl": b'{"_id": "1", "text": "t"}\n'})
    monkeypatch.setenv("PYSERINI_EXT_DATA", str(tmp_path / "root"))
    file = LocalFile("sets/x/corpus.jsonl", None, Remote(archive.as_uri(), md5, zip_folder="x", unpack_to="sets/x"))
    assert list(Dataset("x", file, "beir").docs()) == [Document("1", "", "t")]


def test_offline_missing_file_says_what_to_place_where(tmp_path, monkeypatch):
    monkeypatch.setenv("PYSERINI_EXT_DATA", str(tmp_path))
    monkeypatch.setenv("PYSERINI_EXT_OFFLINE", "1")
    file = LocalFile("t/qrels.x.txt", "ab" * 16, Remote("https://example.org/qrels.x.txt", "ab" * 16))
    with pytest.raises(DatasetNotFoundError) as err:
        file.resolve()
    assert str(err.value) == (
        f"{tmp_path / 't' / 'qrels.x.txt'} not found and downloads are off ($PYSERINI_EXT_OFFLINE is set). "
        f"Place the file {tmp_path / 't' / 'qrels.x.txt'} by hand: download https://example.org/qrels.x.txt "
        f"(MD5 {'ab' * 16}) to that path; or point $PYSERINI_EXT_DATA at a folder that has t/qrels.x.txt.")
    unverified = LocalFile("t/y.txt", None, Remote("https://example.org/y.txt", None))
    with pytest.raises(DatasetNotFoundError, match="no checksum recorded"):
        unverified.resolve()
    assert not any(tmp_path.rglob("*"))


def test_fingerprint_changes_when_a_document_is_appended(tmp_path):
    folder = write_beir(tmp_path / "b")
    dataset = resolve_dataset(str(folder))
    first = dataset.fingerprint()
    assert first == resolve_dataset(str(folder)).fingerprint() and len(first) == 64
    with open(folder / "corpus.jsonl", "a") as f:
        f.write(json.dumps({"_id": "d4", "text": "appended"}) + "\n")
    assert dataset.fingerprint() != first
    # A folder corpus: a file added to the folder changes it too.
    pys = tmp_path / "p"
    (pys / "corpus").mkdir(parents=True)
    (pys / "corpus" / "a.jsonl").write_text('{"id": "1", "contents": "x"}\n')
    (pys / "topics.tsv").write_text("1\tq\n")
    (pys / "qrels.txt").write_text("1 0 1 1\n")
    folder_corpus = resolve_dataset(str(pys))
    before = folder_corpus.fingerprint()
    (pys / "corpus" / "b.jsonl").write_text('{"id": "2", "contents": "y"}\n')
    assert folder_corpus.fingerprint() != before and [d.docid for d in folder_corpus.docs()] == ["1", "2"]


def test_fingerprint_of_a_declared_md5_is_the_content_and_a_mismatch_is_an_error(tmp_path):
    one, two = write_card(tmp_path / "one"), write_card(tmp_path / "two")
    assert resolve_dataset(str(one)).fingerprint() == resolve_dataset(str(two)).fingerprint()
    assert resolve_dataset(str(one)).slug != resolve_dataset(str(two)).slug
    with open(tmp_path / "two" / "data" / "collection.tsv", "a") as f:
        f.write("d9\tappended\n")
    with pytest.raises(DatasetNotFoundError, match="collection.tsv: MD5 .*, but dataset 'tiny-tsv' declares"):
        resolve_dataset(str(two)).fingerprint()


def test_irds_dataset_from_a_locally_registered_ir_datasets_entry(tmp_path, monkeypatch):
    ir_datasets = pytest.importorskip("ir_datasets")
    from ir_datasets.datasets.base import Dataset as IrdsBase
    from ir_datasets.formats import TrecQrels, TsvDocs, TsvQueries
    from ir_datasets.util import LocalDownload

    monkeypatch.setenv("IR_DATASETS_HOME", str(tmp_path / "irds-home"))
    (tmp_path / "docs.tsv").write_text("".join(f"{d}\t{x}\n" for d, _, x in DOCS[:2]))
    (tmp_path / "queries.tsv").write_text("q1\tfirst?\nq2\tsecond?\n")
    (tmp_path / "qrels.txt").write_text("q1 0 d1 1\nq2 0 d2 2\nq2 0 d1 0\n")
    irds_id = f"pyserini-ext-test-{uuid.uuid4().hex[:8]}/judged"
    ir_datasets.registry.register(irds_id, IrdsBase(
        TsvDocs(LocalDownload(tmp_path / "docs.tsv")),
        TsvQueries(LocalDownload(tmp_path / "queries.tsv")),
        TrecQrels(LocalDownload(tmp_path / "qrels.txt"), {0: "not relevant", 1: "relevant", 2: "very"}),
    ))
    dataset = resolve_dataset(f"irds:{irds_id}")
    assert dataset.name == f"irds:{irds_id}" and dataset.split_names() == ["judged"]
    assert list(dataset.docs()) == [Document("d1", "", "first text"), Document("d2", "", "second text")]
    assert dataset.topics("judged") == dataset.topics("all") == {"q1": "first?", "q2": "second?"}
    assert dataset.qrels("judged") == {"q1": {"d1": 1}, "q2": {"d2": 2, "d1": 0}}
    path = dataset.qrels_path("judged")
    assert path.read_text() == "q1 0 d1 1\nq2 0 d2 2\nq2 0 d1 0\n"
    assert dataset.slug == f"irds-{irds_id.replace('/', '-')}"
    assert dataset.fingerprint() == hashlib.sha256(
        json.dumps(["irds", irds_id, ir_datasets.__version__]).encode()).hexdigest()
    with pytest.raises(KeyError, match="has no split 'test'; it has: judged"):
        dataset.topics("test")
    with pytest.raises(DatasetNotFoundError, match="ir_datasets has no dataset 'pyserini-ext-no/such'"):
        resolve_dataset("irds:pyserini-ext-no/such")


def test_tar_members_are_checked_where_python_has_no_extraction_filter(tmp_path, monkeypatch):
    """Debian 12's Python 3.11.2 has no tarfile filters: the plain-member check stands in for "data"."""
    import io
    import tarfile

    from pyserini_ext.data import sources

    good = tmp_path / "good.tar"
    with tarfile.open(good, "w") as t:
        for name, data in {"x/a.txt": b"a", "x/b/c.txt": b"c"}.items():
            info = tarfile.TarInfo(name)
            info.size = len(data)
            t.addfile(info, io.BytesIO(data))
    monkeypatch.delattr(tarfile, "data_filter", raising=False)
    sources._unpack(good, tmp_path / "out", "file:///good.tar")
    assert (tmp_path / "out" / "x" / "b" / "c.txt").read_bytes() == b"c"
    for name, kind in [("../escape.txt", tarfile.REGTYPE), ("/abs.txt", tarfile.REGTYPE), ("x/link", tarfile.SYMTYPE)]:
        bad = tmp_path / "bad.tar"
        with tarfile.open(bad, "w") as t:
            info = tarfile.TarInfo(name)
            info.type = kind
            info.linkname = "/etc/passwd" if kind == tarfile.SYMTYPE else ""
            t.addfile(info, io.BytesIO(b""))
        with pytest.raises(DatasetNotFoundError, match="refusing to unpack"):
            sources._unpack(bad, tmp_path / f"bad-{abs(hash(name))}", "file:///bad.tar")
    assert not (tmp_path / "escape.txt").exists()
