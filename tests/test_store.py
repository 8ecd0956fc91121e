"""The store layer: atomic writes, manifests, and the reuse-or-rebuild rule, end to end on
corpora written here (BM25 through Anserini, dense shards through all-MiniLM-L6-v2, FAISS)."""

import hashlib
import json
import logging
import os
import time
from pathlib import Path

import numpy as np
import pytest

from pyserini_ext.data.readers import read_beir_corpus
from pyserini_ext.store import (
    MANIFEST,
    ManifestError,
    VectorStore,
    building,
    check_built_from,
    encode_corpus,
    ensure_built,
    manifest_digest,
    read_manifest,
    read_shards,
    write_atomic,
    write_manifest,
)


def siblings(path: Path) -> list[str]:
    return sorted(p.name for p in path.parent.iterdir())


# --- atomic helpers ---------------------------------------------------------------------

def test_write_atomic_replaces_whole_or_not_at_all(tmp_path):
    path = tmp_path / "data.bin"
    write_atomic(path, b"old")
    write_atomic(path, "new \u00e9")
    assert path.read_bytes() == "new \u00e9".encode("utf-8")
    with pytest.raises(TypeError):
        write_atomic(path, 12345)  # fails while writing: the old content stays
    assert path.read_bytes() == "new \u00e9".encode("utf-8") and siblings(path) == ["data.bin"]


def test_open_atomic_streams_and_leaves_nothing_on_failure(tmp_path):
    from pyserini_ext.store import open_atomic

    path = tmp_path / "run.trec"
    with open_atomic(path) as f:
        f.write("q1 Q0 d1 1 2.0 x\n")
        assert not path.exists()  # nothing at the final name until the block ends
    with pytest.raises(RuntimeError):
        with open_atomic(path) as f:
            f.write("q1 Q0 d2 1 9.0 x\n")
            raise RuntimeError("search failed half way")
    assert path.read_text() == "q1 Q0 d1 1 2.0 x\n" and siblings(path) == ["run.trec"]


def test_building_replaces_only_on_success(tmp_path):
    target = tmp_path / "index"
    with building(target) as partial:
        assert partial == tmp_path / "index.partial"
        (partial / "a").write_text("1")
    assert (target / "a").read_text() == "1" and siblings(target) == ["index"]
    assert sorted(p.name for p in target.iterdir()) == ["a"]  # no ownership mark left behind

    with pytest.raises(RuntimeError, match="boom"):
        with building(target) as partial:
            (partial / "a").write_text("2")
            raise RuntimeError("boom")
    assert (target / "a").read_text() == "1" and siblings(target) == ["index"]  # old intact, no partial

    with building(target) as partial:
        (partial / "b").write_text("3")
    assert sorted(p.name for p in target.iterdir()) == ["b"] and siblings(target) == ["index"]


def test_building_refuses_a_partial_it_did_not_make(tmp_path):
    target = tmp_path / "index"
    foreign = tmp_path / "index.partial"
    foreign.mkdir()
    (foreign / "precious").write_text("x")
    with pytest.raises(FileExistsError, match="refusing"):
        with building(target):
            pass
    assert (foreign / "precious").read_text() == "x" and not target.exists()


def test_building_resumes_only_the_same_stamp(tmp_path):
    target = tmp_path / "shards"
    with pytest.raises(KeyboardInterrupt):
        with building(target, resume=True, stamp={"corpus": "a"}) as partial:
            (partial / "shard-0").write_text("done")
            raise KeyboardInterrupt
    with pytest.raises(KeyboardInterrupt):
        with building(target, resume=True, stamp={"corpus": "a"}) as partial:
            assert (partial / "shard-0").read_text() == "done"  # kept for the same inputs
            raise KeyboardInterrupt
    assert (tmp_path / "shards.partial" / "shard-0").exists() and not target.exists()
    with building(target, resume=True, stamp={"corpus": "b"}) as partial:
        assert not (partial / "shard-0").exists()  # other inputs: started afresh
    assert siblings(target) == ["shards"] and list(target.iterdir()) == []


# --- manifests and the decision ---------------------------------------------------------------

