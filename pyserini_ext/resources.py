"""The project's own data files: encoder cards, regression specs, training configs.

They live at the top of the repository (``encoders/``, ``regressions/``, ``training/``),
which is where people edit them; a wheel ships the same files as package data under
``pyserini_ext/bundled/`` (``setup.py`` maps them there). A source checkout (or an editable
install) reads the repository's folders, an installed wheel reads its bundled copy.

Other packages add folders of their own through entry-point groups whose values are
folder paths: ``pyserini_ext.cards``, ``pyserini_ext.specs`` and ``pyserini_ext.training``.
A name is looked up in the built-in folder first, then in the plugins' folders.
"""

from __future__ import annotations

import logging
from importlib.metadata import entry_points
from pathlib import Path

log = logging.getLogger(__name__)

KINDS = ("encoders", "regressions", "training")
PLUGIN_GROUPS = {"encoders": "pyserini_ext.cards", "regressions": "pyserini_ext.specs",
                 "training": "pyserini_ext.training"}

_PACKAGE = Path(__file__).resolve().parent


def resource_dir(kind: str) -> Path:
    """The folder of ``kind`` (one of :data:`KINDS`) this installation reads."""
    if kind not in KINDS:
        raise ValueError(f"unknown resource kind {kind!r}; one of {', '.join(KINDS)}")
    checkout = _PACKAGE.parent / kind
    if checkout.is_dir() and (_PACKAGE.parent / "pyproject.toml").is_file():
        return checkout
    return _PACKAGE / "bundled" / kind


def resource_dirs(kind: str) -> list[Path]:
    """The built-in folder of ``kind``, then every folder plugins register for it."""
    folders = [resource_dir(kind)]
    for ep in entry_points(group=PLUGIN_GROUPS[kind]):
        try:
            folder = Path(ep.load())
        except Exception:  # one broken plugin must not hide the others
            log.exception("could not load the %s folder %r from entry point %s", kind, ep.name, ep.value)
            continue
        if folder.is_dir() and folder not in folders:
            folders.append(folder)
    return folders


def find_resource(kind: str, name: str) -> Path | None:
    """``NAME.yaml`` in the first folder of ``kind`` that has it."""
    for folder in resource_dirs(kind):
        if (folder / f"{name}.yaml").is_file():
            return folder / f"{name}.yaml"
    return None


def resource_names(kind: str) -> list[str]:
    return sorted({p.stem for folder in resource_dirs(kind) for p in folder.glob("*.yaml")})
