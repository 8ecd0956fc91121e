"""Sharded search: an index split into S shards, each held by one Ray actor.

Three searchers, one merge. The documents of a store are split into S contiguous ranges
(:func:`shard_ranges`); each actor answers for its range, and the driver merges the answers
with :func:`merge_tops`: the union ordered by a total order and cut at ``k``. That is the
single index's list when every document that scores at least the global k-th score is in
some answer, which holds when each shard answers with its top ``k`` *with the k-th score's
tie group complete* (a shard holds fewer than k documents above the global k-th score), or
with its top ``k`` cut in the merge's own strict total order. :func:`search_complete` then
writes the single index's run, byte for byte.

* :class:`ShardedDenseSearcher`: a FAISS index per shard, exact kinds only (``flat``,
  ``flat-fp16``: a document's score does not depend on the other documents of its index;
  HNSW is approximate and is refused).
* :class:`ShardedImpactSearcher`: a Lucene impact index per shard (Anserini, as
  :func:`pyserini_ext.index.impact.build_impact_index`). An impact score is the integer dot
  product of the query's integer weights and the document's integer impacts: no collection
  statistic enters it, so a shard scores a document as the single index does. (BM25 is not
  sharded: its idf and average length are collection statistics, so a shard's scores differ.)
  Anserini orders by (score, docid) and then perturbs tied scores (``ScoreTiesAdjusterReranker``,
  by list position); the actors undo that (the scores are integers) and the driver applies it
  again to the merged list (:func:`anserini_tie_adjust`).
* :class:`ShardedColbertSearcher`: ColBERT's exact MaxSim over a flat token index. Its candidate
  generation is made split-independent: FAISS cuts each query token's top ``k'`` tokens
  *inside* a tie group at an arbitrary place (heap order; measured here), so the plain
  :class:`~pyserini_ext.search.multivector.ColbertSearcher`'s candidates are not a function of
  the scores alone, and no sharding can reproduce them. Here a query token's candidates are
  the tokens scoring at least its k'-th best score
  (:func:`~pyserini_ext.distributed.tokens.top_tokens`), the same in one index
  (:class:`~pyserini_ext.distributed.tokens.TieCompleteColbertSearcher`) and over shards; the
  two differ from the plain searcher only when tied tokens span a query token's k'-th place.

Queries are encoded once, in the driver. A shard actor that is lost fails the batch with
:class:`ShardLost` naming the shard, at once (Ray reports a dead actor; nothing waits on it),
or after ``timeout_s`` for one that stops answering.
"""

from __future__ import annotations

import itertools
import logging
import tempfile
from pathlib import Path

import numpy as np

from pyserini_ext.distributed import connect

log = logging.getLogger(__name__)

EXACT_KINDS = ("flat", "flat-fp16")
SHARDED = ("dense", "impact", "multivector")


class ShardLost(RuntimeError):
    """A search shard's actor died or stopped answering: the query batch failed."""


def shard_ranges(count: int, n_shards: int) -> list[tuple[int, int]]:
    """``n_shards`` contiguous, near-equal row ranges ``[start, end)`` of ``count`` documents."""
    if not 1 <= n_shards <= count:
        raise ValueError(f"cannot split {count} documents into {n_shards} search shards")
    bounds = np.linspace(0, count, n_shards + 1).round().astype(int)
    return [(int(a), int(b)) for a, b in zip(bounds[:-1], bounds[1:])]


def tie_complete(docids: list[str], scores: np.ndarray, k: int) -> tuple[list[str], np.ndarray]:
    """The hits scoring at least the k-th best of ``scores`` (all of them when fewer than k)."""
    scores = np.asarray(scores)
    if len(scores) <= k:
        return list(docids), scores
    keep = np.flatnonzero(scores >= -np.partition(-scores, k - 1)[k - 1])
    return [docids[i] for i in keep], scores[keep]


