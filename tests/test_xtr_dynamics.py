"""The pure computations of benchmarks/xtr_dynamics.py (the XTR study's token-score dynamics),
on hand-made inputs: no store, no model."""

import importlib.util
from pathlib import Path

import numpy as np
import pytest

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "xtr_dynamics.py"
_spec = importlib.util.spec_from_file_location("xtr_dynamics", SCRIPT)
xd = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(xd)


def test_cosines_of_orthogonal_identical_and_opposite_vectors():
    e1, e2 = np.array([1.0, 0.0, 0.0]), np.array([0.0, 1.0, 0.0])
    a = np.stack([e1, e1, e1])
    b = np.stack([e2, e1, -e1])
    assert xd.cosines(a, b).tolist() == [0.0, 1.0, -1.0]


def test_cosines_do_not_assume_unit_length():
    # (3, 4) and (4, 3): dot 24, norms 5 and 5 -> 24/25; scaled rows change nothing
    a = np.array([[3.0, 4.0], [30.0, 40.0]], dtype=np.float32)
    b = np.array([[4.0, 3.0], [0.4, 0.3]], dtype=np.float32)
    assert xd.cosines(a, b) == pytest.approx([0.96, 0.96])
    with pytest.raises(ValueError):
        xd.cosines(np.zeros((1, 2)), np.ones((1, 2)))


def test_mean_cosine_of_a_tiny_set_by_hand():
    # pairs (e1, e2) -> 0, (e1, (1,1)/sqrt2) -> 1/sqrt2, (e2, e2) -> 1: mean (1 + 1/sqrt2) / 3
    a = np.array([[1.0, 0.0], [1.0, 0.0], [0.0, 1.0]])
    b = np.array([[0.0, 1.0], [1.0, 1.0], [0.0, 2.0]])
    assert xd.summarize(xd.cosines(a, b))["mean"] == pytest.approx((1 + 2 ** -0.5) / 3)


def test_norm_summary():
    out = xd.norm_summary(np.array([[3.0, 4.0], [1.0, 0.0]], dtype=np.float32))
    assert out == pytest.approx({"min": 1.0, "max": 5.0, "mean": 3.0})


def test_sample_pairs_distinct_seeded_and_in_range():
    left, right = xd.sample_pairs(3, 3, 1000, np.random.default_rng(0), distinct=True)
    assert (left != right).all() and left.max() <= 2 and right.max() <= 2 and left.min() >= 0
    again = xd.sample_pairs(3, 3, 1000, np.random.default_rng(0), distinct=True)
    assert (again[0] == left).all() and (again[1] == right).all()
    assert set(zip(left.tolist(), right.tolist())) == {(i, j) for i in range(3) for j in range(3) if i != j}
    with pytest.raises(ValueError):
        xd.sample_pairs(1, 1, 5, np.random.default_rng(0), distinct=True)


def test_summarize_on_a_known_array():
    out = xd.summarize(np.arange(11, dtype=np.float32))  # 0..10
    assert out["n"] == 11 and out["mean"] == 5.0 and out["min"] == 0.0 and out["max"] == 10.0
    assert (out["p10"], out["p50"], out["p90"]) == (1.0, 5.0, 9.0)
    assert out["std"] == pytest.approx(np.sqrt(10.0))  # population: mean of squares 35 - 25
    with pytest.raises(ValueError):
        xd.summarize([])


def test_histogram_counts_edges_and_out_of_range_values():
    edges = [0.0, 0.5, 1.0]
    assert xd.histogram([0.1, 0.5, 0.7, 1.0], edges) == [1, 3]  # 0.5 opens the second bin, 1.0 closes it
    assert xd.histogram([-0.2, 1.0004], edges) == [1, 1]  # clipped into the end bins, never dropped
    default = xd.histogram([0.0, 0.999, 1.0])
    assert len(default) == len(xd.EDGES) - 1 and sum(default) == 3 and default[-1] == 2


def test_content_mask_skips_special_tokens_and_the_head():
    cls, sep, mask, marker = 101, 102, 103, 1
    ids = np.array([[cls, marker, 7, 8, sep, mask, mask], [cls, marker, 9, sep, mask, mask, mask]])
    got = xd.content_mask(ids, {cls, sep, mask}, head=2)
    assert got.tolist() == [[False, False, True, True, False, False, False],
                            [False, False, True, False, False, False, False]]
    # without a marker, head 1 leaves [CLS] out all the same
    assert xd.content_mask(np.array([[cls, 5, sep]]), {cls, sep, mask}, head=1).tolist() == [[False, True, False]]


