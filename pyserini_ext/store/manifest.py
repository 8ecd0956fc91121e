"""``manifest.json``: what a built folder holds and what it was built from.

Every shard folder and index folder this package builds ends with a ``manifest.json``,
written last (so a folder with one is complete)::

    {"format": 1, "kind": "dense-shards", "count": 5183, "dtype": "float32", "dims": [384],
     "docids": {"first": "4983", "last": "198309074"},
     "files": {"shard-00000.npy": {"size": 3145856, "sha256": "..."}, ...},
     "built_from": {...the caller's dict...}, "written_by": "pyserini_ext 0.1.0",
     "created": "2025-...Z", "build_seconds": 12.3, "digest": "<sha256 of the rest>"}

The digest covers what the folder holds and was built from, never when or how fast it was
built (``created``, ``build_seconds``): two builds of the same inputs have one digest, which
is what a folder derived from this one records as its ``source``.

``built_from`` is the identity of the inputs (corpus fingerprint, encoder card, parameters,
package version: whatever the caller passes, as JSON). :func:`check_built_from` compares it,
and the files' presence and sizes, with what the caller would build now, and
:func:`ensure_built` is the one reuse-or-rebuild decision every builder makes. Every folder
it builds (shards and indexes alike) records each file's SHA-256, checked before reuse.
"""

from __future__ import annotations

import dataclasses
import datetime
import hashlib
import json
import logging
import time
from pathlib import Path
from typing import Any, Callable, Literal

from pyserini_ext.store.atomic import OWNER, building, folder_lock, write_atomic

log = logging.getLogger(__name__)

MANIFEST = "manifest.json"
FORMAT = 1

Freshness = Literal["missing", "current", "stale"]

# How a WARNING names a changed top-level key of built_from.
_KEY_NAMES = {"corpus": "corpus fingerprint", "encoder": "encoder card", "params": "parameters",
              "version": "package version", "source": "source shards (their manifest digest)",
              "builder": "builder parameters"}


class ManifestError(RuntimeError):
    """A folder's manifest is missing, unreadable, or disagrees with the files."""


