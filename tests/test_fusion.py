"""Fusion against hand-computed values and against Pyserini's own fusion code on the same inputs."""

import pytest

from pyserini_ext.search.fusion import FusionSearcher, hybrid_interpolation, reciprocal_rank_fusion, weighted_sum
from pyserini_ext.search.run import Hit

A = [Hit("d1", 3.0), Hit("d2", 2.0), Hit("d3", 1.0)]
B = [Hit("d3", 0.9), Hit("d4", 0.5), Hit("d1", 0.1)]


def pairs(hits):
    return [(h.docid, round(h.score, 12)) for h in hits]


def test_rrf_by_hand():
    fused = reciprocal_rank_fusion([A, B], rrf_k=60)
    expected = {"d1": 1 / 61 + 1 / 63, "d2": 1 / 62, "d3": 1 / 63 + 1 / 61, "d4": 1 / 62}
    assert [h.docid for h in fused] == ["d1", "d3", "d2", "d4"]  # ties by docid ascending
    assert {h.docid: h.score for h in fused} == pytest.approx(expected)
    assert [h.docid for h in reciprocal_rank_fusion([A, B], tie_policy="reverse")] == ["d3", "d1", "d4", "d2"]


def test_hybrid_by_hand():
    fused = hybrid_interpolation(A, B, alpha=0.5)  # A sparse, B dense; missing -> that list's minimum
    expected = {"d1": 0.5 * 3 + 0.1, "d2": 0.5 * 2 + 0.1, "d3": 0.5 * 1 + 0.9, "d4": 0.5 * 1 + 0.5}
    assert {h.docid: h.score for h in fused} == pytest.approx(expected)
    normalized = hybrid_interpolation(A, B, alpha=2.0, normalization=True, weight_on_dense=True)
    assert normalized[0].docid == "d3" and normalized[0].score == pytest.approx((1 - 2) / 2 + 2 * (0.9 - 0.5) / 0.8)


def test_hybrid_normalization_of_a_constant_list_is_zero_not_a_crash():
    # Pyserini divides by max - min and raises ZeroDivisionError here.
    fused = hybrid_interpolation(A, [Hit("d1", 0.7), Hit("d9", 0.7)], alpha=1.0, normalization=True)
    assert {h.docid: h.score for h in fused} == pytest.approx({"d1": 0.5, "d2": 0.0, "d3": -0.5, "d9": -0.5})


def test_weighted_sum_and_depth():
    fused = weighted_sum([A, B], [0.25, 0.75], depth=2)
    assert {h.docid: h.score for h in fused} == pytest.approx({"d1": 0.75, "d2": 0.5, "d3": 0.675, "d4": 0.375})


def test_parity_with_pyserini_fusion():
    from pyserini.fusion import interpolation
    from pyserini.fusion import reciprocal_rank_fusion as pyserini_rrf
    from pyserini.trectools import TrecRun

    runs = {"q1": (A, B), "q2": ([Hit("x", 1.0), Hit("y", 1.0), Hit("z", 0.2)], [Hit("z", 5.0), Hit("w", 4.0)])}

    def trec_run(i):
        return TrecRun.from_list([(q, "Q0", h.docid, r, h.score, "t") for q, lists in runs.items()
                                  for r, h in enumerate(lists[i], start=1)])

    for theirs, ours in ((pyserini_rrf([trec_run(0), trec_run(1)], rrf_k=60), lambda ls: reciprocal_rank_fusion(ls)),
                         (interpolation([trec_run(0), trec_run(1)], alpha=0.3), lambda ls: weighted_sum(ls, [0.3, 0.7]))):
        data = theirs.run_data
        for qid, lists in runs.items():
            rows = data[data["topic"] == qid]
            assert pairs(ours(lists)) == [(d, round(s, 12)) for d, s in zip(rows["docid"], rows["score"])]


def test_parity_with_pyserini_hybrid_searcher_up_to_tie_order():
    from pyserini.search.hybrid import HybridSearcher

    sparse = [Hit(f"d{i}", float(10 - i)) for i in range(8)]
    dense = [Hit(f"d{i}", 1.0 if i < 8 else 0.5) for i in range(4, 12)]  # ties in the fused scores on purpose
    for normalization in (False, True):
        theirs = HybridSearcher._hybrid_results(dense, sparse, 0.5, 12, normalization, False)
        ours = hybrid_interpolation(sparse, dense, 0.5, normalization, False, k=12)
        assert sorted(pairs(theirs)) == sorted(pairs(ours))
        scores = [h.score for h in ours]
        assert scores == sorted(scores, reverse=True) and [round(h.score, 12) for h in theirs] == [round(s, 12) for s in scores]
        groups = {}
        for h in ours:
            groups.setdefault(round(h.score, 12), []).append(h.docid)
        assert all(ids == sorted(ids) for ids in groups.values())  # ties: docid ascending, not set order


class FixedSearcher:
    def __init__(self, lists):
        self.lists = lists

    def batch_search(self, queries, q_ids, k, threads=1):
        return {q: self.lists[q][:k] for q in q_ids}


def test_fusion_searcher_batches_and_validates():
    searcher = FusionSearcher([FixedSearcher({"q": A}), FixedSearcher({"q": B})], method="rrf", depth=3)
    assert pairs(searcher.batch_search(["text"], ["q"], k=2)["q"]) == pairs(reciprocal_rank_fusion([A, B], k=2))
    with pytest.raises(ValueError, match="exactly 2"):
        FusionSearcher([FixedSearcher({})] * 3, method="hybrid")
    with pytest.raises(ValueError, match="unknown fusion method"):
        FusionSearcher([FixedSearcher({})] * 2, method="combsum")


@pytest.mark.e2e
def test_real_hybrid_matches_pyserini_hybrid_searcher(workdir):
    """BM25 + MiniLM on SciFact through Pyserini's HybridSearcher and through ours: same fused scores."""
    from pyserini.search.hybrid import HybridSearcher

    from pyserini_ext.data import get_dataset
    from pyserini_ext.recipes import open_searcher

    scifact = get_dataset("beir/scifact")
    sparse = open_searcher("bm25", scifact, work=workdir)
    dense = open_searcher("dense", scifact, work=workdir)
    topics = dict(list(scifact.topics("test").items())[:40])
    qids, queries = list(topics), list(topics.values())
    theirs = HybridSearcher(dense, sparse).batch_search(queries, qids, k0=100, k=100, alpha=0.1)
    ours = FusionSearcher([sparse, dense], method="hybrid", depth=100, alpha=0.1).batch_search(queries, qids, k=100)
    for qid in qids:
        assert sorted(pairs(theirs[qid])) == sorted(pairs(ours[qid]))


def test_fuse_run_files_from_the_cli(tmp_path):
    import subprocess
    import sys

    from pyserini_ext.search.fusion import fuse_runs
    from pyserini_ext.search.run import read_trec_run, write_trec_run

    a = write_trec_run({"q": A, "only-a": [Hit("z", 1.0)]}, tmp_path / "a.txt")
    b = write_trec_run({"q": B}, tmp_path / "b.txt")
    out = subprocess.run([sys.executable, "-m", "pyserini_ext", "fuse", "--run", str(a), "--run", str(b),
                          "--output", str(tmp_path / "fused.txt")], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    fused = read_trec_run(tmp_path / "fused.txt")
    assert [h.docid for h in fused["q"]] == ["d1", "d3", "d2", "d4"] and [h.docid for h in fused["only-a"]] == ["z"]
    assert fuse_runs([{"q": A}, {"q": B}], "rrf")["q"] == reciprocal_rank_fusion([A, B])
