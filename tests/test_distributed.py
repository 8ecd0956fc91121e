"""Ray behind the same commands (pyserini_ext.distributed), on a local Ray cluster of 2 CPUs
started once for the session: distributed shards are the single-process shards byte for byte,
a killed encoder actor's shard is redone, sharded dense, impact and multi-vector search write
the single-index run,
a lost search actor fails the batch, and ``repro run --ray`` gives the sequential table.
Ray never enters the import path without ``--ray``."""

import contextlib
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from pyserini_ext.data.readers import Document
from pyserini_ext.store.manifest import CIRCUMSTANCES

try:  # through require_ray: it keeps Ray's failure signal handler away from the JVM (set before import)
    from pyserini_ext.distributed import RayMissing, require_ray

    ray = require_ray()
except RayMissing as missing:
    pytest.skip(str(missing), allow_module_level=True)

CARD = "all-minilm-l6-v2"
WORDS = ("protein cell gene virus vaccine immune receptor tumour dose trial cohort mouse signal kinase "
         "membrane neuron brain liver heart lung").split()


def tiny_corpus(n: int = 70) -> list[Document]:
    """Short documents, a few of them identical (so dense scores tie)."""
    rng = np.random.default_rng(7)
    docs = []
    for i in range(n):
        if i % 10 == 9:
            text = "the same sentence about a protein in a cell"
        else:
            text = " ".join(rng.choice(WORDS, size=int(rng.integers(4, 12))))
        docs.append(Document(f"d{i:03d}", f"title {i % 5}", text))
    return docs


def folder_bytes(folder: Path) -> dict[str, bytes]:
    """Every file under ``folder`` by relative path; the manifest without when and how fast it was built."""
    out = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        data = path.read_bytes()
        if path.name == "manifest.json":
            manifest = json.loads(data)
            for key in CIRCUMSTANCES:  # when and how fast it was built
                manifest.pop(key, None)
            data = json.dumps(manifest, sort_keys=True).encode()
        out[str(path.relative_to(folder))] = data
    return out


