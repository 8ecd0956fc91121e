"""How much an MRL model's document variances vary: the quantity that decides whether anything
reading them (the erroneous formula's product term, the trace term, QPP by variance) can change a
ranking. For each card, the Gaussians of the first N SciFact documents (title and text joined, the
card's own document encoder), and the spread of s2_D, log prod s2_D and sum 1/s2_D.

    python benchmarks/mrl_variances.py mrl-minilm-scifact-softplus mrl-minilm-scifact-softplus-heads [--docs 200]

Trained cards need their models under the work folder ($PYSERINI_EXT_WORK): `pyserini-ext train NAME`.
"""

from __future__ import annotations

import argparse
import itertools

import numpy as np

import pyserini_ext  # noqa: F401  (configures Java before pyserini)
from pyserini_ext.data.datasets import get_dataset
from pyserini_ext.encode.base import load_card


def spread(s2: np.ndarray) -> dict[str, float]:
    """Summaries of ``documents x k`` variances."""
    log_prod, trace = np.log(s2).sum(axis=1), (1.0 / s2).sum(axis=1)
    return {"s2 mean": s2.mean(), "s2 std": s2.std(), "s2 min": s2.min(), "s2 max": s2.max(),
            "log prod min": log_prod.min(), "log prod max": log_prod.max(), "log prod std": log_prod.std(),
            "trace mean": trace.mean(), "trace std": trace.std()}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("cards", nargs="+")
    parser.add_argument("--docs", type=int, default=200)
    args = parser.parse_args()
    docs = [f"{d.title} {d.text}".strip() for d in itertools.islice(get_dataset("beir/scifact").docs(), args.docs)]
    for name in args.cards:
        encoder = load_card(name).document_encoder()
        _, s2 = encoder.net.gaussians(docs, encoder.options.max_doc_length)
        x = spread(s2)
        print(f"{name}: s2 mean {x['s2 mean']:.4f} std {x['s2 std']:.4f} range [{x['s2 min']:.3f}, {x['s2 max']:.3f}]; "
              f"log prod s2_D [{x['log prod min']:.2f}, {x['log prod max']:.2f}] std {x['log prod std']:.3f}; "
              f"sum 1/s2_D {x['trace mean']:.2f} +- {x['trace std']:.2f}")


if __name__ == "__main__":
    main()