def test_manifest_round_trip(tmp_path):
    folder = tmp_path / "f"
    (folder / "sub").mkdir(parents=True)
    (folder / "a.bin").write_bytes(b"abc")
    (folder / "sub" / "b.txt").write_bytes(b"hello\n")
    built_from = {"corpus": "c1", "params": {"dims": (2, 3)}, "path": Path("/x/y")}
    written = write_manifest(folder, kind="test", count=2, built_from=built_from, dtype="float32", dims=(3,),
                             docids=("d1", "d2"), hashes=True, extra={"shards": 1})
    manifest = read_manifest(folder)
    assert manifest == written
    assert manifest["kind"] == "test" and manifest["count"] == 2 and manifest["dims"] == [3]
    assert manifest["docids"] == {"first": "d1", "last": "d2"} and manifest["shards"] == 1
    assert manifest["files"] == {
        "a.bin": {"size": 3, "sha256": hashlib.sha256(b"abc").hexdigest()},
        "sub/b.txt": {"size": 6, "sha256": hashlib.sha256(b"hello\n").hexdigest()},
    }
    assert manifest["built_from"] == {"corpus": "c1", "params": {"dims": [2, 3]}, "path": "/x/y"}
    assert manifest_digest(folder) == manifest["digest"]
    assert check_built_from(folder, built_from) == "current"  # tuples and paths compare as JSON
    # Same content written again: same digest (the creation time is not part of it).
    assert write_manifest(folder, kind="test", count=2, built_from=built_from, dtype="float32", dims=(3,),
                          docids=("d1", "d2"), hashes=True, extra={"shards": 1})["digest"] == manifest["digest"]
    sizes_only = write_manifest(folder, kind="test", count=2)
    assert sizes_only["files"] == {"a.bin": {"size": 3}, "sub/b.txt": {"size": 6}}
    assert sizes_only["digest"] != manifest["digest"]

    edited = json.loads((folder / MANIFEST).read_text())
    edited["count"] = 3
    (folder / MANIFEST).write_text(json.dumps(edited))
    with pytest.raises(ManifestError, match="digest"):
        read_manifest(folder)


def build_counter(calls):
    def build(partial):
        calls.append(partial)
        (partial / "data").write_text(f"build {len(calls)}")
        return {"kind": "test", "count": len(calls)}
    return build


def test_ensure_built_reuses_current_and_rebuilds_stale(tmp_path, caplog):
    folder, calls = tmp_path / "index", []
    built_from = {"corpus": "c1", "encoder": {"name": "minilm", "model": "m1"}}
    assert check_built_from(folder, built_from) == "missing"
    ensure_built(folder, built_from, build_counter(calls), "test index")
    assert check_built_from(folder, built_from) == "current" and len(calls) == 1
    mtimes = {p.name: p.stat().st_mtime_ns for p in folder.iterdir()}

    ensure_built(folder, dict(built_from), build_counter(calls), "test index")
    assert len(calls) == 1 and {p.name: p.stat().st_mtime_ns for p in folder.iterdir()} == mtimes

    with caplog.at_level(logging.WARNING, logger="pyserini_ext.store.manifest"):
        ensure_built(folder, {**built_from, "corpus": "c2"}, build_counter(calls), "test index")
    assert len(calls) == 2 and (folder / "data").read_text() == "build 2"
    assert str(folder) in caplog.text and "corpus fingerprint changed" in caplog.text and "encoder" not in caplog.text
    caplog.clear()

    changed_card = {"corpus": "c2", "encoder": {"name": "minilm", "model": "m2"}}
    assert check_built_from(folder, changed_card) == "stale"
    with caplog.at_level(logging.WARNING, logger="pyserini_ext.store.manifest"):
        ensure_built(folder, changed_card, build_counter(calls), "test index")
    assert len(calls) == 3 and "encoder card changed" in caplog.text and "corpus" not in caplog.text

    def fails(partial):
        (partial / "data").write_text("half")
        raise RuntimeError("encoder crashed")

    with pytest.raises(RuntimeError, match="crashed"):
        ensure_built(folder, {"corpus": "c3"}, fails, "test index")
    assert (folder / "data").read_text() == "build 3" and siblings(folder) == ["index"]
    assert check_built_from(folder, changed_card) == "current"  # the old one, untouched

    (folder / "data").unlink()  # a file the manifest lists has gone: stale, rebuilt
    assert check_built_from(folder, changed_card) == "stale"
    ensure_built(folder, changed_card, build_counter(calls), "test index")
    assert (folder / "data").read_text() == "build 4"


