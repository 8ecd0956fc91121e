"""Total order: hand-checked orders, and the written run evaluating in exactly that order."""

import numpy as np
import pytest
import pytrec_eval

from pyserini_ext.eval.metrics import evaluate
from pyserini_ext.search.run import Hit, order_run, read_trec_run, write_trec_run
from pyserini_ext.search.ties import strictly_decreasing, total_order


def test_total_order_by_policy():
    docids, scores = ["b", "a", "c", "d"], [1.0, 1.0, 0.5, 2.0]
    assert total_order(docids, scores, "docid").tolist() == [3, 1, 0, 2]
    assert total_order(docids, scores, "reverse").tolist() == [3, 0, 1, 2]
    shuffled = total_order(docids, scores, "shuffle", seed=1, qid="q")
    assert shuffled[0] == 3 and shuffled[3] == 2 and sorted(shuffled[1:3]) == [0, 1]
    assert (total_order(docids, scores, "shuffle", seed=1, qid="q") == shuffled).all()


def test_shuffle_depends_on_seed_and_qid():
    docids = [f"d{i:02d}" for i in range(30)]
    scores = np.zeros(30)
    orders = {tuple(total_order(docids, scores, "shuffle", seed, qid)) for seed in (0, 1) for qid in ("q1", "q2")}
    assert len(orders) == 4


def test_strictly_decreasing_moves_ties_by_float32_ulps():
    one = np.float32(1.0)
    below = np.nextafter(one, np.float32(0))
    out = strictly_decreasing([1.0, 1.0, 1.0, 0.5])
    assert out.tolist() == [1.0, float(below), float(np.nextafter(below, np.float32(0))), 0.5]
    assert strictly_decreasing([3.0, 2.0, 1.0]).tolist() == [3.0, 2.0, 1.0]  # untouched without ties


def test_written_run_evaluates_in_the_chosen_order(tmp_path):
    qrels = {"q": {"b": 1}}
    run = {"q": [Hit("a", 1.0), Hit("b", 1.0), Hit("c", 0.25)]}
    rr = {}
    for policy in ("docid", "reverse"):
        path = write_trec_run(order_run(run, policy), tmp_path / f"{policy}.txt")
        # Evaluate the file's own score column, with no help from our code: trec_eval re-sorts by score.
        written = {q: {h.docid: h.score for h in hits} for q, hits in read_trec_run(path).items()}
        rr[policy] = pytrec_eval.RelevanceEvaluator(qrels, {"recip_rank"}).evaluate(written)["q"]["recip_rank"]
    assert rr == {"docid": 0.5, "reverse": 1.0}


def test_same_policy_same_run_twice(tmp_path):
    rng = np.random.default_rng(0)
    run = {f"q{i}": [Hit(f"d{j}", float(s)) for j, s in enumerate(rng.integers(0, 3, 50))] for i in range(5)}
    for policy in ("docid", "reverse", "shuffle"):
        first = write_trec_run(order_run(run, policy, seed=7), tmp_path / "a.txt").read_text()
        second = write_trec_run(order_run(run, policy, seed=7), tmp_path / "b.txt").read_text()
        assert first == second


def test_tie_policies_change_metrics_on_a_tied_run():
    qrels = {"q": {"d1": 1}}
    run = {"q": [Hit(f"d{j}", 1.0) for j in range(5)]}
    values = {p: evaluate(order_run(run, p, seed=3), qrels, ["RR@10"])["RR@10"] for p in ("docid", "reverse")}
    assert values == {"docid": 0.5, "reverse": 0.25}  # d0,d1,... versus d4,d3,d2,d1


def test_bad_run_line_names_file_line_and_field(tmp_path):
    from pyserini_ext.data import DataFormatError

    path = tmp_path / "run.txt"
    path.write_text("q Q0 d1 1 2.5 tag\nq Q0 d2 2 high tag\n")
    with pytest.raises(DataFormatError, match=r"run.txt:2: field 'score': not a number: 'high'"):
        read_trec_run(path)
    path.write_text("q Q0 d1 1 2.5\n")
    with pytest.raises(DataFormatError, match=r"run.txt:1: field '<row>': expected 6 columns"):
        read_trec_run(path)