def merge_tops(answers: list[list[tuple[list[str], np.ndarray]]], q_ids: list[str], k: int, policy: str,
               seed: int) -> dict[str, tuple[list[str], np.ndarray]]:
    """The shards' answers (per shard, per query: docids and scores) merged: per query the union
    in the total order (score, then ``policy``), cut at ``k``."""
    from pyserini_ext.search.ties import total_order

    merged = {}
    for row, qid in enumerate(q_ids):
        docids = [d for answer in answers for d in answer[row][0]]
        scores = np.concatenate([np.asarray(answer[row][1]) for answer in answers])
        order = total_order(docids, scores, policy, seed, qid)[:k]
        merged[qid] = ([docids[i] for i in order], scores[order])
    return merged


class _Sharded:
    """S actors of one worker class over contiguous document ranges; fan-out, failure, close."""

    def __init__(self, worker_class, count: int, n_shards: int, args: tuple, address: str | None,
                 timeout_s: float, tie_policy: str, seed: int):
        from pyserini_ext.search.ties import check_policy

        ray = self.ray = connect(address)
        self.timeout_s, self.tie_policy, self.seed = timeout_s, check_policy(tie_policy), seed
        self.ranges = shard_ranges(count, n_shards)
        self.num_docs = count
        # num_cpus=0: a shard holds memory, not a CPU slot (S may exceed the cluster's CPUs).
        worker = ray.remote(num_cpus=0, max_restarts=0)(worker_class)
        self.actors = [worker.remote(*args[:1], a, b, s, *args[1:]) for s, (a, b) in enumerate(self.ranges)]

    def _gather(self, method: str, batch: int, per_shard=None, *args) -> list:
        """Every actor's ``method(*args)`` (``per_shard(s)`` prepended when given), or ShardLost."""
        refs = [getattr(actor, method).remote(*((per_shard(s),) if per_shard else ()), *args)
                for s, actor in enumerate(self.actors)]
        answers = []
        for s, ref in enumerate(refs):
            try:
                answers.append(self.ray.get(ref, timeout=self.timeout_s))
            except Exception as error:
                a, b = self.ranges[s]
                self.close()
                raise ShardLost(f"search shard {s} of {len(self.ranges)} (documents {a}..{b - 1}) was lost; "
                                f"the batch of {batch} queries failed: {type(error).__name__}") from error
        return answers

    def search(self, query: str, k: int = 10, threads: int = 1) -> list:
        return self.batch_search([query], [""], k, threads)[""]

    def close(self) -> None:
        for actor in self.actors:
            self.ray.kill(actor)


def _results(merged: dict) -> dict:
    from pyserini.search.faiss import DenseSearchResult

    return {qid: [DenseSearchResult(d, float(s)) for d, s in zip(*found)] for qid, found in merged.items()}


