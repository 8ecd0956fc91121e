"""Dense retrieval over a Pyserini-layout FAISS index, with a total order on results.

:class:`DenseSearcher` has the interface of Pyserini's ``FaissSearcher`` (``search``,
``batch_search``, ``DenseSearchResult``), so it drops into Pyserini's
``HybridSearcher``. Unlike ``FaissSearcher`` its result lists are totally ordered:
FAISS returns tied scores in an order that depends on the index internals, and
cuts a tie group at ``k`` arbitrarily; we fetch past the tie at the cut-off and
order by score, then by the tie policy.

The order costs almost nothing: the docids are ranked once when the index opens (an
integer array of their string order), every list of a batch is ordered by one NumPy sort
of ``uint64`` keys (score, tie key) along the rows, and result objects are made once, from
lists NumPy hands back (``batch_search_arrays`` skips them altogether). A single query
against a CPU flat inner-product index is scored by FAISS's own kernel (the one its
``search`` runs for one query, so the scores are the same bits) and its k best, with the
k-th score's whole tie group, are selected by one NumPy ``partition`` instead of FAISS's
heap: no second fetch is ever needed.

``score_precision="float16"`` rounds scores to half precision, the precision an FP16
matrix product on a GPU returns; it creates many ties, which is what the tie-policy
ablation is about.

``device="auto"`` moves a flat index to the GPU when FAISS is a GPU build (``faiss-gpu``)
and sees a GPU, and stays on the CPU otherwise (logged); HNSW indexes stay on the CPU,
where FAISS implements them.
"""

from __future__ import annotations

import logging
import os
from pathlib import Path
from typing import TYPE_CHECKING

import faiss
import numpy as np

from pyserini_ext.search.run import gc_paused
from pyserini_ext.search.ties import check_policy, docid_ranks, rows_in_total_order, tie_keys

if TYPE_CHECKING:
    from pyserini.search.faiss import DenseSearchResult

log = logging.getLogger(__name__)

SCORE_PRECISIONS = ("float32", "float16")
DEVICES = ("auto", "cpu", "cuda")


def faiss_gpus() -> int:
    """GPUs FAISS can use: 0 for a CPU build (``faiss-cpu``) or a machine without one."""
    return faiss.get_num_gpus() if hasattr(faiss, "StandardGpuResources") else 0


def to_device(index: faiss.Index, device: str) -> faiss.Index:
    if device not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES}, got {device!r}")
    if device == "cpu":
        return index
    gpus = faiss_gpus()
    if device == "cuda" and not gpus:
        raise RuntimeError("device 'cuda' requested but FAISS sees no GPU (a faiss-gpu build and a GPU are needed)")
    if not gpus:
        log.info("FAISS: no GPU build or no GPU; searching on CPU")
        return index
    if not isinstance(faiss.downcast_index(index), faiss.IndexFlat):
        log.info("FAISS: %s has no GPU implementation; searching on CPU", type(faiss.downcast_index(index)).__name__)
        return index
    log.info("FAISS: index moved to GPU 0")
    return faiss.index_cpu_to_gpu(faiss.StandardGpuResources(), 0, index)


