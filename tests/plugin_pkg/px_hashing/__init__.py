"""A model family with no weights: feature-hashed bags of words, L2-normalised.

Adding it touched this module, one card (cards/hashing-256.yaml) and one spec
(specs/px-tiny-hashing.yaml); nothing in pyserini_ext.
"""

from __future__ import annotations

import re
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from pyserini_ext.data.local import dataset_from_path
from pyserini_ext.encode.base import EncoderFamily
from pyserini_ext.scores import dot

HERE = Path(__file__).resolve().parent
CARDS = HERE / "cards"
SPECS = HERE / "specs"


@dataclass(frozen=True)
class HashingOptions:
    dim: int = 256


def hash_vectors(texts: list[str], dim: int) -> np.ndarray:
    out = np.zeros((len(texts), dim), dtype=np.float32)
    for row, text in enumerate(texts):
        for token in re.findall(r"\w+", text.lower()):
            out[row, zlib.crc32(token.encode("utf-8")) % dim] += 1.0
    norms = np.linalg.norm(out, axis=1, keepdims=True)
    return out / np.maximum(norms, 1e-12)


class HashingQueryEncoder:
    def __init__(self, model: str, options: HashingOptions):
        self.dim = options.dim

    def encode(self, text: str) -> np.ndarray:
        return hash_vectors([text], self.dim)[0]

    def encode_batch(self, texts: list[str]) -> np.ndarray:
        return hash_vectors(texts, self.dim)


class HashingDocumentEncoder:
    def __init__(self, model: str, options: HashingOptions):
        self.dim = options.dim

    def encode(self, texts: list[str], titles: list[str] | None = None, **_) -> np.ndarray:
        if titles:
            texts = [f"{title} {text}".strip() for title, text in zip(titles, texts)]
        return hash_vectors(texts, self.dim)


HASHING_FAMILY = EncoderFamily("hashing", HashingOptions, HashingQueryEncoder, HashingDocumentEncoder,
                               store="vectors", pair_scores=dot)

TINY = dataset_from_path(HERE / "data", name="px/tiny")
