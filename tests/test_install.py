"""Installed, not checked out: a wheel of this package works from a folder outside the
repository, and an out-of-tree plugin adds a dataset, an encoder family, a card and a spec
through entry points alone.

Both install into a folder of their own (``pip install --target``) with no dependencies, and
borrow the test environment's for the rest, so the test costs seconds, not a fresh
download of torch; ``PYTHONPATH`` puts the installed copy ahead of the editable checkout.
"""

import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

ROOT = Path(__file__).resolve().parents[1]
PLUGIN = ROOT / "tests" / "plugin_pkg"


def pip_install(source: Path, target: Path, tmp_path: Path) -> None:
    scratch = tmp_path / "pip-tmp"  # pip builds in a temporary folder: keep it in the test's
    scratch.mkdir(exist_ok=True)
    out = subprocess.run([sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-build-isolation",
                          "--target", str(target), str(source)], capture_output=True, text=True, timeout=600,
                         env={**os.environ, "TMPDIR": str(scratch)})
    assert out.returncode == 0, out.stderr


def run_outside(args, cwd: Path, pythonpath: Path, timeout=600):
    """``python ARGS`` in ``cwd`` with ``pythonpath`` first on the module path."""
    environment = {**os.environ, "PYTHONPATH": str(pythonpath)}
    environment.pop("PYSERINI_EXT_CARDS", None)
    return subprocess.run([sys.executable, *args], cwd=cwd, capture_output=True, text=True, timeout=timeout,
                          env=environment)


@pytest.fixture(scope="module")
def wheel_site(tmp_path_factory):
    """This package built as a wheel and installed into a folder of its own."""
    tmp = tmp_path_factory.mktemp("wheel")
    pip_install(ROOT, tmp / "site", tmp)
    return tmp / "site"


def test_the_wheel_carries_cards_specs_and_training_configs(wheel_site, tmp_path):
    bundled = wheel_site / "pyserini_ext" / "bundled"
    for kind in ("encoders", "regressions", "training"):
        shipped = sorted(p.name for p in (bundled / kind).glob("*.yaml"))
        assert shipped == sorted(p.name for p in (ROOT / kind).glob("*.yaml")), kind
    code = ("import pyserini_ext, json\n"
            "from pyserini_ext.encode.base import card_names\n"
            "from pyserini_ext.repro.runner import spec_paths\n"
            "print(json.dumps([pyserini_ext.__file__, card_names(), [p.stem for p in spec_paths()]]))\n")
    out = run_outside(["-c", code], tmp_path, wheel_site)
    assert out.returncode == 0, out.stderr
    module, cards, specs = json.loads(out.stdout)
    assert module.startswith(str(wheel_site))  # the installed copy, not the checkout
    assert cards == sorted(p.stem for p in (ROOT / "encoders").glob("*.yaml"))
    assert sorted(specs) == sorted(p.stem for p in (ROOT / "regressions").glob("*.yaml"))


@pytest.mark.e2e
def test_the_wheel_reproduces_scifact_bm25_from_outside_the_repository(wheel_site, tmp_path, workdir):
    out = run_outside(["-m", "pyserini_ext", "repro", "run", "scifact-bm25-flat", "--quiet", "--work", str(workdir)],
                      tmp_path, wheel_site)
    assert out.returncode == 0, out.stderr
    assert "3/3 metrics pass" in out.stdout and "FAIL" not in out.stdout


def hashing_vectors(texts, dim=256):
    """The plugin family's vectors, written again here (crc32 buckets of lowercased words)."""
    import re
    import zlib

    out = np.zeros((len(texts), dim))
    for row, text in enumerate(texts):
        for token in re.findall(r"\w+", text.lower()):
            out[row, zlib.crc32(token.encode()) % dim] += 1
    return out / np.linalg.norm(out, axis=1, keepdims=True)


def expected_plugin_ndcg10() -> float:
    """The plugin spec's nDCG@10 by brute force in NumPy and pytrec_eval, outside our search code."""
    import pytrec_eval

    data = PLUGIN / "px_hashing" / "data"
    docs = [json.loads(line) for line in (data / "corpus.jsonl").read_text().splitlines()]
    queries = [json.loads(line) for line in (data / "queries.jsonl").read_text().splitlines()]
    qrels = {}
    for line in (data / "qrels" / "test.tsv").read_text().splitlines()[1:]:
        qid, docid, grade = line.split("\t")
        qrels.setdefault(qid, {})[docid] = int(grade)
    d = hashing_vectors([f"{x['title']} {x['text']}".strip() for x in docs]).astype(np.float32)
    q = hashing_vectors([x["text"] for x in queries]).astype(np.float32)
    scores = q @ d.T
    run = {}
    for i, query in enumerate(queries):
        # score descending, ties by docid ascending; scores made distinct so pytrec_eval keeps that order
        order = sorted(range(len(docs)), key=lambda j: (-scores[i, j], docs[j]["_id"]))[:10]
        run[query["_id"]] = {docs[j]["_id"]: float(len(order) - rank) for rank, j in enumerate(order)}
    per_query = pytrec_eval.RelevanceEvaluator(qrels, {"ndcg_cut.10"}).evaluate(run)
    return float(np.mean([v["ndcg_cut_10"] for v in per_query.values()]))


@pytest.mark.e2e
def test_an_out_of_tree_plugin_adds_a_dataset_a_family_a_card_and_a_spec(tmp_path):
    site = tmp_path / "site"
    pip_install(PLUGIN, site, tmp_path)
    work = tmp_path / "work"

    out = run_outside(["-m", "pyserini_ext", "datasets", "list"], tmp_path, site)
    assert out.returncode == 0, out.stderr
    assert any(line.startswith("px/tiny ") for line in out.stdout.splitlines())
    out = run_outside(["-m", "pyserini_ext", "encoders", "families"], tmp_path, site)
    assert "hashing" in out.stdout.split()
    out = run_outside(["-m", "pyserini_ext", "encoders", "list"], tmp_path, site)
    assert "hashing-256" in out.stdout

    spec = (PLUGIN / "px_hashing" / "specs" / "px-tiny-hashing.yaml").read_text()
    assert f"expected: {expected_plugin_ndcg10():.4f}" in spec  # the spec holds the independent value
    out = run_outside(["-m", "pyserini_ext", "repro", "run", "px-tiny-hashing", "--quiet", "--work", str(work)],
                      tmp_path, site)
    assert out.returncode == 0, out.stderr
    assert "px-tiny-hashing" in out.stdout and "FAIL" not in out.stdout and "1/1 metrics pass" in out.stdout


def test_the_wheel_carries_the_page_templates(wheel_site):
    """``pyserini-ext repro page`` renders Jinja2 templates shipped as package data."""
    templates = wheel_site / "pyserini_ext" / "repro" / "templates"
    shipped = sorted(p.name for p in templates.glob("*.j2"))
    assert shipped == sorted(p.name for p in (ROOT / "pyserini_ext" / "repro" / "templates").glob("*.j2"))