class DenseSearcher:
    def __init__(self, index_dir: Path | str, query_encoder, tie_policy: str = "docid", seed: int = 0,
                 score_precision: str = "float32", device: str = "auto"):
        index_dir = Path(index_dir)
        with open(index_dir / "docid", encoding="utf-8") as f:
            docids = [line.rstrip("\n") for line in f]
        self._open(faiss.read_index(str(index_dir / "index")), docids, query_encoder, tie_policy, seed,
                   score_precision, device, str(index_dir))

    @classmethod
    def from_index(cls, index: faiss.Index, docids: list[str], query_encoder=None, tie_policy: str = "docid",
                   seed: int = 0, score_precision: str = "float32", device: str = "auto") -> "DenseSearcher":
        """A searcher over an index in memory (one shard of a sharded index, for instance)."""
        searcher = cls.__new__(cls)
        searcher._open(index, docids, query_encoder, tie_policy, seed, score_precision, device, "index")
        return searcher

    def _open(self, index, docids, query_encoder, tie_policy, seed, score_precision, device, where):
        self.index, self.docids = to_device(index, device), docids
        if len(self.docids) != self.index.ntotal:
            raise ValueError(f"{where}: {len(self.docids)} docids for {self.index.ntotal} vectors")
        if score_precision not in SCORE_PRECISIONS:
            raise ValueError(f"score_precision must be one of {SCORE_PRECISIONS}, got {score_precision!r}")
        self.query_encoder = query_encoder
        self.tie_policy, self.seed, self.score_precision = check_policy(tie_policy), seed, score_precision
        self.dimension, self.num_docs = self.index.d, self.index.ntotal
        # The total order's tie key, once per index: each row's docid rank in string order.
        self.ranks = docid_ranks(self.docids)
        self._docid_array = np.array(self.docids, dtype=object)
        # A CPU flat inner-product index's vectors (a view of the index's own memory): one query
        # is scored by FAISS's own kernel and its top k selected by NumPy (module docstring).
        base = faiss.downcast_index(self.index)
        self._vectors = None
        if type(base) is faiss.IndexFlatIP and base.ntotal:
            self._vectors = faiss.rev_swig_ptr(base.get_xb(), base.ntotal * base.d).reshape(base.ntotal, base.d)

    @classmethod
    def from_card(cls, card, dataset_or_index, *, index: str = "flat", work=None, ties=None, **params) -> "DenseSearcher":
        """A searcher for encoder ``card`` (a card or a card name) over ``dataset_or_index``: a
        Pyserini FAISS index folder (``index`` + ``docid``), opened as it is, or a dataset (any
        name, folder, card or ``irds:ID``), whose index is built under the work folder when
        missing or stale. ``params``: the ``dense`` recipe's other parameters (``score_precision``,
        ``ef_search``, ...)."""
        name = card if isinstance(card, str) else card.name
        folder = Path(dataset_or_index) if isinstance(dataset_or_index, (str, Path)) else None
        if folder is not None and (folder / "index").is_file() and (folder / "docid").is_file():
            from pyserini_ext.encode.base import load_card

            tie = {"tie_policy": ties.policy, "seed": ties.seed} if ties is not None else {}
            return cls(folder, (load_card(card) if isinstance(card, str) else card).query_encoder(), **tie)
        from pyserini_ext.recipes import open_searcher

        return open_searcher("dense", dataset_or_index, work=work, ties=ties, encoder=name, index=index, **params)

    def set_hnsw_ef_search(self, ef_search: int) -> None:
        faiss.downcast_index(self.index).hnsw.efSearch = ef_search

    def search(self, query: str | np.ndarray, k: int = 10, threads: int = 1) -> list[DenseSearchResult]:
        qid = query if isinstance(query, str) else ""
        embeddings = self._encode([query]) if isinstance(query, str) else np.atleast_2d(query)
        if len(embeddings) == 1 and self._vectors is not None and self.tie_policy != "shuffle":
            docids, scores = self._search_flat(embeddings[0], min(k, self.num_docs))
        else:
            docids, scores = self._search(embeddings, [qid], k, threads)[0]
        with gc_paused():
            return self._objects(docids, scores)

    def batch_search(self, queries: list[str] | np.ndarray, q_ids: list[str], k: int = 10,
                     threads: int = 1) -> dict[str, list[DenseSearchResult]]:
        found = self.batch_search_arrays(queries, q_ids, k, threads)
        with gc_paused():  # one collection after the whole batch, not one per list
            return {qid: self._objects(docids, scores) for qid, (docids, scores) in found.items()}

    def batch_search_arrays(self, queries: list[str] | np.ndarray, q_ids: list[str], k: int = 10,
                            threads: int = 1) -> dict[str, tuple[list[str], np.ndarray]]:
        """``batch_search`` as ``{qid: (docids, float32 scores)}``, in the same total order."""
        embeddings = queries if isinstance(queries, np.ndarray) else self._encode(list(queries))
        return dict(zip(q_ids, self._search(embeddings, q_ids, k, threads)))

    @staticmethod
    def _objects(docids: list[str], scores: np.ndarray) -> list[DenseSearchResult]:
        # Imported here, not at the top: Pyserini's search package starts the JVM, and a process
        # that only needs _top (a shard of a sharded index, pyserini_ext.distributed) should not.
        from pyserini.search.faiss import DenseSearchResult

        return list(map(DenseSearchResult, docids, scores.tolist()))

    def _encode(self, queries: list[str]) -> np.ndarray:
        if hasattr(self.query_encoder, "encode_batch"):
            return np.asarray(self.query_encoder.encode_batch(queries), dtype=np.float32)
        return np.stack([self.query_encoder.encode(q) for q in queries]).astype(np.float32)

    def _search(self, embeddings: np.ndarray, q_ids: list[str], k: int,
                threads: int) -> list[tuple[list[str], np.ndarray]]:
        faiss.omp_set_num_threads(threads or os.cpu_count() or 1)
        k = min(k, self.num_docs)
        scores, ids = self._top(embeddings.astype(np.float32), k)
        return self.ordered(scores, ids, q_ids, k)

    def _search_flat(self, query: np.ndarray, k: int) -> tuple[list[str], np.ndarray]:
        """One query against a flat inner-product index: every score by FAISS's own kernel
        (``fvec_inner_products_ny``, the one ``search`` runs for a single query: the same
        bits), the k-th score's whole tie group by one ``partition``, then the total order."""
        query = np.ascontiguousarray(query, dtype=np.float32)
        scores = np.empty(self.num_docs, dtype=np.float32)
        faiss.fvec_inner_products_ny(faiss.swig_ptr(scores), faiss.swig_ptr(query), faiss.swig_ptr(self._vectors),
                                     self.dimension, self.num_docs)
        if self.score_precision == "float16":
            scores = scores.astype(np.float16).astype(np.float32)
        if k <= 0:
            return [], scores[:0]
        kth = np.partition(scores, self.num_docs - k)[self.num_docs - k] if k < self.num_docs else scores.min()
        rows = np.flatnonzero(scores >= kth)  # the top k and every score tied with the k-th
        ties = self.ranks[rows] if self.tie_policy == "docid" else (self.num_docs - 1) - self.ranks[rows]
        top = scores[rows]
        order = rows_in_total_order(top[None, :], ties[None, :])[0, :k]
        return self._docid_array[rows[order]].tolist(), top[order]

    def ordered(self, scores: np.ndarray, ids: np.ndarray, q_ids: list[str], k: int
                ) -> list[tuple[list[str], np.ndarray]]:
        """Each row of FAISS's ``(scores, ids)`` in the total order, cut at ``k``: (docids, scores)."""
        valid = ids >= 0  # FAISS pads a short list with -1
        complete = bool(valid.all())
        rows = ids if complete else np.where(valid, ids, 0)
        if not complete:
            scores = np.where(valid, scores, np.float32(np.nan))  # NaN sorts last: padding goes to the end
        if self.tie_policy == "shuffle":
            # A seeded permutation of each list's positions (its valid hits, in FAISS's order).
            ties = np.zeros(ids.shape, dtype=np.int64)
            for r, qid in enumerate(q_ids):
                ties[r, valid[r]] = tie_keys(int(valid[r].sum()), "shuffle", self.seed, qid)
            order = rows_in_total_order(scores, ties)
        elif complete and (scores[:, 1:] < scores[:, :-1]).all():
            order = None  # FAISS's order, strictly decreasing: already the total order
        else:
            ties = (self.num_docs - 1) - self.ranks[rows] if self.tie_policy == "reverse" else self.ranks[rows]
            order = rows_in_total_order(scores, ties)
        if order is None:
            top_ids, top_scores = rows[:, :k], scores[:, :k]
        else:
            order = order[:, :k]
            along = np.arange(len(order))[:, None]
            top_ids, top_scores = rows[along, order], scores[along, order]
        docids = self._docid_array[top_ids].tolist()
        if complete:
            return list(zip(docids, top_scores))
        counts = np.minimum(valid.sum(axis=1), k).tolist()
        return [(row_docids[:n], row_scores[:n]) for row_docids, row_scores, n in zip(docids, top_scores, counts)]

    def _top(self, embeddings: np.ndarray, k: int) -> tuple[np.ndarray, np.ndarray]:
        """Top hits per query, extended until the k-th score's tie group is complete.

        One hit past ``k`` shows whether the k-th score's tie group goes on; ``shuffle`` fetches
        ``k + max(16, k / 10)`` as it always did, because its seeded permutation is of the
        fetched positions (the other policies' order does not depend on how many were fetched)."""
        extra = max(16, k // 10) if self.tie_policy == "shuffle" else 1
        fetch = min(self.num_docs, k + extra)
        while True:
            scores, ids = self.index.search(embeddings, fetch)
            if self.score_precision == "float16":
                scores = scores.astype(np.float16).astype(np.float32)
            if fetch == self.num_docs or k == 0:
                return scores, ids
            # A tie group is cut if the last fetched score still equals the k-th one.
            if not np.any(scores[:, fetch - 1] >= scores[:, k - 1]):
                return scores, ids
            fetch = min(self.num_docs, fetch * 2)
