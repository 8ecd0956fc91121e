"""TCT-ColBERT v2 (Lin, Yang & Lin, 2021): a bi-encoder distilled from ColBERT.

Its input conventions are what make a checkpoint reproduce, and they are easy to
get subtly wrong:

* texts are prefixed with the literal string ``"[CLS] [Q] "`` / ``"[CLS] [D] "`` and
  tokenised *without* special tokens. ``[CLS]`` is BERT's special token, but
  ``[Q]``/``[D]`` are not in the vocabulary, so they tokenise to three pieces
  (``[``, ``q``, ``]``): the prefix is 4 tokens, and pooling skips exactly those;
* queries are padded with ``[MASK]`` tokens (ColBERT's query augmentation) to a fixed
  36 tokens and truncated there, so every query has the same length and a batch
  needs no padding (Pyserini encodes queries one at a time; we batch them);
* the vector is the average of the token outputs after the prefix: all of them for
  queries (the ``[MASK]`` positions included), the non-padding ones for documents.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from pyserini.encode import DocumentEncoder, QueryEncoder
from transformers import AutoModel, AutoTokenizer

from pyserini_ext.encode.base import EncoderFamily, masked_mean
from pyserini_ext.encode.runtime import RuntimeOptions, build_graph, example_inputs, run_batches, tokenize


@dataclass(frozen=True)
class TctColBertOptions(RuntimeOptions):
    query_prefix: str = "[CLS] [Q] "
    doc_prefix: str = "[CLS] [D] "
    query_length: int = 36  # fixed: queries are [MASK]-padded to it
    max_doc_length: int = 512


class AverageAfterPrefix(torch.nn.Module):
    """The mean of the token outputs after the first ``skip`` (the prefix), padding excluded.

    Queries have no padding (every one is [MASK]-filled to the same length), so for them
    this is the plain average over all positions after the prefix, [MASK]s included.
    """

    def __init__(self, transformer: torch.nn.Module, skip: int):
        super().__init__()
        self.transformer, self.skip = transformer, skip

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.transformer(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        return masked_mean(hidden[:, self.skip:], attention_mask[:, self.skip:])


class _TctSide:
    """One side's tokenizer and graph: the prefix length comes from the tokenizer, not a constant."""

    def __init__(self, model: str, prefix: str, options: TctColBertOptions):
        self.tokenizer = AutoTokenizer.from_pretrained(model)
        transformer = AutoModel.from_pretrained(model)
        self.dim = transformer.config.hidden_size
        self.skip = len(self.tokenizer(prefix, add_special_tokens=False)["input_ids"])
        self.graph = build_graph(AverageAfterPrefix(transformer, self.skip), f"tct_colbert-skip{self.skip}",
                                 example_inputs(self.tokenizer), options)

    def run(self, texts: list[str], max_length: int, batch_size: int, padding: bool | str) -> np.ndarray:
        return run_batches(texts, lambda batch: tokenize(self.tokenizer, batch, max_length, padding,
                                                         add_special_tokens=False),
                           self.graph, batch_size, self.dim)


class TctColBertQueryEncoder(QueryEncoder):
    def __init__(self, model: str, options: TctColBertOptions = TctColBertOptions()):
        super().__init__()
        self.options = options
        self.net = _TctSide(model, options.query_prefix, options)
        self.has_model = True

    def encode(self, query: str) -> np.ndarray:
        return self.encode_batch([query])[0]

    def encode_batch(self, queries: list[str]) -> np.ndarray:
        o = self.options
        # Enough [MASK]s that truncation at query_length always fills the query to that length.
        texts = [o.query_prefix + q + self.net.tokenizer.mask_token * o.query_length for q in queries]
        return self.net.run(texts, o.query_length, o.batch_size, padding=False)


class TctColBertDocumentEncoder(DocumentEncoder):
    def __init__(self, model: str, options: TctColBertOptions = TctColBertOptions()):
        self.options = options
        self.net = _TctSide(model, options.doc_prefix, options)

    @property
    def dim(self) -> int:
        return self.net.dim

    def encode(self, texts: list[str], titles: list[str] | None = None, **kwargs) -> np.ndarray:
        o = self.options
        if titles is not None:
            texts = [f"{title} {text}" for title, text in zip(titles, texts)]
        return self.net.run([o.doc_prefix + t for t in texts], o.max_doc_length, o.batch_size, padding="longest")


TCT_COLBERT_FAMILY = EncoderFamily("tct_colbert", TctColBertOptions, TctColBertQueryEncoder, TctColBertDocumentEncoder)
