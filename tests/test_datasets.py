"""Named datasets: a missing one says where we looked; downloads are checksum-verified."""

import hashlib
import os
import re
import zipfile
from pathlib import Path

import pytest

from pyserini_ext.data import dataset_names, resolve_dataset, resolve_topic_set
from pyserini_ext.data.dataset import safe_component
from pyserini_ext.data.datasets import DatasetNotFoundError, LocalFile, Remote, get_dataset
from pyserini_ext.paths import safe_name

ROOT = Path(os.environ["PYSERINI_EXT_DATA"])  # the real data (tests/conftest.py sets it)
ANSERINI = "https://raw.githubusercontent.com/castorini/anserini-tools/master/topics-and-qrels/"


def test_missing_dataset_says_where_it_looked_and_how_to_fetch(tmp_path, monkeypatch):
    monkeypatch.setenv("PYSERINI_EXT_DATA", str(tmp_path))
    with pytest.raises(DatasetNotFoundError) as err:
        get_dataset("cacm").corpus_path()
    message = str(err.value)
    assert str(tmp_path / "cacm" / "cacm.json") in message
    assert "$PYSERINI_EXT_DATA" in message and "cacm.json" in message


# BEIR v1.0.0 as its README's dataset table publishes it: zip name -> zip MD5 (written out here,
# not read from the catalog, so a wrong catalog entry fails the tests).
BEIR_ZIPS = {
    "msmarco": "444067daf65d982533ea17ebd59501e4", "trec-covid": "ce62140cb23feb9becf6270d0d1fe6d1",
    "nfcorpus": "a89dba18a62ef92f7d323ec890a0d38d", "nq": "d4d3d2e48787a744b6f6e691ff534307",
    "hotpotqa": "f412724f78b0d91183a0e86805e16114", "fiqa": "17918ed23cd04fb15047f73e6c3bd9d9",
    "arguana": "8ad3e3c2a5867cdced806d6503f29b99", "webis-touche2020": "46f650ba5a527fc69e0a6521c5a23563",
    "cqadupstack": "4e41456d7df8ee7760a7f866133bda78", "quora": "18fb154900ba42a600f84b839c173167",
    "dbpedia-entity": "c2a39eb420a3164af735795df012ac2c", "scidocs": "38121350fc3a4d2f48850f6aff52e4a9",
    "fever": "5a818580227bfb4b35bb6fa46d9b6c03", "climate-fever": "8b66f0a9126c521bae2bde127b4dc99d",
    "scifact": "5f7d1de60b170fc8027bb7898e2efca1",
}
FORUMS = "android english gaming gis mathematica physics programmers stats tex unix webmasters wordpress".split()
BEIR_NAMES = [n for n in BEIR_ZIPS if n != "cqadupstack"] + [f"cqadupstack/{f}" for f in FORUMS]


def test_unknown_dataset_is_one_line_naming_every_registered_dataset_and_the_other_forms():
    with pytest.raises(KeyError) as err:
        get_dataset("scifact")
    message = str(err.value)
    assert "\n" not in message and message.startswith("unknown dataset 'scifact'; registered: ")
    for name in ["beir/" + n for n in BEIR_ZIPS if n != "cqadupstack"] + ["cacm", "msmarco-v1-passage"]:
        assert re.search(rf"(^|[ ,]){re.escape(name)}[,;]", message), name
    for forum in FORUMS:  # listed compactly, each forum by name
        assert re.search(rf"beir/cqadupstack/{{[a-z,]*\b{forum}\b", message), forum
    for form in ("BEIR folder", "Pyserini folder", "dataset card", "irds:"):
        assert form in message


def test_every_beir_dataset_and_forum_resolves_by_name():
    for name in BEIR_NAMES:
        dataset = resolve_dataset(f"beir/{name}")
        assert dataset.name == f"beir/{name}" and dataset.layout == "beir" and "test" in dataset.split_names()
        assert dataset.slug == f"beir-{name.replace('/', '-')}"
    assert set(dataset_names()) >= {f"beir/{n}" for n in BEIR_NAMES} | {"cacm", "msmarco-v1-passage"}


def test_every_beir_dataset_offline_names_the_file_to_place_and_its_url_and_md5(tmp_path, monkeypatch):
    monkeypatch.setenv("PYSERINI_EXT_DATA", str(tmp_path))
    monkeypatch.setenv("PYSERINI_EXT_OFFLINE", "1")
    for name in BEIR_NAMES:
        zip_name = name.split("/")[0]
        with pytest.raises(DatasetNotFoundError) as err:
            resolve_dataset(f"beir/{name}").corpus_path()
        message = str(err.value)
        assert f"Place the file {tmp_path / 'beir' / name / 'corpus.jsonl'} " in message, message
        assert f"https://public.ukp.informatik.tu-darmstadt.de/thakur/BEIR/datasets/{zip_name}.zip" in message
        assert f"MD5 {BEIR_ZIPS[zip_name]}" in message
        assert f"unpack {zip_name}/ into {tmp_path / 'beir' / zip_name}" in message
        assert f"it is {zip_name}/{name.partition('/')[2] + '/' if '/' in name else ''}corpus.jsonl" in message
        if zip_name == "msmarco":
            continue
        pyserini = name.replace("/", "-")
        with pytest.raises(DatasetNotFoundError) as err:
            resolve_dataset(f"beir/{name}").topics("test")
        topics = f"topics.beir-v1.0.0-{pyserini}.test.tsv.gz"
        assert str(tmp_path / "topics-and-qrels" / topics) in str(err.value)
        assert ANSERINI + topics in str(err.value)
    assert not any(tmp_path.rglob("*"))  # nothing written, not even a folder


