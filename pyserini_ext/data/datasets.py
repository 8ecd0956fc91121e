"""Datasets by name, by path, by card, or through ir_datasets: :func:`resolve_dataset`.

``resolve_dataset(name_or_path)`` tries, in this order:

a. a registered name, exactly (``beir/scifact``, ``beir/cqadupstack/android``,
   ``msmarco-v1-passage``, ``cacm``, and what plugins add through the entry-point group
   ``pyserini_ext.datasets``, whose values are :class:`Dataset` objects); then a Pyserini
   topic-set name that exactly one registered dataset claims (``dl19-passage``,
   ``beir-v1.0.0-nfcorpus-test``): that dataset, whole (:func:`resolve_topic_set` gives the split);
b. ``irds:<id>``: a dataset of the ``ir_datasets`` library (see :mod:`pyserini_ext.data.irds`);
c. an existing path: a BEIR or Pyserini-layout folder, a folder holding ``dataset.yaml``, or a
   dataset card ``*.yaml`` (see :mod:`pyserini_ext.data.local`); write ``./name`` to reach a
   folder whose name is also a registered name;
d. a folder or card under the data root: ``$PYSERINI_EXT_DATA/<name>`` (or ``<name>.yaml``).
   A name with ``..``, an absolute path or a backslash is never looked up there.

Anything else is an :class:`UnknownDatasetError` (a ``KeyError``) with one line listing the
registered names and the other forms that work.

The data root is ``$PYSERINI_EXT_DATA`` (tests and CI point it at ``../shared/data``), else
``~/.cache/pyserini_ext/data``. A registered dataset's missing file is downloaded from its
official source and checked against its MD5 (:mod:`pyserini_ext.data.sources`).
"""

from __future__ import annotations

from pathlib import Path, PurePosixPath, PureWindowsPath

from pyserini_ext.data.catalog import ANSERINI_TOOLS, DL_TYPO_CLEAN, DL_TYPO_TYPO, register_all
from pyserini_ext.data.dataset import Dataset, Split
from pyserini_ext.data.irds import PREFIX as IRDS_PREFIX, IrdsDataset
from pyserini_ext.data.local import CARD_SUFFIXES, DatasetCardError, dataset_from_path, load_card
from pyserini_ext.data.sources import (
    DATA_ROOT_ENV,
    OFFLINE_ENV,
    DatasetNotFoundError,
    LocalFile,
    LocalPath,
    Remote,
    data_root,
    fetch,
    md5sum,
)
from pyserini_ext.registry import Registry, UnknownNameError

__all__ = [
    "ANSERINI_TOOLS", "DATASETS", "DATA_ROOT_ENV", "DL_TYPO_CLEAN", "DL_TYPO_TYPO", "Dataset", "DatasetCardError",
    "DatasetNotFoundError", "IrdsDataset", "LocalFile", "LocalPath", "OFFLINE_ENV", "Remote", "Split",
    "UnknownDatasetError", "data_root", "dataset_names", "fetch", "get_dataset", "load_card", "md5sum",
    "resolve_dataset", "resolve_topic_set", "topic_set_names",
]

DATASETS: Registry[Dataset] = Registry("dataset", "pyserini_ext.datasets")
register_all(DATASETS)


class UnknownDatasetError(UnknownNameError):
    """No dataset by that name or path; the message is one line saying what does work."""


def dataset_names() -> list[str]:
    """The registered names (sorted), plugins' included."""
    return DATASETS.names()


def _topic_set_owners(name: str) -> list[tuple[Dataset, str]]:
    owners = []
    for dataset_name in DATASETS.names():
        dataset = DATASETS.get(dataset_name)
        split = getattr(dataset, "topic_sets", {}).get(name)
        if split is not None:
            owners.append((dataset, split))
    return owners


