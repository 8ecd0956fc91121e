"""Training losses against values worked out by hand, gradient checks, and the
high-temperature limit that links listwise softmax-CE to margin-MSE."""

import math

import pytest
import torch

from pyserini_ext import scores as S
from pyserini_ext.train import losses as L


def t(rows):
    return torch.tensor(rows, dtype=torch.float64)


def test_logit_mse_by_hand():
    # (2 - 1)^2 + (0 - 2)^2
    assert L.logit_mse(t([[1, 2]]), t([[2, 0]])).item() == pytest.approx(5.0)


def test_margin_mse_by_hand():
    # teacher margin 5 - 2 = 3, student margin 3 - 1 = 2: (3 - 2)^2
    assert L.margin_mse(t([[3, 1]]), t([[5, 2]])).item() == pytest.approx(1.0)
    # three candidates: teacher margins (3, 1), student margins (2, 3): 1 + 4
    assert L.margin_mse(t([[3, 1, 0]]), t([[5, 2, 4]])).item() == pytest.approx(5.0)
    # averaged over queries
    assert L.margin_mse(t([[3, 1], [0, 0]]), t([[5, 2], [1, 0]])).item() == pytest.approx(1.0)


def test_m3se_by_hand():
    student, teacher = t([[3, 1, 1.5, 0]]), t([[4, 3, 1, 0]])
    positive = torch.tensor([[True, False, False, False]])
    # hardest negative by the teacher: j* = 1 (t = 3, s = 1)
    # positive: ((4 - 3) - (3 - 1))^2 = 1; negatives: [1 - 1]_+^2 + [1.5 - 1]_+^2 + [0 - 1]_+^2 = 0.25
    assert L.m3se(student, teacher, positive).item() == pytest.approx(1.25)


def test_rankdistil_b_by_hand():
    student, teacher = t([[3, 0.5, -1]]), t([[4, 0, 0]])
    positive = torch.tensor([[True, False, False]])
    # (4 - 3)^2 + [0.5 - 0]_+^2 + [-1 - 0]_+^2
    assert L.rankdistil_b(student, teacher, positive, gamma0=0.0).item() == pytest.approx(1.25)
    # gamma0 = -2: 1 + 2.5^2 + 1^2
    assert L.rankdistil_b(student, teacher, positive, gamma0=-2.0).item() == pytest.approx(8.25)


def test_softmax_ce_and_kl_by_hand():
    # teacher probabilities (3/4, 1/4), student (1/2, 1/2)
    student, teacher = t([[0, 0]]), t([[math.log(3), 0]])
    assert L.softmax_ce(student, teacher).item() == pytest.approx(math.log(2))
    assert L.listwise_kl(student, teacher).item() == pytest.approx(0.75 * math.log(1.5) + 0.25 * math.log(0.5))
    # temperature divides both: tau = 2 with doubled scores is the same
    assert L.softmax_ce(2 * student, 2 * teacher, tau=2.0).item() == pytest.approx(math.log(2))
    assert L.listwise_kl(teacher, teacher).item() == pytest.approx(0.0, abs=1e-12)


def test_minmax_scaled_teacher_with_its_own_temperature_by_hand():
    """Teacher (7, 3, 5) scales to (1, 0, 1/2); at teacher_tau = 1/ln 3 the target is
    softmax(ln 3, 0, ln 3 / 2) = (3, 1, sqrt 3) / (4 + sqrt 3). Student (0.2, 0, 0.1) at
    tau = 0.1: q = (e^2, 1, e) / (1 + e + e^2). The scaling makes the target the same for any
    teacher of the same order and proportions (7, 3, 5 -> 70, 30, 50 or 1, -7, -3)."""
    teacher, student = t([[7, 3, 5]]), t([[0.2, 0, 0.1]])
    z = 4 + math.sqrt(3)
    p = [3 / z, 1 / z, math.sqrt(3) / z]
    zq = 1 + math.e + math.e ** 2
    q = [math.e ** 2 / zq, 1 / zq, math.e / zq]
    expected = sum(pi * math.log(pi / qi) for pi, qi in zip(p, q))
    for scaled in (teacher, 10 * teacher, 2 * teacher - 13):
        got = L.listwise_kl(student, scaled, tau=0.1, teacher_tau=1 / math.log(3), teacher_scaling="minmax")
        assert got.item() == pytest.approx(expected, rel=1e-9)
    # a list the teacher scores all alike is a uniform target, not a division by zero
    flat = L.listwise_kl(student, t([[2, 2, 2]]), tau=0.1, teacher_tau=0.5, teacher_scaling="minmax")
    assert flat.item() == pytest.approx(sum(math.log((1 / 3) / qi) / 3 for qi in q), rel=1e-9)
    # a learnt tau is a tensor, and its gradient flows
    tau = torch.tensor(0.1, dtype=torch.float64, requires_grad=True)
    L.listwise_kl(student, teacher, tau=tau, teacher_tau=1 / math.log(3), teacher_scaling="minmax").backward()
    assert tau.grad is not None and tau.grad.item() != 0.0
    with pytest.raises(ValueError, match="teacher_scaling"):
        L.listwise_kl(student, teacher, teacher_scaling="min-max")


