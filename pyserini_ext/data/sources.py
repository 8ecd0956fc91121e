"""Where a dataset's files live, and how a missing one is fetched.

Two kinds of file:

- :class:`LocalFile`: a file under the data root (``$PYSERINI_EXT_DATA``, else
  ``~/.cache/pyserini_ext/data``), with the :class:`Remote` it comes from. A missing one is
  downloaded and checked against its MD5 before it is moved into place; a failed download
  leaves nothing half-written behind. A remote may be the file itself or an archive
  (``.zip``, ``.tar.gz``/``.tgz``/``.tar``) holding it.
- :class:`LocalPath`: a file the user pointed at (a local folder, a dataset card). It is
  never downloaded; a missing one is an error naming it.

With ``$PYSERINI_EXT_OFFLINE=1`` nothing is downloaded: a missing file is an error saying
which file to place where and where it comes from (URL and MD5).
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tarfile
import tempfile
import urllib.request
import zipfile
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

DATA_ROOT_ENV = "PYSERINI_EXT_DATA"
OFFLINE_ENV = "PYSERINI_EXT_OFFLINE"
ARCHIVE_SUFFIXES = (".zip", ".tar.gz", ".tgz", ".tar")


def data_root() -> Path:
    return Path(os.environ.get(DATA_ROOT_ENV) or Path.home() / ".cache" / "pyserini_ext" / "data").expanduser()


def downloads_disabled() -> bool:
    return os.environ.get(OFFLINE_ENV, "").strip().lower() not in ("", "0", "false", "no")


class DatasetNotFoundError(FileNotFoundError):
    pass


@dataclass(frozen=True)
class Remote:
    """Where a file (or an archive holding it) comes from, with the MD5 its publisher gives.

    ``md5`` is None only where no checksum is published or recorded; such a download is
    not verified (the message for a missing file says so).
    """

    url: str
    md5: str | None
    # For an archive (.zip, .tar.gz, .tgz, .tar): the folder inside it to extract ("" for the
    # archive's top level), and the folder under the data root it becomes.
    zip_folder: str | None = None
    unpack_to: str | None = None
    headers: tuple[tuple[str, str], ...] = ()  # extra HTTP headers some hosts want

    @property
    def is_archive(self) -> bool:
        return self.zip_folder is not None

    def checksum_text(self) -> str:
        return f"MD5 {self.md5}" if self.md5 else "no checksum recorded"


@dataclass(frozen=True)
class LocalFile:
    """A file under the data root, and how to get it when it is missing."""

    relpath: str
    md5: str | None = None  # of the file itself, checked after download
    remote: Remote | None = None
    how_to_get: str = ""  # for files with no download: what to tell the user

    def path(self) -> Path:
        return data_root() / self.relpath

    def resolve(self) -> Path:
        """The file's path, downloading it first if it is missing and has a source."""
        path = self.path()
        if path.exists():
            return path
        if self.remote is None:
            raise DatasetNotFoundError(
                f"{path} not found (looked under the data root {data_root()}, set by ${DATA_ROOT_ENV}). "
                f"To fetch it: {self.how_to_get or 'no public download is known'}; or point ${DATA_ROOT_ENV} "
                f"at a folder that has {self.relpath}."
            )
        if downloads_disabled():
            raise DatasetNotFoundError(f"{path} not found and downloads are off (${OFFLINE_ENV} is set). "
                                       + self.placement())
        return fetch(self)

    def placement(self) -> str:
        """What to put where, by hand: the full target path, the URL and its checksum."""
        path, remote = self.path(), self.remote
        if remote is None:
            return f"Place {self.relpath} at {path}: {self.how_to_get or 'no public download is known'}."
        own = f" (the file's own MD5 is {self.md5})" if self.md5 else ""
        if not remote.is_archive:
            return (f"Place the file {path} by hand: download {remote.url} ({remote.checksum_text()}) to that path; "
                    f"or point ${DATA_ROOT_ENV} at a folder that has {self.relpath}.")
        destination = data_root() / (remote.unpack_to or "")
        inside = f"{remote.zip_folder}/" if remote.zip_folder else "its top level"
        member = (f"{remote.zip_folder}/" if remote.zip_folder else "") + str(
            Path(self.relpath).relative_to(remote.unpack_to or ""))
        return (f"Place the file {path} by hand: it is {member}{own} in the archive {remote.url} "
                f"({remote.checksum_text()}); download it and unpack {inside} into {destination}; "
                f"or point ${DATA_ROOT_ENV} at a folder that has {self.relpath}.")

    def describe(self) -> str:
        return str(self.path())


