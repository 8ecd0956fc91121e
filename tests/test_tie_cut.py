"""A spec's tie policy decides which members of a tie group survive the cut at k, in every
searcher a recipe builds, in a fusion's input ranks and in a re-ranker's first stage.

Before the fix the searchers cut at k in their own order (Lucene: index order; ours: docid
ascending) and the spec's ``reverse``/``shuffle`` only re-ordered what was left; RRF fixed
its ranks under ``docid`` whatever the spec said."""

import json

import pytest

from pyserini_ext.repro.runner import spec_run
from pyserini_ext.repro.spec import parse_spec

DOCIDS = [f"d{i}" for i in range(8)]


@pytest.fixture(scope="module")
def identical_docs(tmp_path_factory):
    """Eight documents with the same text: every searcher scores them all alike."""
    folder = tmp_path_factory.mktemp("ties") / "same"
    (folder / "qrels").mkdir(parents=True)
    (folder / "corpus.jsonl").write_text(
        "".join(json.dumps({"_id": d, "title": "", "text": "lion tiger zebra"}) + "\n" for d in DOCIDS))
    (folder / "queries.jsonl").write_text(json.dumps({"_id": "q", "text": "zebra"}) + "\n")
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\nq\td0\t1\n")
    return folder


def run_docids(folder, tmp_path, pipeline: str, policy: str, hits: int) -> list[str]:
    spec = tmp_path / f"cut-{policy}.yaml"
    spec.write_text(f"dataset: {folder}\nsplit: test\npipeline: {{{pipeline}, hits: {hits}, tie_policy: {policy}}}\n"
                    f"metrics: {{nDCG@10: {{expected: 1, tolerance: 1, source: test}}}}\n")
    return [h.docid for h in spec_run(parse_spec(spec), tmp_path / "work", quiet=True)["q"]]


# Not BM25 alone: Pyserini's LuceneSearcher (Anserini) already breaks ties itself, docid
# ascending, by lowering each tied score by 1e-6 per position, so its lists carry no ties.
@pytest.mark.parametrize("pipeline", [
    "searcher: dense, params: {encoder: all-minilm-l6-v2}",
    "searcher: fusion, params: {method: rrf, searchers: [{searcher: dense}, {searcher: dense, params: {index: flat-fp16}}]}",
    "searcher: rerank, params: {depth: 3, first_stage: {searcher: dense}, encoder: all-minilm-l6-v2}",
])
def test_reverse_keeps_the_highest_docids_of_a_tie_group_cut_at_k(identical_docs, tmp_path, pipeline):
    assert run_docids(identical_docs, tmp_path, pipeline, "docid", 3) == ["d0", "d1", "d2"]
    assert run_docids(identical_docs, tmp_path, pipeline, "reverse", 3) == ["d7", "d6", "d5"]
