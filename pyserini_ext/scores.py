"""Every relevance score, written once, the formula in each docstring; search, training
and the encoder families all call these.

Two shapes recur:

* *matrix* scorers (``*_scores``) score every query of a batch against every document,
  ``B x N``, in torch (differentiable, for training): :func:`dot_scores` (also NumPy),
  :func:`maxsim_scores`, :func:`xtr_scores`;
* *list* scorers score one query representation against a list of document
  representations in NumPy, one score per document: :func:`dot`, :func:`maxsim`,
  :func:`sparse_dot`. An encoder family's ``pair_scores`` is one of these.

Search-time XTR (:func:`xtr_imputed_scores`, :func:`impute`) scores from retrieved tokens
only. MRL's Gaussians are compared by :func:`gaussian_kl`, which
:func:`gaussian_kl_query_vectors` and :func:`gaussian_kl_document_vectors` rewrite as a
dot product for a maximum-inner-product index.

MaxSim has a NumPy and a torch implementation because they serve different inputs and
the NumPy one is faster on what search passes it. Measured on 2 CPU cores, a 32-token
query against variable-length documents (20 to 300 tokens) given as a list of arrays:
1000 FP16 documents of dim 128: NumPy (concatenate, one product, ``maximum.reduceat``)
45 ms, torch padded (the training implementation, after padding) 81 ms, torch
``segment_reduce`` 72 ms; 3000 FP32 documents: 115, 246, 180 ms.
"""

from __future__ import annotations

from typing import Mapping, Sequence

import numpy as np
import torch

Tensor = torch.Tensor

IMPUTATIONS = ("min", "zero", "mean", "p10", "power")
# How a retrieved score below the estimate m_i combines with it: "max" is XTR's equation
# (Lee et al., 2023, Eq. 3: max over all of d's tokens, the unretrieved ones counting m_i, so
# max(best retrieved, m_i)), the default; "retrieved" keeps the best retrieved score even below
# m_i, which is how the reference code is written: google-deepmind/xtr's notebook (aggregate_scores
# keeps a document's top retrieved score and adds the estimate only for query tokens that retrieved
# none of it) and PyLate's rank.score_xtr. Both references impute only with "min", where the two
# agree (as for "power": m_i never exceeds a retrieved score); they differ for "zero", "mean" and
# "p10". Which one the XTR replicability study (Jha et al., 2026, arXiv 2605.00646) used for its
# Table 2 could not be read here (only its abstract is available offline): docs/multivector.md
# reports both.
XTR_COMBINES = ("max", "retrieved")


# --- dot product ---------------------------------------------------------------------------

def dot_scores(queries, docs):
    """``s(q, d) = <q, d>``: ``B x dim`` and ``N x dim`` -> ``B x N`` (torch or NumPy)."""
    return queries @ docs.T


def dot(query: np.ndarray, docs: Sequence[np.ndarray]) -> np.ndarray:
    """``<q, d>`` for each document vector in ``docs`` (one score per document)."""
    if len(docs) == 0:
        return np.zeros(0, dtype=np.float32)
    return dot_scores(query[None, :], np.stack(docs))[0]


def sparse_dot(query: Mapping[str, float], docs: Sequence[Mapping[str, float]]) -> np.ndarray:
    """``sum_t q_t * d_t`` over the terms both sides weight (SPLADE's impacts, as Lucene
    scores them), for each ``{term: weight}`` document in ``docs``."""
    return np.array([sum(w * d[t] for t, w in query.items() if t in d) for d in docs], dtype=np.float64)


# --- late interaction ---------------------------------------------------------------------