def test_label_smoothing_mixes_the_teacher_with_the_uniform_distribution():
    """Teacher logits (log 3, 0): p = (3/4, 1/4); eps 0.2 over n = 2 gives (0.7, 0.3). Student
    logits (0, 0): q = (1/2, 1/2), so the loss is log 2 whatever p is; student (log 4, 0):
    q = (4/5, 1/5), loss = -(0.7 log 0.8 + 0.3 log 0.2)."""
    teacher = torch.tensor([[math.log(3.0), 0.0]], dtype=torch.float64)
    even = torch.zeros(1, 2, dtype=torch.float64)
    assert L.softmax_ce(even, teacher, label_smoothing=0.2).item() == pytest.approx(math.log(2))
    student = torch.tensor([[math.log(4.0), 0.0]], dtype=torch.float64)
    assert L.softmax_ce(student, teacher, label_smoothing=0.2).item() == pytest.approx(
        -(0.7 * math.log(0.8) + 0.3 * math.log(0.2)))
    assert L.softmax_ce(student, teacher, label_smoothing=0.0).item() == pytest.approx(
        -(0.75 * math.log(0.8) + 0.25 * math.log(0.2)))
    assert L.softmax_ce(student, teacher, label_smoothing=1.0).item() == pytest.approx(
        -(0.5 * math.log(0.8) + 0.5 * math.log(0.2)))
    with pytest.raises(ValueError, match="label_smoothing"):
        L.softmax_ce(student, teacher, label_smoothing=1.5)


def test_tct_kl_tempers_only_the_teacher():
    # teacher MaxSim (2 ln 3, 0) / tau=2 -> p = (3/4, 1/4); student dot products (2, 0) untempered
    student, teacher = t([[2, 0]]), t([[2 * math.log(3), 0]])
    log_q = [2 - math.log(1 + math.exp(2)), -math.log(1 + math.exp(2))]
    expected = 0.75 * (math.log(0.75) - log_q[0]) + 0.25 * (math.log(0.25) - log_q[1])
    assert L.tct_inbatch_kl(student, teacher, tau=2.0).item() == pytest.approx(expected)


def test_info_nce_by_hand():
    # softmax of (ln 2, 0, 0) at the positive: 2 / 4
    assert L.info_nce(t([[math.log(2), 0, 0]]), torch.tensor([0])).item() == pytest.approx(math.log(2))
    assert L.info_nce(t([[0, 0, 2 * math.log(2)]]), torch.tensor([2]), tau=2.0).item() == pytest.approx(math.log(2))


def test_maxsim_ignores_padding_tokens():
    queries = t([[[1, 0], [0, 1]]])
    docs = t([[[1, 0], [0.6, 0.8], [5, 5]]])  # the third token is padding and would win everything
    mask = torch.tensor([[1, 1, 0]])
    # max(1, 0.6) + max(0, 0.8)
    assert S.maxsim_scores(queries, docs, mask)[0].tolist() == pytest.approx([1.8])
    assert S.dot_scores(t([[1, 2]]), t([[3, 4], [0, 1]])).tolist() == [[11.0, 2.0]]


