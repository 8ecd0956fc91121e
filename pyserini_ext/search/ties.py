"""A total order for result lists: score descending, then a declared tie policy.

Retrieval with equal scores is common (BM25 on short texts, anything scored in
FP16), and the order of tied documents changes rank-based metrics. Leaving it to
the index's internal order makes a run depend on how the index happened to be
built; so every result list here is ordered by score, then by one of:

* ``docid``   docid ascending (string order), the default;
* ``reverse`` docid descending, which is also what trec_eval does on its own;
* ``shuffle`` a random order of each tie group, seeded by ``(seed, qid)`` so the
  same seed gives the same run in every process.

trec_eval re-sorts a run by (score, docno descending) and ignores the rank column,
and it holds scores as C ``float`` (float32: two scores one float64 ULP apart still
tie there). So :func:`strictly_decreasing` nudges tied scores apart by float32 ULPs,
which makes the written run evaluate in exactly the chosen order.
"""

from __future__ import annotations

import zlib
from dataclasses import dataclass
from typing import Sequence

import numpy as np

TIE_POLICIES = ("docid", "reverse", "shuffle")


def check_policy(policy: str) -> str:
    if policy not in TIE_POLICIES:
        raise ValueError(f"unknown tie policy {policy!r}; choose one of {', '.join(TIE_POLICIES)}")
    return policy


@dataclass(frozen=True)
class TieOrder:
    """The tie policy of one run, handed to every searcher, stage and fusion that orders or
    cuts a list on its behalf: a tie group cut at ``k`` must be cut in this order, not in
    whatever order a component defaults to."""

    policy: str = "docid"
    seed: int = 0

    def __post_init__(self):
        check_policy(self.policy)

    def order(self, docids: Sequence[str], scores, qid: str = "") -> np.ndarray:
        return total_order(docids, scores, self.policy, self.seed, qid)


def total_order(docids: Sequence[str], scores: Sequence[float] | np.ndarray, policy: str = "docid",
                seed: int = 0, qid: str = "") -> np.ndarray:
    """Indices that sort ``(docids, scores)`` by score descending, ties by ``policy``."""
    check_policy(policy)
    scores = np.asarray(scores, dtype=np.float64)
    n = len(docids)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    if policy == "shuffle":
        rng = np.random.default_rng([seed, zlib.crc32(qid.encode("utf-8"))])
        tie_key = rng.permutation(n)
    else:
        # Rank of each docid in string order (trec_eval compares docnos as strings).
        by_docid = sorted(range(n), key=docids.__getitem__)
        tie_key = np.empty(n, dtype=np.int64)
        tie_key[by_docid] = np.arange(n)
        if policy == "reverse":
            tie_key = -tie_key
    # lexsort: last key is primary.
    return np.lexsort((tie_key, -scores))


def strictly_decreasing(scores: Sequence[float] | np.ndarray) -> np.ndarray:
    """Scores (already in rank order) made strictly decreasing in float32, as trec_eval reads them.

    A score is changed only if it is not already below its predecessor, and then to
    the largest float32 that is; every score stays within a few float32 ULPs of the
    original (a tie group of n moves its last member n ULPs), and any evaluator that
    sorts by score reproduces the list order.
    """
    out = np.asarray(scores, dtype=np.float32).copy()
    for i in range(1, len(out)):
        if out[i] >= out[i - 1]:
            out[i] = np.nextafter(out[i - 1], np.float32(-np.inf))
    return out.astype(np.float64)
