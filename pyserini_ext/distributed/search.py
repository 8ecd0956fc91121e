"""Sharded dense search: an index split into S shards, each held by one Ray actor.

The documents of a dense shard folder (:func:`pyserini_ext.store.encode_corpus`) are split
into S contiguous ranges; each :class:`DenseShardWorker` builds the FAISS index of its range
(``flat`` or ``flat-fp16``: exact, so a document's score does not depend on which other
documents share its index; HNSW is approximate and is refused) and answers with its top
``k`` *with the k-th score's tie group complete*. Every document scoring at least the
global k-th score is then in some shard's answer (a shard holds fewer than k documents
above it), so ordering the union by the run's :class:`~pyserini_ext.search.ties.TieOrder`
and cutting at ``k`` gives the single index's list, and :func:`search_complete` writes
the single index's run, byte for byte.

Queries are encoded once, in the driver. A shard actor that is lost fails the batch with
:class:`ShardLost` naming the shard, at once (Ray reports a dead actor; nothing waits on it),
or after ``timeout_s`` for one that stops answering.
"""

from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from pyserini_ext.distributed import connect

log = logging.getLogger(__name__)

EXACT_KINDS = ("flat", "flat-fp16")


class ShardLost(RuntimeError):
    """A search shard's actor died or stopped answering: the query batch failed."""


def shard_ranges(count: int, n_shards: int) -> list[tuple[int, int]]:
    """``n_shards`` contiguous, near-equal row ranges ``[start, end)`` of ``count`` documents."""
    if not 1 <= n_shards <= count:
        raise ValueError(f"cannot split {count} documents into {n_shards} search shards")
    bounds = np.linspace(0, count, n_shards + 1).round().astype(int)
    return [(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:])]


def read_rows(shards_dir: Path, start: int, end: int) -> tuple[np.ndarray, list[str]]:
    """Rows ``[start, end)`` of a complete dense shard folder (vectors, docids), reading only the
    store shards that overlap them."""
    from pyserini_ext.store import VectorStore

    store = VectorStore(shards_dir)
    parts, offset = [], 0
    for vectors in store.shards:
        lo, hi = max(start, offset), min(end, offset + len(vectors))
        if lo < hi:
            parts.append(np.asarray(vectors[lo - offset:hi - offset], dtype=np.float32))
        offset += len(vectors)
    return np.concatenate(parts), store.docids[start:end]


class DenseShardWorker:
    """One search shard: documents ``[start, end)`` of a dense shard folder in a FAISS index."""

    def __init__(self, shards_dir: str, start: int, end: int, kind: str, tie_policy: str, seed: int,
                 score_precision: str):
        from pyserini_ext.index.dense import make_faiss_index
        from pyserini_ext.search.dense import DenseSearcher

        vectors, docids = read_rows(Path(shards_dir), start, end)
        index = make_faiss_index(vectors.shape[1], kind)
        index.train(vectors)
        index.add(vectors)
        self.searcher = DenseSearcher.from_index(index, docids, None, tie_policy, seed, score_precision, "auto")

    def top(self, embeddings: np.ndarray, k: int, threads: int) -> list[tuple[list[str], np.ndarray]]:
        """Per query: this shard's hits scoring at least its k-th score (the tie group complete)."""
        import faiss

        faiss.omp_set_num_threads(threads)
        k = min(k, self.searcher.num_docs)
        scores, ids = self.searcher._top(embeddings, k)
        out = []
        for row_scores, row_ids in zip(scores, ids):
            keep = (row_ids >= 0) & (row_scores >= row_scores[k - 1] if k else False)
            out.append(([self.searcher.docids[i] for i in row_ids[keep]], row_scores[keep]))
        return out


