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


def docid_ranks(docids: Sequence[str]) -> np.ndarray:
    """Each docid's position in string order (trec_eval compares docnos as strings), as an
    ``int64`` array; equal docids keep their list order. Computed once per index (a searcher
    ranks its docids when it opens) or once per list, in C: one NumPy sort of the strings."""
    n = len(docids)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    order = np.argsort(np.asarray(docids, dtype=str), kind="stable")  # code-point order, as Python's
    ranks = np.empty(n, dtype=np.int64)
    ranks[order] = np.arange(n)
    return ranks


def tie_keys(n: int, policy: str, seed: int = 0, qid: str = "", ranks: np.ndarray | None = None,
             docids: Sequence[str] | None = None) -> np.ndarray:
    """The secondary sort key of ``n`` list positions under ``policy``: docid ranks (``docid``),
    their negation (``reverse``), or a permutation of the positions seeded by ``(seed, qid)``
    (``shuffle``). ``ranks`` (:func:`docid_ranks`, possibly of a whole index) saves ranking
    ``docids`` again."""
    check_policy(policy)
    if policy == "shuffle":
        rng = np.random.default_rng([seed, zlib.crc32(qid.encode("utf-8"))])
        return rng.permutation(n)
    if ranks is None:
        ranks = docid_ranks(docids)
    return -ranks if policy == "reverse" else ranks


def total_order(docids: Sequence[str] | None, scores: Sequence[float] | np.ndarray, policy: str = "docid",
                seed: int = 0, qid: str = "", ranks: np.ndarray | None = None) -> np.ndarray:
    """Indices that sort ``(docids, scores)`` by score descending, ties by ``policy``: one
    ``lexsort`` on (score, integer tie key). ``ranks`` are the docids' string-order ranks when
    the caller has them already (then ``docids`` may be None). Without them, only the
    docids of tied scores are ranked (a list without ties needs no string sort at all)."""
    check_policy(policy)
    scores = np.asarray(scores, dtype=np.float64)
    n = len(scores)
    if n == 0:
        return np.zeros(0, dtype=np.int64)
    if policy == "shuffle" or ranks is not None:
        # lexsort: last key is primary.
        return np.lexsort((tie_keys(n, policy, seed, qid, ranks, docids), -scores))
    order = np.argsort(-scores, kind="stable")
    ranked = scores[order]
    tied = (ranked[1:] == ranked[:-1]) | (np.isnan(ranked[1:]) & np.isnan(ranked[:-1]))
    if not tied.any():
        return order
    # Only the members of tie groups need their docids ranked, and only within their group.
    member = np.zeros(n, dtype=bool)
    member[1:] |= tied
    member[:-1] |= tied
    where = np.flatnonzero(member)
    group = np.cumsum(np.concatenate([[True], ~tied]))[where]  # a group number per member
    members = order[where]
    keys = docid_ranks(list(map(docids.__getitem__, members.tolist())))
    order[where] = members[np.lexsort((-keys if policy == "reverse" else keys, group))]
    return order


def descending_keys(scores: np.ndarray) -> np.ndarray:
    """``uint32`` keys whose ascending order is the descending order of float32 ``scores``
    (-0.0 equal to 0.0, NaN last), so a score and a tie key fit one ``uint64`` sort key."""
    s = np.asarray(scores, dtype=np.float32) + np.float32(0.0)  # -0.0 + 0.0 = +0.0
    bits = s.view(np.uint32)
    ascending = np.where(bits & np.uint32(0x80000000), ~bits, bits | np.uint32(0x80000000))
    keys = ~ascending
    keys[np.isnan(s)] = np.uint32(0xFFFFFFFF)
    return keys


def rows_in_total_order(scores: np.ndarray, ties: np.ndarray) -> np.ndarray:
    """For each row of ``B x n`` float32 ``scores`` and non-negative integer ``ties`` (< 2**32),
    the column order by score descending, then tie key ascending: one NumPy sort of ``uint64``
    keys along the rows (equal to a per-row ``lexsort((ties, -scores))``)."""
    keys = (descending_keys(scores).astype(np.uint64) << np.uint64(32)) | ties.astype(np.uint64)
    return np.argsort(keys, axis=1, kind="stable")


def strictly_decreasing(scores: Sequence[float] | np.ndarray) -> np.ndarray:
    """Scores (already in rank order) made strictly decreasing in float32, as trec_eval reads them.

    A score is changed only if it is not already below its predecessor, and then to
    the largest float32 that is; every score stays within a few float32 ULPs of the
    original (a tie group of n moves its last member n ULPs), and any evaluator that
    sorts by score reproduces the list order.

    Vectorised: float32 values map monotonically to integers (one ULP = 1), where the rule
    ``y[i] = min(x[i], y[i-1] - 1)`` is ``y = minimum.accumulate(x + i) - i``.
    """
    out = np.asarray(scores, dtype=np.float32).copy()
    n = len(out)
    if n < 2:
        return out.astype(np.float64)
    if not np.isfinite(out).all():
        return _strictly_decreasing_loop(out)
    bits = out.view(np.int32).astype(np.int64)
    ordered = np.where(bits < 0, -(bits & 0x7FFFFFFF), bits)  # -0.0 and 0.0 both 0
    steps = np.arange(n, dtype=np.int64)
    nudged = np.minimum.accumulate(ordered + steps) - steps
    moved = nudged != ordered
    if moved.any():
        if nudged[moved].min() < -0x7F7FFFFF:  # would pass the lowest finite float32
            return _strictly_decreasing_loop(out)
        new = nudged[moved]
        out[moved] = np.where(new < 0, (-new) | 0x80000000, new).astype(np.uint32).view(np.float32)
    return out.astype(np.float64)


def _strictly_decreasing_loop(out: np.ndarray) -> np.ndarray:
    for i in range(1, len(out)):
        if out[i] >= out[i - 1]:
            out[i] = np.nextafter(out[i - 1], np.float32(-np.inf))
    return out.astype(np.float64)
