"""Regression specs: validation errors name the key, verdicts are two-sided, and the real
specs reproduce end to end (SciFact BM25 and MiniLM, CACM BM25)."""

import os
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


def test_every_shipped_spec_displays_commands_the_real_parser_reads_back_as_the_spec(workdir):
    """Each displayed command parsed by the CLI's own parser gives back the spec's dataset,
    split, searcher, parameters, hits, tie order, metrics and relevance level."""
    import shlex

    from pyserini_ext.cli import _params, build_parser

    parser = build_parser()
    names = [p.stem for p in spec_paths()]
    assert {"scifact-bm25-flat", "scifact-minilm-flat", "scifact-minilm-flat-fp16", "cacm-bm25"} <= set(names)
    for name in names:
        spec = find_spec(name)
        steps = [shlex.split(c) for c in commands(spec, workdir)]
        assert all(step[0] == "pyserini-ext" for step in steps)
        parsed = [parser.parse_args(step[1:]) for step in steps]
        trains, (index, search, evaluate) = parsed[:len(spec.train)], parsed[len(spec.train):]
        assert [t.names for t in trains] == [[n] for n in spec.train]
        p = spec.pipeline
        for args in (index, search):
            assert (args.searcher, args.dataset, _params(args.param)) == (p.searcher, spec.dataset, p.params), name
            assert args.work == workdir
        assert (search.split, search.hits, search.tie_policy, search.seed, search.remove_query) == \
            (spec.split, p.hits, p.tie_policy, p.seed, p.remove_query)
        assert (evaluate.dataset, evaluate.split, evaluate.run) == (spec.dataset, spec.split, search.output)
        assert evaluate.metric == [e.metric for e in spec.metrics]
        assert evaluate.relevance_level == spec.relevance_level


def test_a_spec_whose_name_has_a_dot_keeps_it(tmp_path):
    """``repro run x-ls0.1`` records its results as x-ls0.1: the name was cut at its last dot
    (``Path(name).stem``), so its results went to x-ls0's folder and its baseline lookups failed."""
    from pyserini_ext.cli import _parse_specs

    (tmp_path / "x-ls0.1.yaml").write_text((Path(__file__).parents[1] / "regressions" / "scifact-bm25-flat.yaml").read_text())
    items = _parse_specs([str(tmp_path / "x-ls0.1.yaml"), "scifact-minilm-softmax-ce-ls0.1", "no-such-spec.2"])
    assert [name for name, _ in items] == ["x-ls0.1", "scifact-minilm-softmax-ce-ls0.1", "no-such-spec.2"]
    assert items[0][1].name == "x-ls0.1" and isinstance(items[2][1], FileNotFoundError)


@pytest.mark.e2e
def test_impossible_expected_value_exits_non_zero_with_fail(tmp_path, workdir):
    path = write(tmp_path, GOOD.format(expected=0.9), "cacm-impossible.yaml")
    out = subprocess.run([sys.executable, "-m", "pyserini_ext.cli", "repro", "run", str(path), "--quiet",
                          "--work", str(workdir)], capture_output=True, text=True, timeout=600)
    assert out.returncode == 1, out.stderr
    assert "FAIL" in out.stdout and "cacm-impossible" in out.stdout


# Every shipped spec that needs no training (those train for minutes each: `make demo-trained`) and
# no download (MS MARCO's prebuilt indexes, tens of GB: `repro run --all --downloads`; their
# machinery is tested on a tiny stand-in in tests/test_prebuilt.py), as `repro run --all` runs them.
UNTRAINED_SPECS = [p.stem for p in spec_paths() if not parse_spec(p).train and not parse_spec(p).downloads]
# CI's slice (its time is budgeted): every searcher kind and store family once, with the encodings
# the other end-to-end tests need anyway. `make demo` (or PYSERINI_EXT_ALL_SPECS=1 here) runs them all.
CI_SPECS = ("cacm-bm25", "scifact-bm25-flat", "scifact-minilm-flat", "scifact-minilm-flat-fp16", "scifact-minilm-hnsw",
            "scifact-bm25-minilm-hybrid", "scifact-bm25-minilm-rrf", "scifact-bm25-rerank-minilm",
            "scifact-splade-tiny", "scifact-bm25-rerank-splade-tiny", "scifact-colbert-minilm-colbert",
            "scifact-colbert-minilm-warp-2bit")
E2E_SPECS = UNTRAINED_SPECS if os.environ.get("PYSERINI_EXT_ALL_SPECS") else [n for n in UNTRAINED_SPECS if n in CI_SPECS]


def test_the_ci_slice_names_shipped_specs():
    assert set(CI_SPECS) <= set(UNTRAINED_SPECS)


@pytest.mark.e2e
@pytest.mark.parametrize("name", E2E_SPECS)
def test_shipped_spec_reproduces(name, workdir):
    verdicts = run_spec(find_spec(name), workdir, quiet=True)
    assert all(v.status in (OK, WITHIN) for v in verdicts), [(v.expectation.metric, v.measured, v.status) for v in verdicts]
    if name == "scifact-bm25-flat":  # Pyserini's two-click numbers, exactly
        assert [v.status for v in verdicts] == [OK, OK, OK]


@pytest.mark.e2e
@pytest.mark.skipif(not os.environ.get("PYSERINI_EXT_ALL_SPECS"),
                    reason="trains two models for about 15 minutes on 2 cores: PYSERINI_EXT_ALL_SPECS=1 (or make "
                           "demo-trained, which trains and asserts every trained spec)")
def test_spec_of_a_trained_model_trains_its_teacher_and_student_then_reproduces(workdir, monkeypatch):
    """Complete reproduction: the ColBERT teacher and the margin-MSE student are trained from
    scratch here (unless a previous run left them in the work folder), then evaluated. Out of
    CI's slice (15 of its 45 minutes); the training code paths keep their short smoke and
    bit-exact resume tests in tests/test_train.py."""
    monkeypatch.setenv("PYSERINI_EXT_WORK", str(workdir))  # where the trained cards resolve
    spec = find_spec("scifact-minilm-margin-mse")
    assert spec.train == ("scifact-minilm-margin-mse",)
    verdicts = run_spec(spec, workdir, quiet=True)
    assert all(v.status in (OK, WITHIN) for v in verdicts), [(v.expectation.metric, v.measured) for v in verdicts]


def test_reproduction_page_is_up_to_date():
    from pyserini_ext.repro.runner import REGRESSIONS_DIR, format_page

    page = (REGRESSIONS_DIR.parent / "docs" / "reproductions.md").read_text()
    assert page == format_page([find_spec(str(p)) for p in spec_paths()]), "run: pyserini-ext repro page --markdown > docs/reproductions.md"