def maxsim(query: np.ndarray, docs: Sequence[np.ndarray]) -> np.ndarray:
    """ColBERT's ``sum_i max_j Q_i . D_j`` for each document in ``docs`` (one score per
    document): ``query`` ``m x dim``, each document ``tokens x dim`` (any float dtype)."""
    if len(docs) == 0:
        return np.zeros(0, dtype=np.float32)
    lengths = np.array([len(d) for d in docs])
    tokens = np.concatenate(docs, dtype=np.float32)  # one pass: gathers and widens FP16 store rows
    sims = query.astype(np.float32, copy=False) @ tokens.T  # m x all candidate tokens
    starts = np.concatenate([[0], np.cumsum(lengths)[:-1]])
    return np.maximum.reduceat(sims, starts, axis=1).sum(axis=0)


def _token_sims(queries: Tensor, docs: Tensor, doc_mask: Tensor) -> Tensor:
    """``B x Lq x N x Ld`` token similarities; padding document tokens are -inf."""
    sims = torch.einsum("bqh,ndh->bqnd", queries, docs)
    return sims.masked_fill(~doc_mask.bool()[None, None], float("-inf"))


def maxsim_scores(queries: Tensor, docs: Tensor, doc_mask: Tensor, query_mask: Tensor | None = None) -> Tensor:
    """ColBERT's late interaction ``s(q, d) = sum_i max_j <q_i, d_j>``, batched and padded.

    ``queries`` ``B x Lq x dim``, ``docs`` ``N x Ld x dim`` with ``doc_mask`` ``N x Ld``
    (1 = a real token); ``query_mask`` drops query tokens (ColBERT keeps every
    [MASK]-augmented position, so by default all count). Returns ``B x N``.
    """
    best = _token_sims(queries, docs, doc_mask).amax(dim=-1)  # B x Lq x N
    if query_mask is not None:
        best = best * query_mask[:, :, None].to(best.dtype)
    return best.sum(dim=1)


XTR_NORMALIZERS = ("positive", "retrieved")


def xtr_scores(queries: Tensor, docs: Tensor, doc_mask: Tensor, k_train: int, query_mask: Tensor | None = None,
               eps: float = 1e-3, normalizer: str = "positive") -> Tensor:
    """XTR's training score (Lee et al., 2023, Eq. 2), ``B x N``.

    For query token ``q_i`` let ``R_i`` be its ``k_train`` most similar document tokens
    over the *whole batch* (all ``N x Ld`` real tokens), ``A_ij = 1`` if ``j`` is in ``R_i``:

        s(q, d) = (1 / Z(q, d)) * sum_i max_{j in d} A_ij <q_i, d_j>

    An unretrieved token counts ``A_ij <q_i, d_j> = 0`` in the max, so a query token contributes
    ``max(best retrieved, 0)``: 0 when it retrieved none of d's tokens, and a negative best retrieved
    similarity is floored at 0 (as in PyLate's ``XTRScores`` and PrimeQA's XTR, which it adapted).
    Read over d's real tokens only, the equation would keep a negative best when *every* token of
    d was retrieved; in a padded batch the padding positions are never-retrieved tokens that supply
    the 0 (PyLate's case for every document shorter than the batch's longest), so we floor always.

    ``Z(q, d)``, clamped below at ``eps``, counts query tokens: ``normalizer="positive"`` (the
    default) those whose contribution is > 0, as PyLate and PrimeQA compute it; ``"retrieved"``
    those with at least one token of ``d`` in ``R_i``, the paper's ``Z = |{i : exists j, A_ij > 0}|``
    read literally. They differ only when a query token's retrieved tokens of ``d`` all score
    <= 0 (it adds 0 to the sum either way, but counts in the paper's ``Z``).
    """
    if normalizer not in XTR_NORMALIZERS:
        raise ValueError(f"normalizer must be one of {XTR_NORMALIZERS}, got {normalizer!r}")
    sims = _token_sims(queries, docs, doc_mask)  # B x Lq x N x Ld
    b, lq, n, ld = sims.shape
    flat = sims.reshape(b, lq, n * ld)
    top = flat.topk(min(k_train, n * ld), dim=-1).indices
    retrieved = torch.zeros_like(flat, dtype=torch.bool).scatter_(-1, top, True).reshape(b, lq, n, ld)
    retrieved &= doc_mask.bool()[None, None]
    best = sims.masked_fill(~retrieved, float("-inf")).amax(dim=-1)  # B x Lq x N, -inf: none retrieved
    hit = retrieved.any(dim=-1)
    contribution = torch.where(hit, best.clamp(min=0.0), torch.zeros_like(best))
    if query_mask is not None:
        keep = query_mask.bool()[:, :, None]
        contribution, hit = contribution * keep.to(contribution.dtype), hit & keep
    counted = contribution > 0 if normalizer == "positive" else hit
    z = counted.sum(dim=1).to(sims.dtype).clamp(min=eps)
    return contribution.sum(dim=1) / z


