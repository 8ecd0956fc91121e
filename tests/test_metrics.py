"""Metrics against hand-computed values, and against Pyserini's own trec_eval on a real run."""

import math
import subprocess
import sys

import pytest

from pyserini_ext.eval.metrics import UnknownMetricError, evaluate, parse_metric
from pyserini_ext.search.run import Hit

QRELS = {"q1": {"a": 2, "b": 1, "c": 0}, "q2": {"x": 1}}
RUN = {
    "q1": [Hit("c", 3.0), Hit("a", 2.0), Hit("d", 1.0), Hit("b", 0.5)],
    "q2": [Hit("y", 1.0), Hit("z", 0.9)],
    "q3": [Hit("a", 1.0)],  # not judged: ignored
}


def test_ndcg_by_hand():
    dcg = 2 / math.log2(3) + 1 / math.log2(5)
    ideal = 2 / math.log2(2) + 1 / math.log2(3)
    assert evaluate(RUN, QRELS, ["nDCG@10"])["nDCG@10"] == pytest.approx((dcg / ideal + 0.0) / 2, abs=1e-12)


def test_binary_metrics_and_relevance_level_by_hand():
    level1 = evaluate(RUN, QRELS, ["RR@10", "RR@1", "R@3", "MAP"], relevance_level=1)
    assert level1 == pytest.approx({"RR@10": 0.25, "RR@1": 0.0, "R@3": 0.25, "MAP": (0.5 + 0.5) / 2 / 2})
    level2 = evaluate(RUN, QRELS, ["R@3", "MAP"], relevance_level=2)
    assert level2 == pytest.approx({"R@3": 0.5, "MAP": 0.5 / 2})  # only "a" counts; q2 has none


def test_missing_query_counts_as_zero():
    assert evaluate({"q1": RUN["q1"]}, QRELS, ["RR@10"])["RR@10"] == pytest.approx(0.25)


def test_unknown_metric_is_named():
    with pytest.raises(UnknownMetricError, match=r"unknown metric 'NDGC@10'; supported"):
        parse_metric("NDGC@10")
    with pytest.raises(UnknownMetricError):
        parse_metric("R")  # recall needs a cut-off


@pytest.mark.parametrize("spelling, ours", [
    ("ndcg_cut_10", "nDCG@10"), ("NDCG_CUT.10", "nDCG@10"), ("ndcg@10", "nDCG@10"), ("recall_100", "R@100"),
    ("Recall.3", "R@3"), ("P_30", "P@30"), ("map", "MAP"), ("MAP_CUT_1000", "MAP@1000"), ("recip_rank", "RR"),
    ("mrr@10", "RR@10"), ("rr@1", "RR@1"),
])
def test_trec_eval_spellings_in_any_case_are_ours(spelling, ours):
    assert parse_metric(spelling).name == ours


def test_a_trec_eval_spelling_measures_what_ours_does_keyed_as_asked():
    asked = evaluate(RUN, QRELS, ["ndcg_cut_10", "recall_3", "MAP", "recip_rank"])
    ours = evaluate(RUN, QRELS, ["nDCG@10", "R@3", "MAP"])
    assert [asked["ndcg_cut_10"], asked["recall_3"], asked["MAP"]] == [ours["nDCG@10"], ours["R@3"], ours["MAP"]]
    assert asked["recip_rank"] == pytest.approx((1 / 2 + 0.0) / 2)  # q1: "a" at rank 2; q2: nothing relevant


@pytest.mark.e2e
def test_same_numbers_as_pyserini_trec_eval(workdir, tmp_path):
    from pyserini_ext.data import get_dataset
    from pyserini_ext.recipes import open_searcher
    from pyserini_ext.search.run import search_topics, write_trec_run

    cacm = get_dataset("cacm")
    searcher = open_searcher("bm25", cacm, work=workdir)
    run = search_topics(searcher, cacm.topics("all"), 1000)
    run_file = write_trec_run(run, tmp_path / "run.txt")
    qrels_file = cacm.qrels_path("all")
    ours = evaluate(run, cacm.qrels("all"), ["MAP", "P@30", "nDCG@10", "R@100"])
    for metric, measure in (("MAP", "map"), ("P@30", "P.30"), ("nDCG@10", "ndcg_cut.10"), ("R@100", "recall.100")):
        out = subprocess.run([sys.executable, "-m", "pyserini.eval.trec_eval", "-c", "-m", measure, str(qrels_file),
                              str(run_file)], capture_output=True, text=True, timeout=300)
        assert out.returncode == 0, out.stderr
        line = [ln for ln in out.stdout.splitlines() if ln.split("\t")[0].strip() == measure.replace(".", "_")]
        assert line, out.stdout
        assert float(line[0].split("\t")[-1]) == pytest.approx(ours[metric], abs=5e-5)  # trec_eval prints 4 decimals