def test_two_builds_of_the_same_inputs_have_one_digest_however_long_each_took(tmp_path):
    def build(delay):
        def fill(partial):
            (partial / "data").write_text("same bytes")
            time.sleep(delay)
            return {"kind": "test", "count": 1}
        return fill

    fast = ensure_built(tmp_path / "fast", {"corpus": "c1"}, build(0), "test index")
    slow = ensure_built(tmp_path / "slow", {"corpus": "c1"}, build(0.3), "test index")
    assert read_manifest(fast)["build_seconds"] < 0.3 <= read_manifest(slow)["build_seconds"]
    assert manifest_digest(fast) == manifest_digest(slow)  # what a derived folder records as its source


def test_ensure_built_hashes_every_file_and_refuses_a_flipped_byte_on_reuse(tmp_path, caplog):
    folder, calls = tmp_path / "index", []
    ensure_built(folder, {"corpus": "c1"}, build_counter(calls), "test index")
    data = (folder / "data").read_bytes()
    assert read_manifest(folder)["files"] == {"data": {"size": len(data), "sha256": hashlib.sha256(data).hexdigest()}}

    (folder / "data").write_bytes(data.replace(b"1", b"7"))  # same size, other bytes
    with pytest.raises(ManifestError, match=r"disagrees with its manifest \(data has SHA-256.*delete it"):
        ensure_built(folder, {"corpus": "c1"}, build_counter(calls), "test index")
    assert len(calls) == 1

    # A manifest without SHA-256 (an earlier release's index folder): stale, rebuilt with them.
    (folder / "data").write_bytes(data)
    write_manifest(folder, kind="test", count=1, built_from={"corpus": "c1"})
    assert check_built_from(folder, {"corpus": "c1"}) == "stale"
    with caplog.at_level(logging.WARNING, logger="pyserini_ext.store.manifest"):
        ensure_built(folder, {"corpus": "c1"}, build_counter(calls), "test index")
    assert len(calls) == 2 and "no SHA-256" in caplog.text
    assert "sha256" in read_manifest(folder)["files"]["data"]


def test_ensure_built_replaces_only_what_it_recognises(tmp_path):
    calls = []
    legacy = tmp_path / "old-index"  # an earlier release's index: content, no manifest
    legacy.mkdir()
    (legacy / "index").write_text("old")
    assert check_built_from(legacy, {}) == "stale"
    ensure_built(legacy, {}, build_counter(calls), "test index", legacy=lambda f: (f / "index").exists())
    assert sorted(p.name for p in legacy.iterdir()) == ["data", MANIFEST]

    foreign = tmp_path / "my-documents"
    foreign.mkdir()
    (foreign / "thesis.tex").write_text("precious")
    with pytest.raises(ManifestError, match="refusing"):
        ensure_built(foreign, {}, build_counter(calls), "test index", legacy=lambda f: (f / "index").exists())
    assert (foreign / "thesis.tex").read_text() == "precious" and len(calls) == 1


# --- end to end: a corpus that grows -------------------------------------------------------

DOCS = [
    ("graphene", "Graphene", "Graphene is a single layer of carbon atoms in a hexagonal lattice."),
    ("insulin", "Insulin", "Insulin regulates the uptake of glucose by cells of the body."),
    ("volcano", "Volcanoes", "A volcano erupts molten rock, ash and gases from the mantle."),
    ("violin", "Violin", "The violin is a bowed string instrument with four strings tuned in fifths."),
    ("glacier", "Glaciers", "Glaciers are slow rivers of ice that carve valleys into mountains."),
    ("tea", "Tea", "Tea is brewed from the cured leaves of the Camellia sinensis shrub."),
    ("chess", "Chess", "Chess is a board game for two players on a checkered board of 64 squares."),
]
APPENDED = ("octopus", "Octopus", "An octopus has eight arms lined with suckers and three hearts.")


def write_corpus(path: Path, rows) -> None:
    path.write_text("".join(json.dumps({"_id": i, "title": t, "text": x}) + "\n" for i, t, x in rows),
                    encoding="utf-8")