def test_xtr_scores_by_hand():
    queries = t([[[1, 0], [0, 1]]])
    docs = t([[[1, 0], [0.6, 0.8], [9, 9]],          # A (third token padding)
              [[0.8, 0.6], [0.28, 0.96], [9, 9]],     # B
              [[-1, 0], [0, -1], [9, 9]]])            # C: never among the top tokens
    mask = torch.tensor([[1, 1, 0], [1, 1, 0], [1, 1, 0]])
    # k_train=2: q1 retrieves A1 (1), B1 (.8); q2 retrieves B2 (.96), A2 (.8)
    # A: (1 + .8) / 2 = .9; B: (.8 + .96) / 2 = .88; C: 0 / eps = 0
    assert S.xtr_scores(queries, docs, mask, k_train=2)[0].tolist() == pytest.approx([0.9, 0.88, 0.0])
    # k_train=1: q1 -> A1, q2 -> B2; each document normalised by the one query token that found it
    assert S.xtr_scores(queries, docs, mask, k_train=1)[0].tolist() == pytest.approx([1.0, 0.96, 0.0])
    # with every token retrieved, XTR is MaxSim divided by the number of query tokens
    full = S.xtr_scores(queries, docs, mask, k_train=6)
    assert full[0].tolist() == pytest.approx((S.maxsim_scores(queries, docs, mask) / 2)[0].tolist())


def test_xtr_scores_floor_and_normalizer_by_hand():
    """Query tokens e1, e2, so a document token (s1, s2) scores s1 with q1 and s2 with q2."""
    queries = t([[[1, 0], [0, 1]]])
    docs = t([[[0.9, -0.3], [0.5, 0.7]],       # D0
              [[0.4, -0.2], [-0.5, -0.6]],     # D1
              [[-0.1, 0.2], [9, 9]]])          # D2 (second token padding)
    mask = torch.tensor([[1, 1], [1, 1], [1, 0]])
    # k_train=3. q1: D0a .9, D0b .5, D1a .4; q2: D0b .7, D2a .2, D1a -.2.
    # D0: q1 .9 (both tokens retrieved), q2 max(.7, 0) = .7       -> 1.6 / 2
    # D1: q1 max(.4, 0) = .4, q2 max(-.2, 0) = 0 (D1b unretrieved) -> .4 / 1 (positive) or .4 / 2 (retrieved)
    # D2: q1 nothing retrieved = 0, q2 .2 (its only token)          -> .2 / 1
    # Before the floor, D1 kept -.2 for q2 and scored (.4 - .2) / 2 = .1.
    assert S.xtr_scores(queries, docs, mask, k_train=3)[0].tolist() == pytest.approx([0.8, 0.4, 0.2])
    assert S.xtr_scores(queries, docs, mask, k_train=3, normalizer="retrieved")[0].tolist() == pytest.approx(
        [0.8, 0.2, 0.2])
    # Every real token retrieved: still floored (padding is never retrieved, the 0 it brings is PyLate's), so
    # D1's q2 and D2's q1 add 0: D1 .4 / 2 or / 1, D2 .2 / 2 or / 1.
    assert S.xtr_scores(queries, docs, mask, k_train=6, normalizer="retrieved")[0].tolist() == pytest.approx(
        [0.8, 0.2, 0.1])
    assert S.xtr_scores(queries, docs, mask, k_train=6)[0].tolist() == pytest.approx([0.8, 0.4, 0.2])
    with pytest.raises(ValueError, match="normalizer must be one of"):
        S.xtr_scores(queries, docs, mask, k_train=3, normalizer="all")


def _unit(g, *shape):
    return torch.nn.functional.normalize(torch.randn(*shape, generator=g, dtype=torch.float32), dim=-1)


def _xtr_batch():
    """4 queries (5 tokens) x 2 documents each (positive, negative; 6 positions, padded), dim 8."""
    g = torch.Generator().manual_seed(3)
    queries, docs = _unit(g, 4, 5, 8), _unit(g, 4, 2, 6, 8)
    mask = torch.ones(4, 2, 6, dtype=torch.bool)
    for (b, n), length in {(0, 1): 3, (1, 0): 4, (2, 1): 2, (3, 0): 5, (3, 1): 1}.items():
        mask[b, n, length:] = False
    return queries, docs, mask


# 20 of the 33 real tokens: retrieved tokens with negative scores occur (the code before the floor was 0.13 off);
# at 33 PyLate keeps a negative best for the one unpadded document (its padding supplies the 0 to all others).
@pytest.mark.parametrize("k_train", [1, 7, 20])
def test_xtr_scores_equal_pylate(k_train):
    pytest.importorskip("pylate", reason="PyLate is an optional extra: pip install --no-deps 'pylate>=1.6,<2'")
    from pylate.scores import XTRScores

    queries, docs, mask = _xtr_batch()
    theirs = XTRScores(k=k_train)(queries, docs, documents_mask=mask)  # 4 x 8, query-major
    ours = S.xtr_scores(queries, docs.reshape(8, 6, 8), mask.reshape(8, 6), k_train)
    torch.testing.assert_close(ours, theirs, rtol=0, atol=1e-6)