@contextlib.contextmanager
def torch_threads(n: int):
    """PyTorch's intra-op threads set to ``n`` (what an encoder actor on one CPU slot runs with):
    on CPU some shapes' sums depend on it (MiniLM on a batch of one does, measured), so the
    single-process reference runs with the workers' thread count."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(before)


@pytest.fixture(scope="session")
def ray_cluster():
    """One local Ray cluster of 2 CPUs for the whole session."""
    from pyserini_ext.distributed import connect

    connect(num_cpus=2)
    yield ray
    ray.shutdown()


@pytest.fixture(scope="module")
def card():
    from pyserini_ext.encode.base import load_card

    return load_card(CARD)


@pytest.fixture(scope="module")
def single_process_shards(card, tmp_path_factory):
    from pyserini_ext.store import encode_corpus

    folder = tmp_path_factory.mktemp("single") / "shards"
    with torch_threads(1):
        return encode_corpus(tiny_corpus(), card.document_encoder(), folder, shard_size=16, quiet=True,
                             progress_every=4, built_from={"corpus": "tiny"})


@pytest.fixture(scope="class")
def encoder_pool(ray_cluster):
    """Two encoder actors of the card (each loads the model once; the tests of a class share
    them, and they are gone after it: each holds one of the cluster's two CPU slots)."""
    from pyserini_ext.distributed.encoding import EncoderPool

    pool = EncoderPool(CARD, workers=2).start()
    yield pool
    pool.close()


class TestEncodingOnRay:
    def test_distributed_shards_are_the_single_process_shards(self, encoder_pool, card, single_process_shards, tmp_path):
        from pyserini_ext.distributed.encoding import encode_store

        folder = encode_store(card, tiny_corpus(), tmp_path / "shards", quiet=True, shard_size=16, progress_every=4,
                              built_from={"corpus": "tiny"}, pool=encoder_pool)
        ours, theirs = folder_bytes(folder), folder_bytes(single_process_shards)
        assert sorted(ours) == sorted(theirs) and len([n for n in ours if n.endswith(".npy")]) == 5
        for name in theirs:
            assert ours[name] == theirs[name], name


    def test_an_encoder_actor_killed_mid_shard_is_restarted_and_the_shard_redone(self, encoder_pool, card, tmp_path):
        from pyserini_ext.store.shards import DENSE, dense_codec, docs_sha256, encode_shard

        chunk = tiny_corpus(64)
        digest = docs_sha256(chunk)
        with torch_threads(1):
            expected = encode_shard(tmp_path / "single", DENSE, 3, chunk, digest, *dense_codec(card.document_encoder()),
                                    progress_every=1)
        actor = encoder_pool.idle[-1]  # the actor submit() hands the shard to
        _, _, first_pid = ray.get(actor.progress.remote())
        (tmp_path / "ray").mkdir()
        encoder_pool.submit(tmp_path / "ray", 3, chunk, digest, 1)
        deadline = time.monotonic() + 120
        while True:  # until the actor is inside shard 3, with some of its documents encoded
            shard, encoded, _ = ray.get(actor.progress.remote())
            if shard == 3 and encoded > 0:
                break
            assert time.monotonic() < deadline, "the actor never started the shard"
            time.sleep(0.005)
        ray.kill(actor, no_restart=False)  # the process dies; Ray restarts the actor
        assert 0 < encoded < len(chunk)  # it died mid-shard
        marks = encoder_pool.finish()
        _, _, second_pid = ray.get(actor.progress.remote())
        assert second_pid != first_pid  # a new process redid the shard
        assert marks[3] == expected
        assert folder_bytes(tmp_path / "ray") == folder_bytes(tmp_path / "single")  # no duplicate, no leftover


@pytest.fixture(scope="module")
def dense_index(single_process_shards, tmp_path_factory):
    from pyserini_ext.index.dense import build_dense_index

    return build_dense_index(single_process_shards, tmp_path_factory.mktemp("flat") / "flat", "flat")


TOPICS = {"q1": "protein in a cell", "q2": "vaccine trial cohort", "q3": "brain neuron signal",
          "q4": "the same sentence about a protein in a cell", "q5": "liver heart lung"}


def as_pairs(results: dict) -> dict:
    return {qid: [(h.docid, h.score) for h in hits] for qid, hits in results.items()}


@pytest.mark.parametrize("precision, policy, hits", [("float32", "docid", 10), ("float16", "reverse", 3)])
def test_sharded_dense_search_writes_the_single_index_run(ray_cluster, card, single_process_shards, dense_index,
                                                          tmp_path, precision, policy, hits):
    from pyserini_ext.distributed.search import ShardedDenseSearcher
    from pyserini_ext.search.dense import DenseSearcher
    from pyserini_ext.search.run import search_topics, write_trec_run
    from pyserini_ext.search.ties import TieOrder

    ties = TieOrder(policy, 0)
    encoder = card.query_encoder()
    single = DenseSearcher(dense_index, encoder, policy, 0, precision)
    sharded = ShardedDenseSearcher(single_process_shards, encoder, 3, "flat", policy, 0, precision)
    try:
        ours = search_topics(sharded, TOPICS, hits, ties=ties)
        # Back to back, before the k loop: computed after it, the single index's run once had one
        # query's scores all one float32 ULP apart (its query embedding differed in the last bits;
        # DenseSearcher.batch_search(threads=1) also sets OpenMP's thread count process-wide). The
        # cause was not pinned down; it is the query encoder's state, not the shard merge.
        theirs = search_topics(single, TOPICS, hits, ties=ties)
        for k in (1, 2, 3, 5):  # each list cut at k as one index cuts it (q4's 7 tied copies span all 3 shards)
            assert as_pairs(sharded.batch_search(list(TOPICS.values()), list(TOPICS), k)) == \
                as_pairs(single.batch_search(list(TOPICS.values()), list(TOPICS), k)), k
    finally:
        sharded.close()
    if precision == "float16":  # the case is about ties: q4's cut-off falls inside its tie group of 7 copies
        deeper = single.batch_search([TOPICS["q4"]], ["q4"], hits + 1)["q4"]
        assert deeper[hits - 1].score == deeper[hits].score
    a, b = write_trec_run(ours, tmp_path / "sharded.txt"), write_trec_run(theirs, tmp_path / "single.txt")
    assert a.read_bytes() == b.read_bytes()


def test_a_lost_search_actor_fails_the_batch_with_a_clear_error(ray_cluster, card, single_process_shards):
    from pyserini_ext.distributed.search import ShardedDenseSearcher, ShardLost

    sharded = ShardedDenseSearcher(single_process_shards, card.query_encoder(), 2)
    assert len(sharded.batch_search(list(TOPICS.values()), list(TOPICS), 5)) == 5
    ray.kill(sharded.actors[1])
    started = time.monotonic()
    with pytest.raises(ShardLost, match=r"search shard 1 of 2 \(documents 35\.\.69\) was lost; the batch of 5"):
        sharded.batch_search(list(TOPICS.values()), list(TOPICS), 5)
    assert time.monotonic() - started < 30  # an error, not a hang


def assert_same_runs(sharded, single, tmp_path, policy: str, hits: int = 10):
    """The sharded searcher's run file is the single index's, byte for byte, and each list cut at
    small k (inside the tied copies' group) is the single index's."""
    from pyserini_ext.search.run import search_topics, write_trec_run
    from pyserini_ext.search.ties import TieOrder

    ties = TieOrder(policy, 0)
    ours, theirs = search_topics(sharded, TOPICS, hits, ties=ties), search_topics(single, TOPICS, hits, ties=ties)
    a, b = write_trec_run(ours, tmp_path / "sharded.txt"), write_trec_run(theirs, tmp_path / "single.txt")
    assert a.read_bytes() == b.read_bytes()
    for k in (1, 3, 5):
        assert as_pairs(sharded.batch_search(list(TOPICS.values()), list(TOPICS), k)) == \
            as_pairs(single.batch_search(list(TOPICS.values()), list(TOPICS), k)), k


@pytest.fixture(scope="module")
def impact_store(tmp_path_factory):
    from pyserini_ext.encode.base import load_card
    from pyserini_ext.index.impact import build_impact_index, encode_impact_corpus

    card = load_card("splade-tiny")
    root = encode_impact_corpus(tiny_corpus(), card.document_encoder(), tmp_path_factory.mktemp("impact") / "encoded",
                                shard_size=16, quiet=True)
    return card, root, build_impact_index(root, root.with_name("lucene-impact"))


@pytest.mark.parametrize("policy", ["docid", "reverse"])
def test_sharded_impact_search_writes_the_single_index_run(ray_cluster, impact_store, tmp_path, policy):
    from pyserini.search.lucene import LuceneImpactSearcher

    from pyserini_ext.distributed.search import ShardedImpactSearcher

    card, root, index = impact_store
    encoder = card.query_encoder()
    single = LuceneImpactSearcher(str(index), encoder, min_idf=-1)  # as the impact recipe opens it
    sharded = ShardedImpactSearcher(root, encoder, 3, built_from={"corpus": "tiny"})
    try:
        top = single.batch_search([TOPICS["q4"]], ["q4"], 8)["q4"]
        assert len({h.score for h in top[:7]}) == 1  # the 7 copies tie: k=3 and 5 cut inside the group
        assert_same_runs(sharded, single, tmp_path, policy)
    finally:
        sharded.close()


@pytest.fixture(scope="module")
def token_store(tmp_path_factory):
    from pyserini_ext.encode.base import load_card
    from pyserini_ext.index.multivector import build_token_index
    from pyserini_ext.store import TokenStore, encode_token_corpus

    card = load_card("colbert-minilm-l6-v2")
    root = encode_token_corpus(tiny_corpus(), card.document_encoder(), tmp_path_factory.mktemp("tokens") / "tokens",
                               shard_size=16, quiet=True)
    return card, root, build_token_index(TokenStore(root), root.with_name("flat.faiss"), "flat")


@pytest.mark.parametrize("k_prime, policy", [(5, "docid"), (40, "reverse")])
def test_sharded_multivector_search_writes_the_single_index_run(ray_cluster, token_store, tmp_path, k_prime, policy):
    from pyserini_ext.distributed.search import ShardedColbertSearcher
    from pyserini_ext.distributed.tokens import TieCompleteColbertSearcher, top_tokens
    from pyserini_ext.index.multivector import read_token_index
    from pyserini_ext.store import TokenStore

    card, root, index_dir = token_store
    encoder, index = card.query_encoder(), read_token_index(index_dir)
    single = TieCompleteColbertSearcher(TokenStore(root), index, encoder, k_prime, tie_policy=policy)
    sharded = ShardedColbertSearcher(root, encoder, 3, k_prime, policy)
    try:
        if k_prime == 5:  # the case is about ties: the 7 copies' tokens tie across some query token's k'-th place
            rows = top_tokens(index, encoder.encode_batch([TOPICS["q4"]])[0], k_prime)
            assert max(len(scores) for scores, _ in rows) > k_prime
        assert_same_runs(sharded, single, tmp_path, policy)
    finally:
        sharded.close()


def test_repro_run_on_ray_gives_the_sequential_table(ray_cluster, workdir, tmp_path):
    import json

    from pyserini_ext.distributed.repro import run_specs, spec_groups
    from pyserini_ext.repro.results import run_specs as run_sequentially
    from pyserini_ext.repro.runner import find_spec, format_table

    specs = [find_spec("scifact-bm25-flat"), find_spec("cacm-bm25")]
    items = [(s.name, s) for s in specs] + [("broken", ValueError("unreadable"))]
    assert spec_groups(specs) == [[0], [1]]  # two datasets: two parallel tasks
    on_ray = run_specs(items, workdir, quiet=True, results=tmp_path / "ray")
    sequential = run_sequentially(items, workdir, quiet=True, results=tmp_path / "sequential")
    table = format_table([v for o in on_ray for v in o.verdicts])
    assert table == format_table([v for o in sequential for v in o.verdicts])
    assert table.count("OK") == 4 and "FAIL" not in table  # 3 SciFact metrics, 1 CACM
    assert [o.error for o in on_ray] == [o.error for o in sequential] == [None, None, "ValueError: unreadable"]
    for outcome in on_ray[:2]:  # recorded by the Ray task as the sequential run records
        record = json.loads(outcome.path.read_text())
        assert outcome.path.is_relative_to(tmp_path / "ray") and record["spec"] == outcome.name


def test_specs_sharing_a_dataset_or_a_trained_model_run_in_one_task():
    from types import SimpleNamespace as Spec

    from pyserini_ext.distributed.repro import spec_groups

    specs = [Spec(dataset="a", train=()), Spec(dataset="b", train=("t",)), Spec(dataset="a", train=()),
             Spec(dataset="c", train=("t",)), Spec(dataset="d", train=())]
    assert spec_groups(specs) == [[0, 2], [1, 3], [4]]


def run_python(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=600,
                          env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[1])})


