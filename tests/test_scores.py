"""The scoring module: every score against values worked out by hand or by plain loops,
its NumPy and torch implementations against each other, and the encoder families'
``store`` / ``pair_scores`` / ``trainable`` behaviour."""

import re
from pathlib import Path

import numpy as np
import pytest
import torch

from pyserini_ext import scores as S
from pyserini_ext.encode.base import ENCODER_FAMILIES, STORES, EncoderFamily, load_card

PACKAGE = Path(__file__).resolve().parents[1] / "pyserini_ext"


def loop_maxsim(query, doc):
    return sum(max(float(np.dot(q, d)) for d in doc) for q in query)


def test_dot_by_hand_in_numpy_and_torch():
    assert S.dot_scores(np.array([[1.0, 2.0]]), np.array([[3.0, 4.0], [0.0, 1.0]])).tolist() == [[11.0, 2.0]]
    assert S.dot_scores(torch.tensor([[1.0, 2.0]]), torch.tensor([[3.0, 4.0], [0.0, 1.0]])).tolist() == [[11.0, 2.0]]
    assert S.dot(np.array([1.0, -1.0]), [np.array([2.0, 1.0]), np.array([0.5, 3.0])]).tolist() == [1.0, -2.5]
    assert S.dot(np.array([1.0]), []).shape == (0,)


def test_sparse_dot_by_hand():
    query = {"fever": 3, "cause": 2}
    docs = [{"fever": 10, "infection": 5}, {"cause": 4, "fever": 1}, {"stars": 7}]
    assert S.sparse_dot(query, docs).tolist() == [30.0, 11.0, 0.0]


def test_maxsim_by_hand():
    query = np.array([[1.0, 0.0], [0.0, 1.0]])
    docs = [np.array([[1.0, 0.0], [0.6, 0.8]]), np.array([[0.0, -1.0]]), np.array([[0.5, 0.5], [0.2, 0.9], [-1, 2]])]
    # max(1, .6) + max(0, .8); 0 + -1; max(.5, .2, -1) + max(.5, .9, 2)
    np.testing.assert_allclose(S.maxsim(query, docs), [1.8, -1.0, 2.5], rtol=1e-6)
    assert S.maxsim(query, []).shape == (0,)


def test_maxsim_numpy_equals_the_loop_and_the_padded_torch_maxsim():
    rng = np.random.default_rng(3)
    query = rng.normal(size=(8, 16)).astype(np.float32)
    docs = [rng.normal(size=(int(n), 16)).astype(np.float16) for n in rng.integers(1, 30, size=25)]
    ours = S.maxsim(query, docs)
    np.testing.assert_allclose(ours, [loop_maxsim(query, d.astype(np.float32)) for d in docs], rtol=1e-4, atol=1e-4)
    width = max(len(d) for d in docs)
    padded = np.full((len(docs), width, 16), 100.0, dtype=np.float32)  # padding that would win every max
    mask = np.zeros((len(docs), width), dtype=bool)
    for i, d in enumerate(docs):
        padded[i, :len(d)], mask[i, :len(d)] = d, True
    batched = S.maxsim_scores(torch.from_numpy(query)[None], torch.from_numpy(padded), torch.from_numpy(mask))
    np.testing.assert_allclose(batched[0].numpy(), ours, rtol=1e-4, atol=1e-4)


def test_maxsim_query_mask_drops_query_tokens():
    queries = torch.tensor([[[1.0, 0.0], [0.0, 1.0]]])
    docs = torch.tensor([[[1.0, 0.0], [0.6, 0.8]]])
    mask = torch.tensor([[1, 1]])
    assert S.maxsim_scores(queries, docs, mask, query_mask=torch.tensor([[1, 0]]))[0].tolist() == pytest.approx([1.0])