def test_xtr_info_nce_equals_pylate_contrastive():
    """The XTR loss (InfoNCE over XTR scores, positive of query b in column 2b) against PyLate's
    ``Contrastive`` loss with ``XTRScores``, given the same unit token vectors."""
    pylate_losses = pytest.importorskip("pylate.losses", reason="PyLate is an optional extra: "
                                        "pip install --no-deps 'pylate>=1.6,<2'")
    from pylate.scores import XTRScores

    queries, docs, mask = _xtr_batch()

    class Fixed(torch.nn.Module):  # PyLate's loss asks a model for token embeddings: hand it these
        skiplist, do_query_expansion = [], True  # keep every query token, as our ColBERT does

        def forward(self, features):
            return {"token_embeddings": features["embeddings"]}

    features = [{"input_ids": torch.ones(4, 5, dtype=torch.long), "attention_mask": torch.ones(4, 5, dtype=torch.bool),
                 "embeddings": queries}]
    features += [{"input_ids": torch.ones(4, 6, dtype=torch.long), "attention_mask": mask[:, n], "embeddings": docs[:, n]}
                 for n in range(2)]
    theirs = pylate_losses.Contrastive(Fixed(), score_metric=XTRScores(k=20), temperature=0.05)(features)
    ours = L.info_nce(S.xtr_scores(queries, docs.reshape(8, 6, 8), mask.reshape(8, 6), 20), torch.arange(4) * 2, tau=0.05)
    assert ours.item() == pytest.approx(theirs.item(), rel=1e-5)


def test_xtr_info_nce_by_hand():
    """The same loss computed independently, token by token in plain Python (always runs)."""
    queries, docs, mask = _xtr_batch()
    q, d, m = queries.tolist(), docs.reshape(8, 6, 8).tolist(), mask.reshape(8, 6).tolist()
    k_train, tau = 20, 0.05
    loss = 0.0
    for b in range(4):
        scores = []
        for i in range(5):
            sims = [(sum(x * y for x, y in zip(q[b][i], d[n][j])), n, j) for n in range(8) for j in range(6) if m[n][j]]
            top = sorted(sims, reverse=True)[:k_train]
            scores.append(top)
        row = []
        for n in range(8):
            total, z = 0.0, 0
            for top in scores:
                value = max([s for s, dn, _ in top if dn == n] + [0.0])  # unretrieved tokens count 0
                total, z = total + value, z + (value > 0)
            row.append(total / max(z, 1e-3))
        logits = [r / tau for r in row]
        top_logit = max(logits)
        loss += -(logits[2 * b] - top_logit - math.log(sum(math.exp(x - top_logit) for x in logits)))
    ours = L.info_nce(S.xtr_scores(queries, docs.reshape(8, 6, 8), mask.reshape(8, 6), k_train), torch.arange(4) * 2,
                      tau=tau)
    assert ours.item() == pytest.approx(loss / 4, rel=1e-5)


def test_mrl_listwise_by_hand():
    student, teacher = t([[1, 2, 0]]), t([[3, 2, 1]])
    # student ranks: doc1 1st, doc0 2nd, doc2 3rd; pairs the teacher orders (0,1), (0,2), (1,2)
    expected = (0.5 * math.log(1 + math.e) + (1 / 6) * math.log(1 + math.exp(-1))
                + (2 / 3) * math.log(1 + math.exp(-2)))
    assert L.mrl_listwise(student, teacher).item() == pytest.approx(expected)
    # teacher ties contribute no pair
    assert L.mrl_listwise(student, t([[1, 1, 1]])).item() == 0.0


@pytest.mark.parametrize("name", ["logit_mse", "margin_mse", "m3se", "rankdistil_b", "softmax_ce", "listwise_kl",
                                  "tct_inbatch_kl", "info_nce", "mrl_listwise", "maxsim", "xtr"])
