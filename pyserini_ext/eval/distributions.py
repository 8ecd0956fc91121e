"""Where the score mass sits: a teacher's and its students' scores of the same candidate lists
(the dual-encoder distillation study's score and margin distributions, its Figs. 2 and 5-8).

The lists are built as training builds them (:func:`pyserini_ext.train.data.mine_examples`:
each judged positive with BM25 negatives), here on a held-out split, so the figures show how
a student reproduces its teacher on queries it never trained on. Every card scores each
list with its family's own ``pair_scores`` (MaxSim for a ColBERT teacher, the inner product
for dense students); a student's scores are multiplied by the ``score_scale`` its training
config multiplied them by (1 for a card not trained here), the teacher's are not (the
distillation losses take the teacher's scores as its family computes them): the scores as
the distillation loss compared them.

Per card, :func:`summarize` reports the positives' and negatives' scores, the margins
(positive minus each negative), how often the positive wins, and, for a student, how its
margins follow the teacher's: their Pearson correlation and mean squared difference, the
quantity margin-MSE minimises.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np


@dataclass(frozen=True)
class ListScores:
    card: str
    scale: float  # a student's training score_scale (1 for the teacher, or a card not trained here)
    scores: np.ndarray  # lists x candidates, the positive first, already times ``scale``

    @property
    def positives(self) -> np.ndarray:
        return self.scores[:, 0]

    @property
    def negatives(self) -> np.ndarray:
        return self.scores[:, 1:].ravel()

    @property
    def margins(self) -> np.ndarray:
        """Positive minus each negative, list by list (lists x negatives, flattened)."""
        return (self.scores[:, :1] - self.scores[:, 1:]).ravel()


def training_scale(card) -> float:
    """The ``score_scale`` of the training config that trained ``card`` (1 when none did)."""
    if not card.model.trained:
        return 1.0
    from pyserini_ext.train.trainer import load_config

    return float(load_config(card.model.trained).score_scale)


def summarize(scores: ListScores, teacher: ListScores | None = None) -> dict[str, float]:
    """Means and standard deviations (population) of positive, negative and margin scores, the
    share of (positive, negative) pairs the positive wins, and against ``teacher`` (same lists):
    the Pearson correlation of the margins and their mean squared difference."""
    m = scores.margins
    out: dict[str, float] = {"lists": len(scores.scores),
           "positive mean": float(scores.positives.mean()), "positive std": float(scores.positives.std()),
           "negative mean": float(scores.negatives.mean()), "negative std": float(scores.negatives.std()),
           "margin mean": float(m.mean()), "margin std": float(m.std()),
           "positive wins": float((m > 0).mean())}
    if teacher is not None:
        if teacher.scores.shape != scores.scores.shape:
            raise ValueError(f"{scores.card} and {teacher.card} scored lists of different shapes")
        t = teacher.margins
        out["margin correlation with teacher"] = float(np.corrcoef(m, t)[0, 1])
        out["margin MSE to teacher"] = float(np.mean((m - t) ** 2))
    return out


def list_scores(teacher: str, students: list[str], dataset: str, split: str, work: Path | None = None,
                quiet: bool = True, depth: int = 30, count: int = 3, seed: int = 0):
    """The split's lists (BM25 negatives, as training mines them) scored by every card.
    Returns ``(examples, [teacher's ListScores, each student's ...])``."""
    from pyserini_ext.encode.base import load_card
    from pyserini_ext.recipes import workspace
    from pyserini_ext.train.data import Negatives, doc_texts, mine_examples, teacher_scores

    ws = workspace(dataset, work, quiet=quiet)
    examples = mine_examples(ws.dataset, split, Negatives("bm25", {}, depth, count, seed), ws.workdir, quiet)
    texts = doc_texts(ws.dataset, {d for e in examples for d in e.docids})
    out = []
    for name in [teacher, *students]:
        card = load_card(name)
        scale = training_scale(card) if name != teacher else 1.0  # a teacher's own training scale is not the student's
        out.append(ListScores(card.name, scale, scale * teacher_scores(name, examples, texts, ws.workdir)))
    return examples, out


def plot_distributions(cards: list[ListScores], path: Path | str, title: str) -> Path:
    """One row per card: score histograms of positives and negatives, the margin histogram, and
    (students) their margins against the teacher's (the first card) with the diagonal."""
    import matplotlib

    matplotlib.use("Agg")  # files only; never needs a display
    import matplotlib.pyplot as plt

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    teacher = cards[0]
    fig, axes = plt.subplots(len(cards), 3, figsize=(13, 3.2 * len(cards)), squeeze=False)
    for row, card in zip(axes, cards):
        role = "teacher" if card is teacher else "student"
        scaled = f" (x{card.scale:g})" if card.scale != 1 else ""
        bins = np.linspace(min(card.scores.min(), 0), card.scores.max(), 40)
        row[0].hist(card.negatives, bins=bins, alpha=0.6, label="negatives", color="tab:red", density=True)
        row[0].hist(card.positives, bins=bins, alpha=0.6, label="positives", color="tab:green", density=True)
        row[0].set_title(f"{role} {card.card}: scores{scaled}", fontsize=9)
        row[0].legend(fontsize=8)
        row[1].hist(card.margins, bins=40, color="tab:blue", density=True)
        row[1].axvline(0.0, color="black", linestyle="--", linewidth=1)
        row[1].set_title("margin: positive - negative", fontsize=9)
        if card is teacher:
            row[2].axis("off")
            continue
        row[2].scatter(teacher.margins, card.margins, s=3, alpha=0.3)
        low = min(teacher.margins.min(), card.margins.min())
        high = max(teacher.margins.max(), card.margins.max())
        row[2].plot([low, high], [low, high], color="black", linewidth=1)
        row[2].set_xlabel("teacher margin", fontsize=8)
        row[2].set_ylabel("student margin", fontsize=8)
        row[2].set_title(f"r = {np.corrcoef(teacher.margins, card.margins)[0, 1]:.3f}", fontsize=9)
    fig.suptitle(title)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path


