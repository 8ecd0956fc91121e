"""Any dataset plugs in: a BEIR folder and a dataset card the test writes, used from a folder
outside the repository through `index`, `search`, `eval`, `fuse` and a spec; a changed
corpus is rebuilt, not silently reused."""

import json
import math
import subprocess
import sys

import pytest

from pyserini_ext.cli import main
from pyserini_ext.data import resolve_dataset
from pyserini_ext.eval.metrics import evaluate
from pyserini_ext.search.run import read_trec_run

WORDS = ("lion tiger zebra cat dog horse whale shark eagle owl river mountain forest desert ocean island "
         "bridge castle garden market").split()


def write_beir_folder(folder, n_docs=60, seed=3):
    import random

    rng = random.Random(seed)
    (folder / "qrels").mkdir(parents=True)
    docs = [{"_id": f"doc{i:03d}", "title": rng.choice(WORDS),
             "text": " ".join(rng.choice(WORDS) for _ in range(rng.randint(5, 15)))} for i in range(n_docs)]
    queries, qrels = [], []
    for q in range(10):
        pair = rng.sample(WORDS, 2)
        queries.append({"_id": f"q{q}", "text": " ".join(pair)})
        for d in docs:
            grade = sum(w in (d["title"] + " " + d["text"]).split() for w in pair)
            if grade:
                qrels.append((f"q{q}", d["_id"], grade))
    (folder / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    (folder / "queries.jsonl").write_text("".join(json.dumps(q) + "\n" for q in queries))
    (folder / "qrels" / "test.tsv").write_text(
        "query-id\tcorpus-id\tscore\n" + "".join(f"{a}\t{b}\t{c}\n" for a, b, c in qrels))
    return docs, queries, qrels


def ndcg10_by_hand(run, qrels):
    """nDCG@10 (trec_eval's: gain = grade, log2 discount), mean over judged queries."""
    total = 0.0
    judged = {}
    for qid, docid, grade in qrels:
        judged.setdefault(qid, {})[docid] = grade
    for qid, grades in judged.items():
        gains = [grades.get(h.docid, 0) for h in run.get(qid, [])[:10]]
        dcg = sum(g / math.log2(i + 2) for i, g in enumerate(gains))
        ideal = sorted(grades.values(), reverse=True)[:10]
        total += dcg / sum(g / math.log2(i + 2) for i, g in enumerate(ideal))
    return total / len(judged)


@pytest.mark.e2e
def test_beir_folder_through_index_search_eval_fuse_and_a_spec(tmp_path, monkeypatch, capsys):
    outside = tmp_path / "elsewhere"
    outside.mkdir()
    monkeypatch.chdir(outside)  # nothing below may depend on the repository being the working folder
    folder = tmp_path / "my-beir"
    docs, queries, qrels = write_beir_folder(folder)
    work = tmp_path / "work"

    assert main(["index", "bm25", "--dataset", str(folder), "--work", str(work), "--quiet"]) == 0
    bm25_run, dense_run = tmp_path / "bm25.txt", tmp_path / "dense.txt"
    assert main(["search", "bm25", "--dataset", str(folder), "--split", "test", "--hits", "100",
                 "--output", str(bm25_run), "--work", str(work), "--quiet"]) == 0
    assert main(["search", "dense", "--dataset", str(folder), "--split", "test", "--hits", "100",
                 "--param", "encoder=all-minilm-l6-v2", "--output", str(dense_run), "--work", str(work),
                 "--quiet"]) == 0
    capsys.readouterr()
    assert main(["eval", "--dataset", str(folder), "--split", "test", "--run", str(bm25_run), "-m", "nDCG@10"]) == 0
    printed = float(capsys.readouterr().out.split()[-1])
    by_hand = ndcg10_by_hand(read_trec_run(bm25_run), qrels)
    assert printed == pytest.approx(by_hand, abs=5e-5)
    fused = tmp_path / "fused.txt"
    assert main(["fuse", "--run", str(bm25_run), "--run", str(dense_run), "--output", str(fused)]) == 0
    assert set(read_trec_run(fused)) == {q["_id"] for q in queries}

    # A spec naming the folder, its expected value the one computed by hand above, run from outside.
    spec = tmp_path / "my-spec.yaml"
    spec.write_text(f"dataset: {folder}\nsplit: test\npipeline: {{searcher: bm25, hits: 100}}\n"
                    f"metrics:\n  nDCG@10: {{expected: {by_hand:.4f}, tolerance: 0.0001, source: by hand}}\n")
    out = subprocess.run([sys.executable, "-m", "pyserini_ext", "repro", "run", str(spec), "--quiet",
                          "--work", str(work)], cwd=outside, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    assert "my-spec" in out.stdout and " OK" in out.stdout and "FAIL" not in out.stdout


@pytest.mark.e2e
def test_dataset_card_in_pyserini_layout_runs_like_its_beir_twin(tmp_path):
    """The same collection as a JsonCollection + TREC files described by a card gives the same BM25 run."""
    beir = tmp_path / "beir"
    docs, queries, qrels = write_beir_folder(beir)
    other = tmp_path / "files"
    other.mkdir()
    (other / "docs.jsonl").write_text("".join(
        json.dumps({"id": d["_id"], "contents": d["title"] + "\n" + d["text"]}) + "\n" for d in docs))
    (other / "queries.tsv").write_text("".join(f"{q['_id']}\t{q['text']}\n" for q in queries))
    (other / "judgements.txt").write_text("".join(f"{a} 0 {b} {c}\n" for a, b, c in qrels))
    card = tmp_path / "my-card.yaml"
    card.write_text("name: my/card\nlayout: jsonl\ncorpus: files/docs.jsonl\n"
                    "splits:\n  test: {topics: files/queries.tsv, qrels: files/judgements.txt}\n")
    work = tmp_path / "work"
    runs = {}
    for source in (beir, card):
        out = tmp_path / f"{source.stem}.txt"
        assert main(["search", "bm25", "--dataset", str(source), "--split", "test", "--hits", "50",
                     "--output", str(out), "--work", str(work), "--quiet"]) == 0
        runs[source.stem] = read_trec_run(out)
    assert runs["beir"] == runs["my-card"]
    assert resolve_dataset(str(card)).name == "my/card"


@pytest.mark.e2e
def test_appended_document_rebuilds_the_index(tmp_path):
    """The defect a user hit: append a document, re-run, and the old index answered."""
    folder = tmp_path / "grows"
    write_beir_folder(folder, n_docs=30)
    work = tmp_path / "work"
    run_file = tmp_path / "run.txt"
    args = ["search", "bm25", "--dataset", str(folder), "--split", "test", "--hits", "100", "--output",
            str(run_file), "--work", str(work), "--quiet"]
    assert main(args) == 0
    assert "new-doc" not in {h.docid for hits in read_trec_run(run_file).values() for h in hits}
    with open(folder / "corpus.jsonl", "a") as f:
        f.write(json.dumps({"_id": "new-doc", "title": "", "text": " ".join(WORDS)}) + "\n")
    assert main(args) == 0
    run = read_trec_run(run_file)
    assert all("new-doc" in {h.docid for h in hits} for hits in run.values())  # it holds every query's words
    qrels = resolve_dataset(str(folder)).qrels("test")
    assert evaluate(run, qrels, ["nDCG@10"])["nDCG@10"] >= 0


def test_remove_query_warns_with_the_count_of_judged_documents_it_drops(tmp_path, caplog):
    """CISI-like data: two queries judge their own id relevant; remove_query must say it drops them."""
    from pyserini_ext.repro.runner import spec_run
    from pyserini_ext.repro.spec import parse_spec

    folder = tmp_path / "self-judged"
    (folder / "qrels").mkdir(parents=True)
    docs = {"a": "lion tiger", "b": "lion zebra", "c": "tiger zebra", "d": "cat dog"}
    (folder / "corpus.jsonl").write_text("".join(json.dumps({"_id": k, "title": "", "text": v}) + "\n"
                                                 for k, v in docs.items()))
    (folder / "queries.jsonl").write_text("".join(json.dumps({"_id": q, "text": t}) + "\n"
                                                  for q, t in (("a", "lion"), ("b", "zebra"), ("q3", "cat"))))
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\na\ta\t1\na\tb\t1\nb\tb\t2\nq3\td\t1\n")
    spec = tmp_path / "self.yaml"
    spec.write_text(f"dataset: {folder}\nsplit: test\npipeline: {{searcher: bm25, hits: 10, remove_query: true}}\n"
                    f"metrics: {{nDCG@10: {{expected: 1, tolerance: 1, source: test}}}}\n")
    with caplog.at_level("WARNING"):
        run = spec_run(parse_spec(spec), tmp_path / "work", quiet=True)
    assert "remove_query drops 2 judged-relevant document(s)" in caplog.text
    assert "a" not in {h.docid for h in run["a"]} and "b" not in {h.docid for h in run["b"]}
