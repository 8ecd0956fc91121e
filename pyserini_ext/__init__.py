"""pyserini_ext: modern neural retrievers plugged into Pyserini's search APIs.

The public face, imported lazily (``import pyserini_ext`` loads none of torch, FAISS,
Pyserini or Java; each name is imported on first use)::

    import pyserini_ext as px

    card = px.load_card("all-minilm-l6-v2")
    searcher = px.DenseSearcher.from_card(card, "beir/scifact")     # builds the index once, in ./work
    hits = searcher.search("0-dimensional biomaterials show inductive properties.", k=10)

    bm25 = px.open_searcher("bm25", "path/to/my-beir-folder")        # any dataset: name, folder, card, irds:ID
    colbert = px.open_searcher("multivector", "beir/scifact", encoder="colbert-minilm-l6-v2", scorer="xtr")
    pipeline = px.Retrieve(bm25, depth=1000) >> px.rerank_stage(card, "path/to/my-beir-folder")
    run = px.search_topics(pipeline, px.resolve_dataset("beir/scifact").topics("test"), hits=1000)
    px.evaluate(run, px.resolve_dataset("beir/scifact").qrels("test"), ["nDCG@10"])

Java is configured (see :mod:`pyserini_ext.jvm`) the first time anything imports
``pyserini`` or ``jnius``, ours or the user's, so Pyserini's own modules keep working
after ``import pyserini_ext``.
"""

from __future__ import annotations

import importlib

from pyserini_ext import jvm as _jvm

_jvm.configure_on_first_use()

__version__ = "0.1.0"

# name -> module that defines it; resolved on first attribute access.
_PUBLIC = {
    "load_card": "pyserini_ext.encode.base",
    "resolve_dataset": "pyserini_ext.data",
    "dataset_names": "pyserini_ext.data",
    "open_searcher": "pyserini_ext.recipes",
    "rerank_stage": "pyserini_ext.recipes",
    "TieOrder": "pyserini_ext.search.ties",
    "DenseSearcher": "pyserini_ext.search.dense",
    "ColbertSearcher": "pyserini_ext.search.multivector",
    "XtrSearcher": "pyserini_ext.search.multivector",
    "IvfSearcher": "pyserini_ext.search.multivector",
    "FusionSearcher": "pyserini_ext.search.fusion",
    "fuse_runs": "pyserini_ext.search.fusion",
    "Retrieve": "pyserini_ext.search.rerank",
    "DenseRerank": "pyserini_ext.search.rerank",
    "ImpactRerank": "pyserini_ext.search.rerank",
    "search_topics": "pyserini_ext.search.run",
    "read_trec_run": "pyserini_ext.search.run",
    "write_trec_run": "pyserini_ext.search.run",
    "evaluate": "pyserini_ext.eval.metrics",
}

__all__ = sorted(_PUBLIC) + ["__version__"]


def __getattr__(name: str):
    try:
        module = _PUBLIC[name]
    except KeyError:
        raise AttributeError(f"module 'pyserini_ext' has no attribute {name!r}") from None
    value = getattr(importlib.import_module(module), name)
    globals()[name] = value  # later lookups skip this function
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(_PUBLIC))
