"""Trainable views of the encoder families: the same tokenisation and the same torch
graph the encoders run at inference time, so a trained model encodes exactly as it
was trained. Each family defines its own view next to its encoders (its
``EncoderFamily.trainable``) and saves it in the layout that family loads; this module
holds their common base and :func:`trainable`, which asks the card's family for it.

A view exposes ``queries(texts)`` and ``documents(texts)`` (tokenised inputs),
``forward(inputs)`` (representations, differentiable), ``score(q, d, d_inputs)``
(``B x N``: every query against every document) and ``save(folder)``.
"""

from __future__ import annotations

import torch

Inputs = dict[str, torch.Tensor]


def as_tensors(inputs) -> Inputs:
    return {k: torch.as_tensor(v) for k, v in inputs.items()}


def single_scorer(family: str, scorer: str, k_train: int, name: str) -> None:
    """Refuse a scorer choice for a family that scores one way only (``name``)."""
    if scorer not in ("", name):
        raise ValueError(f"the {family} family scores by {name}; scorer {scorer!r} is not one of its choices")
    if k_train:
        raise ValueError(f"k_train applies to the colbert family's xtr scorer, not to the {family} family")


class Trainable(torch.nn.Module):
    module: torch.nn.Module

    def forward(self, inputs: Inputs) -> torch.Tensor:
        device = next(self.module.parameters()).device
        return self.module(inputs["input_ids"].to(device), inputs["attention_mask"].to(device))


def trainable(card, model_path: str, **training) -> Trainable:
    """The trainable view of ``card``'s family with weights from ``model_path``; ``training``
    holds the view's settings (``scorer``, ``k_train``, ``scale``; each family says which it takes)."""
    make = card.family.trainable
    if make is None:
        raise ValueError(f"the {card.family.name!r} family (encoder {card.name!r}) has no trainable view: "
                         "training is not implemented for it")
    return make(card.options, model_path, **training)