def test_gaussian_kl_by_hand_and_the_same_in_numpy_and_torch():
    # KL(N(0, 1) || N(1, 2)) = 0.5 * (log 2 + (1 + 1) / 2 - 1), in one dimension; dimensions add
    args = [[[0.0, 0.0]], [[1.0, 1.0]], [[1.0, 1.0]], [[2.0, 2.0]]]
    assert S.gaussian_kl(*map(np.array, args))[0, 0] == pytest.approx(np.log(2.0))
    assert S.gaussian_kl(*map(torch.tensor, args))[0, 0].item() == pytest.approx(np.log(2.0))
    rng = np.random.default_rng(0)
    mu_q, s2_q = rng.normal(size=(3, 5)), rng.uniform(0.1, 2, size=(3, 5))
    mu_d, s2_d = rng.normal(size=(4, 5)), rng.uniform(0.1, 2, size=(4, 5))
    expected = np.array([[0.5 * sum(np.log(s2_d[j, k] / s2_q[i, k]) + (s2_q[i, k] + (mu_q[i, k] - mu_d[j, k]) ** 2)
                                    / s2_d[j, k] - 1 for k in range(5)) for j in range(4)] for i in range(3)])
    np.testing.assert_allclose(S.gaussian_kl(mu_q, s2_q, mu_d, s2_d), expected, rtol=1e-12)
    as_torch = S.gaussian_kl(*(torch.from_numpy(x) for x in (mu_q, s2_q, mu_d, s2_d)))
    np.testing.assert_allclose(as_torch.numpy(), expected, rtol=1e-12)
    inputs = tuple(torch.from_numpy(x).requires_grad_() for x in (mu_q, s2_q, mu_d, s2_d))
    assert torch.autograd.gradcheck(S.gaussian_kl, inputs)


def test_every_family_names_its_store_and_scorer():
    expected = {"dense": ("vectors", S.dot), "tct_colbert": ("vectors", S.dot), "mrl": ("vectors", S.dot),
                "splade": ("impacts", S.sparse_dot), "colbert": ("tokens", S.maxsim)}
    for name, (store, pair_scores) in expected.items():
        family = ENCODER_FAMILIES.get(name)
        assert (family.store, family.pair_scores) == (store, pair_scores), name
        assert family.store in STORES
    assert ENCODER_FAMILIES.get("splade").trainable is None
    assert all(ENCODER_FAMILIES.get(name).trainable is not None for name in ("dense", "tct_colbert", "mrl", "colbert"))
    with pytest.raises(ValueError, match="store must be one of"):
        EncoderFamily("x", object, print, print, store="faiss", pair_scores=S.dot)


def test_an_untrainable_family_says_so():
    from pyserini_ext.train.models import trainable

    with pytest.raises(ValueError, match="'splade' family .*has no trainable view"):
        trainable(load_card("splade-tiny"), "unused")


def test_a_single_scorer_family_refuses_another_scorer(minilm_path):
    from pyserini_ext.train.models import trainable

    with pytest.raises(ValueError, match="scores by dot"):
        trainable(load_card("all-minilm-l6-v2"), minilm_path, scorer="xtr")
    with pytest.raises(ValueError, match="k_train applies to the colbert family"):
        trainable(load_card("tct_colbert-v2-msmarco"), minilm_path, k_train=8)


def test_no_code_asks_a_family_for_its_name_to_decide_behaviour():
    offenders = [f"{path.relative_to(PACKAGE)}:{n}: {line.strip()}"
                 for path in PACKAGE.rglob("*.py")
                 for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
                 if re.search(r"family\.name\s*(==|!=|\bin\b)", line)]
    assert not offenders, offenders


def test_each_score_is_defined_once():
    names = ("dot_scores", "maxsim", "maxsim_scores", "xtr_scores", "xtr_imputed_scores", "impute", "gaussian_kl",
             "kl_divergence", "query_vectors", "document_vectors")
    defined = [f"{path.relative_to(PACKAGE)}: {name}" for path in PACKAGE.rglob("*.py")
               for name in names if re.search(rf"^def {name}\(", path.read_text(encoding="utf-8"), re.M)]
    assert sorted(defined) == sorted(f"scores.py: {name}" for name in names[:7])