def test_lexical_share_on_hand_made_ids():
    query = np.array([5, 6, 103])  # the last row is a [MASK]: left out of the share
    retrieved = np.array([[5, 7, 5, 8],
                          [9, 6, 9, 9],
                          [103, 103, 103, 103]])
    matches = xd.lexical_matches(query, retrieved)
    words = np.array([True, True, False])
    assert xd.share(matches, words) == pytest.approx(3 / 8)
    assert xd.share(matches, words, k=1) == pytest.approx(1 / 2)  # rank 1: row 0 matches, row 1 not
    assert xd.share(matches, words, k=2) == pytest.approx(2 / 4)
    assert xd.share(matches) == pytest.approx(7 / 12)  # every row, [MASK] included
    with pytest.raises(ValueError):
        xd.share(matches, np.zeros(3, dtype=bool))


def test_gold_matches_per_query():
    docs = np.array([[0, 1, 2], [2, 2, 3], [0, 3, 3], [1, 1, 1]])
    row_query = np.array([0, 0, 1, 1])  # two query tokens per query
    gold = [np.array([2]), np.array([3, 1])]
    got = xd.gold_matches(docs, row_query, gold)
    assert got.tolist() == [[False, False, True], [True, True, False], [False, True, True], [True, True, True]]
    assert xd.gold_matches(docs, row_query, [np.array([], dtype=np.int64)] * 2).sum() == 0


def test_distinct_per_row():
    assert xd.distinct_per_row(np.array([[3, 1, 3, 1], [0, 1, 2, 3], [5, 5, 5, 5]])).tolist() == [2, 4, 1]


def test_aligned_token_ids_checks_every_document():
    kept = [np.array([7, 8]), np.array([9]), np.array([4, 5, 6])]
    assert xd.aligned_token_ids(kept, np.array([2, 1, 3])).tolist() == [7, 8, 9, 4, 5, 6]
    with pytest.raises(ValueError, match="d2 with 1 kept word pieces against 2"):
        xd.aligned_token_ids(kept, np.array([2, 2, 3]), ["d1", "d2", "d3"])  # same total would not do either
    with pytest.raises(ValueError, match="2 re-tokenised documents for 3"):
        xd.aligned_token_ids(kept[:2], np.array([2, 1, 3]))


def test_retrieved_summary_and_figure_table():
    scores = np.array([[0.9, 0.5, 0.1], [0.7, 0.6, 0.2], [0.8, 0.4, 0.3]])
    docs = np.array([[0, 0, 1], [1, 2, 3], [4, 4, 4]])
    lexical = np.array([[True, False, False], [False, True, True], [True, True, True]])
    gold = np.array([[False, False, True], [True, False, False], [False, False, False]])
    rows = np.array([True, True, False])
    out = xd.retrieved_summary(scores, docs, lexical, gold, rows, [2, 3], rows)
    assert out["query tokens"] == 2
    assert out["rank 1"]["mean"] == pytest.approx(0.8) and out["rank 1"]["lexical share"] == 0.5
    assert out["rank 1"]["gold share"] == 0.5 and sum(out["rank 1"]["histogram"]) == 2
    assert out["k'=2"]["rank k'"]["mean"] == pytest.approx(0.55)
    assert out["k'=3"]["rank k'"]["p50"] == pytest.approx(0.15)
    assert out["k'=3"]["lexical share"] == pytest.approx(3 / 6) and out["k'=3"]["gold share"] == pytest.approx(2 / 6)
    assert out["k'=2"]["documents per query token"] == 1.5 and out["k'=3"]["documents per query token"] == 2.5
    assert "lexical share" not in xd.retrieved_summary(scores, docs, lexical, gold, rows, [3])["k'=3"]

    records = {name: {"histogram edges": xd.EDGES.tolist(), "retrieved": {"all": out}} for name in ("a", "b")}
    edges, counts = xd.figure_table(records, "all")
    assert len(edges) == len(xd.EDGES) and list(counts) == ["a", "b"]
    records["b"]["histogram edges"] = [0.0, 1.0]
    with pytest.raises(ValueError, match="bins differ"):
        xd.figure_table(records, "all")
