"""Our MaxSim and XTR scores against PyLate's (``pylate.scores``) on the same embeddings.

Real text: SciFact documents and test queries encoded by ``colbert-minilm-l6-v2``.

* ``colbert_scores(Q, D)`` against our :func:`maxsim`, one document per call so no padding is
  involved: PyLate's torch path masks padding by *multiplying* scores by the mask, so a padded
  position scores 0 and a query token whose similarities to a document are all negative gets 0
  instead of its (negative) maximum. ColBERT's own code fills padding with -9999, as we do
  (padding never wins). The script also reports how often the two conventions differ;
* ``XTRScores(k)`` (PyLate's XTR training score: each query token keeps its top-k tokens
  over *all* the documents' tokens, a missing token counts 0, the sum is divided by the
  number of query tokens whose contribution is positive) against our training score
  :func:`xtr_scores` on the same padded batch, and against our search-time
  :func:`xtr_imputed_scores` with ``zero`` imputation on the same global top-k, divided by the
  same count.

PyLate is an optional extra, not a dependency. Its scoring module needs only torch and
NumPy, while its full dependency set pins torch 2.11 (through fast-plaid) and
transformers <= 5.3, so install it without dependencies:

    pip install --no-deps "pylate>=1.6,<2"
    python checks/pylate_parity.py [--docs 40] [--queries 10] [--k 200]

Exit status 0 when every score agrees to 1e-5.
"""

from __future__ import annotations

import argparse
import sys

import numpy as np

import pyserini_ext  # noqa: F401  (configures Java before pyserini)
from pyserini_ext.data import get_dataset
from pyserini_ext.encode.base import load_card
from pyserini_ext.scores import maxsim, xtr_imputed_scores, xtr_scores

ATOL = 1e-5


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--docs", type=int, default=40)
    parser.add_argument("--queries", type=int, default=10)
    parser.add_argument("--k", type=int, default=200, help="XTR: tokens kept per query token")
    args = parser.parse_args()
    try:
        import torch
        from pylate.scores import XTRScores, colbert_scores
    except ImportError:
        print("PyLate is not installed: pip install --no-deps 'pylate>=1.6,<2'", file=sys.stderr)
        return 2

    scifact = get_dataset("beir/scifact")
    docs = [d for _, d in zip(range(args.docs), scifact.docs())]
    card = load_card("colbert-minilm-l6-v2")
    doc_vectors = card.document_encoder().encode([d.text for d in docs], titles=[d.title for d in docs])
    queries = card.query_encoder().encode_batch(list(scifact.topics("test").values())[: args.queries])

    width = max(len(v) for v in doc_vectors)
    padded = np.zeros((len(docs), width, queries.shape[2]), dtype=np.float32)
    mask = np.zeros((len(docs), width), dtype=bool)
    for i, v in enumerate(doc_vectors):
        padded[i, :len(v)], mask[i, :len(v)] = v, True

    theirs = np.concatenate([colbert_scores(torch.from_numpy(queries), torch.from_numpy(v[None]), backend="torch").numpy()
                             for v in doc_vectors], axis=1)
    ours = np.stack([maxsim(q, doc_vectors) for q in queries])
    maxsim_error = float(np.abs(ours - theirs).max())
    padded_theirs = colbert_scores(torch.from_numpy(queries), torch.from_numpy(padded),
                                   documents_mask=torch.from_numpy(mask), backend="torch").numpy()
    differ = int((np.abs(padded_theirs - ours) > ATOL).sum())

    xtr_theirs = XTRScores(k=args.k)(torch.from_numpy(queries), torch.from_numpy(padded[None]),
                                     documents_mask=torch.from_numpy(mask[None])).numpy()
    train_ours = xtr_scores(torch.from_numpy(queries), torch.from_numpy(padded), torch.from_numpy(mask), args.k).numpy()
    train_error = float(np.abs(train_ours - xtr_theirs).max())
    tokens = np.concatenate(doc_vectors)
    token_doc = np.repeat(np.arange(len(docs)), [len(v) for v in doc_vectors])
    xtr_errors = []
    for qi, q in enumerate(queries):
        sims = q @ tokens.T
        ids = np.argsort(-sims, axis=1, kind="stable")[:, : args.k]
        scores = np.take_along_axis(sims, ids, axis=1)
        cand, summed = xtr_imputed_scores(scores, ids, token_doc, "zero")
        # PyLate's normaliser: query tokens whose best retrieved score in the document is > 0.
        best = np.zeros((len(q), len(docs)))
        np.maximum.at(best, (np.repeat(np.arange(len(q)), args.k), token_doc[ids].ravel()),
                      np.maximum(scores.ravel(), 0))
        z = np.maximum((best > 0).sum(axis=0), 1e-3)
        ours_xtr = np.zeros(len(docs))
        ours_xtr[cand] = summed
        xtr_errors.append(np.abs(ours_xtr / z - xtr_theirs[qi]).max())
    xtr_error = float(max(xtr_errors))

    print(f"{len(queries)} queries x {len(docs)} SciFact documents, colbert-minilm-l6-v2 token vectors")
    print(f"MaxSim vs pylate.scores.colbert_scores (one document per call): max |difference| = {maxsim_error:.2e}")
    print(f"with padding + documents_mask, PyLate's zero-for-padding convention changes {differ} of {ours.size} "
          f"scores (a query token whose every similarity is negative scores 0 there, its maximum here)")
    print(f"XTR (zero imputation, k={args.k}, / query tokens adding > 0) vs pylate.scores.XTRScores: "
          f"max |difference| = {xtr_error:.2e}")
    print(f"XTR training score (k_train={args.k}) vs pylate.scores.XTRScores: max |difference| = {train_error:.2e}")
    ok = maxsim_error <= ATOL and xtr_error <= ATOL and train_error <= ATOL
    print("agree to 1e-5" if ok else "DISAGREE")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