def _json_default(value: Any) -> Any:
    if isinstance(value, Path):
        return str(value)
    if isinstance(value, (set, frozenset)):
        return sorted(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return dataclasses.asdict(value)
    raise TypeError(f"built_from must be JSON (dicts, lists, str, numbers, bool, None, paths, dataclasses); "
                    f"got {type(value).__name__}: {value!r}")


def canonical(value: Any) -> Any:
    """``value`` as it reads back from JSON (tuples become lists, paths strings), so that
    what the caller passes and what a manifest recorded compare equal when they should."""
    return json.loads(json.dumps(value, default=_json_default, sort_keys=True))


def file_sha256(path: Path, block: int = 1 << 20) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(block):
            h.update(chunk)
    return h.hexdigest()


def _listed(folder: Path) -> list[Path]:
    """The regular files under ``folder`` a manifest lists (not itself, ownership marks or temporaries)."""
    return sorted(p for p in folder.rglob("*") if p.is_file() and p.name not in (MANIFEST, OWNER)
                  and not (p.name.startswith(".") and p.name.endswith(".tmp")))


# When and how fast a folder was built: outside its digest, so a rebuild of the same inputs
# differs from the first build only in these (tests comparing two builds byte for byte drop them).
CIRCUMSTANCES = ("created", "build_seconds")


def _digest(manifest: dict) -> str:
    body = {k: v for k, v in manifest.items() if k != "digest" and k not in CIRCUMSTANCES}
    return hashlib.sha256(json.dumps(body, sort_keys=True).encode("utf-8")).hexdigest()


def write_manifest(folder: Path | str, *, kind: str, count: int, built_from: dict | None = None,
                   dtype: str | None = None, dims: list[int] | tuple[int, ...] | None = None,
                   docids: tuple[str, str] | None = None, hashes: bool | dict[str, str] = False,
                   extra: dict | None = None, build_seconds: float | None = None) -> dict:
    """Write ``folder/manifest.json`` (atomically) listing every file under ``folder`` with its
    size, and its SHA-256 when ``hashes`` is True (computed) or a dict (``relative path ->
    sha256`` already known, computed for files it lacks). ``build_seconds``, when given, is
    recorded outside the digest. Returns the manifest."""
    from pyserini_ext import __version__

    folder = Path(folder)
    known = hashes if isinstance(hashes, dict) else {}
    files = {}
    for path in _listed(folder):
        name = path.relative_to(folder).as_posix()
        entry: dict[str, Any] = {"size": path.stat().st_size}
        if hashes is not False:
            entry["sha256"] = known.get(name) or file_sha256(path)
        files[name] = entry
    manifest: dict[str, Any] = {"format": FORMAT, "kind": kind, "count": int(count)}
    if dtype is not None:
        manifest["dtype"] = str(dtype)
    if dims is not None:
        manifest["dims"] = [int(d) for d in dims]
    if docids is not None:
        manifest["docids"] = {"first": docids[0], "last": docids[1]}
    manifest.update(canonical(extra or {}))
    manifest["files"] = files
    manifest["built_from"] = canonical(built_from or {})
    manifest["written_by"] = f"pyserini_ext {__version__}"
    manifest["digest"] = _digest(manifest)
    manifest["created"] = datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    if build_seconds is not None:
        manifest["build_seconds"] = round(float(build_seconds), 1)
    write_atomic(folder / MANIFEST, json.dumps(manifest, indent=1, sort_keys=True) + "\n")
    return manifest


def read_manifest(folder: Path | str) -> dict | None:
    """The manifest of ``folder``, or None when it has none. Raises :class:`ManifestError`
    for a manifest that is not valid JSON or whose digest does not match its content."""
    path = Path(folder) / MANIFEST
    try:
        text = path.read_text(encoding="utf-8")
    except (FileNotFoundError, NotADirectoryError):
        return None
    try:
        manifest = json.loads(text)
    except ValueError as err:
        raise ManifestError(f"{path}: not valid JSON ({err})") from None
    if not isinstance(manifest, dict) or manifest.get("digest") != _digest(manifest):
        raise ManifestError(f"{path}: its digest does not match its content (edited by hand?)")
    return manifest


def require_manifest(folder: Path | str, kind: str | None = None) -> dict:
    """The manifest of a complete folder of ``kind``, its files checked (present, sizes, and
    the SHA-256 of those the manifest records one for: shard folders);
    :class:`ManifestError` otherwise."""
    folder = Path(folder)
    manifest = read_manifest(folder)
    if manifest is None:
        what = "does not exist" if not folder.exists() else (
            "has no manifest.json: it was never finished, or an earlier release built it; build it again")
        raise ManifestError(f"{folder} {what}")
    if kind is not None and manifest.get("kind") != kind:
        raise ManifestError(f"{folder} holds {manifest.get('kind')!r}, not {kind!r}")
    problems = file_problems(folder, manifest) or hash_problems(folder, manifest)
    if problems:
        raise ManifestError(f"{folder} disagrees with its manifest ({'; '.join(problems)}); build it again")
    return manifest


_VERIFIED: dict[tuple, str] = {}  # (path, size, mtime_ns, inode) -> SHA-256 checked in this process


def hash_problems(folder: Path | str, manifest: dict) -> list[str]:
    """Files whose SHA-256 differs from the manifest's (those it records one for). Each file
    is hashed once per process and file state (size, mtime, inode), so reopening is cheap."""
    folder, problems = Path(folder), []
    for name, entry in manifest.get("files", {}).items():
        if "sha256" not in entry:
            continue
        path = folder / name
        stat = path.stat()
        key = (str(path.absolute()), stat.st_size, stat.st_mtime_ns, stat.st_ino)
        if _VERIFIED.get(key) == entry["sha256"]:
            continue
        actual = file_sha256(path)
        if actual != entry["sha256"]:
            problems.append(f"{name} has SHA-256 {actual[:16]}..., the manifest says {entry['sha256'][:16]}... "
                            f"(changed on disk since it was written)")
        else:
            _VERIFIED[key] = actual
    return problems


def manifest_digest(folder: Path | str) -> str:
    """The digest of a complete folder's manifest: what a folder derived from it records in
    its ``built_from`` (a rebuilt source with other content has another digest)."""
    return require_manifest(folder)["digest"]


def file_problems(folder: Path | str, manifest: dict) -> list[str]:
    """Files the manifest lists that are missing or have another size (cheap: one stat each)."""
    folder, problems = Path(folder), []
    for name, entry in manifest.get("files", {}).items():
        path = folder / name
        if not path.is_file():
            problems.append(f"{name} is missing")
        elif path.stat().st_size != entry.get("size"):
            problems.append(f"{name} has {path.stat().st_size} bytes, the manifest says {entry.get('size')}")
    return problems


def _short(value: Any, width: int = 48) -> str:
    if isinstance(value, str) and len(value) > 24:
        value = value[:16] + "..."  # a digest: its head identifies it
    text = json.dumps(value, sort_keys=True)
    return text if len(text) <= width else text[:width - 3] + "..."


def _changes(old: Any, new: Any, where: str) -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        out = []
        for key in sorted(set(old) | set(new), key=str):
            sub = f"{where}.{key}" if where else str(key)
            if key not in old:
                out.append(f"{sub} added ({_short(new[key])})")
            elif key not in new:
                out.append(f"{sub} removed (was {_short(old[key])})")
            else:
                out.extend(_changes(old[key], new[key], sub))
        return out
    return [] if old == new else [f"{where} {_short(old)} -> {_short(new)}"]


def built_from_changes(old: dict, new: dict) -> list[str]:
    """What differs between two ``built_from`` dicts, in words, one entry per top-level key:
    ``corpus fingerprint changed ("a1..." -> "b2...")``."""
    old, new = canonical(old or {}), canonical(new or {})
    out = []
    for key in sorted(set(old) | set(new), key=str):
        if old.get(key, None) == new.get(key, None) and (key in old) == (key in new):
            continue
        name = _KEY_NAMES.get(key, f"built_from[{key!r}]")
        if key not in old:
            out.append(f"{name} added ({_short(new[key])})")
        elif key not in new:
            out.append(f"{name} removed (was {_short(old[key])})")
        else:
            both_dicts = isinstance(old[key], dict) and isinstance(new[key], dict)
            details = "; ".join(_changes(old[key], new[key], "")) if both_dicts else \
                f"{_short(old[key])} -> {_short(new[key])}"
            out.append(f"{name} changed ({details})")
    return out


def _has_content(folder: Path) -> bool:
    if folder.is_dir():
        return any(folder.iterdir())
    return folder.exists() or folder.is_symlink()


def stale_reasons(folder: Path | str, built_from: dict | None) -> list[str]:
    """Why ``folder`` cannot be reused for ``built_from`` (empty when it is current or missing)."""
    folder = Path(folder)
    if not _has_content(folder):
        return []
    if not folder.is_dir():
        return [f"{folder} is a file, not a folder (an earlier release's layout)"]
    try:
        manifest = read_manifest(folder)
    except ManifestError as err:
        return [str(err)]
    if manifest is None:
        return ["no manifest.json (an earlier release built it, or its build never finished)"]
    reasons = built_from_changes(manifest.get("built_from", {}), built_from or {})
    if any("sha256" not in entry for entry in manifest.get("files", {}).values()):
        # Sizes alone cannot tell a damaged file: rebuild once so that its reuse can be verified.
        reasons.append("its manifest records no SHA-256 per file (an earlier release built it)")
    problems = file_problems(folder, manifest)
    if problems:
        reasons.append("its files disagree with its manifest: " + "; ".join(problems[:5])
                       + (f" and {len(problems) - 5} more" if len(problems) > 5 else ""))
    return reasons


def check_built_from(folder: Path | str, built_from: dict | None) -> Freshness:
    """``missing`` (nothing there, or an empty folder), ``current`` (a complete folder built
    from ``built_from``, its files all there) or ``stale`` (anything else: other inputs,
    files missing or resized, no manifest: an earlier release's or an unfinished build)."""
    folder = Path(folder)
    if not _has_content(folder):
        return "missing"
    return "stale" if stale_reasons(folder, built_from) else "current"


def ensure_built(folder: Path | str, built_from: dict | None, build_fn: Callable[[Path], dict], what: str, *,
                 resume: bool = False, legacy: Callable[[Path], bool] | None = None) -> Path:
    """Reuse ``folder`` when it is current for ``built_from``; otherwise build it.

    ``build_fn(partial)`` fills the empty (or, with ``resume``, partly filled) folder
    ``<folder>.partial`` and returns the manifest fields (``kind``, ``count`` and any of
    ``dtype``, ``dims``, ``docids``, ``hashes``, ``extra``: see :func:`write_manifest`;
    ``hashes`` defaults to True: every file's SHA-256 is recorded, and checked before the
    folder is reused, a mismatch refused with :class:`ManifestError` naming the file);
    the manifest is written last, with the seconds ``build_fn`` took (of a resumed build, its
    last run), then the partial is renamed over ``folder``. A stale
    ``folder`` stays in place, readable, until the new one is complete; the rebuild is
    logged as a WARNING naming the folder and what changed. A folder with content but no
    manifest is replaced only when ``legacy(folder)`` recognises it as an earlier release's
    build of this kind; anything else is refused (:class:`ManifestError`), never deleted.
    """
    folder = Path(folder)
    with folder_lock(folder):  # one builder at a time; a waiter then finds the folder current
        return _ensure_built(folder, built_from, build_fn, what, resume, legacy)


def _ensure_built(folder: Path, built_from: dict | None, build_fn: Callable[[Path], dict], what: str,
                  resume: bool, legacy: Callable[[Path], bool] | None) -> Path:
    state = check_built_from(folder, built_from)
    if state == "current":
        # Same sizes are not the same bytes (a flipped bit keeps the size). A damaged folder is
        # refused, not rebuilt silently: the disk under it deserves a look first.
        problems = hash_problems(folder, read_manifest(folder))
        if problems:
            raise ManifestError(f"{folder} disagrees with its manifest ({'; '.join(problems)}); it is damaged: "
                                f"delete it and run again to rebuild it")
        log.info("%s %s is current; reusing it", what, folder)
        return folder
    if state == "stale":
        reasons = stale_reasons(folder, built_from)
        ours = folder.is_dir() and (folder / MANIFEST).exists()
        if not ours and not (legacy is not None and legacy(folder)):
            raise ManifestError(f"{folder} exists but is not a {what} this package built ({reasons[0]}); "
                                f"refusing to replace it. Move it away or choose another folder.")
        log.warning("%s %s is stale: %s. Rebuilding it; the old one stays until the new one is complete.",
                    what, folder, "; ".join(reasons))
    else:
        log.info("building %s %s", what, folder)
    stamp = canonical(built_from or {})
    with building(folder, resume=resume, stamp=stamp) as partial:
        started = time.perf_counter()
        fields = build_fn(partial)
        if not isinstance(fields, dict) or "kind" not in fields or "count" not in fields:
            raise TypeError(f"the build function of {what} must return the manifest fields (kind, count, ...)")
        write_manifest(partial, built_from=built_from, **{"hashes": True, **fields},
                       build_seconds=time.perf_counter() - started)
    return folder
