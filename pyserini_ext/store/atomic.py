"""Write-then-rename, for files and for folders: a reader never sees half of either.

* :func:`write_atomic` writes a file's bytes under a temporary sibling name and renames
  it over ``path``; :func:`open_atomic` does the same for a file written as a stream
  (a TREC run, a checkpoint).
* :func:`building` yields a ``<target>.partial`` sibling folder to build into; only when the
  ``with`` block succeeds is it renamed over ``target``, and only then is an old ``target``
  removed. A failed build leaves the old ``target`` as it was (and, unless the build is
  resumable, no partial).

:func:`building` removes nothing it did not make: a ``.partial`` folder without its
ownership mark (written when the partial is created) is refused, not deleted.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import uuid
from pathlib import Path
from typing import IO, Any, Iterator

OWNER = ".building.json"  # ownership mark inside a partial folder that building() made


@contextlib.contextmanager
def open_atomic(path: Path | str, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO]:
    """A file to stream into (``mode`` ``"w"`` or ``"wb"``), written under a unique temporary
    sibling name and renamed over ``path`` when the block succeeds (deleted when it fails):
    ``path`` is the old file or the whole new one, never a mix."""
    if mode not in ("w", "wb"):
        raise ValueError(f"open_atomic writes a whole file: mode 'w' or 'wb', not {mode!r}")
    path = Path(path)
    tmp = path.with_name(f".{path.name}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, mode, encoding=None if "b" in mode else encoding) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def write_atomic(path: Path | str, data: bytes | str) -> None:
    """Write ``data`` (``str`` as UTF-8) to ``path`` through :func:`open_atomic`."""
    if isinstance(data, str):
        data = data.encode("utf-8")
    with open_atomic(path, "wb") as f:
        f.write(data)


def partial_of(target: Path | str) -> Path:
    target = Path(target)
    return target.with_name(target.name + ".partial")


def owner_of(partial: Path) -> dict | None:
    """The ownership mark of a partial folder :func:`building` made, or None."""
    try:
        mark = json.loads((partial / OWNER).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return None
    return mark if isinstance(mark, dict) else None


@contextlib.contextmanager
def building(target: Path | str, *, resume: bool = False, stamp: Any = None, replace: bool = True) -> Iterator[Path]:
    """Build a folder in ``<target>.partial`` and rename it over ``target`` on success.

    ``stamp`` (JSON) names what is being built; it is kept in the partial's ownership mark.
    With ``resume``, a partial left by an interrupted build with the same ``stamp`` is
    yielded as it is (a resumable build continues in it), and it is kept when the block
    fails; otherwise an old partial is removed first and a failed block removes its partial.
    An existing ``target`` is replaced only with ``replace`` and only after the block
    succeeded: it is renamed aside, the partial renamed in, and then it is deleted.
    """
    target = Path(target)
    partial = partial_of(target)
    if target.exists() and not replace:
        raise FileExistsError(f"{target} exists; not replacing it")
    if partial.exists() or partial.is_symlink():
        mark = owner_of(partial) if partial.is_dir() and not partial.is_symlink() else None
        if mark is None or mark.get("target") != target.name:
            raise FileExistsError(f"{partial} exists but was not made by this package's build of {target.name}; "
                                  f"refusing to delete it. Remove it yourself to build {target}.")
        if not (resume and mark.get("stamp") == stamp):
            shutil.rmtree(partial)
    if not partial.exists():
        partial.mkdir(parents=True)
        write_atomic(partial / OWNER, json.dumps({"target": target.name, "stamp": stamp}, sort_keys=True))
    try:
        yield partial
    except BaseException:
        if not resume:
            shutil.rmtree(partial, ignore_errors=True)
        raise
    aside = None
    if target.exists() or target.is_symlink():
        aside = target.with_name(f"{target.name}.replaced-{uuid.uuid4().hex[:8]}")
        os.rename(target, aside)
    os.rename(partial, target)
    (target / OWNER).unlink(missing_ok=True)
    if aside is not None:
        if aside.is_dir() and not aside.is_symlink():
            shutil.rmtree(aside)
        else:
            aside.unlink()
