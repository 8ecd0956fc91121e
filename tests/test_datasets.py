"""Named datasets: a missing one says where we looked; downloads are checksum-verified."""

import hashlib
import zipfile

import pytest

from pyserini_ext.data.datasets import DatasetNotFoundError, LocalFile, Remote, get_dataset


def test_missing_dataset_says_where_it_looked_and_how_to_fetch(tmp_path, monkeypatch):
    monkeypatch.setenv("PYSERINI_EXT_DATA", str(tmp_path))
    with pytest.raises(DatasetNotFoundError) as err:
        get_dataset("cacm").corpus_path()
    message = str(err.value)
    assert str(tmp_path / "cacm" / "cacm.json") in message
    assert "$PYSERINI_EXT_DATA" in message and "cacm.json" in message


def test_unknown_dataset_lists_known_ones():
    with pytest.raises(KeyError, match="registered: beir/scifact, cacm"):
        get_dataset("scifact")


def _zip_with_corpus(tmp_path):
    corpus = b'{"_id": "1", "title": "t", "text": "x"}\n'
    archive = tmp_path / "src" / "tiny.zip"
    archive.parent.mkdir()
    with zipfile.ZipFile(archive, "w") as z:
        z.writestr("tiny/corpus.jsonl", corpus)
        z.writestr("tiny/qrels/test.tsv", "query-id\tcorpus-id\tscore\n1\t1\t1\n")
    return archive, hashlib.md5(corpus).hexdigest(), hashlib.md5(archive.read_bytes()).hexdigest()


def test_download_verifies_archive_and_file_checksums(tmp_path, monkeypatch):
    monkeypatch.setenv("PYSERINI_EXT_DATA", str(tmp_path / "root"))
    archive, corpus_md5, zip_md5 = _zip_with_corpus(tmp_path)
    file = LocalFile("tiny/corpus.jsonl", corpus_md5, Remote(archive.as_uri(), zip_md5, "tiny", "tiny"))
    path = file.resolve()
    assert path.read_bytes() == b'{"_id": "1", "title": "t", "text": "x"}\n'
    qrels = path.parent / "qrels" / "test.tsv"
    assert qrels.exists()  # siblings in the archive arrive too
    # Asked for first, a file in a subfolder of the archive is found and checked against its own MD5.
    monkeypatch.setenv("PYSERINI_EXT_DATA", str(tmp_path / "other-root"))
    sibling = LocalFile("tiny/qrels/test.tsv", hashlib.md5(qrels.read_bytes()).hexdigest(), file.remote)
    assert sibling.resolve().read_bytes() == qrels.read_bytes()
    wrong = LocalFile("tiny/qrels/test.tsv", "f" * 32, file.remote)
    monkeypatch.setenv("PYSERINI_EXT_DATA", str(tmp_path / "third-root"))
    with pytest.raises(DatasetNotFoundError, match=r"checksum mismatch for qrels/test.tsv in file:"):
        wrong.resolve()


def test_bad_checksum_writes_nothing(tmp_path, monkeypatch):
    root = tmp_path / "root"
    monkeypatch.setenv("PYSERINI_EXT_DATA", str(root))
    archive, corpus_md5, _ = _zip_with_corpus(tmp_path)
    file = LocalFile("tiny/corpus.jsonl", corpus_md5, Remote(archive.as_uri(), "0" * 32, "tiny", "tiny"))
    with pytest.raises(DatasetNotFoundError, match="checksum mismatch"):
        file.resolve()
    assert not any(p.is_file() for p in root.rglob("*"))


def test_unreachable_source_names_url_and_checksum(tmp_path, monkeypatch):
    monkeypatch.setenv("PYSERINI_EXT_DATA", str(tmp_path))
    file = LocalFile("x/corpus.jsonl", None, Remote((tmp_path / "nowhere.zip").as_uri(), "ab" * 16, "x", "x"))
    with pytest.raises(DatasetNotFoundError, match=r"could not be downloaded.*MD5 abab"):
        file.resolve()
