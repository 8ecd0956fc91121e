"""Ray behind the same commands (pyserini_ext.distributed), on a local Ray cluster of 2 CPUs
started once for the session: distributed shards are the single-process shards byte for byte,
a killed encoder actor's shard is redone, sharded dense search writes the single-index run,
a lost search actor fails the batch, and ``repro run --ray`` gives the sequential table.
Ray never enters the import path without ``--ray``."""

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

ray = pytest.importorskip("ray")

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
    """Every file under ``folder`` by relative path; the manifest without its ``created`` time."""
    out = {}
    for path in sorted(p for p in folder.rglob("*") if p.is_file()):
        data = path.read_bytes()
        if path.name == "manifest.json":
            manifest = json.loads(data)
            manifest.pop("created")
            data = json.dumps(manifest, sort_keys=True).encode()
        out[str(path.relative_to(folder))] = data
    return out


@pytest.fixture(scope="session")
def ray_cluster():
    """One local Ray cluster of 2 CPUs for the whole session."""
    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
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
    return encode_corpus(tiny_corpus(), card.document_encoder(), folder, shard_size=16, quiet=True,
                         progress_every=4, built_from={"corpus": "tiny"})


def test_distributed_shards_are_the_single_process_shards(ray_cluster, card, single_process_shards, tmp_path):
    from pyserini_ext.distributed.encoding import encode_store

    folder = encode_store(card, tiny_corpus(), tmp_path / "shards", workers=2, quiet=True, shard_size=16,
                          progress_every=4, built_from={"corpus": "tiny"})
    ours, theirs = folder_bytes(folder), folder_bytes(single_process_shards)
    assert sorted(ours) == sorted(theirs) and len([n for n in ours if n.endswith(".npy")]) == 5
    for name in theirs:
        assert ours[name] == theirs[name], name
