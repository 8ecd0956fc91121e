"""Where generated artefacts live: the work folder (indexes, runs, training state, trained models)."""

from __future__ import annotations

import os
from pathlib import Path

WORK_ENV = "PYSERINI_EXT_WORK"


def work_dir() -> Path:
    """``$PYSERINI_EXT_WORK``, else ``./work``."""
    return Path(os.environ.get(WORK_ENV) or "work")


def trained_model_dir(name: str, workdir: Path | None = None) -> Path:
    """The model a training config ``training/NAME.yaml`` writes when it finishes."""
    return (workdir or work_dir()) / "models" / name