def impute(scores: np.ndarray, how: str) -> np.ndarray:
    """XTR's missing-similarity estimate ``m_i`` per query token from its retrieved scores
    (``m x k'``, each row descending): ``min`` (the k'-th score, XTR's choice), ``zero``,
    ``mean``, ``p10`` (10th percentile) or ``power`` (a power law ``s(r) = a r^b`` fitted to
    the scores by rank, evaluated at rank k'+1, never above the k'-th score)."""
    if how == "min":
        return scores.min(axis=1)
    if how == "zero":
        return np.zeros(len(scores), dtype=scores.dtype)
    if how == "mean":
        return scores.mean(axis=1)
    if how == "p10":
        return np.percentile(scores, 10, axis=1).astype(scores.dtype)
    if how == "power":
        k = scores.shape[1]
        log_rank = np.log(np.arange(1, k + 1, dtype=np.float64))
        out = np.empty(len(scores), dtype=np.float64)
        for i, row in enumerate(scores.astype(np.float64)):
            positive = np.maximum(row, 1e-6)  # cosine scores can reach 0; the log needs > 0
            if k < 2:
                out[i] = row[-1]
                continue
            b, log_a = np.polyfit(log_rank, np.log(positive), 1)
            out[i] = min(np.exp(log_a) * (k + 1) ** b, row[-1])  # never above the last retrieved score
        return out.astype(scores.dtype)
    raise ValueError(f"imputation must be one of {IMPUTATIONS}, got {how!r}")


def xtr_imputed_scores(scores: np.ndarray, ids: np.ndarray, token_doc: np.ndarray, imputation: str = "min",
                       combine: str = "max") -> tuple[np.ndarray, np.ndarray]:
    """XTR's search-time document scores from retrieved tokens only: (candidate documents, scores).

    ``scores`` and ``ids`` are ``m x k'`` (query token i's retrieved token scores and ids,
    ``-1`` for none); ``token_doc`` maps a token id to its document. With ``m_i`` the
    estimate (:func:`impute`, from the tokens i really retrieved), XTR's equation scores

        s(q, d) = sum_i max_{j in d} [ <q_i, d_j> if j was retrieved for i, else m_i ]

    that is ``max(best retrieved of d for i, m_i)`` when some token of d was not retrieved for
    i (almost always: k' is small beside a corpus), the best retrieved when all of d's tokens
    were, and ``m_i`` when none was (``combine="max"``).
    ``combine="retrieved"`` keeps the best retrieved score even when it is below ``m_i``.
    """
    if combine not in XTR_COMBINES:
        raise ValueError(f"combine must be one of {XTR_COMBINES}, got {combine!r}")
    valid = ids >= 0
    docs_of = np.where(valid, token_doc[np.where(valid, ids, 0)], -1)
    docs = np.unique(docs_of[valid])
    # m_i from the tokens really retrieved (an IVF probe can return fewer than k').
    missing = np.array([impute(row[v][None], imputation)[0] if v.any() else 0.0 for row, v in zip(scores, valid)])
    best = np.full((len(scores), len(docs)), -np.inf, dtype=np.float64)
    rows = np.repeat(np.arange(len(scores)), valid.sum(axis=1))
    columns = np.searchsorted(docs, docs_of[valid])
    np.maximum.at(best, (rows, columns), scores[valid])
    if combine == "max":
        retrieved = np.zeros(best.shape, dtype=np.int64)
        np.add.at(retrieved, (rows, columns), 1)
        length = np.bincount(token_doc, minlength=int(docs.max()) + 1 if len(docs) else 0)[docs]
        # -inf (nothing retrieved) becomes m_i too; a document wholly retrieved keeps its best.
        best = np.where(retrieved == length[None, :], best, np.maximum(best, missing[:, None]))
    else:
        best = np.where(np.isinf(best), missing[:, None], best)
    return docs, best.sum(axis=0)


