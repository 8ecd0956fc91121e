"""Dense bi-encoders: one vector per text by CLS or mean pooling, optionally through a
trained linear projection, optionally L2-normalised.

The classes subclass Pyserini's ``QueryEncoder``/``DocumentEncoder``, so Pyserini's
own ``FaissSearcher`` and ``HybridSearcher`` accept them unchanged. Pooling, projection and
normalisation are part of the graph, so an ONNX export returns the final vector.

A card's ``projection_dim`` (> 0) puts ``Linear(hidden, projection_dim, bias=False)`` between
pooling and normalisation (the distillation study's embedding size). Its weight is saved beside
the transformer checkpoint as ``projection.pt`` (``{"weight": projection_dim x hidden}``) by the
trainable view; an encoder whose model folder lacks it, or holds one of another shape, is refused.
Only the trainable view starts without one (training from a base model): it draws a random
orthogonal projection from a generator seeded with torch's initial seed, which the trainer sets
to the config's ``seed`` before it builds the student.
"""

from __future__ import annotations

import dataclasses
import logging
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
from pyserini_ext.schema import checked, one_line

log = logging.getLogger(__name__)

POOLINGS = ("cls", "mean")
PROJECTION_FILE = "projection.pt"  # the trained projection beside a checkpoint: {"weight": projection_dim x hidden}


@dataclass(frozen=True)
class DenseOptions(RuntimeOptions):
    pooling: str = "mean"
    normalize: bool = True
    query_prefix: str = ""
    doc_prefix: str = ""
    max_query_length: int = checked(512, ge=1)
    max_doc_length: int = checked(512, ge=1)
    projection_dim: int = checked(0, ge=0)  # >0: a trained Linear(hidden, projection_dim, bias=False) after pooling

    def __post_init__(self):
        super().__post_init__()
        if self.pooling not in POOLINGS:
            raise ValueError(f"pooling must be one of {POOLINGS}, got {self.pooling!r}")


class PooledEncoder(torch.nn.Module):
    """Transformer, then CLS or masked-mean pooling, then an optional linear projection (no
    bias), then optional L2 normalisation."""

    def __init__(self, transformer: torch.nn.Module, pooling: str, normalize: bool,
                 projection: torch.nn.Linear | None = None):
        super().__init__()
        self.transformer, self.pooling, self.normalize = transformer, pooling, normalize
        self.projection = projection

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.transformer(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        vectors = hidden[:, 0] if self.pooling == "cls" else masked_mean(hidden, attention_mask)
        if self.projection is not None:
            vectors = self.projection(vectors)
        return torch.nn.functional.normalize(vectors, p=2, dim=-1) if self.normalize else vectors


def load_projection(model: str, hidden: int, dim: int, *, new: bool = False) -> torch.nn.Linear:
    """``Linear(hidden, dim, bias=False)`` with the weight saved in ``model``'s ``projection.pt``.

    Without that file: an error, unless ``new`` (the trainable view, training from a base model),
    which draws a random orthogonal projection seeded by ``torch.initial_seed()`` (the training
    config's seed: the trainer seeds torch before it builds the student)."""
    layer = torch.nn.Linear(hidden, dim, bias=False)
    path = Path(str(model)) / PROJECTION_FILE
    if not path.is_file():
        if not new:
            raise FileNotFoundError(f"model folder {model} has no {PROJECTION_FILE}, but the card asks for "
                                    f"projection_dim {dim}: a trained projection is saved there beside the "
                                    f"checkpoint (train the model with projection_dim {dim}, or set projection_dim: 0)")
        seed = torch.initial_seed()
        with torch.no_grad():
            torch.nn.init.orthogonal_(layer.weight, generator=torch.Generator().manual_seed(seed))
        log.warning("%s: no %s; the projection (%d x %d) starts as a random orthogonal map drawn with seed %d",
                    model, PROJECTION_FILE, dim, hidden, seed)
        return layer
    try:  # weights_only: a tensor file never runs code when read
        state = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # noqa: BLE001 (torch raises UnpicklingError, RuntimeError, EOFError...)
        raise ValueError(f"{path}: not a projection file ({type(err).__name__}: {one_line(err)})") \
            from None
    weight = state.get("weight") if isinstance(state, dict) else None
    if not isinstance(weight, torch.Tensor):
        raise ValueError(f"{path}: expected {{'weight': tensor}}, got {type(state).__name__}"
                         f"{' with keys ' + ', '.join(map(str, state)) if isinstance(state, dict) else ''}")
    if tuple(weight.shape) != (dim, hidden):
        raise ValueError(f"{path}: projection of shape {tuple(weight.shape)}, but the card's projection_dim {dim} "
                         f"over the model's hidden size {hidden} needs {(dim, hidden)}")
    with torch.no_grad():
        layer.weight.copy_(weight)
    return layer


class DenseModel:
    """Tokenizer + graph: texts in, one vector per text out. The encoders and the trainable
    view share its text conventions (prefixes, title joining, tokenisation). ``dim`` is the
    output's: ``projection_dim`` when the card sets one, else the transformer's hidden size.
    ``new_projection``: a missing ``projection.pt`` starts a new projection (the trainable
    view) instead of being refused."""

    def __init__(self, model: str, options: DenseOptions, *, new_projection: bool = False):
        self.options = options
        self.tokenizer = from_pretrained(AutoTokenizer, model)
        transformer = from_pretrained(AutoModel, model)
        hidden = transformer.config.hidden_size
        projection = None
        if options.projection_dim:
            projection = load_projection(model, hidden, options.projection_dim, new=new_projection)
        elif (Path(str(model)) / PROJECTION_FILE).is_file():
            # a model trained with a projection, read by a card without one: its vectors would be
            # the unprojected ones, which it was never trained to give
            if not new_projection:
                raise ValueError(f"{Path(str(model)) / PROJECTION_FILE}: the model was trained with a projection, "
                                 f"but the card sets no projection_dim; set it to the projection's rows")
            log.warning("%s: %s is not used (the card sets no projection_dim)", model, PROJECTION_FILE)
        self.dim = options.projection_dim or hidden
        name = (f"dense-{options.pooling}{f'-p{options.projection_dim}' if options.projection_dim else ''}"
                f"{'-l2' if options.normalize else ''}")
        self.graph = build_graph(PooledEncoder(transformer, options.pooling, options.normalize, projection), name,
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
    """A dense bi-encoder (one shared transformer, the card's pooling, projection and
    normalisation); ``scale`` multiplies the inner product (cosine scores live in [-1, 1]).
    Saved as a plain transformer checkpoint, with ``projection.pt`` beside it when the card
    sets ``projection_dim``, which the dense family loads. A model without that file starts a
    new projection (seeded: see :func:`load_projection`), trained with the transformer."""

    def __init__(self, options: DenseOptions, model_path: str, *, scorer: str = "", k_train: int = 0,
                 scale: float = 1.0):
        super().__init__()
        single_scorer("dense", scorer, k_train, "dot")
        self.net = DenseModel(model_path, dataclasses.replace(options, backend="torch"), new_projection=True)
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
        if self.module.projection is not None:
            torch.save({"weight": self.module.projection.weight.detach().cpu().contiguous()}, folder / PROJECTION_FILE)


DENSE_FAMILY = EncoderFamily("dense", DenseOptions, DenseQueryEncoder, DenseDocumentEncoder,
                             store="vectors", pair_scores=scores.dot, trainable=DenseTrainable)
