"""Pyserini's prebuilt indexes and pre-encoded queries (the last-metre condition of a
reproduction), tested with a tiny stand-in placed where Pyserini's cache keeps the real ones."""

import faiss
import numpy as np
import pandas as pd
import pytest

from pyserini_ext.index.prebuilt import PrebuiltNotFoundError
from pyserini_ext.recipes import open_searcher
from pyserini_ext.repro.runner import find_spec, spec_paths

INDEX = "msmarco-v1-passage.tct_colbert-v2-hnp"
QUERIES = "tct_colbert-v2-hnp-dl19-passage"
# Where Pyserini unpacks them: <cache>/<kind>/<archive name without .tar.gz>.<md5> (its prebuilt_index_info.py
# and encoded_query_info.py, pyserini 1.6).
INDEX_FOLDER = "indexes/faiss-flat.msmarco-v1-passage.tct_colbert-v2-hnp.20210608.5f341b.d22d0b6b32f156088a10b0d54ecc1da2"
QUERIES_FOLDER = "queries/query-embedding-tct_colbert-v2-hnp-dl19-passage-20230124-99b795.ee945fb0a5b17cba4e2e5d51318fbe05"


def test_last_metre_search_on_a_stand_in(tmp_path, monkeypatch):
    from pyserini.encoded_query_info import QUERY_INFO

    assert QUERIES_FOLDER.endswith(QUERY_INFO[QUERIES]["md5"])
    monkeypatch.setenv("PYSERINI_CACHE", str(tmp_path))
    monkeypatch.setenv("PYSERINI_EXT_OFFLINE", "1")
    docs = np.array([[1, 0, 0, 0], [0, 1, 0, 0], [1, 1, 0, 0], [0.5, 0.5, 0, 0], [0, 0, 1, 0]], dtype=np.float32)
    docids = ["d3", "d1", "d0", "d4", "d2"]
    folder = tmp_path / INDEX_FOLDER
    folder.mkdir(parents=True)
    index = faiss.IndexFlatIP(4)
    index.add(docs)
    faiss.write_index(index, str(folder / "index"))
    (folder / "docid").write_text("".join(f"{d}\n" for d in docids))
    queries = tmp_path / QUERIES_FOLDER
    queries.mkdir(parents=True)
    pd.DataFrame({"text": ["what is x", "what is y"],
                  "embedding": [np.array([2, 1, 0, 0], np.float32), np.array([1, 1, 0, 0], np.float32)]}
                 ).to_pickle(queries / "embedding.pkl")

    searcher = open_searcher("prebuilt-dense", "msmarco-v1-passage", work=tmp_path / "work",
                             index=INDEX, encoded_queries=QUERIES)
    # "what is y" = [1, 1]: d0 scores 2; d3 and d1 tie at 1 (ties by docid: d1 first); d4 1; d2 0.
    hits = searcher.search("what is y", k=4)
    assert [(h.docid, round(float(h.score), 6)) for h in hits] == [("d0", 2.0), ("d1", 1.0), ("d3", 1.0), ("d4", 1.0)]
    # "what is x" = [2, 1]: d0 3, d3 2, d4 1.5, d1 1, d2 0
    assert [h.docid for h in searcher.search("what is x", k=5)] == ["d0", "d3", "d4", "d1", "d2"]
    with pytest.raises(KeyError, match="not among the 2 queries pre-encoded in 'tct_colbert-v2-hnp-dl19-passage'"):
        searcher.search("a query they never encoded", k=3)


def test_missing_artefacts_are_named_with_where_they_belong(tmp_path, monkeypatch):
    monkeypatch.setenv("PYSERINI_CACHE", str(tmp_path))
    monkeypatch.setenv("PYSERINI_EXT_OFFLINE", "1")
    with pytest.raises(PrebuiltNotFoundError) as err:
        open_searcher("prebuilt-dense", "msmarco-v1-passage", work=tmp_path / "work", index=INDEX, encoded_queries=QUERIES)
    message = str(err.value)
    assert f"prebuilt FAISS index {INDEX!r} (25.23 GB) is not in {tmp_path / INDEX_FOLDER}" in message
    assert f"prebuilt encoded queries {QUERIES!r}" in message and str(tmp_path / QUERIES_FOLDER) in message
    assert "MD5 d22d0b6b32f156088a10b0d54ecc1da2" in message and "downloads are off" in message


def test_download_specs_are_left_out_of_all_but_print_their_commands():
    import subprocess
    import sys

    specs = {p.stem: find_spec(str(p)) for p in spec_paths()}
    downloading = {name for name, spec in specs.items() if spec.downloads}
    assert {f"msmarco-tct-colbert-v2-hnp-{c}-{s}" for c in ("last-metre", "last-mile") for s in ("dev", "dl19")} <= downloading
    cli = [sys.executable, "-m", "pyserini_ext", "repro", "run", "--dry-run"]
    everything = subprocess.run(cli + ["--all"], capture_output=True, text=True, check=True).stdout
    assert "# scifact-bm25-flat:" in everything and "msmarco-tct" not in everything
    with_downloads = subprocess.run(cli + ["--all", "--downloads"], capture_output=True, text=True, check=True).stdout
    assert all(f"# {name}:" in with_downloads for name in downloading)
    one = subprocess.run(cli + ["msmarco-tct-colbert-v2-hnp-last-metre-dl19"], capture_output=True, text=True, check=True).stdout
    assert ("pyserini-ext search prebuilt-dense --dataset msmarco-v1-passage --split dl19 "
            f"--param index={INDEX} --param encoded_queries={QUERIES} --hits 1000") in one
