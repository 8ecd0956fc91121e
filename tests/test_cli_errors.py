"""Issue 14, defect 9: ordinary mistakes on the command line give one line naming what to
change (exit 2 for usage, 1 otherwise), never a traceback. Run through the real parser and
``main`` in this process (each case fails before any index is built), and a full disk through
a child process whose file-size limit makes every write fail."""

import json
import os
import resource
import signal
import subprocess
import sys

import pytest

from pyserini_ext.cli import main


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    """A 20-document BEIR folder."""
    folder = tmp_path_factory.mktemp("tiny")
    (folder / "qrels").mkdir()
    words = "alpha beta gamma delta epsilon zeta eta theta iota kappa lambda mu".split()
    (folder / "corpus.jsonl").write_text("".join(
        json.dumps({"_id": f"d{i}", "title": "", "text": " ".join(words[(i + j) % 12] for j in range(5))}) + "\n"
        for i in range(20)))
    (folder / "queries.jsonl").write_text("".join(
        json.dumps({"_id": f"q{i}", "text": f"{words[i]} {words[i + 3]}"}) + "\n" for i in range(4)))
    (folder / "qrels" / "test.tsv").write_text("query-id\tcorpus-id\tscore\n" + "".join(f"q{i}\td{i}\t1\n"
                                                                                      for i in range(4)))
    return folder


def one_line_error(capsys, argv, code, *words):
    try:
        rc = main(argv)
    except SystemExit as exit_:  # argparse's own usage errors
        rc = exit_.code
    err = capsys.readouterr().err
    assert rc == code, err
    assert "Traceback" not in err
    last = err.strip().splitlines()[-1]
    assert "error:" in last and all(w in last for w in words), err
    return last


def search(tiny, tmp_path, *extra):
    return ["search", "bm25", "--dataset", str(tiny), "--split", "test", "--output", str(tmp_path / "run.txt"),
            "--work", str(tmp_path / "work"), *extra]


@pytest.mark.parametrize("extra, words", [
    (["--hits", "0"], ["--hits", "at least 1"]),
    (["--hits", "-5"], ["--hits", "at least 1"]),
    (["--hits", "many"], ["--hits", "whole number"]),
])
def test_a_bad_hits_value_is_a_usage_error(capsys, tiny, tmp_path, extra, words):
    one_line_error(capsys, search(tiny, tmp_path, *extra), 2, *words)


def test_an_unknown_split_names_the_splits_there_are(capsys, tiny, tmp_path):
    argv = search(tiny, tmp_path)
    argv[argv.index("test")] = "tset"
    one_line_error(capsys, argv, 2, "no split 'tset'", "test")
    assert not (tmp_path / "work" / "indexes").exists()  # refused before building anything


def test_a_malformed_param_value_is_a_usage_error(capsys, tiny, tmp_path):
    one_line_error(capsys, search(tiny, tmp_path, "--param", "k1=[0.9"), 2, "--param k1")


def test_an_output_that_is_a_folder_is_refused_before_searching(capsys, tiny, tmp_path):
    argv = search(tiny, tmp_path)
    argv[argv.index("--output") + 1] = str(tmp_path)
    one_line_error(capsys, argv, 2, "--output", "is a folder")
    assert not (tmp_path / "work" / "indexes").exists()


def test_a_work_folder_that_is_a_file_is_refused(capsys, tiny, tmp_path):
    (tmp_path / "work").write_text("not a folder")
    one_line_error(capsys, search(tiny, tmp_path), 2, "--work", "is a file")


def test_an_unknown_metric_and_a_zero_cutoff_are_usage_errors(capsys, tmp_path):
    run, qrels = tmp_path / "run.txt", tmp_path / "qrels.txt"
    run.write_text("q1 Q0 a 1 1.0 t\n")
    qrels.write_text("q1 0 a 1\n")
    one_line_error(capsys, ["eval", "--run", str(run), "--qrels", str(qrels), "-m", "P@0"], 2, "P@0")


