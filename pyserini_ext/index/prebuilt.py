"""Pyserini's prebuilt FAISS indexes and pre-encoded queries.

A reproduction's *last-metre* condition searches the authors' own artefacts (Pyserini's
prebuilt index of the corpus and, where published, the queries they encoded); the
*last-mile* condition encodes the corpus here with the released checkpoint (the ``dense``
recipe). Pyserini downloads both into its cache (``$PYSERINI_CACHE``, else
``~/.cache/pyserini``) with their MD5 checked, and names each unpacked folder
``<archive name>.<md5>``. This module finds that folder, lets Pyserini fetch it when it is
missing, and otherwise says what is missing, where it belongs and where it comes from.
"""

from __future__ import annotations

import re
from pathlib import Path

from pyserini_ext.data.sources import OFFLINE_ENV, downloads_disabled


class PrebuiltNotFoundError(FileNotFoundError):
    pass


def cached_folder(info: dict, kind: str) -> Path:
    """Where Pyserini unpacks an artefact described by ``info`` (an entry of its
    ``FAISS_INDEX_INFO`` or ``QUERY_INFO``): ``<cache>/<kind>/<archive stem>.<md5>``."""
    from pyserini.util import get_cache_home

    archive = info.get("filename") or info["urls"][0].split("/")[-1]
    return Path(get_cache_home()) / kind / f"{re.sub(r'.tar.gz.*$', '', archive)}.{info['md5']}"


def prebuilt_faiss_index(name: str) -> Path:
    """The folder of Pyserini's prebuilt FAISS index ``name`` (e.g.
    ``msmarco-v1-passage.tct_colbert-v2-hnp``), downloaded by Pyserini if missing."""
    from pyserini.prebuilt_index_info import FAISS_INDEX_INFO
    from pyserini.util import download_prebuilt_index

    return _fetch("FAISS index", name, FAISS_INDEX_INFO, "indexes",
                  lambda: download_prebuilt_index(name, verbose=False))


def encoded_queries(name: str) -> Path:
    """The folder of Pyserini's pre-encoded queries ``name`` (e.g.
    ``tct_colbert-v2-hnp-msmarco-passage-dev-subset``), downloaded by Pyserini if missing."""
    from pyserini.encoded_query_info import QUERY_INFO
    from pyserini.util import download_encoded_queries

    return _fetch("encoded queries", name, QUERY_INFO, "queries", lambda: download_encoded_queries(name, verbose=False))


def _fetch(what: str, name: str, registry: dict, kind: str, download) -> Path:
    if name not in registry:
        raise KeyError(f"Pyserini has no prebuilt {what} named {name!r}")
    info = registry[name]
    folder = cached_folder(info, kind)
    if folder.is_dir():
        return folder
    size = info.get("size compressed (bytes)") or info.get("size (bytes)") or 0
    missing = (f"Pyserini's prebuilt {what} {name!r} ({size / 1e9:.2f} GB) is not in {folder}; "
               f"it comes from {info['urls'][0]} (MD5 {info['md5']})")
    if downloads_disabled():
        raise PrebuiltNotFoundError(f"{missing}, and downloads are off (${OFFLINE_ENV})")
    try:
        return Path(download())
    except Exception as e:  # Pyserini raises ValueError, URLError or its own after trying every URL
        raise PrebuiltNotFoundError(f"{missing}, and the download failed: {e}") from e


def encoded_query_encoder(name: str):
    """A query encoder that looks queries up in Pyserini's pre-encoded queries ``name`` (the
    authors' own query embeddings); a query text it does not hold is an error naming it."""
    from pyserini.encode import QueryEncoder

    class EncodedQueries(QueryEncoder):
        def encode(self, query: str):
            if query not in self.embedding:
                raise KeyError(f"query {query[:80]!r} is not among the {len(self.embedding)} queries "
                               f"pre-encoded in {name!r} (the topics must be the ones they encoded)")
            return self.embedding[query]

    return EncodedQueries(str(encoded_queries(name)))
