"""The FP16 ablation on real data: many ties, and each tie policy evaluates differently."""

import pytest

from pyserini_ext.data import get_dataset
from pyserini_ext.eval.metrics import evaluate
from pyserini_ext.recipes import open_searcher
from pyserini_ext.search.run import search_topics
from pyserini_ext.search.ties import TieOrder


@pytest.mark.e2e
def test_fp16_run_evaluates_differently_under_each_policy(workdir, tmp_path):
    scifact = get_dataset("beir/scifact")
    topics, qrels = scifact.topics("test"), scifact.qrels("test")
    searcher = open_searcher("dense", scifact, work=workdir, index="flat-fp16", score_precision="float16")
    runs = {p: search_topics(searcher, topics, 1000, ties=TieOrder(p, 13)) for p in ("docid", "reverse", "shuffle")}
    tied = sum(len(hits) - len({h.score for h in hits}) for hits in runs["docid"].values())
    assert tied > 10_000  # FP16 scores tie a lot
    scores = {p: evaluate(run, qrels, ["nDCG@10", "MAP"]) for p, run in runs.items()}
    for a, b in (("docid", "reverse"), ("docid", "shuffle"), ("reverse", "shuffle")):
        assert scores[a] != scores[b], (a, b, scores)
    # the same policy (and seed) gives the same run twice
    assert search_topics(searcher, topics, 1000, ties=TieOrder("shuffle", 13)) == runs["shuffle"]