def fingerprint(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_appended_document_rebuilds_the_lucene_index(tmp_path, caplog):
    from pyserini.search.lucene import LuceneSearcher

    from pyserini_ext.index.lucene import build_lucene_index

    corpus, index = tmp_path / "corpus.jsonl", tmp_path / "bm25"
    write_corpus(corpus, DOCS)
    build_lucene_index(read_beir_corpus(corpus), index, quiet=True, built_from={"corpus": fingerprint(corpus)})
    assert LuceneSearcher(str(index)).num_docs == len(DOCS) and read_manifest(index)["count"] == len(DOCS)

    def untouched():  # unchanged corpus: the index is reused without reading the corpus
        raise AssertionError("read the corpus to reuse a current index")
        yield

    segments = {p.name: p.stat().st_mtime_ns for p in index.iterdir()}
    build_lucene_index(untouched(), index, quiet=True, built_from={"corpus": fingerprint(corpus)})
    assert {p.name: p.stat().st_mtime_ns for p in index.iterdir()} == segments

    write_corpus(corpus, DOCS + [APPENDED])
    with caplog.at_level(logging.WARNING, logger="pyserini_ext.store.manifest"):
        build_lucene_index(read_beir_corpus(corpus), index, quiet=True, built_from={"corpus": fingerprint(corpus)})
    assert "corpus fingerprint changed" in caplog.text and str(index) in caplog.text
    searcher = LuceneSearcher(str(index))
    assert searcher.num_docs == len(DOCS) + 1 and read_manifest(index)["count"] == len(DOCS) + 1
    assert read_manifest(index)["docids"] == {"first": "graphene", "last": "octopus"}
    assert searcher.search("octopus suckers hearts", k=1)[0].docid == "octopus"
    assert siblings(index) == ["bm25", "corpus.jsonl"]  # no partial, no collection, no old index left


class Counting:
    """A real document encoder that counts the documents it encodes and can stop after ``fail_after`` calls."""

    def __init__(self, encoder, fail_after=None):
        self.encoder, self.docs, self.calls, self.fail_after = encoder, [], 0, fail_after

    def encode(self, texts, titles=None, **kwargs):
        if self.fail_after is not None and self.calls >= self.fail_after:
            raise KeyboardInterrupt("interrupted")
        self.calls += 1
        self.docs.extend(texts)
        return self.encoder.encode(texts, titles=titles, **kwargs)


@pytest.fixture(scope="module")
def minilm():
    from pyserini_ext.encode.base import load_card

    card = load_card("all-minilm-l6-v2")
    return card.document_encoder(), card.query_encoder()


def test_appended_document_rebuilds_dense_shards_and_index(minilm, tmp_path, caplog):
    from pyserini_ext.index.dense import build_dense_index
    from pyserini_ext.search.dense import DenseSearcher

    doc_encoder, query_encoder = minilm
    corpus, shards, index = tmp_path / "corpus.jsonl", tmp_path / "shards", tmp_path / "flat"
    write_corpus(corpus, DOCS)

    def identity():
        return {"corpus": fingerprint(corpus), "encoder": "all-minilm-l6-v2"}

    def build(encoder):
        encode_corpus(read_beir_corpus(corpus), encoder, shards, shard_size=3, quiet=True, built_from=identity())
        return build_dense_index(shards, index, "flat", built_from=identity())

    first = Counting(doc_encoder)
    build(first)
    before, docids = read_shards(shards)
    assert len(first.docs) == len(DOCS) and docids == [d[0] for d in DOCS]
    expected = np.asarray(doc_encoder.encode([d[2] for d in DOCS], titles=[d[1] for d in DOCS]), np.float32)
    np.testing.assert_allclose(before, expected, atol=1e-5)
    assert DenseSearcher(index, query_encoder).index.ntotal == len(DOCS)

    unchanged = Counting(doc_encoder)
    mtimes = {p: p.stat().st_mtime_ns for p in [*shards.iterdir(), *index.iterdir()]}
    build(unchanged)
    assert unchanged.docs == [] and {p: p.stat().st_mtime_ns for p in mtimes} == mtimes

    write_corpus(corpus, DOCS + [APPENDED])  # 7 documents in shards of 3: it joins the last shard
    appended = Counting(doc_encoder)
    with caplog.at_level(logging.WARNING, logger="pyserini_ext.store.manifest"):
        build(appended)
    assert f"dense shards {shards} is stale: corpus fingerprint changed" in caplog.text
    assert f"dense index {index} is stale: corpus fingerprint changed" in caplog.text
    assert appended.docs == [DOCS[6][2], APPENDED[2]]  # only the last shard was encoded again
    after, docids = read_shards(shards)
    assert docids == [d[0] for d in DOCS] + ["octopus"] and read_manifest(shards)["count"] == len(DOCS) + 1
    np.testing.assert_allclose(after[:len(DOCS)], before, atol=1e-6)
    searcher = DenseSearcher(index, query_encoder)
    assert searcher.index.ntotal == len(DOCS) + 1 and read_manifest(index)["count"] == len(DOCS) + 1
    assert searcher.search("eight arms and three hearts", k=1)[0].docid == "octopus"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["corpus.jsonl", "flat", "shards"]

    # Another encoder card: every shard is encoded again; an index built from them is rebuilt
    # even when its own caller's dict did not change (the shards' digest is part of its identity).
    other = Counting(doc_encoder)
    encode_corpus(read_beir_corpus(corpus), other, shards, shard_size=3, quiet=True,
                  built_from={**identity(), "encoder": "another-card"})
    assert len(other.docs) == len(DOCS) + 1
    caplog.clear()
    old_index = read_manifest(index)["digest"]
    with caplog.at_level(logging.WARNING, logger="pyserini_ext.store.manifest"):
        build_dense_index(shards, index, "flat", built_from=identity())
    assert f"dense index {index} is stale: source shards" in caplog.text and "corpus" not in caplog.text
    assert read_manifest(index)["built_from"]["source"] == manifest_digest(shards)
    assert read_manifest(index)["digest"] != old_index


def test_interrupted_encoding_resumes_and_a_missing_shard_is_an_error(minilm, tmp_path):
    doc_encoder, _ = minilm
    corpus, shards = tmp_path / "corpus.jsonl", tmp_path / "shards"
    write_corpus(corpus, DOCS)
    docs = list(read_beir_corpus(corpus))
    built_from = {"corpus": fingerprint(corpus)}

    with pytest.raises(KeyboardInterrupt):  # stops while encoding the second shard
        encode_corpus(docs, Counting(doc_encoder, fail_after=1), shards, shard_size=3, quiet=True,
                      built_from=built_from, progress_every=3)
    assert not shards.exists() and (tmp_path / "shards.partial" / "shard-00000.done").exists()
    resumed = Counting(doc_encoder)
    encode_corpus(docs, resumed, shards, shard_size=3, quiet=True, built_from=built_from)
    assert resumed.docs == [d.text for d in docs[3:]]  # the first shard was kept
    assert not (tmp_path / "shards.partial").exists()
    full, _ = read_shards(shards)

    (shards / "shard-00001.npy").unlink()  # a middle shard goes missing
    for read in (VectorStore, read_shards):
        with pytest.raises(ManifestError, match="shard-00001.npy is missing"):
            read(shards)
    assert check_built_from(shards, built_from) == "stale"
    repaired = Counting(doc_encoder)
    encode_corpus(docs, repaired, shards, shard_size=3, quiet=True, built_from=built_from)
    assert repaired.docs == [d.text for d in docs[3:6]]  # only the missing shard
    np.testing.assert_allclose(read_shards(shards)[0], full, atol=1e-6)
    assert len(VectorStore(shards)) == len(DOCS)

    os.rename(shards / "manifest.json", tmp_path / "aside.json")  # an unfinished or earlier-release folder
    with pytest.raises(ManifestError, match="no manifest"):
        VectorStore(shards)


def test_an_unpinned_card_keeps_the_identity_it_had_before_cards_could_pin_a_revision():
    """Folders record the card's identity; the revision field, added later, must not make every
    existing folder of an unpinned card stale (a re-encode of the whole corpus)."""
    import dataclasses

    from pyserini_ext.encode.base import load_card
    from pyserini_ext.recipes import card_identity

    pinned = load_card("all-minilm-l6-v2")
    assert pinned.model.revision
    unpinned = dataclasses.replace(pinned, model=dataclasses.replace(pinned.model, revision=None))
    model = {k: v for k, v in dataclasses.asdict(unpinned.model).items() if k != "revision"}
    # calibration and projection_dim, added later too (static INT8 and projected cards only), stay
    # out of the record when unset
    options = {k: v for k, v in dataclasses.asdict(unpinned.options).items()
               if k not in ("calibration", "projection_dim")}
    record = {"family": "dense", "options": options, "model": model}
    assert card_identity(unpinned) == hashlib.sha256(json.dumps(record, sort_keys=True, default=str).encode()).hexdigest()
    assert card_identity(pinned) != card_identity(unpinned)  # pinning another revision rebuilds
