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

import dataclasses
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from pyserini.encode import DocumentEncoder, QueryEncoder
from transformers import AutoModel, AutoTokenizer

from pyserini_ext import scores
from pyserini_ext.encode.base import EncoderFamily, from_pretrained, masked_mean
from pyserini_ext.encode.runtime import Inputs, RuntimeOptions, build_graph, example_inputs, run_batches, tokenize
from pyserini_ext.train.models import Trainable, as_tensors, single_scorer
from pyserini_ext.schema import checked

QUERY, DOCUMENT = "query", "document"


@dataclass(frozen=True)
class TctColBertOptions(RuntimeOptions):
    query_prefix: str = "[CLS] [Q] "
    doc_prefix: str = "[CLS] [D] "
    query_length: int = checked(36, ge=1)  # fixed: queries are [MASK]-padded to it
    max_doc_length: int = checked(512, ge=1)


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


class TctColBertSide:
    """One side's text conventions and graph: prefix, [MASK] augmentation (queries) and
    truncation, then the average after the prefix, whose length comes from the tokenizer,
    not a constant. ``tokenizer`` and ``transformer`` may be shared with the other side."""

    def __init__(self, model: str, options: TctColBertOptions, side: str, tokenizer=None, transformer=None):
        if side not in (QUERY, DOCUMENT):
            raise ValueError(f"side must be {QUERY!r} or {DOCUMENT!r}, got {side!r}")
        self.options, self.side = options, side
        self.tokenizer = tokenizer if tokenizer is not None else from_pretrained(AutoTokenizer, model)
        transformer = transformer if transformer is not None else from_pretrained(AutoModel, model)
        self.dim = transformer.config.hidden_size
        self.prefix = options.query_prefix if side == QUERY else options.doc_prefix
        self.skip = len(self.tokenizer(self.prefix, add_special_tokens=False)["input_ids"])
        self.graph = build_graph(AverageAfterPrefix(transformer, self.skip), f"tct_colbert-skip{self.skip}",
                                 example_inputs(self.tokenizer), options)

    def texts(self, texts: list[str], titles: list[str] | None = None) -> list[str]:
        """The prefixed texts; queries with enough [MASK]s that truncation at ``query_length``
        always fills them to that length; documents with their title in front."""
        if self.side == QUERY:
            return [self.prefix + q + self.tokenizer.mask_token * self.options.query_length for q in texts]
        if titles is not None:
            texts = [f"{title} {text}" for title, text in zip(titles, texts)]
        return [self.prefix + t for t in texts]

    def tokenize(self, texts: list[str]) -> Inputs:
        """Prefixed texts to ids, without special tokens (the prefix brings [CLS]); queries
        need no padding (all are ``query_length`` long), documents pad to the longest."""
        o = self.options
        if self.side == QUERY:
            return tokenize(self.tokenizer, texts, o.query_length, False, add_special_tokens=False)
        return tokenize(self.tokenizer, texts, o.max_doc_length, "longest", add_special_tokens=False)

    def encode(self, texts: list[str], titles: list[str] | None = None) -> np.ndarray:
        return run_batches(self.texts(texts, titles), self.tokenize, self.graph, self.options.batch_size, self.dim)


class TctColBertQueryEncoder(QueryEncoder):
    def __init__(self, model: str, options: TctColBertOptions = TctColBertOptions()):
        super().__init__()
        self.options = options
        self.net = TctColBertSide(model, options, QUERY)
        self.has_model = True

    def encode(self, query: str) -> np.ndarray:
        return self.encode_batch([query])[0]

    def encode_batch(self, queries: list[str]) -> np.ndarray:
        return self.net.encode(queries)


class TctColBertDocumentEncoder(DocumentEncoder):
    def __init__(self, model: str, options: TctColBertOptions = TctColBertOptions()):
        self.options = options
        self.net = TctColBertSide(model, options, DOCUMENT)

    @property
    def dim(self) -> int:
        return self.net.dim

    def encode(self, texts: list[str], titles: list[str] | None = None, **kwargs) -> np.ndarray:
        return self.net.encode(texts, titles)


class TctColBertTrainable(Trainable):
    """TCT-ColBERT as a student: one transformer shared by both sides, each side tokenised
    and pooled by its :class:`TctColBertSide` (so queries train [MASK]-augmented to
    ``query_length``), scored by the raw inner product times ``scale``. Saved as a plain
    transformer checkpoint, which the tct_colbert family loads."""

    def __init__(self, options: TctColBertOptions, model_path: str, *, scorer: str = "", k_train: int = 0,
                 scale: float = 1.0):
        super().__init__()
        single_scorer("tct_colbert", scorer, k_train, "dot")
        options = dataclasses.replace(options, backend="torch")
        self.tokenizer = from_pretrained(AutoTokenizer, model_path)
        transformer = from_pretrained(AutoModel, model_path)
        self.sides = {side: TctColBertSide(model_path, options, side, self.tokenizer, transformer)
                      for side in (QUERY, DOCUMENT)}
        # Both sides' graphs wrap the same transformer; a ModuleList registers it (and each
        # side's pooling) so parameters(), state_dict() and train()/eval() see them.
        self.graphs = torch.nn.ModuleList(self.sides[side].graph.module for side in (QUERY, DOCUMENT))
        self.module, self.options, self.scale = transformer, options, scale

    def _inputs(self, side: str, texts: list[str]) -> dict[str, torch.Tensor]:
        inputs = as_tensors(self.sides[side].tokenize(self.sides[side].texts(texts)))
        # Which side's pooling applies, one entry per row (inputs are cut into row chunks).
        inputs["side"] = torch.full((len(texts),), (QUERY, DOCUMENT).index(side))
        return inputs

    def queries(self, texts: list[str]) -> dict[str, torch.Tensor]:
        return self._inputs(QUERY, texts)

    def documents(self, texts: list[str]) -> dict[str, torch.Tensor]:
        return self._inputs(DOCUMENT, texts)

    def forward(self, inputs: dict[str, torch.Tensor]) -> torch.Tensor:
        sides = inputs["side"].unique()
        if len(sides) != 1:
            raise ValueError("a batch of TCT-ColBERT inputs must be all queries or all documents")
        device = next(self.module.parameters()).device
        return self.graphs[int(sides[0])](inputs["input_ids"].to(device), inputs["attention_mask"].to(device))

    def score(self, q: torch.Tensor, d: torch.Tensor, d_inputs) -> torch.Tensor:
        return self.scale * scores.dot_scores(q, d)

    def save(self, folder: Path) -> None:
        self.module.save_pretrained(folder)
        self.tokenizer.save_pretrained(folder)


TCT_COLBERT_FAMILY = EncoderFamily("tct_colbert", TctColBertOptions, TctColBertQueryEncoder, TctColBertDocumentEncoder,
                                   store="vectors", pair_scores=scores.dot, trainable=TctColBertTrainable)
