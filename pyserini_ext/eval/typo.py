"""How an MRL encoder's query variance responds to typos (the MRL reproducibility study's
figure 3): the variance norm ``||s2_Q||_2`` of each clean query and of the same query
with a typo, their paired difference (typo minus clean), and a histogram of the differences.

A model whose variance captures uncertainty should give typo queries the larger norm,
so the differences should sit mostly above zero.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Mapping

import numpy as np

from pyserini_ext.eval.qpp import variance_norms


@dataclass(frozen=True)
class TypoVariance:
    qids: list[str]
    clean: np.ndarray  # ||s2_Q|| of each clean query
    typo: np.ndarray  # ... of the same query with its typo

    @property
    def differences(self) -> np.ndarray:
        return self.typo - self.clean

    def summary(self) -> dict[str, float]:
        d = self.differences
        return {"queries": len(d), "mean clean": float(self.clean.mean()), "mean typo": float(self.typo.mean()),
                "mean difference": float(d.mean()), "median difference": float(np.median(d)),
                "typo larger": int((d > 0).sum()), "equal": int((d == 0).sum()), "typo smaller": int((d < 0).sum())}


def typo_variance(query_encoder, clean: Mapping[str, str], typo: Mapping[str, str]) -> TypoVariance:
    """Paired variance norms; the two topic sets must hold the same qids."""
    if set(clean) != set(typo):
        only = sorted(set(clean) ^ set(typo))
        raise ValueError(f"clean and typo queries must pair up by qid; unpaired: {', '.join(only[:5])}")
    qids = list(clean)
    return TypoVariance(qids, variance_norms(query_encoder, [clean[q] for q in qids]),
                        variance_norms(query_encoder, [typo[q] for q in qids]))


def plot_differences(result: TypoVariance, path: Path | str, title: str) -> Path:
    """Histogram of the paired differences, written as a PNG."""
    import matplotlib

    matplotlib.use("Agg")  # files only; never needs a display
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(6, 4))
    ax.hist(result.differences, bins=20, color="tab:blue", edgecolor="black")
    ax.axvline(0.0, color="black", linestyle="--", linewidth=1)
    ax.set_xlabel("||s2 typo query|| - ||s2 clean query||")
    ax.set_ylabel("queries")
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
    return path


def typo_study(encoder: str, output: Path | str) -> tuple[TypoVariance, Path, Path]:
    """DL-Typo with the MRL card ``encoder``: the variance norms, the histogram at ``output``
    (PNG) and the per-query table beside it (``.tsv``). Returns (result, figure, table)."""
    from pyserini_ext.data.datasets import DL_TYPO_CLEAN, DL_TYPO_TYPO
    from pyserini_ext.data.readers import read_topics
    from pyserini_ext.encode.base import load_card

    result = typo_variance(load_card(encoder).query_encoder(), read_topics(DL_TYPO_CLEAN.resolve()),
                           read_topics(DL_TYPO_TYPO.resolve()))
    figure = plot_differences(result, output, f"DL-Typo, {encoder}:\nvariance norm, typo minus clean")
    table = Path(output).with_suffix(".tsv")
    with open(table, "w", encoding="utf-8") as f:
        f.write("qid\tclean\ttypo\tdifference\n")
        for qid, c, t in zip(result.qids, result.clean, result.typo):
            f.write(f"{qid}\t{c:.6f}\t{t:.6f}\t{t - c:+.6f}\n")
    return result, figure, table
