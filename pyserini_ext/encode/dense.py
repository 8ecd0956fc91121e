"""Dense bi-encoders: one vector per text by CLS or mean pooling, optionally L2-normalised.

The classes subclass Pyserini's ``QueryEncoder``/``DocumentEncoder``, so Pyserini's
own ``FaissSearcher`` and ``HybridSearcher`` accept them unchanged. Pooling and
normalisation are part of the graph, so an ONNX export returns the final vector.
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

POOLINGS = ("cls", "mean")


@dataclass(frozen=True)
class DenseOptions(RuntimeOptions):
    pooling: str = "mean"
    normalize: bool = True
    query_prefix: str = ""
    doc_prefix: str = ""
    max_query_length: int = checked(512, ge=1)
    max_doc_length: int = checked(512, ge=1)

    def __post_init__(self):
        super().__post_init__()
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {self.pooling!r}")


class PooledEncoder(torch.nn.Module):
    """Transformer, then CLS or masked-mean pooling, then optional L2 normalisation."""

    def __init__(self, transformer: torch.nn.Module, pooling: str, normalize: bool):
        super().__init__()
        self.transformer, self.pooling, self.normalize = transformer, pooling, normalize

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.transformer(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        vectors = hidden[:, 0] if self.pooling == "cls" else masked_mean(hidden, attention_mask)
        return torch.nn.functional.normalize(vectors, p=2, dim=-1) if self.normalize else vectors


class DenseModel:
    """Tokenizer + graph: texts in, one vector per text out. The encoders and the trainable
    view share its text conventions (prefixes, title joining, tokenisation)."""

    def __init__(self, model: str, options: DenseOptions):
        self.options = options
        self.tokenizer = from_pretrained(AutoTokenizer, model)
        transformer = from_pretrained(AutoModel, model)
        self.dim = transformer.config.hidden_size
        name = f"dense-{options.pooling}{'-l2' if options.normalize else ''}"
        self.graph = build_graph(PooledEncoder(transformer, options.pooling, options.normalize), name,
                                 example_inputs(self.tokenizer), options,
                                 documents=lambda texts, titles: self.tokenize(self.doc_texts(texts, titles),
                                                                               options.max_doc_length))

    def query_texts(self, queries: list[str]) -> list[str]:
        return [self.options.query_prefix + q for q in queries]

    def doc_texts(self, texts: list[str], titles: list[str] | None = None) -> list[str]:
        """Title and text joined by a space, as Pyserini's AutoDocumentEncoder and MTEB do."""
        if titles is not None:
            texts = [f"{title} {text}".strip() for title, text in zip(titles, texts)]
        return [self.options.doc_prefix + t for t in texts]

    def tokenize(self, texts: list[str], max_length: int) -> Inputs:
        return tokenize(self.tokenizer, texts, max_length)

    def embed(self, texts: list[str], max_length: int) -> np.ndarray:
        return run_batches(texts, lambda batch: self.tokenize(batch, max_length), self.graph,
                           self.options.batch_size, self.dim)


class DenseQueryEncoder(QueryEncoder):
    def __init__(self, model: str, options: DenseOptions = DenseOptions()):
        super().__init__()
        self.options = options
        self.net = DenseModel(model, options)
        self.has_model = True

    def encode(self, query: str) -> np.ndarray:
        return self.encode_batch([query])[0]

    def encode_batch(self, queries: list[str]) -> np.ndarray:
        """All queries at once (Pyserini's ``FaissSearcher.batch_search`` calls this when present)."""
        return self.net.embed(self.net.query_texts(queries), self.options.max_query_length)


class DenseDocumentEncoder(DocumentEncoder):
    def __init__(self, model: str, options: DenseOptions = DenseOptions()):
        self.options = options
        self.net = DenseModel(model, options)

    @property
    def dim(self) -> int:
        return self.net.dim

    def encode(self, texts: list[str], titles: list[str] | None = None, **kwargs) -> np.ndarray:
        return self.net.embed(self.net.doc_texts(texts, titles), self.options.max_doc_length)


class DenseTrainable(Trainable):
    """A dense bi-encoder (one shared transformer, the card's pooling and normalisation);
    ``scale`` multiplies the inner product (cosine scores live in [-1, 1]). Saved as a
    plain transformer checkpoint, which the dense family loads."""

    def __init__(self, options: DenseOptions, model_path: str, *, scorer: str = "", k_train: int = 0,
                 scale: float = 1.0):
        super().__init__()
        single_scorer("dense", scorer, k_train, "dot")
        self.net = DenseModel(model_path, dataclasses.replace(options, backend="torch"))
        self.options, self.tokenizer, self.scale = options, self.net.tokenizer, scale
        self.module = self.net.graph.module

    def queries(self, texts: list[str]) -> dict[str, torch.Tensor]:
        return as_tensors(self.net.tokenize(self.net.query_texts(texts), self.options.max_query_length))

    def documents(self, texts: list[str]) -> dict[str, torch.Tensor]:
        return as_tensors(self.net.tokenize(self.net.doc_texts(texts), self.options.max_doc_length))

    def score(self, q: torch.Tensor, d: torch.Tensor, d_inputs) -> torch.Tensor:
        return self.scale * scores.dot_scores(q, d)

    def save(self, folder: Path) -> None:
        self.module.transformer.save_pretrained(folder)
        self.tokenizer.save_pretrained(folder)


DENSE_FAMILY = EncoderFamily("dense", DenseOptions, DenseQueryEncoder, DenseDocumentEncoder,
                             store="vectors", pair_scores=scores.dot, trainable=DenseTrainable)
