"""Runs: per-query ranked lists, written and read in TREC format.

A run is ``{qid: [hit, ...]}`` where a hit is anything with ``docid`` and ``score``
(Pyserini's ``DenseSearchResult``, Lucene's ``JLuceneSearcherResult``, or our
:class:`Hit`). :func:`order_run` puts every list in the total order of
:mod:`pyserini_ext.search.ties`; :func:`write_trec_run` writes it so that
trec_eval evaluates exactly that order.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path
from typing import Mapping, Protocol, Sequence

from pyserini_ext.data.readers import DataFormatError, check_id, whitespace_rows
from pyserini_ext.search.ties import TieOrder, strictly_decreasing, total_order


class ScoredDoc(Protocol):
    docid: str
    score: float


@dataclass(frozen=True)
class Hit:
    docid: str
    score: float


Run = Mapping[str, Sequence[ScoredDoc]]


def order_hits(hits: Sequence[ScoredDoc], policy: str = "docid", seed: int = 0, qid: str = "",
               k: int | None = None) -> list[Hit]:
    docids = [h.docid for h in hits]
    order = total_order(docids, [float(h.score) for h in hits], policy, seed, qid)
    if k is not None:
        order = order[:k]
    return [Hit(docids[i], float(hits[i].score)) for i in order]


def order_run(run: Run, policy: str = "docid", seed: int = 0, k: int | None = None) -> dict[str, list[Hit]]:
    return {qid: order_hits(hits, policy, seed, qid, k) for qid, hits in run.items()}


def run_as_dict(run: Run) -> dict[str, dict[str, float]]:
    """pytrec_eval's run layout, with tied scores nudged apart so list order is kept."""
    return {
        qid: dict(zip((h.docid for h in hits), map(float, strictly_decreasing([h.score for h in hits]))))
        for qid, hits in run.items()
    }


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
    with open_atomic(path) as f:
        for qid, hits in run.items():
            for rank, (hit, score) in enumerate(zip(hits, strictly_decreasing([h.score for h in hits])), start=1):
                f.write(f"{qid} Q0 {hit.docid} {rank} {float(score)!r} {tag}\n")
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
                    drop=None) -> dict[str, list[Hit]]:
    """``k`` hits per query from any searcher with Pyserini's ``batch_search``, in ``ties``' total order.

    A searcher cuts its list at the depth it is asked for in its own order (Lucene: index
    order; FAISS: its internals), which may split the tie group at the k-th score. So the
    searcher is asked for more than ``k``, and again for twice as many while a query's
    last returned score still equals its k-th; only then is each list ordered by ``ties``
    and cut. ``drop(qid, docid)`` removes hits before the cut (``remove_query``).
    """
    qids, results = list(topics), {}
    fetch, pending = k + max(16, k // 10), list(topics)
    while pending:
        found = searcher.batch_search([topics[q] for q in pending], pending, fetch, threads)
        again = []
        for qid in pending:
            hits = list(found.get(qid, []))
            scores = sorted((float(h.score) for h in hits), reverse=True)
            if k > 0 and len(hits) >= fetch and scores[-1] >= scores[k - 1]:
                again.append(qid)  # the k-th score's tie group may go on past what was fetched
            else:
                results[qid] = hits
        pending, fetch = again, fetch * 2
    for qid, hits in results.items():
        if drop is not None:
            hits = [h for h in hits if not drop(qid, h.docid)]
        results[qid] = order_hits(hits, ties.policy, ties.seed, qid, k)
    return {qid: results[qid] for qid in qids}


def search_topics(searcher, topics: dict[str, str], hits: int, remove_query: bool = False,
                  ties: TieOrder = TieOrder(), threads: int = 2) -> dict[str, list[Hit]]:
    """Any searcher with Pyserini's ``batch_search`` over ``topics``, in the total order, ``hits`` per query.

    ``remove_query`` drops a hit whose docid equals its qid (Anserini's ``-removeQuery``,
    the BEIR convention for ArguAna and Quora, where a query is also a document).
    """
    return search_complete(searcher, topics, hits, ties, threads,
                           drop=(lambda qid, docid: docid == qid) if remove_query else None)


def judged_self_matches(qrels: Mapping[str, Mapping[str, int]]) -> int:
    """How many judged-relevant (query, document) pairs have docid == qid: what
    ``remove_query`` takes away from the evaluation."""
    return sum(1 for qid, docs in qrels.items() if docs.get(qid, 0) > 0)