class ShardedDenseSearcher:
    """Pyserini's ``batch_search`` over S Ray actors, each holding one shard of a dense store's
    documents; lists equal to :class:`~pyserini_ext.search.dense.DenseSearcher`'s over one index."""

    def __init__(self, shards_dir: Path | str, query_encoder, n_shards: int, kind: str = "flat",
                 tie_policy: str = "docid", seed: int = 0, score_precision: str = "float32",
                 address: str | None = None, timeout_s: float = 600, threads: int = 1):
        from pyserini_ext.search.ties import check_policy
        from pyserini_ext.store import VectorStore

        if kind not in EXACT_KINDS:
            raise ValueError(f"sharded search needs an exact index ({', '.join(EXACT_KINDS)}); {kind!r} is "
                             f"approximate, so a shard's results would depend on the split")
        ray = self.ray = connect(address)
        self.query_encoder, self.timeout_s, self.threads = query_encoder, timeout_s, threads
        self.tie_policy, self.seed = check_policy(tie_policy), seed
        count = len(VectorStore(shards_dir))
        self.ranges = shard_ranges(count, n_shards)
        worker = ray.remote(num_cpus=0, max_restarts=0)(DenseShardWorker)
        self.actors = [worker.remote(str(shards_dir), a, b, kind, tie_policy, seed, score_precision)
                       for a, b in self.ranges]
        self.num_docs = count

    def _encode(self, queries: list[str]) -> np.ndarray:
        if hasattr(self.query_encoder, "encode_batch"):
            return np.asarray(self.query_encoder.encode_batch(queries), dtype=np.float32)
        return np.stack([self.query_encoder.encode(q) for q in queries]).astype(np.float32)

    def batch_search(self, queries, q_ids: list[str], k: int = 10, threads: int = 1) -> dict[str, list]:
        from pyserini.search.faiss import DenseSearchResult

        from pyserini_ext.search.ties import total_order

        embeddings = queries if isinstance(queries, np.ndarray) else self._encode(list(queries))
        k = min(k, self.num_docs)
        shared = self.ray.put(np.ascontiguousarray(embeddings, dtype=np.float32))
        refs = [actor.top.remote(shared, k, self.threads) for actor in self.actors]
        answers = []
        for s, ref in enumerate(refs):
            try:
                answers.append(self.ray.get(ref, timeout=self.timeout_s))
            except Exception as error:
                a, b = self.ranges[s]
                self.close()
                raise ShardLost(f"search shard {s} of {len(self.ranges)} (documents {a}..{b - 1}) was lost; "
                                f"the batch of {len(q_ids)} queries failed: {type(error).__name__}") from error
        results = {}
        for row, qid in enumerate(q_ids):
            docids = [d for answer in answers for d in answer[row][0]]
            scores = np.concatenate([answer[row][1] for answer in answers])
            order = total_order(docids, scores, self.tie_policy, self.seed, qid)[:k]
            results[qid] = [DenseSearchResult(docids[i], float(scores[i])) for i in order]
        return results

    def search(self, query: str, k: int = 10, threads: int = 1) -> list:
        return self.batch_search([query], [""], k, threads)[""]

    def close(self) -> None:
        for actor in self.actors:
            self.ray.kill(actor)


def open_sharded(searcher: str, raw_params: dict, ws, shards: int) -> ShardedDenseSearcher:
    """The recipe ``searcher`` (``dense`` only) over the workspace's dataset as ``shards`` Ray
    actors: the card's dense store is encoded (on Ray, as ``ws.ray`` says) unless current, and
    split among the actors; what ``pyserini-ext search dense --ray --shards S`` opens."""
    from pyserini_ext.encode.base import load_card
    from pyserini_ext.recipes import SEARCHERS, encoded_store

    if searcher != "dense":
        raise ValueError(f"sharded search is implemented for the dense searcher (flat, flat-fp16), not {searcher!r}")
    params = SEARCHERS.get("dense").parse_params(raw_params or {})
    card = load_card(params.encoder)
    store = encoded_store(ws, card)
    return ShardedDenseSearcher(store, card.query_encoder(), shards, params.index, ws.ties.policy, ws.ties.seed,
                                params.score_precision, address=ws.ray)