# --- dense -------------------------------------------------------------------------------

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

    def __init__(self, shards_dir: str, start: int, end: int, shard: int, kind: str, tie_policy: str, seed: int,
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


class ShardedDenseSearcher(_Sharded):
    """Pyserini's ``batch_search`` over S Ray actors, each holding one shard of a dense store's
    documents; lists equal to :class:`~pyserini_ext.search.dense.DenseSearcher`'s over one index."""

    def __init__(self, shards_dir: Path | str, query_encoder, n_shards: int, kind: str = "flat",
                 tie_policy: str = "docid", seed: int = 0, score_precision: str = "float32",
                 address: str | None = None, timeout_s: float = 600, threads: int = 1):
        from pyserini_ext.store import VectorStore

        if kind not in EXACT_KINDS:
            raise ValueError(f"sharded search needs an exact index ({', '.join(EXACT_KINDS)}); {kind!r} is "
                             f"approximate, so a shard's results would depend on the split")
        self.query_encoder, self.threads = query_encoder, threads
        super().__init__(DenseShardWorker, len(VectorStore(shards_dir)), n_shards,
                         (str(shards_dir), kind, tie_policy, seed, score_precision), address, timeout_s,
                         tie_policy, seed)

    def _encode(self, queries: list[str]) -> np.ndarray:
        if hasattr(self.query_encoder, "encode_batch"):
            return np.asarray(self.query_encoder.encode_batch(queries), dtype=np.float32)
        return np.stack([self.query_encoder.encode(q) for q in queries]).astype(np.float32)

    def batch_search(self, queries, q_ids: list[str], k: int = 10, threads: int = 1) -> dict[str, list]:
        embeddings = queries if isinstance(queries, np.ndarray) else self._encode(list(queries))
        k = min(k, self.num_docs)
        shared = self.ray.put(np.ascontiguousarray(embeddings, dtype=np.float32))
        answers = self._gather("top", len(q_ids), None, shared, k, self.threads)
        return _results(merge_tops(answers, q_ids, k, self.tie_policy, self.seed))


# --- impact (Lucene) ------------------------------------------------------------------------

def anserini_tie_adjust(scores: np.ndarray) -> np.ndarray:
    """Anserini's ``ScoreTiesAdjusterReranker`` (1.x) on a list in its order, in its arithmetic:
    each score rounded to 1e-4 (in double), and the i-th member of a run of scores less than
    1e-4 apart lowered by ``i * 1e-6`` (in float)."""
    out = np.asarray(scores, dtype=np.float32).copy()
    dup = 0
    for i in range(len(out)):
        out[i] = np.float32(np.floor(np.float64(out[i]) * 1e4 + 0.5) / 1e4)  # Math.round(double): floor(x + 0.5)
        if i == 0 or out[i - 1] - out[i] > np.float32(1e-4):
            dup = 0
        else:
            dup += 1
            out[i] = out[i] - np.float32(1e-6) * np.float32(dup)
    return out


def slice_collection_lines(root: Path, start: int, end: int):
    """Lines ``[start, end)`` of an impact store's JsonVectorCollection (``collection/docs-i.jsonl``,
    one document a line, the files in shard order = corpus order)."""
    files = sorted((root / "collection").glob("docs-*.jsonl"))
    lines = itertools.chain.from_iterable(open(f, encoding="utf-8") for f in files)
    return itertools.islice(lines, start, end)


def build_impact_slice(root: Path, start: int, end: int, folder: Path, built_from: dict | None) -> Path:
    """A Lucene impact index of documents ``[start, end)`` of the impact store ``root`` in
    ``folder`` (reused when current), indexed as :func:`~pyserini_ext.index.impact.build_impact_index` does."""
    from pyserini_ext.index.lucene import run_anserini
    from pyserini_ext.store import ensure_built, require_manifest
    from pyserini_ext.store.shards import IMPACT

    digest = require_manifest(root, IMPACT.kind)["digest"]

    def build(partial: Path) -> dict:
        with tempfile.TemporaryDirectory(dir=folder.parent, prefix=f".{folder.name}-input-") as tmp:
            with open(Path(tmp) / "docs.jsonl", "w", encoding="utf-8") as f:
                f.writelines(slice_collection_lines(root, start, end))
            run_anserini("io.anserini.index.IndexCollection", [
                "-collection", "JsonVectorCollection", "-generator", "DefaultLuceneDocumentGenerator",
                "-input", tmp, "-index", str(partial), "-threads", "1", "-impact", "-pretokenized"])
        return {"kind": "lucene-impact", "count": end - start}

    folder.parent.mkdir(parents=True, exist_ok=True)
    return ensure_built(folder, {**(built_from or {}), "source": digest, "documents": [start, end]}, build,
                        "impact index shard")


class _Encoded:
    """A query encoder that answers with weights the driver computed (keys: the query ids)."""

    def __init__(self):
        self.table = {}

    def encode(self, key: str) -> dict:
        return self.table[key]


class ImpactShardWorker:
    """One search shard: documents ``[start, end)`` of an impact store in a Lucene impact index
    of their own (built here unless current)."""

    def __init__(self, root: str, start: int, end: int, shard: int, n_shards: int, built_from: dict | None):
        root = Path(root)
        folder = root.with_name(f"lucene-impact-{n_shards}-shards") / f"shard-{shard}"
        build_impact_slice(root, start, end, folder, built_from)
        from pyserini.search.lucene import LuceneImpactSearcher

        self.encoded = _Encoded()
        # min_idf=-1 as the impact recipe: every query term the index has.
        self.searcher = LuceneImpactSearcher(str(folder), self.encoded, min_idf=-1)

    def top(self, weights: list[dict], q_ids: list[str], k: int, threads: int) -> list[tuple[list[str], np.ndarray]]:
        """Per query: this shard's top ``k`` in Anserini's order (score, then docid: the merge's
        own strict order, so no tie group needs completing), with the integer scores Anserini's
        tie adjustment moved."""
        self.encoded.table = dict(zip(q_ids, weights))
        found = self.searcher.batch_search(q_ids, q_ids, k, threads)
        out = []
        for qid in q_ids:
            hits = found.get(qid, [])
            adjusted = np.array([h.score for h in hits], dtype=np.float64)
            scores = np.rint(adjusted)
            if np.any(np.abs(adjusted - scores) > 0.25):
                raise ValueError("an impact score is not an integer: sharded impact search needs integer weights")
            out.append(([h.docid for h in hits], scores))
        return out


class ShardedImpactSearcher(_Sharded):
    """Pyserini's ``batch_search`` over S Ray actors, each a Lucene impact index over one range
    of an impact store's documents; lists equal to Pyserini's ``LuceneImpactSearcher`` over one
    index of the store (``min_idf=-1``, as the ``impact`` recipe opens it)."""

    def __init__(self, root: Path | str, query_encoder, n_shards: int, built_from: dict | None = None,
                 address: str | None = None, timeout_s: float = 600, threads: int = 1):
        from pyserini_ext.store import require_manifest
        from pyserini_ext.store.shards import IMPACT

        self.query_encoder, self.threads = query_encoder, threads
        count = require_manifest(Path(root), IMPACT.kind)["count"]
        # Anserini orders ties by docid whatever the run's policy; search_complete orders after.
        super().__init__(ImpactShardWorker, count, n_shards, (str(root), n_shards, built_from), address, timeout_s,
                         "docid", 0)

    def batch_search(self, queries: list[str], q_ids: list[str], k: int = 10, threads: int = 1) -> dict[str, list]:
        from pyserini_ext.search.run import Hit

        weights = [self.query_encoder.encode(q) for q in queries]  # as LuceneImpactSearcher encodes, one by one
        answers = self._gather("top", len(q_ids), None, weights, list(q_ids), k, self.threads)
        merged = merge_tops(answers, list(q_ids), k, "docid", 0)
        return {qid: [Hit(d, float(s)) for d, s in zip(docids, anserini_tie_adjust(scores).tolist())]
                for qid, (docids, scores) in merged.items()}


# --- multi-vector (ColBERT, exact MaxSim) -----------------------------------------------------

class TokenShardWorker:
    """One search shard: documents ``[start, end)`` of a token store, their tokens in a flat
    inner-product index (FP32, as :func:`~pyserini_ext.index.multivector.build_token_index`)."""

    def __init__(self, root: str, start: int, end: int, shard: int):
        import faiss

        from pyserini_ext.store import TokenStore

        self.store = store = TokenStore(root)
        self.start, self.end = start, end
        first, last = int(store.offsets[start]), int(store.offsets[end])
        self.token_doc = store.token_doc()[first:last]
        self.index = faiss.IndexFlatIP(store.dim)
        for block in range(first, last, 1 << 16):
            self.index.add(store.gather(np.arange(block, min(last, block + (1 << 16)))))

    def tokens(self, queries: np.ndarray, k_prime: int) -> list[tuple[np.ndarray, np.ndarray]]:
        """Per query token (rows of ``queries``): (scores, global document index) of this shard's
        tokens scoring at least its k'-th best."""
        from pyserini_ext.distributed.tokens import top_tokens

        return [(s, self.token_doc[i]) for s, i in top_tokens(self.index, queries, k_prime)]

    def top(self, candidates: list[np.ndarray], queries: np.ndarray, k: int) -> list[tuple[list[str], np.ndarray]]:
        """Per query: this shard's candidates (global document indices, ascending) scored by exact
        MaxSim, those at least the k-th score kept (the tie group complete)."""
        from pyserini_ext.scores import maxsim

        out = []
        for docs, query in zip(candidates, queries):
            scores = maxsim(query, [self.store.doc_tokens(int(d)) for d in docs])
            out.append(tie_complete([self.store.docids[d] for d in docs], scores, k))
        return out


class ShardedColbertSearcher(_Sharded):
    """ColBERT exact MaxSim over S Ray actors, each holding a contiguous range of a token store's
    documents and a flat index of their tokens; lists equal to
    :class:`~pyserini_ext.distributed.tokens.TieCompleteColbertSearcher`'s
    over one flat index (see the module's docstring for why not the plain searcher's)."""

    def __init__(self, root: Path | str, query_encoder, n_shards: int, k_prime: int = 100,
                 tie_policy: str = "docid", seed: int = 0, address: str | None = None, timeout_s: float = 600):
        from pyserini_ext.store import TokenStore

        self.query_encoder, self.k_prime = query_encoder, k_prime
        super().__init__(TokenShardWorker, TokenStore(root).num_docs, n_shards, (str(root),), address, timeout_s,
                         tie_policy, seed)

    def batch_search(self, queries, q_ids: list[str], k: int = 10, threads: int = 1) -> dict[str, list]:
        vectors = queries if isinstance(queries, np.ndarray) else self.query_encoder.encode_batch(list(queries))
        vectors = np.ascontiguousarray(vectors, dtype=np.float32)
        n, m = len(vectors), vectors.shape[1]
        k = min(k, self.num_docs)
        # 1. Candidates: per query token, the tokens scoring at least its k'-th best over all shards.
        shared = self.ray.put(vectors)
        flat = self.ray.put(vectors.reshape(n * m, -1))
        answers = self._gather("tokens", len(q_ids), None, flat, self.k_prime)
        candidates = []
        for i in range(n):
            docs = []
            for row in range(i * m, (i + 1) * m):
                scores = np.concatenate([answer[row][0] for answer in answers])
                owners = np.concatenate([answer[row][1] for answer in answers])
                k_row = min(self.k_prime, len(scores))
                docs.append(owners[scores >= -np.partition(-scores, k_row - 1)[k_row - 1]])
            candidates.append(np.unique(np.concatenate(docs)))
        # 2. Exact MaxSim of each shard's candidates, its top k (tie group complete); merged.
        def mine(s):
            a, b = self.ranges[s]
            return [docs[(docs >= a) & (docs < b)] for docs in candidates]

        answers = self._gather("top", len(q_ids), mine, shared, k)
        return _results(merge_tops(answers, list(q_ids), k, self.tie_policy, self.seed))


# --- the CLI's entry --------------------------------------------------------------------------

def open_sharded(searcher: str, raw_params: dict, ws, shards: int):
    """The recipe ``searcher`` (``dense``, ``impact``, ``multivector`` with the colbert scorer over
    a flat token index) over the workspace's dataset as ``shards`` Ray actors: the card's store is
    encoded (on Ray, as ``ws.ray`` says) unless current, and split among the actors; what
    ``pyserini-ext search SEARCHER --ray --shards S`` opens."""
    from pyserini_ext.encode.base import load_card
    from pyserini_ext.recipes import SEARCHERS, encoded_store

    if searcher not in SHARDED:
        raise ValueError(f"sharded search is implemented for {', '.join(SHARDED)}, not {searcher!r}"
                         + (" (BM25's idf and average length are collection statistics: a shard would score "
                            "differently)" if searcher == "bm25" else ""))
    params = SEARCHERS.get(searcher).parse_params(raw_params or {})
    if searcher == "multivector" and (params.scorer != "colbert" or params.token_index != "flat"):
        raise ValueError("sharded multi-vector search is the colbert scorer over a flat token index (exact MaxSim); "
                         f"scorer={params.scorer!r} token_index={params.token_index!r} depends on the whole index "
                         "(XTR's imputed scores, IVF centroids)")
    card = load_card(params.encoder)
    store = encoded_store(ws, card)
    if searcher == "impact":
        return ShardedImpactSearcher(store, card.query_encoder(), shards, ws.built_from(card), address=ws.ray)
    if searcher == "multivector":
        return ShardedColbertSearcher(store, card.query_encoder(), shards, params.k_prime, ws.ties.policy,
                                      ws.ties.seed, address=ws.ray)
    return ShardedDenseSearcher(store, card.query_encoder(), shards, params.index, ws.ties.policy, ws.ties.seed,
                                params.score_precision, address=ws.ray)