@dataclass(frozen=True)
class LocalPath:
    """A file or folder the user named (a local dataset folder, a file a card names)."""

    location: Path
    md5: str | None = None  # declared (by a card); checked by Dataset.fingerprint()
    declared_in: str = ""  # e.g. "card.yaml key 'corpus'", for messages

    def path(self) -> Path:
        return self.location

    def resolve(self) -> Path:
        if self.location.exists():
            return self.location
        where = f" (named by {self.declared_in})" if self.declared_in else ""
        raise DatasetNotFoundError(f"{self.location} not found{where}")

    def placement(self) -> str:
        return f"Place the file {self.location} there."

    def describe(self) -> str:
        return str(self.location)


def md5sum(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch(file: LocalFile) -> Path:
    """Download ``file`` (or the archive holding it), verify checksums, move into place.

    Everything happens in a temporary folder beside the target; only verified files
    are moved into the data root, so a failed download leaves nothing behind.
    """
    remote = file.remote
    assert remote is not None
    target = file.path()
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".download-") as tmp:
        download = Path(tmp) / (Path(remote.url.split("?")[0]).name or "download")
        log.info("downloading %s", remote.url)
        try:
            _download(remote, download)
        except OSError as err:
            raise DatasetNotFoundError(
                f"{target} not found and {remote.url} could not be downloaded ({err}). " + file.placement()
            ) from None
        if remote.md5:
            _check_md5(download, remote.md5, remote.url)
        else:
            log.warning("%s: no checksum is recorded for this file; it is not verified", remote.url)
        if not remote.is_archive:
            if file.md5 and file.md5 != remote.md5:
                _check_md5(download, file.md5, remote.url)
            os.replace(download, target)
            return target
        _unpack(download, Path(tmp) / "unpacked", remote.url)
        unpacked = Path(tmp) / "unpacked" / remote.zip_folder
        destination = data_root() / (remote.unpack_to or "")
        member = unpacked / Path(file.relpath).relative_to(remote.unpack_to or "")
        if not member.is_file():
            raise DatasetNotFoundError(
                f"{remote.url} (MD5 verified) has no {member.relative_to(Path(tmp) / 'unpacked')}; "
                f"{target} cannot be made from it")
        if file.md5:
            _check_md5(member, file.md5, f"{member.relative_to(unpacked)} in {remote.url}")
        # Move every file of the archive's folder, so sibling files (queries, qrels) arrive too.
        for src in sorted(unpacked.rglob("*")):
            dst = destination / src.relative_to(unpacked)
            if src.is_file() and not dst.exists():
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.move(src, dst)
    return target


def _download(remote: Remote, to: Path) -> None:
    request = urllib.request.Request(remote.url, headers=dict(remote.headers))
    with urllib.request.urlopen(request, timeout=60) as response, open(to, "wb") as out:
        shutil.copyfileobj(response, out, 1 << 20)


def _unpack(archive: Path, into: Path, url: str) -> None:
    name = url.split("?")[0].lower()
    into.mkdir()
    if name.endswith(".zip"):
        with zipfile.ZipFile(archive) as z:
            z.extractall(into)  # zipfile drops absolute paths and ".." components
    elif name.endswith((".tar.gz", ".tgz", ".tar")):
        with tarfile.open(archive) as t:
            if hasattr(tarfile, "data_filter"):
                t.extractall(into, filter="data")  # refuses links and paths that leave `into`
            else:  # Python 3.11.0-3.11.3 (Debian 12's 3.11.2) has no extraction filters
                t.extractall(into, members=_plain_members(t, url))
    else:
        raise DatasetNotFoundError(f"{url}: not an archive this project unpacks ({', '.join(ARCHIVE_SUFFIXES)})")


def _plain_members(archive: tarfile.TarFile, url: str) -> list[tarfile.TarInfo]:
    """The members of ``archive`` if every one is a file or folder whose name stays inside the
    folder it is unpacked into (what the "data" filter allows, for Pythons without it)."""
    members = archive.getmembers()
    for member in members:
        parts = Path(member.name).parts
        if not (member.isfile() or member.isdir()) or Path(member.name).is_absolute() or ".." in parts:
            raise DatasetNotFoundError(f"{url}: the archive member {member.name!r} is a link, a device or a path "
                                       f"leaving the folder it is unpacked into; refusing to unpack it")
    return members


def _check_md5(path: Path, expected: str, what: str) -> None:
    actual = md5sum(path)
    if actual != expected:
        raise DatasetNotFoundError(f"checksum mismatch for {what}: MD5 {actual}, expected {expected}")
