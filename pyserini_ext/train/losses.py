"""Training losses, one function each, batched in torch, the formula in each docstring.

Shapes. A *list* loss scores each query against its own candidate list:
``student`` and ``teacher`` are ``B x n`` (query b, candidate i) and ``positive`` is
a ``B x n`` boolean mask (the rest are negatives). A *matrix* loss scores each query
against every document of the batch: ``B x N`` with the positive's column given.
Every loss returns the mean over the batch's queries of a per-query sum, so a
larger list weighs more, as in the papers.

The scorers that turn representations into such score matrices
(``dot_scores``, ``maxsim_scores``, ``xtr_scores``) live in :mod:`pyserini_ext.scores`.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

Tensor = torch.Tensor


# --- pointwise and pairwise distillation -----------------------------------------------------

def logit_mse(student: Tensor, teacher: Tensor) -> Tensor:
    """``sum_i (t_i - s_i)^2`` per query, averaged over queries."""
    return ((teacher - student) ** 2).sum(dim=-1).mean()


def margin_mse(student: Tensor, teacher: Tensor) -> Tensor:
    """Margin-MSE (Hofstätter et al., 2020): column 0 is the positive, the others negatives;

        sum_{j >= 1} ((t_0 - t_j) - (s_0 - s_j))^2

    per query, averaged over queries (with ``n = 2`` exactly ``((t1 - t2) - (s1 - s2))^2``).
    """
    teacher_margin = teacher[:, :1] - teacher[:, 1:]
    student_margin = student[:, :1] - student[:, 1:]
    return ((teacher_margin - student_margin) ** 2).sum(dim=-1).mean()


def m3se(student: Tensor, teacher: Tensor, positive: Tensor) -> Tensor:
    """Multi-margin MSE: with ``j*`` the negative the teacher scores highest,

        sum_{i in P} ((t_i - t_j*) - (s_i - s_j*))^2 + sum_{j in N} [s_j - s_j*]_+^2

    per query, averaged over queries: positives keep the teacher's margin to the
    hardest negative, and no other negative may score above it.
    """
    positive = positive.bool()
    hardest = teacher.masked_fill(positive, float("-inf")).argmax(dim=-1, keepdim=True)
    t_star, s_star = teacher.gather(-1, hardest), student.gather(-1, hardest)
    margins = ((teacher - t_star) - (student - s_star)) ** 2
    above = F.relu(student - s_star) ** 2
    return (torch.where(positive, margins, above)).sum(dim=-1).mean()


def rankdistil_b(student: Tensor, teacher: Tensor, positive: Tensor, gamma0: float = 0.0) -> Tensor:
    """RankDistil-B (Reddi et al., 2021):

        sum_{i in P} (t_i - s_i)^2 + sum_{j in N} [s_j - gamma0]_+^2

    per query, averaged over queries: fit the teacher on the positives, push the
    negatives below ``gamma0``.
    """
    positive = positive.bool()
    fit = (teacher - student) ** 2
    push = F.relu(student - gamma0) ** 2
    return torch.where(positive, fit, push).sum(dim=-1).mean()


# --- listwise distillation -----------------------------------------------------------------------

def softmax_ce(student: Tensor, teacher: Tensor, tau: float = 1.0, label_smoothing: float = 0.0) -> Tensor:
    """Listwise softmax cross-entropy with temperature:

        - sum_i p_i log q_i,   p = softmax(t / tau),  q = softmax(s / tau)

    per query, averaged over queries. As tau grows, for two candidates
    ``tau^2 dL/ds -> (1/8) d margin_mse/ds`` (Hinton et al.'s high-temperature limit).
    ``label_smoothing`` eps mixes the teacher's distribution with the uniform one over the
    list's n candidates, ``p <- (1 - eps) p + eps / n``: a regulariser against copying the
    teacher's sharpest margins (the distillation study's Tables 8-9).
    """
    if not 0.0 <= label_smoothing <= 1.0:
        raise ValueError(f"label_smoothing must lie in [0, 1], got {label_smoothing}")
    p = F.softmax(teacher / tau, dim=-1)
    p = (1.0 - label_smoothing) * p + label_smoothing / p.shape[-1]
    return -(p * F.log_softmax(student / tau, dim=-1)).sum(dim=-1).mean()


TEACHER_SCALINGS = ("none", "minmax")


def listwise_kl(student: Tensor, teacher: Tensor, tau: float | Tensor = 1.0, teacher_tau: float = 0.0,
                teacher_scaling: str = "none") -> Tensor:
    """``KL(p || q) = sum_i p_i (log p_i - log q_i)`` with ``p = softmax(t / tau_t)``,
    ``q = softmax(s / tau)``; per query, averaged. Same gradient as :func:`softmax_ce`
    (they differ by the teacher's entropy), zero when the distributions agree.

    ``tau_t`` is ``teacher_tau``, or ``tau`` when 0. ``teacher_scaling="minmax"`` first maps
    each query's teacher scores to ``(t - min t) / (max t - min t)`` (all 0 when they are
    equal: a uniform target), so ``tau_t`` sets the target's sharpness whatever the teacher's
    score range: the XTR replicability study's distillation configuration scales the teacher
    this way and learns the student's ``tau`` (a tensor here; the trainer's
    ``temperature_learning_rate``).
    """
    if teacher_scaling not in TEACHER_SCALINGS:
        raise ValueError(f"teacher_scaling must be one of {TEACHER_SCALINGS}, got {teacher_scaling!r}")
    if teacher_scaling == "minmax":
        low = teacher.amin(dim=-1, keepdim=True)
        spread = teacher.amax(dim=-1, keepdim=True) - low
        teacher = torch.where(spread > 0, (teacher - low) / spread.clamp(min=torch.finfo(teacher.dtype).tiny),
                              torch.zeros_like(teacher))
    log_p = F.log_softmax(teacher / (teacher_tau or tau), dim=-1)
    return (log_p.exp() * (log_p - F.log_softmax(student / tau, dim=-1))).sum(dim=-1).mean()


def tct_inbatch_kl(student: Tensor, teacher: Tensor, tau: float = 1.0) -> Tensor:
    """TCT-ColBERT's in-batch distillation (Lin et al., 2021), over the batch's ``N`` documents:

        KL(P_t || P_s),  P_t = softmax(MaxSim(q, d) / tau),  P_s = softmax(<q, d>)

    ``student`` holds the dot products and ``teacher`` the MaxSim scores, both ``B x N``;
    only the teacher is tempered, as in the paper.
    """
    log_p = F.log_softmax(teacher / tau, dim=-1)
    return (log_p.exp() * (log_p - F.log_softmax(student, dim=-1))).sum(dim=-1).mean()


def info_nce(scores: Tensor, positive_index: Tensor, tau: float = 1.0) -> Tensor:
    """Contrastive InfoNCE: ``- log softmax(s / tau)_{d+}`` per query over every document
    in ``scores`` (``B x N``: in-batch documents and hard negatives), averaged."""
    return F.cross_entropy(scores / tau, positive_index)


def mrl_listwise(student: Tensor, teacher: Tensor) -> Tensor:
    """MRL's listwise loss (Zamani & Bendersky, 2023), a LambdaRank-style weighting:

        sum_{(d, d'): y(d) > y(d')} |1/rank(d) - 1/rank(d')| * log(1 + exp(M(q, d') - M(q, d)))

    per query, averaged; ``y`` the teacher's scores, ``M`` the student's, ranks (from 1)
    from the student's own ordering of the list (ties by position), not differentiated.
    """
    order = student.detach().argsort(dim=-1, descending=True, stable=True)
    ranks = torch.empty_like(order).scatter_(-1, order, torch.arange(1, student.shape[-1] + 1).expand_as(order))
    reciprocal = 1.0 / ranks.to(student.dtype)
    weight = (reciprocal[:, :, None] - reciprocal[:, None, :]).abs()  # d, d'
    better = teacher[:, :, None] > teacher[:, None, :]
    pair = F.softplus(student[:, None, :] - student[:, :, None])  # log(1 + exp(M(d') - M(d)))
    return (weight * pair * better).sum(dim=(1, 2)).mean()
