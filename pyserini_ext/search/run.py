"""Runs: per-query ranked lists, written and read in TREC format.

A run is ``{qid: [hit, ...]}`` where a hit is anything with ``docid`` and ``score``
(Pyserini's ``DenseSearchResult``, Lucene's ``JLuceneSearcherResult``, or our
:class:`Hit`). :func:`order_run` puts every list in the total order of
:mod:`pyserini_ext.search.ties`; :func:`write_trec_run` writes it so that
trec_eval evaluates exactly that order.

Nothing here runs Python code per document: fields are read with ``map``/``attrgetter``,
lists are ordered by one NumPy ``lexsort``, :class:`Hit` objects are made in C
(``tuple.__new__``), and run lines are joined from ``map``-ed columns.
"""

from __future__ import annotations

import contextlib
import gc
import math
from itertools import repeat
from operator import attrgetter
from pathlib import Path
from typing import Mapping, NamedTuple, Protocol, Sequence

import numpy as np

from pyserini_ext.data.readers import DataFormatError, check_id, whitespace_rows
from pyserini_ext.search.ties import TieOrder, strictly_decreasing, total_order


class ScoredDoc(Protocol):
    docid: str
    score: float


class Hit(NamedTuple):
    """One ranked document: immutable, hashable, ``docid`` and ``score`` by name."""

    docid: str
    score: float


Run = Mapping[str, Sequence[ScoredDoc]]

_docid, _score = attrgetter("docid"), attrgetter("score")


def hit_fields(hits: Sequence[ScoredDoc]) -> tuple[list[str], np.ndarray]:
    """The docids (a list) and scores (``float64``) of any hits, read without a Python loop."""
    return list(map(_docid, hits)), np.fromiter(map(_score, hits), dtype=np.float64, count=len(hits))


@contextlib.contextmanager
def gc_paused():
    """Python's cyclic garbage collector off for a block that makes many acyclic objects (result
    lists): otherwise every few hundred new objects trigger a collection, and the full ones
    walk every live object, which dominates making a 300 x 1000 run (measured: 4x)."""
    enabled = gc.isenabled()
    gc.disable()
    try:
        yield
    finally:
        if enabled:
            gc.enable()


def make_hits(docids: Sequence[str], scores) -> list[Hit]:
    """:class:`Hit` objects for parallel docids and scores (Python floats), built in C."""
    scores = scores.tolist() if isinstance(scores, np.ndarray) else [float(s) for s in scores]
    with gc_paused():
        return list(map(tuple.__new__, repeat(Hit), zip(docids, scores)))


def take(items: Sequence, order: np.ndarray) -> list:
    """``[items[i] for i in order]``, in C."""
    return list(map(items.__getitem__, order.tolist()))


def order_arrays(docids: Sequence[str], scores: np.ndarray, policy: str = "docid", seed: int = 0, qid: str = "",
                 k: int | None = None, ranks: np.ndarray | None = None) -> list[Hit]:
    """Hits for parallel ``docids`` and ``scores`` in the total order (score, then ``policy``),
    cut at ``k``; ``ranks`` (the docids' string-order ranks) when the caller has them."""
    order = total_order(docids, scores, policy, seed, qid, ranks)
    if k is not None:
        order = order[:k]
    return make_hits(take(docids, order), np.asarray(scores, dtype=np.float64)[order])


def order_hits(hits: Sequence[ScoredDoc], policy: str = "docid", seed: int = 0, qid: str = "",
               k: int | None = None) -> list[Hit]:
    docids, scores = hit_fields(hits)
    return order_arrays(docids, scores, policy, seed, qid, k)


def order_run(run: Run, policy: str = "docid", seed: int = 0, k: int | None = None) -> dict[str, list[Hit]]:
    with gc_paused():
        return {qid: order_hits(hits, policy, seed, qid, k) for qid, hits in run.items()}


def run_as_dict(run: Run) -> dict[str, dict[str, float]]:
    """pytrec_eval's run layout, with tied scores nudged apart so list order is kept."""
    out = {}
    for qid, hits in run.items():
        docids, scores = hit_fields(hits)
        out[qid] = dict(zip(docids, strictly_decreasing(scores).tolist()))
    return out


def write_trec_run(run: Run, path: Path | str, tag: str = "pyserini_ext") -> Path:
    """Write ``run`` (lists already ordered) as ``qid Q0 docid rank score tag``.

    Scores are written with ``repr`` (shortest exact round trip) after
    :func:`strictly_decreasing`, so trec_eval's own (score, docno) sort gives back
    the list order. The file is written to a temporary name and renamed, so an
    interrupted write never leaves a truncated run behind.
    """
    from pyserini_ext.store.atomic import open_atomic

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    ranks: list[str] = []
    with open_atomic(path) as f:
        for qid, hits in run.items():
            if not hits:
                continue
            docids, scores = hit_fields(hits)
            if len(ranks) < len(hits):
                ranks = list(map(str, range(1, len(hits) + 1)))
            columns = (repeat(qid), repeat("Q0"), docids, ranks, map(repr, strictly_decreasing(scores).tolist()),
                       repeat(tag))
            f.write("\n".join(map(" ".join, zip(*columns))))
            f.write("\n")
    return path


