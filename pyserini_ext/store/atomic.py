"""Write-then-rename, for files and for folders: a reader never sees half of either.

* :func:`write_atomic` writes a file's bytes under a temporary sibling name and renames
  it over ``path``; :func:`open_atomic` does the same for a file written as a stream
  (a TREC run, a checkpoint).
* :func:`building` yields a ``<target>.partial`` sibling folder to build into; only when the
  ``with`` block succeeds is it renamed over ``target``, and only then is an old ``target``
  removed. A failed build leaves the old ``target`` as it was (and, unless the build is
  resumable, no partial).
* :func:`folder_lock` makes one process at a time build a folder (:func:`building` and
  ``ensure_built`` hold it), so two builders of one index take turns instead of deleting
  each other's partial; the second then finds the folder current and reuses it.
* A writer killed outright (SIGKILL, power loss) leaves its temporary; the next write of the
  same file removes temporaries whose process is gone (their names carry the pid).

:func:`building` removes nothing it did not make: a ``.partial`` folder without its
ownership mark (written when the partial is created) is refused, not deleted.
"""

from __future__ import annotations

import contextlib
import fcntl
import glob
import json
import logging
import os
import re
import shutil
import uuid
from pathlib import Path
from typing import IO, Any, Iterator

log = logging.getLogger(__name__)

OWNER = ".building.json"  # ownership mark inside a partial folder that building() made


@contextlib.contextmanager
def open_atomic(path: Path | str, mode: str = "w", encoding: str | None = "utf-8") -> Iterator[IO]:
    """A file to stream into (``mode`` ``"w"`` or ``"wb"``), written under a unique temporary
    sibling name and renamed over ``path`` when the block succeeds (deleted when it fails):
    ``path`` is the old file or the whole new one, never a mix."""
    if mode not in ("w", "wb"):
        raise ValueError(f"open_atomic writes a whole file: mode 'w' or 'wb', not {mode!r}")
    path = Path(path)
    _sweep_temporaries(path)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{uuid.uuid4().hex[:8]}.tmp")
    try:
        with open(tmp, mode, encoding=None if "b" in mode else encoding) as f:
            yield f
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def _sweep_temporaries(path: Path) -> None:
    """Remove the temporaries of ``path`` left by writers that were killed (their process is
    gone); a live writer's temporary is left alone."""
    try:
        siblings = list(path.parent.glob(f".{glob.escape(path.name)}.*.tmp"))
    except OSError:
        return
    for tmp in siblings:
        match = re.fullmatch(rf"\.{re.escape(path.name)}\.(\d+)-[0-9a-f]{{8}}\.tmp", tmp.name)
        if match and not _alive(int(match.group(1))):
            tmp.unlink(missing_ok=True)


@contextlib.contextmanager
def folder_lock(target: Path | str) -> Iterator[None]:
    """Exclusive use of ``target`` (a folder being built) across processes, through an
    advisory lock on the hidden sibling ``.<name>.lock``, which names the holder's pid.
    A second builder waits (logging who holds it) and then sees the finished folder.
    Re-entrant within a process; the lock file is removed on release."""
    target = Path(target)
    key = str(target.absolute())
    if key in _HELD:
        _HELD[key] += 1
        try:
            yield
        finally:
            _HELD[key] -= 1
        return
    lock = target.with_name(f".{target.name}.lock")
    lock.parent.mkdir(parents=True, exist_ok=True)
    while True:
        fd = os.open(lock, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 64, 0).decode("ascii", "replace").strip() or "?"
            log.warning("%s is being built by process %s; waiting for it to finish", target, holder)
            fcntl.flock(fd, fcntl.LOCK_EX)
        try:  # the holder before us may have removed the file: then lock the new one
            same = os.fstat(fd).st_ino == os.stat(lock).st_ino
        except FileNotFoundError:
            same = False
        if same:
            break
        os.close(fd)
    os.ftruncate(fd, 0)
    os.pwrite(fd, f"{os.getpid()}\n".encode("ascii"), 0)
    _HELD[key] = 1
    try:
        yield
    finally:
        del _HELD[key]
        lock.unlink(missing_ok=True)
        os.close(fd)  # closing releases the lock


_HELD: dict[str, int] = {}


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
    with folder_lock(target):
        with _building(Path(target), resume, stamp, replace) as partial:
            yield partial


@contextlib.contextmanager
def _building(target: Path, resume: bool, stamp: Any, replace: bool) -> Iterator[Path]:
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