def test_a_malformed_run_is_one_line_naming_file_and_line(capsys, tmp_path):
    run, qrels = tmp_path / "run.txt", tmp_path / "qrels.txt"
    run.write_text("q1 Q0 a 1 1.0 t\nq1 Q0 b 2 nan t\n")
    qrels.write_text("q1 0 a 1\n")
    one_line_error(capsys, ["eval", "--run", str(run), "--qrels", str(qrels), "-m", "MAP"], 2, f"{run}:2")


def _no_room():
    resource.setrlimit(resource.RLIMIT_FSIZE, (0, 0))  # every write past byte 0 fails, as on a full disk
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # ... with an error (EFBIG), not a signal


def test_a_full_disk_is_one_line_and_leaves_no_temporary(tmp_path):
    run = tmp_path / "run.txt"
    run.write_text("".join(f"q1 Q0 d{i} {i + 1} {10 - i} t\n" for i in range(10)))
    out = tmp_path / "out" / "fused.txt"
    out.parent.mkdir()
    proc = subprocess.run([sys.executable, "-m", "pyserini_ext", "fuse", "--run", str(run), "--run", str(run),
                           "--output", str(out)], capture_output=True, text=True, preexec_fn=_no_room,
                          env={**os.environ, "PYTHONDONTWRITEBYTECODE": "1"}, timeout=300)
    assert proc.returncode == 1, proc.stderr
    assert "Traceback" not in proc.stderr and proc.stderr.strip().splitlines()[-1].startswith("pyserini-ext: error:")
    assert "too large" in proc.stderr.lower() or "no space" in proc.stderr.lower()
    assert list(out.parent.iterdir()) == []  # neither the output nor its temporary


# --- defect 3: a name from --param or a spec never reaches outside the work folder -------------

def _sentinel(tmp_path):
    """A folder with a file, outside the work folder, where an escaping encoder name would point."""
    sentinel = tmp_path / "x" / "evil"
    sentinel.mkdir(parents=True)
    (sentinel / "precious.txt").write_text("keep me")
    return sentinel


def _untouched(sentinel, tmp_path):
    assert sorted(p.name for p in sentinel.iterdir()) == ["precious.txt"]
    assert (sentinel / "precious.txt").read_text() == "keep me"
    assert sorted(p.name for p in sentinel.parent.parent.iterdir() if p.name != "work") == ["spec.yaml", "x"] \
        if (tmp_path / "spec.yaml").exists() else ["x"]
    assert not os.path.exists("/x/evil")  # the absolute reading of '/../../x/evil'


@pytest.mark.parametrize("name", ["/../../x/evil", "../../../../x/evil"])
def test_an_encoder_name_that_is_a_path_is_a_usage_error_and_touches_nothing(capsys, tiny, tmp_path, name):
    sentinel = _sentinel(tmp_path)
    argv = search(tiny, tmp_path, "--param", f"encoder={name}")
    argv[1] = "dense"
    one_line_error(capsys, argv, 2, repr(name), "not a plain name")
    _untouched(sentinel, tmp_path)
    assert not (tmp_path / "work" / "indexes").exists()


def test_a_spec_whose_params_name_a_path_is_a_usage_error_and_touches_nothing(capsys, tiny, tmp_path):
    sentinel = _sentinel(tmp_path)
    spec = tmp_path / "spec.yaml"
    spec.write_text(f"""description: an escaping encoder name
dataset: {tiny}
split: test
pipeline:
  searcher: dense
  params: {{encoder: /../../x/evil}}
metrics:
  nDCG@10: {{expected: 0.5, tolerance: 0.5, source: none}}
""")
    one_line_error(capsys, ["repro", "run", str(spec), "--quiet", "--work", str(tmp_path / "work")], 2,
                   str(spec), "/../../x/evil", "not a plain name")
    _untouched(sentinel, tmp_path)
    assert not (tmp_path / "work" / "indexes").exists()


# --- defect 9: an unknown --param key ----------------------------------------------------------

def test_an_unknown_param_key_is_one_line_naming_it(capsys, tiny, tmp_path):
    last = one_line_error(capsys, search(tiny, tmp_path, "--param", "k3=0.5"), 2, "k3")
    assert "k1" in last  # and the keys there are
    assert not (tmp_path / "work" / "indexes").exists()
