"""SPLADE-style learned sparse encoders (Formal et al., 2021).

A text's weight for vocabulary term j is ``max_i log(1 + relu(logit_ij))`` over its
non-padding tokens i, where ``logit`` is the masked-language-model head's output.
Weights become integer impacts ``round(weight * quantization)`` for Lucene, whose
impact scoring is then the sparse dot product ``sum_t q_t * d_t`` of the two sides'
impacts. Queries and documents share the model.

Encoders return ``{term: impact}`` dicts, the form Pyserini's
``LuceneImpactSearcher`` and Anserini's ``JsonVectorCollection`` take;
:meth:`SpladeModel.weights` gives the float weights as a SciPy CSR matrix for
exact scoring outside Lucene.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import scipy.sparse as sp
import torch
from pyserini.encode import DocumentEncoder, QueryEncoder
from transformers import AutoModelForMaskedLM, AutoTokenizer

from pyserini_ext import scores
from pyserini_ext.encode.base import EncoderFamily, from_pretrained
from pyserini_ext.encode.runtime import RuntimeOptions, build_graph, example_inputs, iter_batches, tokenize
from pyserini_ext.schema import checked


@dataclass(frozen=True)
class SpladeOptions(RuntimeOptions):
    max_query_length: int = checked(256, ge=1)
    max_doc_length: int = checked(512, ge=1)
    quantization: float = checked(100.0, gt=0)  # impact = round(weight * quantization)
    batch_size: int = checked(8, ge=0)  # the MLM head's output is batch x length x vocabulary floats


class SpladePooling(torch.nn.Module):
    """MLM logits, then ``log(1 + relu(.))`` of their max over the real tokens: batch x vocabulary."""

    def __init__(self, mlm: torch.nn.Module):
        super().__init__()
        self.mlm = mlm

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        logits = self.mlm(input_ids=input_ids, attention_mask=attention_mask).logits
        # log(1 + relu(x)) is non-decreasing, so the max over tokens commutes with it: take
        # the max of the raw logits over real tokens, then transform only batch x vocabulary
        # values instead of batch x length x vocabulary (same result, far less memory traffic).
        padding = attention_mask.unsqueeze(-1) == 0
        return torch.log1p(torch.relu(logits.masked_fill(padding, float("-inf")).amax(dim=1)))


class SpladeModel:
    def __init__(self, model: str, options: SpladeOptions):
        self.options = options
        self.tokenizer = from_pretrained(AutoTokenizer, model)
        vocab = self.tokenizer.get_vocab()
        self.terms = np.empty(len(vocab), dtype=object)
        for term, index in vocab.items():
            self.terms[index] = term
        self.graph = build_graph(SpladePooling(from_pretrained(AutoModelForMaskedLM, model)), "splade-max",
                                 example_inputs(self.tokenizer), options)

    def weights(self, texts: list[str], max_length: int) -> sp.csr_matrix:
        """Float term weights, one CSR row per text (rows in input order)."""
        # Each batch becomes sparse as it comes: only one batch x vocabulary block is ever dense.
        rows: list[sp.csr_matrix | None] = [None] * len(texts)
        for idx, _, pooled in iter_batches(texts, lambda batch: tokenize(self.tokenizer, batch, max_length), self.graph,
                                        self.options.batch_size):
            for i, row in zip(idx, sp.csr_matrix(pooled)):
                rows[i] = row
        return sp.vstack(rows, format="csr") if rows else sp.csr_matrix((0, len(self.terms)), dtype=np.float32)


def quantize(weights: sp.csr_matrix, factor: float) -> sp.csr_matrix:
    """Integer impacts ``round(w * factor)``; terms that round to 0 are dropped."""
    impacts = weights.multiply(factor).tocsr()
    impacts.data = np.rint(impacts.data)
    impacts.eliminate_zeros()
    return impacts.astype(np.int32)


def as_term_dicts(impacts: sp.csr_matrix, terms: np.ndarray) -> list[dict[str, int]]:
    return [dict(zip(terms[row.indices].tolist(), row.data.tolist())) for row in impacts]


class SpladeQueryEncoder(QueryEncoder):
    def __init__(self, model: str, options: SpladeOptions = SpladeOptions()):
        super().__init__()
        self.options = options
        self.net = SpladeModel(model, options)
        self.has_model = True

    def weights(self, queries: list[str]) -> sp.csr_matrix:
        return self.net.weights(queries, self.options.max_query_length)

    def encode(self, query: str) -> dict[str, int]:
        return self.encode_batch([query])[0]

    def encode_batch(self, queries: list[str]) -> list[dict[str, int]]:
        return as_term_dicts(quantize(self.weights(queries), self.options.quantization), self.net.terms)


class SpladeDocumentEncoder(DocumentEncoder):
    def __init__(self, model: str, options: SpladeOptions = SpladeOptions()):
        self.options = options
        self.net = SpladeModel(model, options)

    def weights(self, texts: list[str], titles: list[str] | None = None) -> sp.csr_matrix:
        """Title and text joined by a space, as Pyserini's SpladeDocumentEncoder does."""
        if titles is not None:
            texts = [f"{title} {text}".strip() for title, text in zip(titles, texts)]
        return self.net.weights(texts, self.options.max_doc_length)

    def encode(self, texts: list[str], titles: list[str] | None = None, **kwargs) -> list[dict[str, int]]:
        return as_term_dicts(quantize(self.weights(texts, titles), self.options.quantization), self.net.terms)


# Not trainable here: no trainable view (SPLADE's FLOPS regulariser and sparse training are not implemented).
SPLADE_FAMILY = EncoderFamily("splade", SpladeOptions, SpladeQueryEncoder, SpladeDocumentEncoder,
                              store="impacts", pair_scores=scores.sparse_dot, trainable=None)
