"""Named datasets and topic sets, resolved under a data root.

The data root is ``$PYSERINI_EXT_DATA`` (tests and CI point it at ``../shared/data``),
else ``~/.cache/pyserini_ext/data``. A file that is not there is downloaded from its
official source and checked against its MD5 before it is moved into place; a
failed download leaves nothing half-written behind.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
import urllib.request
import zipfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from pyserini_ext.data.readers import Document, Qrels, Topics, read_beir_corpus, read_jsonl_collection, read_qrels, read_topics
from pyserini_ext.registry import Registry

log = logging.getLogger(__name__)

DATA_ROOT_ENV = "PYSERINI_EXT_DATA"
ANSERINI_TOOLS = "https://raw.githubusercontent.com/castorini/anserini-tools/master/topics-and-qrels/"


def data_root() -> Path:
    return Path(os.environ.get(DATA_ROOT_ENV) or Path.home() / ".cache" / "pyserini_ext" / "data").expanduser()


class DatasetNotFoundError(FileNotFoundError):
    pass


@dataclass(frozen=True)
class Remote:
    """Where a file (or a zip holding it) comes from, with the MD5 its publisher gives."""

    url: str
    md5: str
    # For a zip: the folder inside it to extract, and the folder under the data root it becomes.
    zip_folder: str | None = None
    unpack_to: str | None = None


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
        return fetch(self)


def md5sum(path: Path) -> str:
    digest = hashlib.md5()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def fetch(file: LocalFile) -> Path:
    """Download ``file`` (or the zip holding it), verify checksums, move into place.

    Everything happens in a temporary folder beside the target; only verified files
    are moved into the data root, so a failed download leaves nothing behind.
    """
    remote = file.remote
    assert remote is not None
    target = file.path()
    target.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target.parent, prefix=".download-") as tmp:
        download = Path(tmp) / Path(remote.url).name
        log.info("downloading %s", remote.url)
        try:
            urllib.request.urlretrieve(remote.url, download)
        except OSError as err:
            raise DatasetNotFoundError(
                f"{target} not found and {remote.url} could not be downloaded ({err}). Download it by hand "
                f"(MD5 {remote.md5}) or point ${DATA_ROOT_ENV} at a folder that has {file.relpath}."
            ) from None
        _check_md5(download, remote.md5, remote.url)
        if remote.zip_folder is None:
            os.replace(download, target)
            return target
        with zipfile.ZipFile(download) as archive:
            archive.extractall(Path(tmp) / "unzipped")
        unzipped = Path(tmp) / "unzipped" / remote.zip_folder
        destination = data_root() / remote.unpack_to
        member = unzipped / Path(file.relpath).relative_to(remote.unpack_to)
        if file.md5:
            _check_md5(member, file.md5, f"{member.relative_to(unzipped)} in {remote.url}")
        # Move every file of the archive's folder, so sibling files (queries, qrels) arrive too.
        for src in sorted(unzipped.rglob("*")):
            dst = destination / src.relative_to(unzipped)
            if src.is_file() and not dst.exists():
                dst.parent.mkdir(parents=True, exist_ok=True)
                shutil.move(src, dst)
    return target


def _check_md5(path: Path, expected: str, what: str) -> None:
    actual = md5sum(path)
    if actual != expected:
        raise DatasetNotFoundError(f"checksum mismatch for {what}: MD5 {actual}, expected {expected}")


@dataclass(frozen=True)
class Dataset:
    """A corpus plus the topic/qrel sets it is evaluated on (``splits``: name -> (topics, qrels))."""

    name: str
    corpus: LocalFile
    layout: str  # "beir" (corpus.jsonl with _id/title/text) or "jsonl" (Pyserini JsonCollection)
    splits: dict[str, tuple[LocalFile, LocalFile]] = field(default_factory=dict)

    def corpus_path(self) -> Path:
        return self.corpus.resolve()

    def docs(self) -> Iterator[Document]:
        path = self.corpus_path()
        return read_beir_corpus(path) if self.layout == "beir" else read_jsonl_collection(path)

    def topics(self, split: str) -> Topics:
        return read_topics(self._split(split)[0].resolve())

    def qrels(self, split: str) -> Qrels:
        return read_qrels(self.qrels_path(split))

    def qrels_path(self, split: str) -> Path:
        return self._split(split)[1].resolve()

    def _split(self, split: str) -> tuple[LocalFile, LocalFile]:
        try:
            return self.splits[split]
        except KeyError:
            raise KeyError(f"dataset {self.name!r} has no split {split!r}; it has: {', '.join(self.splits)}") from None


def _anserini_tools(name: str, md5: str) -> LocalFile:
    return LocalFile(f"topics-and-qrels/{name}", md5, Remote(ANSERINI_TOOLS + name, md5))


# MD5 of scifact.zip as published in the BEIR repository's dataset table.
_SCIFACT_ZIP = Remote("https://public.ukp.informatik.tu-darmstadt.de/thakur/BEIR/datasets/scifact.zip",
                      "5f7d1de60b170fc8027bb7898e2efca1", zip_folder="scifact", unpack_to="beir/scifact")


DATASETS: Registry[Dataset] = Registry("dataset")

DATASETS.register("beir/scifact", Dataset(
    name="beir/scifact",
    corpus=LocalFile("beir/scifact/corpus.jsonl", "26537f8ae036fdb77d847ec4f7ac1858", _SCIFACT_ZIP),
    layout="beir",
    splits={
        # Pyserini's names for the BEIR test set (same queries and judgements as qrels/test.tsv).
        "test": (
            _anserini_tools("topics.beir-v1.0.0-scifact.test.tsv.gz", "e2caa31d00a1e256daae18de39576660"),
            _anserini_tools("qrels.beir-v1.0.0-scifact.test.txt", "2edf8f4c5cb2ebf9f4fd9a0b9a389133"),
        ),
        "train": (
            LocalFile("beir/scifact/queries.jsonl", "846a4365aec1857489dd3dbc130f2c2e", _SCIFACT_ZIP),
            LocalFile("beir/scifact/qrels/train.tsv", "345740844326320ff73e594322b51034", _SCIFACT_ZIP),
        ),
    },
))

DATASETS.register("cacm", Dataset(
    name="cacm",
    corpus=LocalFile(
        "cacm/cacm.json", "f3f6e6964ed0e2f363427d36c23f2273",
        how_to_get="no public download of this file is known; take cacm.json (Pyserini's JsonCollection of "
                   "Anserini's CACM test collection, MD5 f3f6e6964ed0e2f363427d36c23f2273) from a copy you have",
    ),
    layout="jsonl",
    splits={
        "all": (
            _anserini_tools("topics.cacm.txt", "ae531228463a8d4950b08205f16a9eff"),
            _anserini_tools("qrels.cacm.txt", "af133287de3f09af60eb9081d0fd4c9b"),
        ),
    },
))


# DL-Typo (Zhuang & Zuccon, SIGIR 2022): 60 MS MARCO passage queries, each with a real typo
# (query.typo.tsv) and its corrected form (query.tsv), same qids. Queries only: there is no corpus.
_DL_TYPO = "https://raw.githubusercontent.com/ielab/CharacterBERT-DR/940de8a09695fc1a6f685920464a229913c4c2ab/data/dl-typo/"


def _dl_typo(name: str, md5: str) -> LocalFile:
    return LocalFile(f"dl-typo/{name}", md5, Remote(_DL_TYPO + name, md5))


DL_TYPO_CLEAN = _dl_typo("query.tsv", "6429a9fa1b11192ebe3f11a4c8c8bff4")
DL_TYPO_TYPO = _dl_typo("query.typo.tsv", "257cea68424636be9fc3275688112c53")


def get_dataset(name: str) -> Dataset:
    return DATASETS.get(name)