def distribution_study(teacher: str, students: list[str], dataset: str, split: str, output: Path | str,
                       work: Path | None = None, quiet: bool = True):
    """Score every list, write the figure at ``output`` (PNG) and beside it the scores
    (``.tsv``: one row per candidate, one column per card) and the summary (``.summary.tsv``).
    Returns ``(summaries by card, figure, scores table, summary table)``."""
    examples, cards = list_scores(teacher, students, dataset, split, work, quiet)
    output = Path(output)
    figure = plot_distributions(cards, output, f"{dataset} {split}: {len(examples)} lists "
                                               f"(positive + {cards[0].scores.shape[1] - 1} BM25 negatives)")
    table = output.with_suffix(".tsv")
    with open(table, "w", encoding="utf-8") as f:
        f.write("\t".join(["list", "qid", "docid", "role", *(c.card for c in cards)]) + "\n")
        for i, e in enumerate(examples):
            for j, docid in enumerate(e.docids):
                role = "positive" if j == 0 else "negative"
                f.write("\t".join([str(i), e.qid, docid, role, *(f"{c.scores[i, j]:.6f}" for c in cards)]) + "\n")
    summaries = {c.card: summarize(c, None if c is cards[0] else cards[0]) for c in cards}
    summary_table = output.with_suffix(".summary.tsv")
    keys = list(summaries[cards[-1].card])
    with open(summary_table, "w", encoding="utf-8") as f:
        f.write("\t".join(["card", "scale", *keys]) + "\n")
        for c in cards:
            f.write("\t".join([c.card, f"{c.scale:g}", *(format_value(summaries[c.card].get(k, "-")) for k in keys)]) + "\n")
    return summaries, figure, table, summary_table


def format_value(value) -> str:
    """A summary cell: floats to 4 decimals, counts and "-" (not applicable) as they are."""
    return f"{value:.4f}" if isinstance(value, float) else str(value)
