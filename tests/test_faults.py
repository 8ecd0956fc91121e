"""Issue 14: faults and hostile files. A crafted training checkpoint cannot run code
(defect 7); killed runs and builds leave what was there before, or the whole new thing,
and no temporaries; a rerun gives the same bytes; two builders of one folder take turns."""

import json
import os
import pathlib
import random
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
import torch

from pyserini_ext.store.manifest import CIRCUMSTANCES
from pyserini_ext.train.trainer import ConfigError, Trainer, parse_config, rng_state, set_rng_state


class _RunsCodeWhenUnpickled:
    def __init__(self, marker: pathlib.Path):
        self.marker = marker

    def __reduce__(self):
        return pathlib.Path.touch, (self.marker,)


def _config(name: str):
    return parse_config({"student": "all-minilm-l6-v2", "loss": {"name": "info_nce"}}, name)


# --- defect 7: checkpoints load with weights_only=True --------------------------------------------

def test_a_crafted_checkpoint_is_refused_without_running_its_code(tmp_path):
    trainer = Trainer(_config("crafted"), tmp_path, quiet=True)
    trainer.state_dir.mkdir(parents=True)
    marker = tmp_path / "code-ran"
    torch.save({"step": 1, "payload": _RunsCodeWhenUnpickled(marker)}, trainer.checkpoint_path)
    with pytest.raises(ConfigError, match="not a checkpoint this trainer wrote"):
        trainer.load_checkpoint()
    assert not marker.exists()


def test_generator_states_round_trip_through_a_weights_only_checkpoint(tmp_path):
    random.seed(3), np.random.seed(4), torch.manual_seed(5)
    random.random(), np.random.rand(), np.random.randn(), torch.rand(2)  # move each off its seed
    torch.save({"rng": rng_state()}, tmp_path / "c.pt")
    expected = (random.random(), np.random.rand(3).tolist(), np.random.randn(), torch.rand(4).tolist())
    random.seed(0), np.random.seed(0), torch.manual_seed(0)
    set_rng_state(torch.load(tmp_path / "c.pt", weights_only=True)["rng"])
    assert (random.random(), np.random.rand(3).tolist(), np.random.randn(), torch.rand(4).tolist()) == expected


# --- stores: verified on open, killed builds resume to the same bytes, builders take turns ------

CHILD = textwrap.dedent("""
    import sys, time
    import numpy as np
    from pyserini_ext.data.readers import Document
    from pyserini_ext.store.shards import encode_corpus

    class LetterCounts:
        '''A deterministic 26-d encoder (letter counts); ``delay`` seconds per call.'''
        def __init__(self, delay):
            self.delay, self.calls = delay, 0
        def encode(self, texts, titles=None):
            self.calls += len(texts)
            time.sleep(self.delay)
            return np.array([[t.count(chr(97 + i)) for i in range(26)] for t in texts], dtype=np.float32)

    folder, delay = sys.argv[1], float(sys.argv[2])
    docs = [Document(f"d{i:03d}", "", " ".join(f"w{i * j % 97}abc{'z' * (i % 5)}" for j in range(8)))
            for i in range(60)]
    encoder = LetterCounts(delay)
    encode_corpus(iter(docs), encoder, folder, shard_size=10, quiet=True, progress_every=5,
                  built_from={"corpus": "sixty", "encoder": "letter-counts"})
    print("encoded", encoder.calls, flush=True)
""")