def test_gradients_match_finite_differences(name):
    g = torch.Generator().manual_seed(7)
    s = torch.randn(3, 5, generator=g, dtype=torch.float64, requires_grad=True)
    teacher = torch.randn(3, 5, generator=g, dtype=torch.float64)
    positive = torch.zeros(3, 5, dtype=torch.bool)
    positive[:, 0] = True
    positive[1, 2] = True
    queries = torch.randn(2, 3, 4, generator=g, dtype=torch.float64, requires_grad=True)
    docs = torch.randn(3, 4, 4, generator=g, dtype=torch.float64, requires_grad=True)
    mask = torch.tensor([[1, 1, 1, 1], [1, 1, 0, 0], [1, 1, 1, 0]])
    functions = {
        "logit_mse": (lambda x: L.logit_mse(x, teacher), (s,)),
        "margin_mse": (lambda x: L.margin_mse(x, teacher), (s,)),
        "m3se": (lambda x: L.m3se(x, teacher, positive), (s,)),
        "rankdistil_b": (lambda x: L.rankdistil_b(x, teacher, positive, gamma0=-0.5), (s,)),
        "softmax_ce": (lambda x: L.softmax_ce(x, teacher, tau=2.0), (s,)),
        "listwise_kl": (lambda x: L.listwise_kl(x, teacher, tau=0.5), (s,)),
        "tct_inbatch_kl": (lambda x: L.tct_inbatch_kl(x, teacher, tau=0.25), (s,)),
        "info_nce": (lambda x: L.info_nce(x, torch.tensor([0, 2, 4]), tau=0.1), (s,)),
        "mrl_listwise": (lambda x: L.mrl_listwise(x, teacher), (s,)),
        "maxsim": (lambda q, d: S.maxsim_scores(q, d, mask), (queries, docs)),
        "xtr": (lambda q, d: S.xtr_scores(q, d, mask, k_train=4), (queries, docs)),
    }
    fn, inputs = functions[name]
    assert torch.autograd.gradcheck(fn, inputs)


def test_softmax_ce_tends_to_an_eighth_of_margin_mse():
    """Two candidates: tau^2 * dCE/ds -> (1/8) * d(margin-MSE)/ds as tau grows."""
    teacher = t([[2.0, -1.0]])
    errors = []
    for tau in (10.0, 100.0, 1000.0):
        s = t([[0.5, 1.5]]).requires_grad_()
        (grad_ce,) = torch.autograd.grad(L.softmax_ce(s, teacher, tau=tau), s)
        (grad_mm,) = torch.autograd.grad(L.margin_mse(s, teacher), s)
        errors.append((tau ** 2 * grad_ce - grad_mm / 8).abs().max().item() / (grad_mm / 8).abs().max().item())
    assert errors[0] > errors[1] > errors[2]
    assert errors[2] < 1e-5


@pytest.mark.parametrize("tau", [0.5, 1.0, 3.0])
def test_two_candidate_softmax_losses_are_binary_losses_of_the_margin(tau):
    """The identity behind the proposition, exactly (not only its tau^2 limit): with two candidates
    the listwise losses depend on the scores only through the margins. With
    p = sigmoid((t1 - t2) / tau) and q = sigmoid((s1 - s2) / tau), softmax CE is the binary cross
    entropy -p log q - (1 - p) log(1 - q), and the listwise KL is the Bernoulli KL(p || q)."""
    teacher = t([[2.0, -1.0], [0.3, 0.3], [-4.0, 1.5]])
    student = t([[0.5, 1.5], [2.0, -2.0], [1.0, 0.75]])
    p = torch.sigmoid((teacher[:, 0] - teacher[:, 1]) / tau)
    q = torch.sigmoid((student[:, 0] - student[:, 1]) / tau)
    bce = -(p * torch.log(q) + (1 - p) * torch.log(1 - q))
    kl = p * torch.log(p / q) + (1 - p) * torch.log((1 - p) / (1 - q))
    assert L.softmax_ce(student, teacher, tau=tau).item() == pytest.approx(bce.mean().item(), rel=1e-12)
    assert L.listwise_kl(student, teacher, tau=tau).item() == pytest.approx(kl.mean().item(), rel=1e-12)
    # shifting one list's scores changes nothing: only the margin counts
    shifted = student + t([[7.0], [-3.0], [0.25]])
    assert L.softmax_ce(shifted, teacher, tau=tau).item() == pytest.approx(bce.mean().item(), rel=1e-12)