def read_trec_run(path: Path | str) -> dict[str, list[Hit]]:
    """Read a TREC run, keeping each query's lines in file order. A score that is not a finite
    number, and a docid listed twice for one query, are errors naming the line."""
    path = Path(path)
    run: dict[str, list[Hit]] = {}
    listed: set[tuple[str, str]] = set()
    for lineno, (qid, _, docid, _, score, _) in whitespace_rows(path, ("qid", "Q0", "docid", "rank", "score", "tag")):
        try:
            value = float(score)
        except ValueError:
            raise DataFormatError(path, lineno, "score", f"not a number: {score!r}") from None
        if not math.isfinite(value):
            raise DataFormatError(path, lineno, "score", f"not a finite number: {score!r}")
        if (qid, docid) in listed:
            raise DataFormatError(path, lineno, "docid", f"{docid!r} listed twice for query {qid!r}")
        listed.add((qid, docid))
        run.setdefault(check_id(path, lineno, "qid", qid), []).append(Hit(check_id(path, lineno, "docid", docid), value))
    return run


def search_complete(searcher, topics: Mapping[str, str], k: int, ties: TieOrder = TieOrder(), threads: int = 2,
                    drop=None, remove_query: bool = False) -> dict[str, list[Hit]]:
    """``k`` hits per query from any searcher with Pyserini's ``batch_search``, in ``ties``' total order.

    A searcher cuts its list at the depth it is asked for in its own order (Lucene: index
    order; FAISS: its internals), which may split the tie group at the k-th score. So the
    searcher is asked for more than ``k``, and again for twice as many while a query's
    last returned score still equals its k-th; only then is each list ordered by ``ties``
    and cut. ``drop(qid, docid)`` removes hits before the cut; ``remove_query`` removes a
    hit whose docid is the qid (vectorised).

    A searcher with ``batch_search_arrays`` (same arguments, ``{qid: (docids, scores)}`` in
    its result order) is asked for arrays, so no result object is made before the final
    :class:`Hit` lists.
    """
    qids, results = list(topics), {}
    fetch, pending = k + max(16, k // 10), list(topics)
    arrays = getattr(searcher, "batch_search_arrays", None)  # (docids, scores) lists: no result objects
    while pending:
        if arrays is not None:
            found = arrays([topics[q] for q in pending], pending, fetch, threads)
        else:
            found = {q: hit_fields(hits) for q, hits in
                     searcher.batch_search([topics[q] for q in pending], pending, fetch, threads).items()}
        again = []
        for qid in pending:
            docids, scores = found.get(qid, ([], np.zeros(0)))
            scores = np.asarray(scores, dtype=np.float64)
            # the k-th score's tie group may go on past what was fetched
            if 0 < k <= len(scores) and len(scores) >= fetch and scores.min() >= -np.partition(-scores, k - 1)[k - 1]:
                again.append(qid)
            else:
                results[qid] = (docids, scores)
        pending, fetch = again, fetch * 2
    out = {}
    with gc_paused():  # one collection after the whole run, not one per list
        for qid in qids:
            docids, scores = results[qid]
            if remove_query and docids:
                keep = np.asarray(docids, dtype=object) != qid
                docids, scores = take(docids, np.flatnonzero(keep)), scores[keep]
            if drop is not None:
                keep = np.fromiter((not drop(qid, d) for d in docids), dtype=bool, count=len(docids))
                docids, scores = take(docids, np.flatnonzero(keep)), scores[keep]
            out[qid] = order_arrays(docids, scores, ties.policy, ties.seed, qid, k)
    return out


def search_topics(searcher, topics: dict[str, str], hits: int, remove_query: bool = False,
                  ties: TieOrder = TieOrder(), threads: int = 2) -> dict[str, list[Hit]]:
    """Any searcher with Pyserini's ``batch_search`` over ``topics``, in the total order, ``hits`` per query.

    ``remove_query`` drops a hit whose docid equals its qid (Anserini's ``-removeQuery``,
    the BEIR convention for ArguAna and Quora, where a query is also a document).
    """
    return search_complete(searcher, topics, hits, ties, threads, remove_query=remove_query)


def judged_self_matches(qrels: Mapping[str, Mapping[str, int]]) -> int:
    """How many judged-relevant (query, document) pairs have docid == qid: what
    ``remove_query`` takes away from the evaluation."""
    return sum(1 for qid, docs in qrels.items() if docs.get(qid, 0) > 0)
