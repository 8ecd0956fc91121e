"""Trainable views of the encoder families: the same tokenisation and the same torch
graph the encoders run at inference time, so a trained model encodes exactly as it
was trained. Each view is built from an encoder card (family, options, weights) and
saves itself in the layout that card family loads.

A view exposes ``queries(texts)`` and ``documents(texts)`` (tokenised inputs),
``forward(inputs)`` (representations, differentiable) and ``score(q, d, d_inputs)``
(``B x N``: every query against every document).
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import torch

from pyserini_ext.train import losses

Inputs = dict[str, torch.Tensor]


def _tensors(inputs) -> Inputs:
    return {k: torch.as_tensor(v) for k, v in inputs.items()}


class Trainable(torch.nn.Module):
    module: torch.nn.Module

    def forward(self, inputs: Inputs) -> torch.Tensor:
        device = next(self.module.parameters()).device
        return self.module(inputs["input_ids"].to(device), inputs["attention_mask"].to(device))


class DenseTrainable(Trainable):
    """A dense bi-encoder (one shared transformer, the card's pooling and normalisation);
    ``scale`` multiplies the inner product (cosine scores live in [-1, 1])."""

    def __init__(self, model_path: str, options, scale: float = 1.0):
        from pyserini_ext.encode.dense import DenseModel

        super().__init__()
        net = DenseModel(model_path, dataclasses.replace(options, backend="torch"))
        self.options, self.tokenizer, self.module, self.scale = options, net.tokenizer, net.graph.module, scale

    def queries(self, texts: list[str]) -> Inputs:
        from pyserini_ext.encode.runtime import tokenize

        o = self.options
        return _tensors(tokenize(self.tokenizer, [o.query_prefix + t for t in texts], o.max_query_length))

    def documents(self, texts: list[str]) -> Inputs:
        from pyserini_ext.encode.runtime import tokenize

        o = self.options
        return _tensors(tokenize(self.tokenizer, [o.doc_prefix + t for t in texts], o.max_doc_length))

    def score(self, q: torch.Tensor, d: torch.Tensor, d_inputs: Inputs) -> torch.Tensor:
        return self.scale * losses.dot_scores(q, d)

    def save(self, folder: Path) -> None:
        self.module.transformer.save_pretrained(folder)
        self.tokenizer.save_pretrained(folder)


class ColbertTrainable(Trainable):
    """Late interaction with the card's markers, [MASK] augmentation and punctuation
    skiplist; scored by exact MaxSim, or by XTR's in-batch token retrieval (``k_train``)."""

    def __init__(self, model_path: str, options, scorer: str = "maxsim", k_train: int = 0, scale: float = 1.0):
        from pyserini_ext.encode.colbert import ColbertModel

        super().__init__()
        if scorer not in ("maxsim", "xtr"):
            raise ValueError(f"colbert scorer must be maxsim or xtr, got {scorer!r}")
        if scorer == "xtr" and k_train <= 0:
            raise ValueError("the xtr scorer needs k_train > 0")
        self.net = ColbertModel(model_path, dataclasses.replace(options, backend="torch"))
        self.options, self.tokenizer, self.module = options, self.net.tokenizer, self.net.graph.module
        self.scorer, self.k_train, self.scale = scorer, k_train, scale

    def queries(self, texts: list[str]) -> Inputs:
        o = self.options
        return _tensors(self.net.token_ids(texts, o.query_marker, o.query_prompt, o.query_length, True))

    def documents(self, texts: list[str]) -> Inputs:
        o = self.options
        inputs = self.net.token_ids(texts, o.doc_marker, o.doc_prompt, o.doc_length, False)
        return {**_tensors(inputs), "keep": torch.as_tensor(self.net.keep_mask(inputs))}

    def score(self, q: torch.Tensor, d: torch.Tensor, d_inputs: Inputs) -> torch.Tensor:
        keep = d_inputs["keep"].to(d.device)
        if self.scorer == "xtr":
            return self.scale * losses.xtr_scores(q, d, keep, self.k_train)
        return self.scale * losses.maxsim_scores(q, d, keep)

    def save(self, folder: Path) -> None:
        from safetensors.torch import save_file

        self.module.transformer.save_pretrained(folder)
        self.tokenizer.save_pretrained(folder)
        if self.module.linear is not None:  # PyLate's layout, which load_projection reads back
            (folder / "1_Dense").mkdir()
            save_file({f"linear.{k}": v.contiguous() for k, v in self.module.linear.state_dict().items()},
                      str(folder / "1_Dense" / "model.safetensors"))


class MrlTrainable(Trainable):
    """MRL: ``[mu, s2]`` per text; the score is ``-KL(Q || D)`` between diagonal Gaussians."""

    def __init__(self, model_path: str, options, scale: float = 1.0):
        from pyserini_ext.encode.mrl import MrlModel

        super().__init__()
        net = MrlModel(model_path, dataclasses.replace(options, backend="torch"))
        self.options, self.tokenizer, self.module, self.scale = options, net.tokenizer, net.heads, scale

    def _inputs(self, texts: list[str], length: int) -> Inputs:
        from pyserini_ext.encode.runtime import tokenize

        return _tensors(tokenize(self.tokenizer, [f"{self.options.var_token} {t}" for t in texts], length))

    def queries(self, texts: list[str]) -> Inputs:
        return self._inputs(texts, self.options.max_query_length)

    def documents(self, texts: list[str]) -> Inputs:
        return self._inputs(texts, self.options.max_doc_length)

    def score(self, q: torch.Tensor, d: torch.Tensor, d_inputs: Inputs) -> torch.Tensor:
        k = self.options.dim
        mu_q, s2_q, mu_d, s2_d = q[:, None, :k], q[:, None, k:], d[None, :, :k], d[None, :, k:]
        kl = 0.5 * (torch.log(s2_d) - torch.log(s2_q) + (s2_q + (mu_q - mu_d) ** 2) / s2_d - 1).sum(-1)
        return -self.scale * kl

    def save(self, folder: Path) -> None:
        from pyserini_ext.encode.mrl import HEADS_FILE

        self.module.encoder.save_pretrained(folder)
        self.tokenizer.save_pretrained(folder)
        heads = {f"{name}.{k}": v for name in ("mean", "var") for k, v in getattr(self.module, name).state_dict().items()}
        torch.save(heads, folder / HEADS_FILE)


def trainable(card, model_path: str, scorer: str = "", k_train: int = 0, scale: float = 1.0) -> Trainable:
    """The trainable view of ``card``'s family, with weights from ``model_path``."""
    family = card.family.name
    if family == "dense":
        return DenseTrainable(model_path, card.options, scale)
    if family == "colbert":
        return ColbertTrainable(model_path, card.options, scorer or "maxsim", k_train, scale)
    if family == "mrl":
        return MrlTrainable(model_path, card.options, scale)
    raise ValueError(f"training is implemented for the dense, colbert and mrl families, not {family!r}")
