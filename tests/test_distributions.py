"""Score and margin distributions of a teacher and its students (eval/distributions.py)."""

from __future__ import annotations

import json

import numpy as np
import pytest

from pyserini_ext.eval.distributions import ListScores, summarize, training_scale


def test_summary_by_hand():
    student = ListScores("s", 1.0, np.array([[3.0, 1.0, 2.0], [1.0, 2.0, 0.0]]))
    teacher = ListScores("t", 1.0, np.array([[4.0, 1.0, 1.0], [2.0, 0.0, 1.0]]))
    # student margins (2, 1, -1, 1); teacher margins (3, 3, 2, 1)
    got = summarize(student, teacher)
    assert got["lists"] == 2
    assert got["positive mean"] == 2.0 and got["positive std"] == 1.0
    assert got["negative mean"] == 1.25 and got["negative std"] == pytest.approx(np.sqrt(0.6875))
    assert got["margin mean"] == 0.75 and got["positive wins"] == 0.75
    # Pearson by hand: sum of products of deviations 1.25, sums of squares 4.75 and 2.75
    assert got["margin correlation with teacher"] == pytest.approx(1.25 / np.sqrt(4.75 * 2.75), rel=1e-12)
    assert got["margin MSE to teacher"] == (1 + 4 + 9 + 0) / 4
    assert "margin MSE to teacher" not in summarize(teacher)


def test_lists_of_another_shape_are_refused():
    with pytest.raises(ValueError, match="lists of different shapes"):
        summarize(ListScores("s", 1.0, np.zeros((2, 3))), ListScores("t", 1.0, np.zeros((2, 4))))


def test_a_trained_card_is_scaled_as_its_training_config_scaled_it():
    from pyserini_ext.encode.base import load_card

    assert training_scale(load_card("minilm-scifact-margin-mse")) == 32.0  # training/scifact-minilm-margin-mse.yaml
    assert training_scale(load_card("all-minilm-l6-v2")) == 1.0


@pytest.mark.e2e
def test_a_student_identical_to_its_teacher_follows_it_exactly(tmp_path, minilm_path):
    """End to end on a tiny corpus (BM25 lists, real MiniLM): the same model as teacher and
    student has margin correlation 1 and MSE 0, and every file is written."""
    from pyserini_ext.cli import main

    data = tmp_path / "tiny"
    (data / "qrels").mkdir(parents=True)
    words = ["protein", "cell", "vaccine", "trial", "brain", "neuron", "star", "cloud"]
    docs = [{"_id": f"d{i}", "title": "", "text": f"{words[i % 8]} {words[(i * 3) % 8]} common text {i}"}
            for i in range(24)]
    (data / "corpus.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    (data / "queries.jsonl").write_text("".join(json.dumps({"_id": f"q{j}", "text": f"{w} common"}) + "\n"
                                                for j, w in enumerate(words[:4])))
    (data / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(
        f"q{j}\td{j}\t1\n" for j in range(4)))
    card = tmp_path / "minilm.yaml"
    card.write_text(f"family: dense\nmodel: {{path: {minilm_path}}}\npooling: mean\nnormalize: true\n")
    out = tmp_path / "figures" / "scores.png"
    assert main(["distributions", "--teacher", str(card), "--student", str(card), "--dataset", str(data),
                 "--split", "test", "--output", str(out), "--work", str(tmp_path / "work"), "--quiet"]) == 0
    assert out.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    rows = [line.split("\t") for line in out.with_suffix(".tsv").read_text().splitlines()]
    assert rows[0] == ["list", "qid", "docid", "role", "minilm", "minilm"] and len(rows) == 1 + 4 * 4
    assert [r[3] for r in rows[1:5]] == ["positive", "negative", "negative", "negative"]
    summary = [line.split("\t") for line in out.with_suffix(".summary.tsv").read_text().splitlines()]
    student = dict(zip(summary[0], summary[2]))
    assert float(student["margin correlation with teacher"]) == pytest.approx(1.0)
    assert float(student["margin MSE to teacher"]) == 0.0
