"""Where generated artefacts live: the work folder (indexes, runs, training state, trained models).

Every folder under it is named from names (datasets' slugs, encoder cards, training configs,
specs), never from paths: :func:`safe_name` refuses anything that could reach outside
the work folder, so a name such as ``../../x`` from a ``--param`` or a spec fails with a
clear message instead of building (or replacing) a folder elsewhere.
"""

from __future__ import annotations

import os
import re
from pathlib import Path

from pyserini_ext.schema import InputError

WORK_ENV = "PYSERINI_EXT_WORK"

_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._+-]*")


def work_dir() -> Path:
    """``$PYSERINI_EXT_WORK``, else ``./work``."""
    return Path(os.environ.get(WORK_ENV) or "work")


class UnsafeNameError(InputError):
    """A name that is not one plain path component."""


def safe_name(name: str, what: str) -> str:
    """``name`` if it is one plain path component (letters, digits, ``._+-``, no ``..``)."""
    if not isinstance(name, str) or not _NAME.fullmatch(name) or ".." in name:
        raise UnsafeNameError(f"{what} {name!r} is not a plain name (letters, digits, '._+-'; no '/' or '..'); "
                         f"names never reach outside the work folder")
    return name


def index_root(workdir: Path, dataset_slug: str, encoder: str | None = None) -> Path:
    """``indexes/<dataset>`` (BM25) or ``indexes/<dataset>.<encoder>``: everything built for one pair."""
    folder = safe_name(dataset_slug, "dataset slug")
    if encoder is not None:
        folder += "." + safe_name(encoder, "encoder card")
    return Path(workdir) / "indexes" / folder


def run_path(workdir: Path, name: str) -> Path:
    return Path(workdir) / "runs" / f"{safe_name(name, 'run name')}.txt"


def trained_model_dir(name: str, workdir: Path | None = None) -> Path:
    """The model a training config ``training/NAME.yaml`` writes when it finishes."""
    return (workdir or work_dir()) / "models" / safe_name(name, "training config")