def topic_set_names() -> list[str]:
    """Every topic-set name a registered dataset claims (e.g. ``dl19-passage``), sorted."""
    return sorted({t for n in DATASETS.names() for t in getattr(DATASETS.get(n), "topic_sets", {})})


def resolve_topic_set(name: str) -> tuple[Dataset, str]:
    """A Pyserini topic-set name -> (its dataset, the split), e.g. ``dl19-passage`` ->
    (msmarco-v1-passage, ``dl19``); ``beir-v1.0.0-nfcorpus-test`` -> (beir/nfcorpus, ``test``)."""
    owners = _topic_set_owners(name)
    if len(owners) == 1:
        return owners[0]
    if owners:
        claims = ", ".join(f"{d.name}:{s}" for d, s in owners)
        raise UnknownNameError(f"topic set {name!r} is ambiguous: claimed by {claims}")
    raise UnknownNameError(f"unknown topic set {name!r}; known: {compact_names(topic_set_names())}")


def resolve_dataset(name_or_path: str | Path) -> Dataset:
    """The dataset a name or path means (order: see this module's docstring)."""
    name = str(name_or_path)
    if not name.strip():
        raise UnknownDatasetError(_unknown(name))
    if name in DATASETS:
        return DATASETS.get(name)
    owners = _topic_set_owners(name)
    if len(owners) == 1:
        return owners[0][0]
    if owners:
        raise UnknownDatasetError(f"{name!r} is a topic set of several datasets "
                                  f"({', '.join(d.name for d, _ in owners)}); name the dataset")
    if name.startswith(IRDS_PREFIX):
        return IrdsDataset.open(name[len(IRDS_PREFIX):])
    path = Path(name).expanduser()
    if path.exists():
        return dataset_from_path(path)
    if not _plain_relative(name):
        raise UnknownDatasetError(
            f"unknown dataset {name!r}: no such path, and a name with '..', an absolute path or a backslash "
            f"is never looked up under the data root ({data_root()}); " + _forms())
    root = data_root()
    under = root / name
    if under.is_dir() or (under.is_file() and under.name.endswith(CARD_SUFFIXES)):
        return dataset_from_path(under, name=name)
    for suffix in CARD_SUFFIXES:
        card = root / (name + suffix)
        if card.is_file():
            return load_card(card, name=name)
    raise UnknownDatasetError(_unknown(name))


def get_dataset(name: str) -> Dataset:
    """Alias of :func:`resolve_dataset` (older callers)."""
    return resolve_dataset(name)


def _plain_relative(name: str) -> bool:
    if "\\" in name or "\0" in name or PureWindowsPath(name).drive:
        return False
    path = PurePosixPath(name)
    return not path.is_absolute() and ".." not in path.parts and not name.startswith("~")


def compact_names(names: list[str]) -> str:
    """``a/b/x, a/b/y, ...`` -> ``a/b/{x,y}`` for names three levels deep (the CQADupStack forums)."""
    out: list[str] = []
    groups: dict[str, list[str]] = {}
    for n in names:
        parent, _, leaf = n.rpartition("/")
        if parent.count("/") >= 1:
            if parent not in groups:
                groups[parent] = []
                out.append(parent)
            groups[parent].append(leaf)
        else:
            out.append(n)
    return ", ".join(f"{n}/{{{','.join(groups[n])}}}" if n in groups else n for n in out)


def _forms() -> str:
    return ("a path to a BEIR folder (corpus.jsonl, queries.jsonl, qrels/<split>.tsv), a Pyserini folder "
            "(corpus .jsonl or collection.tsv, topics.<split>.txt|tsv, qrels.<split>.txt) or a dataset card "
            f"(*.yaml) also works, as do a folder or card under the data root ({data_root()}), "
            "a Pyserini topic-set name (e.g. dl19-passage) and irds:<ir_datasets id>")


def _unknown(name: str) -> str:
    return f"unknown dataset {name!r}; registered: {compact_names(dataset_names())}; " + _forms()

