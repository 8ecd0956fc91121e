"""Regression specs: validation errors name the key, verdicts are two-sided, and the real
specs reproduce end to end (SciFact BM25 and MiniLM, CACM BM25)."""

import subprocess
import sys
from pathlib import Path

import pytest

from pyserini_ext.repro.runner import FAIL, IMPROVED, OK, WITHIN, Verdict, commands, find_spec, run_spec, spec_paths
from pyserini_ext.repro.spec import Expectation, SpecError, parse_spec

GOOD = """\
dataset: cacm
split: all
pipeline:
  searcher: bm25
  hits: 1000
metrics:
  MAP:
    expected: {expected}
    tolerance: 0.001
    source: test
"""


def write(tmp_path, text, name="spec.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


@pytest.mark.parametrize("text, message", [
    (GOOD.replace("split: all\n", ""), "missing key 'split'"),
    (GOOD.replace("MAP:", "MAPP:"), "key 'metrics.MAPP': unknown metric 'MAPP'"),
    (GOOD.replace("    source: test\n", ""), "missing key 'metrics.MAP.source'"),
    (GOOD.replace("  hits: 1000", "  hitz: 1000"), "unknown key 'pipeline.hitz'"),
    (GOOD + "extra: 1\n", "unknown key 'extra'"),
    (GOOD.replace("  hits: 1000", "  tie_policy: random"), "key 'pipeline.tie_policy'"),
])
def test_spec_errors_name_file_and_key(tmp_path, text, message):
    path = write(tmp_path, text.format(expected=0.3123))
    with pytest.raises(SpecError) as err:
        parse_spec(path)
    assert str(path) in str(err.value) and message in str(err.value)


def test_precision_comes_from_the_number_as_written(tmp_path):
    spec = parse_spec(write(tmp_path, GOOD.format(expected="0.3120")))
    assert spec.metrics[0].precision == 4 and spec.metrics[0].expected == 0.312


@pytest.mark.parametrize("measured, status", [
    (0.67894, OK), (0.6795, WITHIN), (0.6783, WITHIN), (0.6800, IMPROVED), (0.6770, FAIL),
])
def test_verdicts_are_two_sided(measured, status):
    expectation = Expectation("nDCG@10", 0.6789, 0.001, "test", 4)
    verdict = Verdict("s", expectation, measured)
    assert verdict.status == status and verdict.passed == (status != FAIL)


def test_every_shipped_spec_parses_and_displays_its_commands(workdir):
    names = [p.stem for p in spec_paths()]
    assert {"scifact-bm25-flat", "scifact-minilm-flat", "scifact-minilm-flat-fp16", "cacm-bm25"} <= set(names)
    for name in names:
        spec = find_spec(name)
        steps = commands(spec, workdir)
        assert [s.split()[1] for s in steps] == ["train"] * len(spec.train) + ["index", "search", "eval"]
        assert [s.split()[2] for s in steps[:len(spec.train)]] == list(spec.train)


@pytest.mark.e2e
def test_impossible_expected_value_exits_non_zero_with_fail(tmp_path, workdir):
    path = write(tmp_path, GOOD.format(expected=0.9), "cacm-impossible.yaml")
    out = subprocess.run([sys.executable, "-m", "pyserini_ext.cli", "repro", "run", str(path), "--quiet",
                          "--work", str(workdir)], capture_output=True, text=True, timeout=600)
    assert out.returncode == 1, out.stderr
    assert "FAIL" in out.stdout and "cacm-impossible" in out.stdout


@pytest.mark.e2e
@pytest.mark.parametrize("name", ["scifact-bm25-flat", "cacm-bm25", "scifact-minilm-flat", "scifact-minilm-flat-fp16",
                                  "scifact-minilm-hnsw", "scifact-bm25-minilm-rrf", "scifact-bm25-minilm-hybrid",
                                  "scifact-bm25-rerank-minilm", "scifact-bm25-rerank-splade-tiny", "scifact-splade-tiny",
                                  "scifact-mrl-minilm-zeroshot", "scifact-minilm-flat-onnx",
                                  "scifact-minilm-flat-onnx-int8", "scifact-colbert-minilm-colbert",
                                  "scifact-colbert-minilm-xtr", "scifact-colbert-minilm-ivf"])
def test_shipped_spec_reproduces(name, workdir):
    verdicts = run_spec(find_spec(name), workdir, quiet=True)
    assert all(v.status in (OK, WITHIN) for v in verdicts), [(v.expectation.metric, v.measured, v.status) for v in verdicts]
    if name == "scifact-bm25-flat":  # Pyserini's two-click numbers, exactly
        assert [v.status for v in verdicts] == [OK, OK, OK]


@pytest.mark.e2e
def test_spec_of_a_trained_model_trains_its_teacher_and_student_then_reproduces(workdir, monkeypatch):
    """Complete reproduction in CI: the ColBERT teacher and the margin-MSE student are trained
    from scratch here (unless a previous run left them in the work folder), then evaluated."""
    monkeypatch.setenv("PYSERINI_EXT_WORK", str(workdir))  # where the trained cards resolve
    spec = find_spec("scifact-minilm-margin-mse")
    assert spec.train == ("scifact-minilm-margin-mse",)
    verdicts = run_spec(spec, workdir, quiet=True)
    assert all(v.status in (OK, WITHIN) for v in verdicts), [(v.expectation.metric, v.measured) for v in verdicts]


def test_reproduction_page_is_up_to_date():
    from pyserini_ext.repro.runner import REGRESSIONS_DIR, format_page

    page = (REGRESSIONS_DIR.parent / "docs" / "reproductions.md").read_text()
    assert page == format_page([find_spec(str(p)) for p in spec_paths()]), "run: pyserini-ext repro page > docs/reproductions.md"