def _child(folder, delay, **kwargs):
    return subprocess.Popen([sys.executable, "-c", CHILD, str(folder), str(delay)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, **kwargs)


def _files(root):
    """Every file under ``root`` with its bytes (the manifest without when and how fast it was built)."""
    import json

    out = {}
    for path in sorted(p for p in root.rglob("*") if p.is_file()):
        data = path.read_bytes()
        if path.name == "manifest.json":
            manifest = json.loads(data)
            for key in CIRCUMSTANCES:  # when and how fast it was built
                manifest.pop(key, None)
            data = json.dumps(manifest, sort_keys=True).encode()
        out[str(path.relative_to(root))] = data
    return out


def _leftovers(parent):
    return sorted(p.name for p in parent.iterdir() if p.name.endswith((".tmp", ".partial", ".lock"))
                  or ".replaced-" in p.name)


@pytest.fixture(scope="module")
def uninterrupted(tmp_path_factory):
    folder = tmp_path_factory.mktemp("straight") / "shards"
    child = _child(folder, 0)
    out, err = child.communicate(timeout=300)
    assert child.returncode == 0, err
    return _files(folder)


@pytest.mark.parametrize("after_shards", [1, 4])
def test_encoding_killed_mid_way_resumes_to_the_same_bytes_and_leaves_nothing(tmp_path, uninterrupted, after_shards):
    folder = tmp_path / "shards"
    child = _child(folder, 0.05)
    partial = tmp_path / "shards.partial"
    deadline = time.monotonic() + 240
    while len(list(partial.glob("*.done"))) < after_shards and child.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    child.kill()  # SIGKILL: no handler runs, as after a power loss
    child.communicate()
    assert not folder.exists() and partial.is_dir()
    rerun = _child(folder, 0)
    out, err = rerun.communicate(timeout=300)
    assert rerun.returncode == 0, err
    assert int(out.split()[-1]) < 60  # the finished shards were kept, not encoded again
    assert _files(folder) == uninterrupted
    assert _leftovers(tmp_path) == []


def test_a_flipped_byte_in_a_shard_is_found_on_open(tmp_path, uninterrupted):
    from pyserini_ext.store import ManifestError, VectorStore

    folder = tmp_path / "shards"
    for name, data in uninterrupted.items():
        (folder / name).parent.mkdir(parents=True, exist_ok=True)
        (folder / name).write_bytes(data)
    assert len(VectorStore(folder)) == 60
    shard = folder / "shard-00003.npy"
    data = bytearray(shard.read_bytes())
    data[-3] ^= 0x40  # same size, one vector component changed
    shard.write_bytes(bytes(data))
    with pytest.raises(ManifestError, match="shard-00003.npy has SHA-256"):
        VectorStore(folder)


def test_a_flipped_byte_in_a_built_dense_index_is_refused_on_open(tmp_path, uninterrupted):
    from pyserini_ext.index.dense import build_dense_index
    from pyserini_ext.store import ManifestError, require_manifest

    shards = tmp_path / "shards"
    for name, data in uninterrupted.items():
        (shards / name).parent.mkdir(parents=True, exist_ok=True)
        (shards / name).write_bytes(data)
    built_from = {"corpus": "sixty", "encoder": "letter-counts"}
    index = build_dense_index(shards, tmp_path / "flat", "flat", built_from=built_from)
    files = require_manifest(index, "faiss-flat")["files"]
    assert sorted(files) == ["docid", "index"] and all(len(entry["sha256"]) == 64 for entry in files.values())
    assert build_dense_index(shards, index, "flat", built_from=built_from) == index  # reused: verified, intact
    data = bytearray((index / "index").read_bytes())
    data[-5] ^= 0x40  # same size, one vector component changed
    (index / "index").write_bytes(bytes(data))
    with pytest.raises(ManifestError, match=rf"{index} disagrees with its manifest \(index has SHA-256"):
        build_dense_index(shards, index, "flat", built_from=built_from)
    assert (index / "index").read_bytes() == bytes(data)  # refused, not silently rebuilt over


def test_a_flipped_byte_in_a_token_index_is_refused_on_open(tmp_path):
    from pyserini_ext.data.readers import Document
    from pyserini_ext.index.multivector import build_token_index, read_token_index
    from pyserini_ext.store import ManifestError, encode_token_corpus

    class Letters:
        """One 4-d vector per word (its first letters' codes): a deterministic token encoder."""
        def encode(self, texts, titles=None):
            return [np.array([[ord(c) for c in (w + "xxxx")[:4]] for w in t.split()], dtype=np.float32) for t in texts]

    docs = [Document(f"d{i}", "", f"alpha w{i} beta") for i in range(12)]
    store = encode_token_corpus(docs, Letters(), tmp_path / "tokens", shard_size=5, quiet=True)
    index = build_token_index(store, tmp_path / "flat.faiss", "flat")
    assert read_token_index(index).ntotal == 36
    data = bytearray((index / "index.faiss").read_bytes())
    data[-7] ^= 0x40
    (index / "index.faiss").write_bytes(bytes(data))
    with pytest.raises(ManifestError, match="index.faiss has SHA-256"):
        read_token_index(index)
    with pytest.raises(ManifestError, match="index.faiss has SHA-256"):
        build_token_index(store, index, "flat")


def test_two_builders_of_one_folder_take_turns_and_the_second_reuses(tmp_path, uninterrupted):
    folder = tmp_path / "shards"
    first, second = _child(folder, 0.02), _child(folder, 0.02)
    (out1, err1), (out2, err2) = first.communicate(timeout=300), second.communicate(timeout=300)
    assert first.returncode == 0 and second.returncode == 0, err1 + err2
    assert sorted([int(out1.split()[-1]), int(out2.split()[-1])]) == [0, 60]  # one encoded, one reused
    assert "Traceback" not in err1 + err2
    assert _files(folder) == uninterrupted
    assert _leftovers(tmp_path) == []


def test_a_run_writer_killed_mid_write_leaves_the_old_run_and_the_next_write_sweeps_its_temporary(tmp_path):
    run = tmp_path / "run.txt"
    run.write_text("q1 Q0 old 1 1.0 t\n")
    writer = subprocess.Popen([sys.executable, "-c", textwrap.dedent(f"""
        import time
        from pyserini_ext.store.atomic import open_atomic
        with open_atomic({str(run)!r}) as f:
            f.write("q1 Q0 new 1 1.0 t\\n")
            f.flush()
            print("writing", flush=True)
            time.sleep(60)
    """)], stdout=subprocess.PIPE, text=True)
    assert writer.stdout.readline().strip() == "writing"
    writer.send_signal(signal.SIGKILL)
    writer.wait()
    assert run.read_text() == "q1 Q0 old 1 1.0 t\n"
    assert len(list(tmp_path.glob(".run.txt.*.tmp"))) == 1  # what a killed writer leaves...
    from pyserini_ext.search.run import Hit, write_trec_run

    write_trec_run({"q1": [Hit("new", 2.0)]}, run)
    assert run.read_text() == "q1 Q0 new 1 2.0 pyserini_ext\n"
    assert _leftovers(tmp_path) == []  # ... the next write of the same file removes


def _children(pid: int) -> list[int]:
    """Pids of the live processes whose parent is ``pid`` (from /proc)."""
    found = []
    for stat in pathlib.Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == pid and fields[0] != "Z":
            found.append(int(stat.parent.name))
    return found


def _alive(pid: int) -> bool:
    try:
        state = pathlib.Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except OSError:
        return False
    return state != "Z"


SLOW = pytest.mark.skipif(not os.environ.get("PYSERINI_EXT_SLOW_TESTS"),
                          reason="two JVM runs (minutes on 2 busy cores): outside CI, run by `make fuzz`")


@SLOW
def test_bm25_indexing_killed_leaves_no_orphan_jvm_and_the_rerun_builds_it_whole(tmp_path):
    import json

    corpus = tmp_path / "tiny" / "corpus.jsonl"
    corpus.parent.mkdir()
    n = 20_000  # enough that Anserini indexes for longer than the 5 s its orphan would be given below
    corpus.write_text("".join(json.dumps({"_id": f"d{i}", "title": "", "text": f"word{i} common text {i % 3}"}) + "\n"
                              for i in range(n)))
    (tmp_path / "tiny" / "queries.jsonl").write_text(json.dumps({"_id": "q1", "text": "common"}) + "\n")
    (tmp_path / "tiny" / "qrels").mkdir()
    (tmp_path / "tiny" / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\n")
    work = tmp_path / "work"
    argv = [sys.executable, "-m", "pyserini_ext", "index", "bm25", "--dataset", str(corpus.parent), "--work", str(work),
            "--quiet"]
    parent = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline, java = time.monotonic() + 240, []
    while not java and parent.poll() is None and time.monotonic() < deadline:
        java = [p for p in _children(parent.pid) if "IndexCollection" in pathlib.Path(f"/proc/{p}/cmdline").read_text()]
        time.sleep(0.05)
    assert java, "the indexing JVM was never seen"
    parent.kill()
    parent.communicate()
    deadline = time.monotonic() + 5  # the kernel kills a child whose parent died at once
    while _alive(java[0]) and time.monotonic() < deadline:
        time.sleep(0.1)
    assert not _alive(java[0]), "the indexing JVM outlived its killed parent"
    rerun = subprocess.run(argv, capture_output=True, text=True, timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    indexes = work / "indexes"
    (index,) = [p for p in indexes.iterdir() if not p.name.startswith(".")]
    from pyserini_ext.store import require_manifest

    assert require_manifest(index, "lucene")["count"] == n
    assert sorted(p.name for p in indexes.iterdir()) == [index.name]  # no partial, lock or collection beside it
    assert not list(index.glob(".collection-*"))


@SLOW
def test_two_bm25_index_commands_on_one_work_folder_both_succeed_with_one_index(tmp_path):
    import json

    folder = tmp_path / "tiny"
    (folder / "qrels").mkdir(parents=True)
    (folder / "corpus.jsonl").write_text("".join(
        json.dumps({"_id": f"d{i}", "title": "", "text": f"word{i} common text {i % 3}"}) + "\n" for i in range(2000)))
    (folder / "queries.jsonl").write_text(json.dumps({"_id": "q1", "text": "common"}) + "\n")
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq1\td1\t1\n")
    work = tmp_path / "work"
    argv = [sys.executable, "-m", "pyserini_ext", "index", "bm25", "--dataset", str(folder), "--work", str(work),
            "--quiet"]
    first, second = (subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                     for _ in range(2))
    results = [first.communicate(timeout=600), second.communicate(timeout=600)]
    assert first.returncode == 0 and second.returncode == 0, results
    assert not any("Traceback" in err or "LockObtainFailed" in err for _, err in results)
    indexes = work / "indexes"
    (index,) = list(indexes.iterdir())
    from pyserini_ext.store import require_manifest

    assert require_manifest(index, "lucene")["count"] == 2000


# --- defect 11: a card pins its hub model's revision ----------------------------------------------

REVISION = "0123456789abcdef0123456789abcdef01234567"


def _card(tmp_path, family, model):
    path = tmp_path / f"pinned-{family}.yaml"
    path.write_text(f"family: {family}\nmodel:\n" + "".join(f"  {k}: {v}\n" for k, v in model.items()))
    return path


@pytest.mark.parametrize("family", ["dense", "tct_colbert", "splade", "mrl", "colbert"])
def test_a_cards_revision_reaches_from_pretrained(tmp_path, monkeypatch, minilm_path, family):
    """Every call a family makes to ``from_pretrained`` for a pinned hub id carries the revision
    (the tokenizer is loaded from the local MiniLM copy; the model load stops the encoder there)."""
    import transformers

    from pyserini_ext.encode.base import load_card

    calls, real_tokenizer = [], transformers.AutoTokenizer.from_pretrained

    class Stop(Exception):
        pass

    def tokenizer(model, **kwargs):
        calls.append(("tokenizer", str(model), kwargs))
        return real_tokenizer(minilm_path)

    def weights(model, **kwargs):
        calls.append(("model", str(model), kwargs))
        raise Stop

    monkeypatch.setattr(transformers.AutoTokenizer, "from_pretrained", tokenizer)
    for loader in (transformers.AutoModel, transformers.AutoModelForMaskedLM):
        monkeypatch.setattr(loader, "from_pretrained", weights)
    card = load_card(_card(tmp_path, family, {"hub": "org/model", "revision": REVISION}))
    assert card.model.revision == REVISION
    with pytest.raises(Stop):
        card.query_encoder(backend="torch")
    assert [c[0] for c in calls] == ["tokenizer", "model"]
    assert all(c[1:] == ("org/model", {"revision": REVISION}) for c in calls), calls


@pytest.mark.parametrize("model, words", [
    ({"hub": "org/model", "revision": "main"}, ["'model.revision'", "40", "'main'"]),
    ({"hub": "org/model", "revision": REVISION[:12]}, ["'model.revision'", "40"]),
    ({"hub": "org/model", "revision": REVISION.upper()}, ["'model.revision'", "40"]),
    ({"hub": "org/model", "revision": 1234}, ["'model.revision'", "a string"]),
    ({"path": "/models/x", "revision": REVISION}, ["model", "revision", "hub"]),
])
def test_a_malformed_or_misplaced_revision_is_refused_naming_file_and_field(tmp_path, model, words):
    from pyserini_ext.encode.base import CardError, load_card

    path = _card(tmp_path, "dense", model)
    with pytest.raises(CardError) as refused:
        load_card(path)
    assert str(refused.value).startswith(f"{path}: ") and all(w in str(refused.value) for w in words), refused.value


COMPRESSED_CHILD = textwrap.dedent("""
    import sys
    import faiss
    import numpy as np
    from pyserini_ext.data.readers import Document
    from pyserini_ext.index.compressed import build_compressed_index
    from pyserini_ext.store.shards import encode_token_corpus

    faiss.omp_set_num_threads(1)  # k-means bit for bit from run to run

    class WordVectors:
        '''A deterministic multi-vector encoder: one unit vector per word, from the word's bytes.'''
        def encode(self, texts, titles=None):
            out = []
            for t in texts:
                rows = [np.random.default_rng(list(w.encode())).standard_normal(32) for w in t.split()]
                rows = np.array(rows, dtype=np.float32)
                out.append(rows / np.linalg.norm(rows, axis=1, keepdims=True))
            return out

    root, kill = sys.argv[1], sys.argv[2:] == ["kill"]
    if kill:  # dies inside the build, once the first block of tokens is compressed (codes half written)
        import os, signal
        from pyserini_ext.store.compressed import ResidualCodec
        def dying_compress(self, vectors):
            os.kill(os.getpid(), signal.SIGKILL)
        ResidualCodec.compress = dying_compress
    docs = [Document(f"d{i:04d}", "", " ".join(f"w{(i * j) % 211}" for j in range(1, 40))) for i in range(400)]
    store = encode_token_corpus(docs, WordVectors(), root + "/tokens", shard_size=100, quiet=True)
    build_compressed_index(store, root + "/compressed", nlist=64, nbits=2, train_tokens=8192)
    print("built", flush=True)
""")


def test_a_compressed_index_build_killed_mid_way_is_rebuilt_whole_with_nothing_left(tmp_path):
    straight = subprocess.run([sys.executable, "-c", COMPRESSED_CHILD, str(tmp_path / "straight")],
                              capture_output=True, text=True, timeout=300)
    assert straight.returncode == 0, straight.stderr
    expected = _files(tmp_path / "straight" / "compressed")
    root = tmp_path / "killed"
    killed = subprocess.run([sys.executable, "-c", COMPRESSED_CHILD, str(root), "kill"], capture_output=True,
                            text=True, timeout=300)
    assert killed.returncode == -signal.SIGKILL
    assert not (root / "compressed").exists() and (root / "compressed.partial" / "codes.npy").exists()
    rerun = subprocess.run([sys.executable, "-c", COMPRESSED_CHILD, str(root)], capture_output=True, text=True,
                           timeout=300)
    assert rerun.returncode == 0, rerun.stderr
    assert _files(root / "compressed") == expected
    assert _leftovers(root) == []


FAISS_CHILD = textwrap.dedent("""
    import os, signal, sys
    import faiss
    import numpy as np
    from pyserini_ext.data.readers import Document
    from pyserini_ext.index.dense import build_dense_index
    from pyserini_ext.index.multivector import build_token_index
    from pyserini_ext.store.shards import encode_corpus, encode_token_corpus

    class Letters:
        '''Deterministic: a document's letter counts (dense), or one count vector per word (tokens).'''
        def encode(self, texts, titles=None):
            vec = lambda t: np.array([t.count(chr(97 + i)) + 1 for i in range(26)], dtype=np.float32)
            return np.stack([vec(t) for t in texts]) if kind == "dense" else [np.stack([vec(w) for w in t.split()])
                                                                              for t in texts]

    root, kind, kill = sys.argv[1], sys.argv[2], sys.argv[3] == "kill"
    if kill:  # the build dies as the index file is written: after the index exists, before the folder is done
        write = faiss.write_index
        def dying_write(index, path):
            write(index, path)
            os.kill(os.getpid(), signal.SIGKILL)
        faiss.write_index = dying_write
    docs = [Document(f"d{i:03d}", "", " ".join(f"w{i * j % 97}abc" for j in range(6))) for i in range(80)]
    if kind == "dense":
        shards = encode_corpus(docs, Letters(), root + "/shards", shard_size=20, quiet=True)
        build_dense_index(shards, root + "/index", "flat")
    else:
        store = encode_token_corpus(docs, Letters(), root + "/tokens", shard_size=20, quiet=True)
        build_token_index(store, root + "/index", "flat")
    print("built", flush=True)
""")


@pytest.mark.parametrize("kind", ["dense", "tokens"])
def test_a_faiss_index_build_killed_mid_way_is_rebuilt_whole_with_nothing_left(tmp_path, kind):
    def run(root, mode):
        return subprocess.run([sys.executable, "-c", FAISS_CHILD, str(root), kind, mode], capture_output=True,
                              text=True, timeout=300)

    straight = run(tmp_path / "straight", "straight")
    assert straight.returncode == 0, straight.stderr
    killed = run(tmp_path / "killed", "kill")
    assert killed.returncode == -signal.SIGKILL
    root = tmp_path / "killed"
    assert not (root / "index").exists() and (root / "index.partial").is_dir()  # died inside the build
    rerun = run(root, "straight")
    assert rerun.returncode == 0, rerun.stderr
    assert _files(root / "index") == _files(tmp_path / "straight" / "index")
    assert _leftovers(root) == []