def test_ray_stays_out_of_the_import_path_of_a_normal_search(dense_index, card):
    code = ("import sys, pyserini_ext\n"
            "from pyserini_ext.encode.base import load_card\n"
            "from pyserini_ext.search.dense import DenseSearcher\n"
            "from pyserini_ext.search.run import search_topics\n"
            "from pyserini_ext import cli\n"
            "cli.build_parser()\n"
            f"searcher = DenseSearcher({str(dense_index)!r}, load_card({CARD!r}).query_encoder())\n"
            "run = search_topics(searcher, {'q': 'protein in a cell'}, 5)\n"
            "print(len(run['q']), 'ray' in sys.modules)\n")
    out = run_python(code)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["5", "False"]


def test_ray_option_without_ray_says_what_to_install():
    code = ("import sys\n"
            "sys.modules['ray'] = None  # as if Ray were not installed: importing it raises ImportError\n"
            "from pyserini_ext.cli import main\n"
            "main(['index', 'dense', '--dataset', 'cacm', '--ray'])\n")
    out = run_python(code)
    assert out.returncode == 1
    assert out.stderr.strip() == 'Ray is not installed: pip install "pyserini_ext[ray]"'


def test_a_jvm_started_before_ray_survives_lucene_searches_after_it(ray_cluster, workdir):
    """ray.init turns on Python's faulthandler, which took the JVM's own SIGSEGVs and aborted
    the driver (the CLI starts the JVM before Ray: cards load Pyserini); connect() turns it off.
    Under pytest faulthandler is on from the start, and Ray's own failure signal handler took the
    JVM's SIGSEGVs once a task had run (exit 139): connect() keeps Ray from installing it."""
    from pyserini_ext.recipes import bm25_index, workspace

    index = bm25_index(workspace("cacm", workdir, quiet=True))  # built by the repro test above, or here
    code = ("import faulthandler\n"
            "faulthandler.enable()  # as pytest and python -X faulthandler do\n"
            "import pyserini_ext\n"
            "from pyserini.search.lucene import LuceneSearcher\n"
            "searcher = LuceneSearcher(%r)\n"
            "from pyserini_ext.distributed import connect\n"
            "ray = connect(%r)  # joins the session's cluster: a driver, not a new cluster\n"
            "assert ray.get(ray.remote(lambda: 1).remote()) == 1\n"
            "for _ in range(50):\n"
            "    searcher.batch_search(['computer program', 'parallel algorithm'] * 20, [str(i) for i in range(40)],"
            " 100, threads=2)\n"
            "print('searched')\n" % (str(index), ray.get_runtime_context().gcs_address))
    out = run_python(code)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.split() == ["searched"]
