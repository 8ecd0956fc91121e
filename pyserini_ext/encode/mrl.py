"""Multivariate representation learning (MRL; Zamani & Bendersky, 2023): one diagonal
Gaussian per text, ranked by negative KL divergence rewritten as a dot product.

Input ``[CLS] [VAR] text``: the mean comes from the ``[CLS]`` output, the variance from
the ``[VAR]`` output, each through a linear head of dimension k. Variances are
``softplus_beta(x) = log(1 + exp(beta * x)) / beta`` or, in the "LogVar" variant,
``exp(x)`` (the head predicts the log-variance; no beta).

With diagonal covariances, and dropping terms that do not depend on the document,

    2 KL(Q || D) + sum log s2_Q + k = sum log s2_D + sum s2_Q / s2_D + sum mu_Q^2 / s2_D
                                      - 2 sum mu_Q mu_D / s2_D + sum mu_D^2 / s2_D

which is the dot product of ``[1, s2_Q, mu_Q^2, mu_Q]`` (query) and
``[gamma_D, 1/s2_D, 1/s2_D, -2 mu_D / s2_D]`` (document), ``gamma_D = sum (log s2_D +
mu_D^2 / s2_D)``, both ``3k + 1`` long. The query encoder returns the query vector
negated, so a maximum-inner-product index (FAISS flat IP) ranks by -KL directly.

Two ablations of the reproducibility study's Table 3 are scorings of the same Gaussians:
``scoring="original"`` is the first derivation's erroneous form, which replaced the trace
term ``sum s2_Q / s2_D`` by ``prod s2_Q / prod s2_D`` (vectors ``2k + 2`` long; the study
found and corrected the error), and ``scoring="mean"`` drops the variances and ranks by the
dot product of the means (vectors ``k`` long).

The KL and its dot-product form are :func:`pyserini_ext.scores.gaussian_kl`,
:func:`~pyserini_ext.scores.gaussian_kl_query_vectors` and
:func:`~pyserini_ext.scores.gaussian_kl_document_vectors`; the trainable view
(:class:`MrlTrainable`) scores by the KL itself.
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from pyserini.encode import DocumentEncoder, QueryEncoder
from transformers import AutoModel, AutoTokenizer

from pyserini_ext import scores
from pyserini_ext.encode.base import EncoderFamily, from_pretrained
from pyserini_ext.encode.runtime import Inputs, RuntimeOptions, build_graph, example_inputs, run_batches, tokenize
from pyserini_ext.train.models import Trainable, as_tensors, single_scorer
from pyserini_ext.schema import checked

VARIANCES = ("softplus", "logvar")
SCORINGS = ("kl", "original", "mean")
HEADS_FILE = "mrl_heads.pt"  # trained heads saved beside a checkpoint: {"mean.weight", "mean.bias", "var.weight", "var.bias"}


@dataclass(frozen=True)
class MrlOptions(RuntimeOptions):
    dim: int = checked(128, ge=1)  # k: each Gaussian's dimension; vectors are 3k + 1 long
    variance: str = "softplus"  # softplus | logvar
    beta: float = checked(1.0, gt=0)  # softplus sharpness (softplus only)
    var_token: str = "[VAR]"
    scoring: str = "kl"  # kl | original (the erroneous trace term) | mean (means only): the ablations
    max_query_length: int = checked(256, ge=1)
    max_doc_length: int = checked(256, ge=1)

    def __post_init__(self):
        super().__post_init__()
        if self.variance not in VARIANCES:
            raise ValueError(f"variance must be one of {VARIANCES}, got {self.variance!r}")
        if self.scoring not in SCORINGS:
            raise ValueError(f"scoring must be one of {SCORINGS}, got {self.scoring!r}")


class MrlHeads(torch.nn.Module):
    """Encoder + mean and variance heads: ``[mu, s2]`` (batch x 2k) from ``[CLS] [VAR] text`` ids."""

    def __init__(self, encoder: torch.nn.Module, dim: int, variance: str, beta: float):
        super().__init__()
        hidden = encoder.config.hidden_size
        if dim > hidden:
            raise ValueError(f"MRL dim {dim} exceeds the encoder's hidden size {hidden}")
        self.encoder, self.variance, self.beta = encoder, variance, beta
        self.mean = torch.nn.Linear(hidden, dim)
        self.var = torch.nn.Linear(hidden, dim)

    def forward(self, input_ids: torch.Tensor, attention_mask: torch.Tensor) -> torch.Tensor:
        hidden = self.encoder(input_ids=input_ids, attention_mask=attention_mask).last_hidden_state
        pre = self.var(hidden[:, 1])
        s2 = torch.exp(pre) if self.variance == "logvar" else torch.nn.functional.softplus(pre, beta=self.beta)
        return torch.cat([self.mean(hidden[:, 0]), s2], dim=-1)


class MrlModel:
    """Tokenizer + heads. Heads load from ``mrl_heads.pt`` beside the checkpoint when
    present; otherwise they start from the dense checkpoint: the mean head copies the
    first k hidden dimensions and the variance head outputs 1."""

    def __init__(self, model: str, options: MrlOptions):
        self.options = options
        self.tokenizer = from_pretrained(AutoTokenizer, model)
        encoder = from_pretrained(AutoModel, model)
        if options.var_token not in self.tokenizer.get_vocab():
            self.tokenizer.add_special_tokens({"additional_special_tokens": [options.var_token]})
            # transformers would draw the new row at random; the mean of the existing rows keeps
            # an untrained [VAR] deterministic, so the same checkpoint always gives the same vectors.
            encoder.resize_token_embeddings(len(self.tokenizer), mean_resizing=False)
            embeddings = encoder.get_input_embeddings().weight
            with torch.no_grad():
                embeddings[-1] = embeddings[:-1].mean(dim=0)
        self.heads = MrlHeads(encoder, options.dim, options.variance, options.beta)
        heads = Path(model) / HEADS_FILE
        if heads.is_file():
            state = torch.load(heads, map_location="cpu")
            self.heads.mean.load_state_dict({"weight": state["mean.weight"], "bias": state["mean.bias"]})
            self.heads.var.load_state_dict({"weight": state["var.weight"], "bias": state["var.bias"]})
        else:
            with torch.no_grad():
                self.heads.mean.weight.copy_(torch.eye(options.dim, encoder.config.hidden_size))
                self.heads.mean.bias.zero_()
                self.heads.var.weight.zero_()
                # The pre-activation whose variance is exactly 1.
                one = 0.0 if options.variance == "logvar" else math.log(math.expm1(options.beta)) / options.beta
                self.heads.var.bias.fill_(one)
        name = f"mrl-{options.variance}" + (f"-beta{options.beta:g}" if options.variance == "softplus" else "")
        self.graph = build_graph(self.heads, name, example_inputs(self.tokenizer), options)

    def texts(self, texts: list[str]) -> list[str]:
        """``[VAR] text``: the tokenizer adds [CLS] in front, giving [CLS] [VAR] text."""
        return [f"{self.options.var_token} {t}" for t in texts]

    def tokenize(self, texts: list[str], max_length: int) -> Inputs:
        return tokenize(self.tokenizer, texts, max_length)

    def gaussians(self, texts: list[str], max_length: int) -> tuple[np.ndarray, np.ndarray]:
        """Means and variances (float64), one row per text."""
        o = self.options
        out = run_batches(self.texts(texts), lambda batch: self.tokenize(batch, max_length), self.graph,
                          o.batch_size, 2 * o.dim).astype(np.float64)
        return out[:, :o.dim], out[:, o.dim:]


def mrl_query_vectors(mu: np.ndarray, s2: np.ndarray, scoring: str) -> np.ndarray:
    """What a maximum-inner-product index needs on the query side: ``-`` the KL query vector
    (so the inner product is ``-2 KL + const``), or the mean alone for ``scoring="mean"``."""
    vectors = mu if scoring == "mean" else -scores.gaussian_kl_query_vectors(mu, s2, scoring)
    return finite_float32(vectors, "query", scoring)


def mrl_document_vectors(mu: np.ndarray, s2: np.ndarray, scoring: str) -> np.ndarray:
    vectors = mu if scoring == "mean" else scores.gaussian_kl_document_vectors(mu, s2, scoring)
    return finite_float32(vectors, "document", scoring)


def finite_float32(vectors: np.ndarray, side: str, scoring: str) -> np.ndarray:
    """The vectors in float32, refusing overflow: the erroneous form's product of k variances
    leaves float32's range when the variances stray far from 1, and an inf would silently
    turn every score of that text into inf or NaN."""
    with np.errstate(over="ignore"):
        out = vectors.astype(np.float32)
    if not np.isfinite(out).all():
        rows = np.flatnonzero(~np.isfinite(out).all(axis=1))
        raise ValueError(f"MRL {side} vectors (scoring {scoring!r}) overflow float32 in {len(rows)} of "
                         f"{len(out)} texts (first: row {rows[0]})")
    return out


class MrlQueryEncoder(QueryEncoder):
    """Query vectors ``-[1, s2, mu^2, mu]``: their inner product with document vectors is -2 KL + const
    (or the ablations' vectors, see :func:`mrl_query_vectors`)."""

    def __init__(self, model: str, options: MrlOptions = MrlOptions()):
        super().__init__()
        self.options = options
        self.net = MrlModel(model, options)
        self.has_model = True

    def gaussians(self, queries: list[str]) -> tuple[np.ndarray, np.ndarray]:
        return self.net.gaussians(queries, self.options.max_query_length)

    def encode(self, query: str) -> np.ndarray:
        return self.encode_batch([query])[0]

    def encode_batch(self, queries: list[str]) -> np.ndarray:
        return mrl_query_vectors(*self.gaussians(queries), self.options.scoring)


class MrlDocumentEncoder(DocumentEncoder):
    def __init__(self, model: str, options: MrlOptions = MrlOptions()):
        self.options = options
        self.net = MrlModel(model, options)

    def gaussians(self, texts: list[str], titles: list[str] | None = None) -> tuple[np.ndarray, np.ndarray]:
        if titles is not None:
            texts = [f"{title} {text}".strip() for title, text in zip(titles, texts)]
        return self.net.gaussians(texts, self.options.max_doc_length)

    def encode(self, texts: list[str], titles: list[str] | None = None, **kwargs) -> np.ndarray:
        return mrl_document_vectors(*self.gaussians(texts, titles), self.options.scoring)


class MrlTrainable(Trainable):
    """MRL: ``[mu, s2]`` per text; the score is ``-KL(Q || D)`` between diagonal Gaussians
    (times ``scale``). Saved as the encoder's checkpoint (with the added ``[VAR]`` token)
    and ``mrl_heads.pt`` beside it, which :class:`MrlModel` loads."""

    def __init__(self, options: MrlOptions, model_path: str, *, scorer: str = "", k_train: int = 0,
                 scale: float = 1.0):
        super().__init__()
        single_scorer("mrl", scorer, k_train, "kl")
        self.net = MrlModel(model_path, dataclasses.replace(options, backend="torch"))
        self.options, self.tokenizer, self.module, self.scale = options, self.net.tokenizer, self.net.heads, scale

    def queries(self, texts: list[str]) -> dict[str, torch.Tensor]:
        return as_tensors(self.net.tokenize(self.net.texts(texts), self.options.max_query_length))

    def documents(self, texts: list[str]) -> dict[str, torch.Tensor]:
        return as_tensors(self.net.tokenize(self.net.texts(texts), self.options.max_doc_length))

    def score(self, q: torch.Tensor, d: torch.Tensor, d_inputs) -> torch.Tensor:
        k = self.options.dim
        return -self.scale * scores.gaussian_kl(q[:, :k], q[:, k:], d[:, :k], d[:, k:])

    def save(self, folder: Path) -> None:
        self.module.encoder.save_pretrained(folder)
        self.tokenizer.save_pretrained(folder)
        heads = {f"{name}.{k}": v for name in ("mean", "var") for k, v in getattr(self.module, name).state_dict().items()}
        torch.save(heads, folder / HEADS_FILE)


# Query vectors are negated: their inner product with document vectors is -2 KL + const.
MRL_FAMILY = EncoderFamily("mrl", MrlOptions, MrlQueryEncoder, MrlDocumentEncoder,
                           store="vectors", pair_scores=scores.dot, trainable=MrlTrainable)