def test_msmarco_passage_offline_names_the_tar_and_its_md5(tmp_path, monkeypatch):
    monkeypatch.setenv("PYSERINI_EXT_DATA", str(tmp_path))
    monkeypatch.setenv("PYSERINI_EXT_OFFLINE", "1")
    with pytest.raises(DatasetNotFoundError) as err:
        resolve_dataset("msmarco-v1-passage").docs()
    message = str(err.value)
    assert f"Place the file {tmp_path / 'msmarco-v1-passage' / 'collection.tsv'} " in message
    assert "https://msmarco.z22.web.core.windows.net/msmarcoranking/collectionandqueries.tar.gz" in message
    assert "MD5 31644046b18952c1386cd4564ba2ae69" in message and "unpack its top level into" in message


def test_pyserini_topic_sets_resolve_to_dataset_and_split():
    dataset, split = resolve_topic_set("dl19-passage")
    assert (dataset.name, split, dataset.split_relevance_level(split)) == ("msmarco-v1-passage", "dl19", 2)
    assert resolve_topic_set("dl20")[1] == resolve_topic_set("dl20-passage")[1] == "dl20"
    assert resolve_topic_set("msmarco-passage-dev-subset")[1] == "dev-subset"
    assert dataset.split_relevance_level("dev-subset") == 1
    for name in BEIR_NAMES:
        if name != "msmarco":
            found, split = resolve_topic_set(f"beir-v1.0.0-{name.replace('/', '-')}-test")
            assert (found.name, split) == (f"beir/{name}", "test")
    # Where a dataset is expected, an unambiguous topic-set name means its dataset.
    assert resolve_dataset("dl19-passage").name == "msmarco-v1-passage"
    assert resolve_dataset("beir-v1.0.0-cqadupstack-tex-test").name == "beir/cqadupstack/tex"
    with pytest.raises(KeyError, match="unknown topic set 'dl21-passage'"):
        resolve_topic_set("dl21-passage")


def test_real_topic_sets_have_their_judged_queries():
    msmarco = resolve_dataset("msmarco-v1-passage")
    for split, count in (("dl19", 43), ("dl20", 200), ("dev-subset", 6980)):
        topics, qrels = msmarco.topics(split), msmarco.qrels(split)
        assert len(topics) == count and set(qrels) <= set(topics)
    assert len(msmarco.qrels("dl20")) == 54
    for name, count in (("nfcorpus", 323), ("trec-covid", 50), ("webis-touche2020", 49), ("arguana", 1406)):
        beir = resolve_dataset(f"beir/{name}")
        assert len(beir.topics("test")) == count and beir.remove_query


def test_scifact_folder_gives_pyserini_test_topics():
    """A BEIR folder's split = queries.jsonl restricted to that split's judged qids, which is
    exactly Pyserini's test topic file for SciFact."""
    folder = resolve_dataset(str(ROOT / "beir" / "scifact"))
    registered = resolve_dataset("beir/scifact")
    assert folder.topics("test") == registered.topics("test")
    assert folder.qrels("test") == registered.qrels("test")
    train = folder.topics("train")
    assert set(train) == set(registered.qrels("train")) and len(train) == 809


def test_name_with_dotdot_or_absolute_or_backslash_is_never_looked_up_under_the_data_root(tmp_path, monkeypatch):
    root, outside = tmp_path / "root", tmp_path / "outside"
    _beir_folder(outside / "x")
    (root / "sub").mkdir(parents=True)
    monkeypatch.setenv("PYSERINI_EXT_DATA", str(root))
    monkeypatch.chdir(tmp_path / "root" / "sub")  # so ../outside/x is not an existing path from here
    for name in ("../outside/x", "sub/../../outside/x", "a\\b", str(tmp_path / "nowhere")):
        with pytest.raises(KeyError, match="never looked up under the data root"):
            resolve_dataset(name)
    # Given as an existing explicit path, the same folder works.
    assert resolve_dataset(str(outside / "x")).split_names() == ["test"]
    monkeypatch.chdir(tmp_path)
    assert resolve_dataset("outside/x").split_names() == ["test"]


def _beir_folder(folder):
    (folder / "qrels").mkdir(parents=True)
    (folder / "corpus.jsonl").write_text('{"_id": "d1", "title": "T", "text": "x"}\n')
    (folder / "queries.jsonl").write_text('{"_id": "q1", "text": "x"}\n')
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\n")
    return folder


def test_slug_is_one_safe_component_and_unique_per_folder(tmp_path):
    a = resolve_dataset(str(_beir_folder(tmp_path / "a" / "my data")))
    b = resolve_dataset(str(_beir_folder(tmp_path / "b" / "my data")))
    assert a.slug != b.slug
    for slug in (a.slug, b.slug, resolve_dataset("beir/scifact").slug, resolve_dataset("cacm").slug):
        assert re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._-]*", slug) and ".." not in slug
        assert safe_name(slug, "dataset slug") == slug
    assert a.slug.startswith("my-data-") and resolve_dataset("beir/scifact").slug == "beir-scifact"
    assert safe_component("..") == "dataset" and safe_component("../..//x") == "x"


def test_describe_is_one_line():
    line = resolve_dataset("msmarco-v1-passage").describe()
    assert "\n" not in line
    assert line.startswith("msmarco-v1-passage  layout=tsv  splits=dev-subset,dl19,dl20  where=")


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
