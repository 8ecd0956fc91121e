"""Dense bi-encoders: one vector per text by CLS or mean pooling, optionally L2-normalised.

The classes subclass Pyserini's ``QueryEncoder``/``DocumentEncoder``, so Pyserini's
own ``FaissSearcher`` and ``HybridSearcher`` accept them unchanged.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from pyserini.encode import DocumentEncoder, QueryEncoder
from transformers import AutoModel, AutoTokenizer

from pyserini_ext.encode.base import EncoderFamily, batches, length_sorted, masked_mean

POOLINGS = ("cls", "mean")


@dataclass(frozen=True)
class DenseOptions:
    pooling: str = "mean"
    normalize: bool = True
    query_prefix: str = ""
    doc_prefix: str = ""
    max_query_length: int = 512
    max_doc_length: int = 512
    batch_size: int = 32
    device: str = "cpu"

    def __post_init__(self):
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {self.pooling!r}")


class DenseModel:
    """Tokenizer + transformer + pooling: texts in, one vector per text out."""

    def __init__(self, model: str, pooling: str = "mean", normalize: bool = True, device: str = "cpu"):
        if pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {pooling!r}")
        self.tokenizer = AutoTokenizer.from_pretrained(model)
        self.model = AutoModel.from_pretrained(model).to(device).eval()
        self.pooling, self.normalize, self.device = pooling, normalize, device

    @property
    def dim(self) -> int:
        return self.model.config.hidden_size

    @torch.inference_mode()
    def embed(self, texts: list[str], max_length: int, batch_size: int = 32) -> np.ndarray:
        order = length_sorted(texts)
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        for idx in batches(order, batch_size):
            inputs = self.tokenizer([texts[i] for i in idx], max_length=max_length, truncation=True,
                                    padding=True, return_tensors="pt").to(self.device)
            hidden = self.model(**inputs).last_hidden_state
            vectors = hidden[:, 0] if self.pooling == "cls" else masked_mean(hidden, inputs["attention_mask"])
            if self.normalize:
                vectors = torch.nn.functional.normalize(vectors, p=2, dim=-1)
            out[idx] = vectors.float().cpu().numpy()
        return out


class DenseQueryEncoder(QueryEncoder):
    def __init__(self, model: str, options: DenseOptions = DenseOptions()):
        super().__init__()
        self.options = options
        self.encoder = DenseModel(model, options.pooling, options.normalize, options.device)
        self.has_model = True

    def encode(self, query: str) -> np.ndarray:
        return self.encode_batch([query])[0]

    def encode_batch(self, queries: list[str]) -> np.ndarray:
        """All queries at once (Pyserini's ``FaissSearcher.batch_search`` calls this when present)."""
        texts = [self.options.query_prefix + q for q in queries]
        return self.encoder.embed(texts, self.options.max_query_length, self.options.batch_size)


class DenseDocumentEncoder(DocumentEncoder):
    def __init__(self, model: str, options: DenseOptions = DenseOptions()):
        self.options = options
        self.encoder = DenseModel(model, options.pooling, options.normalize, options.device)

    @property
    def dim(self) -> int:
        return self.encoder.dim

    def encode(self, texts: list[str], titles: list[str] | None = None, **kwargs) -> np.ndarray:
        """Title and text joined by a space, as Pyserini's AutoDocumentEncoder and MTEB do."""
        if titles is not None:
            texts = [f"{title} {text}".strip() for title, text in zip(titles, texts)]
        texts = [self.options.doc_prefix + t for t in texts]
        return self.encoder.embed(texts, self.options.max_doc_length, self.options.batch_size)


DENSE_FAMILY = EncoderFamily("dense", DenseOptions, DenseQueryEncoder, DenseDocumentEncoder)