# --- Gaussians (MRL) ------------------------------------------------------------------------

def gaussian_kl(mu_q, s2_q, mu_d, s2_d):
    """KL(Q || D) between diagonal Gaussians, every query row against every document row:

        KL = 0.5 * sum_k (log s2_D - log s2_Q + (s2_Q + (mu_Q - mu_D)^2) / s2_D - 1)

    ``B x k`` query means and variances, ``N x k`` document ones -> ``B x N``; NumPy
    arrays or torch tensors (differentiable)."""
    log = torch.log if isinstance(s2_d, torch.Tensor) else np.log
    log_ratio = log(s2_d)[None, :, :] - log(s2_q)[:, None, :]
    quadratic = (s2_q[:, None, :] + (mu_q[:, None, :] - mu_d[None, :, :]) ** 2) / s2_d[None, :, :]
    return 0.5 * (log_ratio + quadratic - 1.0).sum(-1)


def gaussian_kl_query_vectors(mu: np.ndarray, s2: np.ndarray, scoring: str = "kl") -> np.ndarray:
    """``[1, s2_Q, mu_Q^2, mu_Q]`` per row (not negated): with
    :func:`gaussian_kl_document_vectors`, dropping the terms that do not depend on the document,

        2 KL(Q || D) + sum log s2_Q + k = sum log s2_D + sum s2_Q / s2_D + sum mu_Q^2 / s2_D
                                          - 2 sum mu_Q mu_D / s2_D + sum mu_D^2 / s2_D

    is the dot product of the two vectors, both ``3k + 1`` long.

    ``scoring="original"`` is the first MRL derivation's erroneous form, which replaced the
    trace term ``sum s2_Q / s2_D`` by one ratio of products ``prod s2_Q / prod s2_D``: the
    query vector ``[1, prod s2_Q, mu_Q^2, mu_Q]`` (``2k + 2`` long)."""
    ones = np.ones((len(mu), 1), mu.dtype)
    if scoring == "original":
        return np.hstack([ones, np.prod(s2, axis=1, keepdims=True), mu * mu, mu])
    return np.hstack([ones, s2, mu * mu, mu])


def gaussian_kl_document_vectors(mu: np.ndarray, s2: np.ndarray, scoring: str = "kl") -> np.ndarray:
    """``[gamma_D, 1/s2_D, 1/s2_D, -2 mu_D / s2_D]`` per row, ``gamma_D = sum (log s2_D +
    mu_D^2 / s2_D)``. ``"original"`` (the erroneous form, see
    :func:`gaussian_kl_query_vectors`): ``[gamma_D, 1 / prod s2_D, 1/s2_D, -2 mu_D / s2_D]``,
    whose dot product with the original query vector is ``gamma_D + prod s2_Q / prod s2_D +
    sum mu_Q^2 / s2_D - 2 sum mu_Q mu_D / s2_D``."""
    inverse = 1.0 / s2
    gamma = (np.log(s2) + mu * mu * inverse).sum(axis=1, keepdims=True)
    trace = 1.0 / np.prod(s2, axis=1, keepdims=True) if scoring == "original" else inverse
    return np.hstack([gamma, trace, inverse, -2.0 * mu * inverse])
