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

from pyserini_ext.encode.base import EncoderFamily, batches, length_sorted, masked_mean


@dataclass(frozen=True)
class TctColBertOptions:
    query_prefix: str = "[CLS] [Q] "
    doc_prefix: str = "[CLS] [D] "
    query_length: int = 36  # fixed: queries are [MASK]-padded to it
    max_doc_length: int = 512
    batch_size: int = 32
    device: str = "cpu"


class _TctModel:
    def __init__(self, model: str, device: str):
        self.tokenizer = AutoTokenizer.from_pretrained(model)
        self.model = AutoModel.from_pretrained(model).to(device).eval()
        self.device = device

    def prefix_tokens(self, prefix: str) -> int:
        return len(self.tokenizer(prefix, add_special_tokens=False)["input_ids"])

    @torch.inference_mode()
    def forward(self, texts: list[str], max_length: int, padding: bool | str):
        inputs = self.tokenizer(texts, max_length=max_length, truncation=True, padding=padding,
                                add_special_tokens=False, return_tensors="pt").to(self.device)
        return self.model(**inputs).last_hidden_state, inputs["attention_mask"]


class TctColBertQueryEncoder(QueryEncoder):
    def __init__(self, model: str, options: TctColBertOptions = TctColBertOptions()):
        super().__init__()
        self.options = options
        self.net = _TctModel(model, options.device)
        self.skip = self.net.prefix_tokens(options.query_prefix)
        self.has_model = True

    def encode(self, query: str) -> np.ndarray:
        return self.encode_batch([query])[0]

    def encode_batch(self, queries: list[str]) -> np.ndarray:
        o = self.options
        # Enough [MASK]s that truncation at query_length always fills the query to that length.
        texts = [o.query_prefix + q + self.net.tokenizer.mask_token * o.query_length for q in queries]
        out = []
        for batch in batches(texts, o.batch_size):
            hidden, _ = self.net.forward(batch, o.query_length, padding=False)
            out.append(hidden[:, self.skip:].mean(dim=1).float().cpu().numpy())
        return np.concatenate(out) if out else np.zeros((0, self.net.model.config.hidden_size), np.float32)


class TctColBertDocumentEncoder(DocumentEncoder):
    def __init__(self, model: str, options: TctColBertOptions = TctColBertOptions()):
        self.options = options
        self.net = _TctModel(model, options.device)
        self.skip = self.net.prefix_tokens(options.doc_prefix)

    @property
    def dim(self) -> int:
        return self.net.model.config.hidden_size

    def encode(self, texts: list[str], titles: list[str] | None = None, **kwargs) -> np.ndarray:
        o = self.options
        if titles is not None:
            texts = [f"{title} {text}" for title, text in zip(titles, texts)]
        texts = [o.doc_prefix + t for t in texts]
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for idx in batches(length_sorted(texts), o.batch_size):
            hidden, mask = self.net.forward([texts[i] for i in idx], o.max_doc_length, padding="longest")
            out[idx] = masked_mean(hidden[:, self.skip:], mask[:, self.skip:]).float().cpu().numpy()
        return out


TCT_COLBERT_FAMILY = EncoderFamily("tct_colbert", TctColBertOptions, TctColBertQueryEncoder, TctColBertDocumentEncoder)
