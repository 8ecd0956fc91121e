"""The dense family's trained linear projection (``projection_dim``): saved by the trainable view
beside the checkpoint, loaded through a card, encoding exactly as trained; the projection is the
pooled vector times the saved matrix; a missing or misshapen file is refused, naming it."""

import re

import numpy as np
import pytest
import torch

from pyserini_ext.encode.base import load_card
from pyserini_ext.encode.dense import PROJECTION_FILE, DenseOptions, DenseTrainable

TEXTS = ["Vitamin C deficiency causes scurvy.", "A second, longer document about bone density in mice fed a diet."]
OPTIONS = DenseOptions(pooling="mean", normalize=True, max_query_length=16, max_doc_length=32, projection_dim=8)


def write_card(folder, path, projection_dim=8, normalize=True):
    card = folder / f"projected-{projection_dim}-{normalize}.yaml"
    card.write_text(f"family: dense\nmodel: {{path: {path}}}\npooling: mean\nnormalize: {str(normalize).lower()}\n"
                    f"max_query_length: 16\nmax_doc_length: 32\nprojection_dim: {projection_dim}\n")
    return load_card(card)


@pytest.fixture(scope="module")
def trained(minilm_path, tmp_path_factory):
    """A projected model after one optimizer step (the transformer and the projection both moved),
    saved by the trainable view; with the module's own document vectors."""
    torch.manual_seed(0)
    model = DenseTrainable(OPTIONS, minilm_path, scale=20.0)
    optimizer = torch.optim.SGD(model.parameters(), lr=0.5)
    q, d = model(model.queries(["what causes scurvy", "bone density"])), model(model.documents(TEXTS))
    torch.nn.functional.cross_entropy(model.score(q, d, None), torch.tensor([0, 1])).backward()
    assert model.module.projection.weight.grad.abs().sum() > 0  # the projection trains with the transformer
    optimizer.step()
    folder = tmp_path_factory.mktemp("projected")
    model.save(folder)
    model.eval()
    with torch.no_grad():
        vectors = model(model.documents(TEXTS)).numpy()
    return folder, model, vectors


def test_a_saved_projection_loads_through_a_card_and_encodes_as_trained(trained, tmp_path):
    folder, model, vectors = trained
    assert (folder / PROJECTION_FILE).is_file()
    card = write_card(tmp_path, folder)
    encoder = card.document_encoder()
    assert encoder.dim == 8  # what the index builders read
    got = encoder.encode(TEXTS)
    assert got.shape == (2, 8)
    np.testing.assert_allclose(got, vectors, atol=1e-5)
    np.testing.assert_allclose(np.linalg.norm(got, axis=1), [1.0, 1.0], atol=1e-6)
    assert card.query_encoder().encode_batch(["what causes scurvy"]).shape == (1, 8)


def test_the_vector_is_the_pooled_vector_times_the_saved_matrix(trained, tmp_path):
    from transformers import AutoModel, AutoTokenizer

    folder, _, _ = trained
    weight = torch.load(folder / PROJECTION_FILE, weights_only=True)["weight"].numpy()
    assert weight.shape == (8, 384)
    tokenizer, transformer = AutoTokenizer.from_pretrained(folder), AutoModel.from_pretrained(folder).eval()
    inputs = tokenizer(TEXTS, max_length=32, truncation=True, padding=True, return_tensors="pt")
    with torch.no_grad():
        hidden = transformer(**inputs).last_hidden_state.numpy().astype(np.float64)
    mask = inputs["attention_mask"].numpy()[:, :, None]
    pooled = (hidden * mask).sum(1) / mask.sum(1)
    projected = pooled @ weight.T.astype(np.float64)
    np.testing.assert_allclose(write_card(tmp_path, folder, normalize=False).document_encoder().encode(TEXTS),
                               projected, atol=1e-4)
    expected = projected / np.linalg.norm(projected, axis=1, keepdims=True)
    np.testing.assert_allclose(write_card(tmp_path, folder).document_encoder().encode(TEXTS), expected, atol=1e-5)


def test_a_missing_or_misshapen_projection_is_refused_naming_the_file(trained, minilm_path, tmp_path):
    folder, _, _ = trained
    saved = re.escape(str(folder / PROJECTION_FILE))
    with pytest.raises(FileNotFoundError, match=rf"model folder {re.escape(minilm_path)} has no {PROJECTION_FILE}, "
                                                rf"but the card asks for projection_dim 8"):
        write_card(tmp_path, minilm_path).document_encoder()
    with pytest.raises(ValueError, match=rf"{saved}: projection of shape \(8, 384\), but the card's projection_dim 16 "
                                         rf"over the model's hidden size 384 needs \(16, 384\)"):
        write_card(tmp_path, folder, projection_dim=16).document_encoder()
    with pytest.raises(ValueError, match=rf"{saved}: the model was trained with a projection, "
                                         rf"but the card sets no projection_dim"):
        write_card(tmp_path, folder, projection_dim=0).document_encoder()


def test_a_new_projection_is_drawn_from_the_training_seed(minilm_path):
    """Training from a base model: the trainer seeds torch before it builds the student; the
    student config's options (``projection_dim``) reach the card it trains."""
    from pyserini_ext.train.models import trainable
    from pyserini_ext.train.trainer import load_config, seed_everything, student_card

    card = student_card(load_config("scifact-minilm-margin-mse-d32"))
    assert card.options.projection_dim == 32 and card.options.max_doc_length == 128
    assert load_card("minilm-scifact-margin-mse-d32").options.projection_dim == 32

    def drawn(seed):
        seed_everything(seed)
        torch.rand(3)  # what else draws from the global generator first does not matter
        return trainable(card, minilm_path).module.projection.weight.detach().clone()

    first = drawn(0)
    assert first.shape == (32, 384)
    torch.testing.assert_close(first @ first.T, torch.eye(32), atol=1e-5, rtol=0)  # orthonormal rows
    assert torch.equal(drawn(0), first)
    assert not torch.equal(drawn(1), first)


def test_projection_dim_is_checked(tmp_path):
    from pyserini_ext.encode.base import CardError

    with pytest.raises(CardError, match=r"projected--1-True\.yaml: key 'projection_dim': must be at least 0, got -1"):
        write_card(tmp_path, "unused", projection_dim=-1)


def test_head_learning_rate_puts_the_projection_in_its_own_group(minilm_path):
    """With head_learning_rate the projection (outside the transformer) trains at its own rate and
    every transformer weight at learning_rate; without it, one group (old checkpoints resume)."""
    from pyserini_ext.train.trainer import ConfigError, parameter_groups, parse_config

    model = DenseTrainable(OPTIONS, minilm_path)
    config = parse_config({"student": "all-minilm-l6-v2", "learning_rate": 3e-5, "head_learning_rate": 1e-3}, "heads")
    body, heads = parameter_groups(model, config)
    assert heads["lr"] == 1e-3 and "lr" not in body
    assert [p is model.module.projection.weight for p in heads["params"]] == [True]
    assert len(body["params"]) == len(list(model.module.transformer.parameters()))
    optimizer = torch.optim.AdamW(parameter_groups(model, config), lr=config.learning_rate)
    assert [g["lr"] for g in optimizer.param_groups] == [3e-5, 1e-3]
    assert parameter_groups(model, parse_config({"student": "all-minilm-l6-v2"}, "one")) == list(model.parameters())
    unprojected = DenseTrainable(DenseOptions(max_query_length=16, max_doc_length=32), minilm_path)
    with pytest.raises(ConfigError, match="head_learning_rate"):
        parameter_groups(unprojected, config)
