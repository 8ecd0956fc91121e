"""The trainer: config errors, the data order, gradient caching, and short real training
runs (all-MiniLM-L6-v2 on SciFact train lists mined by our BM25) that check the loss
falls, that an interrupted run resumes to bit-identical weights, and that the saved
model encodes through its card exactly as it trained."""

import dataclasses
import json

import numpy as np
import pytest
import torch

from pyserini_ext.train.trainer import (ConfigError, Trainer, cached_backward, load_config, parse_config,
                                        step_batches, total_steps)


def smoke(name: str, **overrides) -> object:
    """A few steps on 8 lists, inputs cut short: seconds, not minutes."""
    raw = {
        "student": "all-minilm-l6-v2", "options": {"max_query_length": 16, "max_doc_length": 32},
        "data": {"dataset": "beir/scifact", "split": "train", "max_lists": 8,
                 "negatives": {"searcher": "bm25", "depth": 30, "count": 3, "seed": 0}},
        "loss": {"name": "info_nce", "tau": 0.05}, "batch_size": 4, "learning_rate": 1e-4, "warmup": 0.0,
        "epochs": 4, "checkpoint_every": 2, "seed": 0,
    }
    raw.update(overrides)
    return parse_config(raw, name)


KD_CONFIG_II = {"scorer": "xtr", "k_train_stack": [16, 64], "options": {"doc_length": 32},
                "teacher": "colbert-minilm-l6-v2", "temperature_learning_rate": 0.05,
                "loss": {"name": "listwise_kl", "tau": 0.05, "teacher_tau": 0.2, "teacher_scaling": "minmax"}}


@pytest.mark.parametrize("raw, message", [
    ({"student": "all-minilm-l6-v2", "lr": 1}, "unknown key 'lr'"),
    ({"student": "all-minilm-l6-v2", "data": {"negatives": {"deep": 3}}}, "unknown key 'data.negatives.deep'"),
    ({"student": "all-minilm-l6-v2", "loss": {"name": "hinge"}}, "key 'loss.name'"),
    ({"student": "all-minilm-l6-v2", "loss": {"name": "margin_mse"}}, "key 'teacher'"),
    ({"student": "all-minilm-l6-v2", "teacher": "colbert-minilm-l6-v2",
      "loss": {"name": "softmax_ce", "label_smothing": 0.1}}, "unknown key 'loss.label_smothing'"),
    ({"student": "all-minilm-l6-v2", "teacher": "colbert-minilm-l6-v2",
      "loss": {"name": "m3se", "positive": 1}}, "unknown key 'loss.positive'"),
    ({"student": "all-minilm-l6-v2", "student_layers": -1}, "key 'student_layers'"),
    ({"loss": {"name": "info_nce"}}, "missing key 'student'"),
    ({"student": "all-minilm-l6-v2", "batch_size": 0}, "key 'batch_size'"),
    ({"student": "colbert-minilm-l6-v2", "teacher": "colbert-minilm-l6-v2", "loss": {"name": "listwise_kl"},
      "k_train_stack": [32, 64]}, "key 'k_train_stack': .*needs scorer: xtr"),
    ({"student": "colbert-minilm-l6-v2", "teacher": "colbert-minilm-l6-v2", "loss": {"name": "listwise_kl"},
      "scorer": "xtr", "k_train": 64, "k_train_stack": [32, 64]}, "key 'k_train_stack'"),
    ({"student": "colbert-minilm-l6-v2", "loss": {"name": "info_nce"}, "scorer": "xtr",
      "k_train_stack": [32, 64]}, "key 'k_train_stack': stacks a list loss"),
    ({"student": "all-minilm-l6-v2", "teacher": "colbert-minilm-l6-v2", "loss": {"name": "listwise_kl", "tau": 0.1},
      "temperature_learning_rate": 0.01}, "key 'temperature_learning_rate': .*teacher_tau"),
    ({"student": "all-minilm-l6-v2", "teacher": "colbert-minilm-l6-v2", "loss": {"name": "softmax_ce"},
      "temperature_learning_rate": 0.01}, "key 'temperature_learning_rate'"),
])
def test_config_errors_name_the_file_and_key(raw, message):
    with pytest.raises(ConfigError, match=message) as err:
        parse_config(raw, "x", "training/x.yaml")
    assert "training/x.yaml" in str(err.value)


def test_every_shipped_config_parses():
    from pyserini_ext.encode.base import load_card
    from pyserini_ext.resources import resource_dir

    for path in sorted(resource_dir("training").glob("*.yaml")):
        config = load_config(path)
        for card in (config.student, config.init, config.teacher, config.output_card):
            if card:
                load_card(card)
        assert load_card(config.output_card).model.trained == config.name


def test_list_losses_see_each_query_against_its_own_list():
    from pyserini_ext.train.trainer import own_lists

    # query q against document j of list l has score 100 q + 10 l + j
    scores = torch.tensor([[100.0 * q + 10 * l + j for l in range(3) for j in range(2)] for q in range(3)])
    assert own_lists(scores, 2).tolist() == [[0, 1], [110, 111], [220, 221]]


def test_data_order_depends_only_on_seed_and_step():
    config = smoke("order", batch_size=3, accumulation=2)
    assert total_steps(20, config) == 4 * (20 // 6)
    epoch0 = np.concatenate([np.concatenate(step_batches(20, config, s)) for s in range(3)])
    assert len(set(epoch0.tolist())) == 18  # one epoch: no list twice, the remainder of 2 dropped
    assert all(len(b) == 3 for b in step_batches(20, config, 0))
    assert not np.array_equal(step_batches(20, config, 0)[0], step_batches(20, config, 3)[0])  # a new epoch reshuffles
    again = [np.concatenate(step_batches(20, config, s)) for s in range(6)]
    assert all(np.array_equal(a, np.concatenate(step_batches(20, config, s))) for s, a in enumerate(again))


def test_gradient_caching_gives_the_gradients_of_one_big_batch(minilm_path):
    """Without dropout the cached gradients are the big batch's; with dropout, replaying each
    chunk's random state gives exactly the gradients of the same chunked forward pass."""
    from pyserini_ext.encode.base import load_card
    from pyserini_ext.train import losses
    from pyserini_ext.train.models import trainable
    from pyserini_ext.train.trainer import _chunks

    card = load_card("all-minilm-l6-v2")
    card = dataclasses.replace(card, options=dataclasses.replace(card.options, max_doc_length=24, max_query_length=12))
    model = trainable(card, minilm_path, scale=20.0)
    queries = model.queries(["what causes scurvy", "vitamin c deficiency", "bone density in mice"])
    docs = model.documents(["Scurvy is caused by a lack of vitamin C.", "Mice were fed a diet.", "Bone loss.",
                            "Density of trabecular bone", "Ascorbic acid", "Unrelated text about stars"])

    def loss_of(q, d):
        return losses.info_nce(model.score(q, d, docs), torch.tensor([0, 4, 3]), tau=1.0)

    def gradients(run):
        model.zero_grad(set_to_none=True)
        torch.manual_seed(3)
        run()
        return {k: p.grad.clone() for k, p in model.named_parameters() if p.grad is not None}

    def worst(a, b):
        assert a.keys() == b.keys()
        # relative to the largest gradient: parameters that get almost none (unused positions) are noise
        scale = max(a[k].abs().max().item() for k in a)
        return max((a[k] - b[k]).abs().max().item() for k in a) / scale

    cached = lambda: cached_backward(model, [queries, docs], loss_of, chunk=2)  # noqa: E731
    model.eval()
    assert worst(gradients(lambda: loss_of(model(queries), model(docs)).backward()), gradients(cached)) < 1e-4
    model.train()
    chunked = lambda: loss_of(torch.cat([model(c) for c in _chunks(queries, 2)]),  # noqa: E731
                              torch.cat([model(c) for c in _chunks(docs, 2)])).backward()
    assert worst(gradients(chunked), gradients(cached)) < 1e-4


@pytest.mark.e2e
def test_loss_falls_and_the_model_encodes_as_trained(workdir, monkeypatch):
    from pyserini_ext.encode.dense import DenseDocumentEncoder

    monkeypatch.setenv("PYSERINI_EXT_WORK", str(workdir))
    # cut to 3 of MiniLM's 6 layers (student size): the cut model is the one saved and loaded
    config = smoke("smoke-falls", student_layers=3)
    trainer = Trainer(config, workdir, quiet=True)
    _clean(trainer)
    output = trainer.run()
    history = trainer.history
    assert len(history) == 8  # 8 lists / 4 per step x 4 epochs
    assert np.mean(history[-2:]) < 0.5 * np.mean(history[:2])
    # the saved model, loaded the way a card loads it, encodes exactly as the trained module
    texts = ["Vitamin C deficiency causes scurvy.", "A second, longer document about bone density in mice."]
    encoder = DenseDocumentEncoder(str(output), trainer.model.options)
    assert json.loads((output / "config.json").read_text())["num_hidden_layers"] == 3
    assert len(trainer.model.module.transformer.encoder.layer) == 3
    trainer.model.eval()
    with torch.no_grad():
        trained = trainer.model(trainer.model.documents(texts)).numpy()
    np.testing.assert_allclose(encoder.encode(texts), trained, atol=1e-5)
    _clean(trainer)


@pytest.mark.e2e
@pytest.mark.parametrize("student, overrides", [
    ("all-minilm-l6-v2", {"teacher": "colbert-minilm-l6-v2", "loss": {"name": "margin_mse"}, "score_scale": 32.0}),
    ("all-minilm-l6-v2", {"teacher": "colbert-minilm-l6-v2", "loss": {"name": "tct_inbatch_kl", "tau": 1.0},
                          "grad_cache_chunk": 4, "accumulation": 2, "batch_size": 2}),
    ("colbert-minilm-l6-v2", {"scorer": "xtr", "k_train": 64, "options": {"doc_length": 32}}),
    ("mrl-minilm-l6-v2", {"teacher": "colbert-minilm-l6-v2", "loss": {"name": "mrl_listwise"}}),
    # the XTR study's distillation configuration: stacked k_train, min-max teacher, learnt tau
    ("colbert-minilm-l6-v2", KD_CONFIG_II),
])
def test_interrupted_training_resumes_bit_exactly(workdir, monkeypatch, student, overrides):
    monkeypatch.setenv("PYSERINI_EXT_WORK", str(workdir))
    overrides = {"student": student, "epochs": 2, **overrides}
    straight = Trainer(smoke("smoke-straight", **overrides), workdir, quiet=True)
    _clean(straight)
    straight.run()
    interrupted = Trainer(smoke("smoke-resumed", **overrides), workdir, quiet=True)
    _clean(interrupted)
    assert interrupted.run(stop_after=2) is None
    assert interrupted.checkpoint_path.exists()
    resumed = Trainer(smoke("smoke-resumed", **overrides), workdir, quiet=True)
    resumed.run()
    assert resumed.history == straight.history
    a, b = straight.model.state_dict(), resumed.model.state_dict()
    assert a.keys() == b.keys() and all(torch.equal(a[k], b[k]) for k in a)
    if overrides.get("temperature_learning_rate"):
        assert torch.equal(straight.log_temperature, resumed.log_temperature)
        learnt = json.loads((resumed.output / "training.json").read_text())["learnt_tau"]
        assert learnt == pytest.approx(resumed.log_temperature.exp().item())
        assert abs(learnt - overrides["loss"]["tau"]) > 1e-5  # trained (4 steps: it went down, then back up)
    _clean(straight)
    _clean(resumed)


@pytest.mark.e2e
def test_a_checkpoint_that_cannot_be_written_says_so_and_keeps_the_last_one(workdir, monkeypatch):
    """A full disk made torch.save fail with "unexpected pos 207572352 vs 207572240" (CI, 2026-12-07).
    A file-size limit makes the same short write happen here: the error names the checkpoint and
    the free space, and the checkpoint already on disk is the one a rerun resumes from."""
    import resource
    import signal

    monkeypatch.setenv("PYSERINI_EXT_WORK", str(workdir))
    trainer = Trainer(smoke("smoke-full-disk", epochs=2), workdir, quiet=True)
    _clean(trainer)
    assert trainer.run(stop_after=2) is None
    before = trainer.checkpoint_path.read_bytes()
    trainer.step += 1  # a later state, so a successful write would differ
    limits = resource.getrlimit(resource.RLIMIT_FSIZE)
    handler = signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # the write fails with EFBIG, not a signal
    resource.setrlimit(resource.RLIMIT_FSIZE, (1 << 20, limits[1]))
    try:
        with pytest.raises(OSError, match=r"checkpoint\.pt: could not write the checkpoint at step 3 "
                                          r"\(\d+\.\d GiB free on its disk; the previous checkpoint is kept\)"):
            trainer.save_checkpoint()
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, limits)
        signal.signal(signal.SIGXFSZ, handler)
    assert trainer.checkpoint_path.read_bytes() == before
    assert sorted(p.name for p in trainer.state_dir.iterdir()) == ["checkpoint.pt"]  # no temporary left
    _clean(trainer)


def test_a_record_from_before_a_field_existed_is_not_stale():
    """A model recorded before k_train_stack (a tuple) existed counts as trained from the same
    config while the field is at its default; a record as JSON writes it compares equal."""
    from pyserini_ext.train.trainer import changed_inputs

    config = dataclasses.asdict(smoke("x"))
    recorded = json.loads(json.dumps({"config": config}))
    del recorded["config"]["k_train_stack"]
    assert changed_inputs(recorded, {"config": config, "cards": {}}) == []
    stacked = dataclasses.asdict(smoke("x", student="colbert-minilm-l6-v2", **KD_CONFIG_II))
    assert changed_inputs(json.loads(json.dumps({"config": stacked})), {"config": stacked, "cards": {}}) == []
    assert changed_inputs(recorded, {"config": stacked, "cards": {}}) != []


@pytest.mark.e2e
def test_a_trained_model_whose_config_holds_a_list_is_reused(workdir, monkeypatch, caplog):
    """training.json records the config as JSON, where k_train_stack's tuple comes back as a list:
    the same config must still count as unchanged (it was retrained on every run)."""
    import logging

    monkeypatch.setenv("PYSERINI_EXT_WORK", str(workdir))
    config = smoke("smoke-list-config", student="colbert-minilm-l6-v2", epochs=1, **KD_CONFIG_II)
    first = Trainer(config, workdir, quiet=True)
    _clean(first)
    output = first.run()
    written = (output / "training.json").stat().st_mtime_ns
    with caplog.at_level(logging.WARNING, logger="pyserini_ext.train.trainer"):
        assert Trainer(config, workdir, quiet=True).run() == output
    assert "trained from other inputs" not in caplog.text
    assert (output / "training.json").stat().st_mtime_ns == written
    _clean(first)


@pytest.mark.e2e
def test_the_stacked_xtr_loss_is_the_mean_of_its_single_k_losses(workdir, monkeypatch):
    """The first micro-batch's loss (dropout off) with k_train_stack [16, 256] is the mean of
    the losses of the same model with k_train 16 and with k_train 256, which differ."""
    monkeypatch.setenv("PYSERINI_EXT_WORK", str(workdir))
    base = {key: value for key, value in KD_CONFIG_II.items() if key != "k_train_stack"}

    def first_loss(**overrides) -> float:
        trainer = Trainer(smoke("smoke-stack", student="colbert-minilm-l6-v2", **base, **overrides), workdir, quiet=True)
        trainer.prepare()
        trainer.model.eval()
        return trainer.micro_batch_loss(step_batches(len(trainer.examples), trainer.config, 0)[0], 1.0)

    few, many = first_loss(k_train=16), first_loss(k_train=256)
    assert abs(few - many) > 1e-3
    assert first_loss(k_train_stack=[16, 256]) == pytest.approx((few + many) / 2, rel=1e-5)


@pytest.mark.e2e
def test_a_checkpoint_from_before_a_new_config_field_resumes(workdir, monkeypatch):
    """A checkpoint records the config it was written by; one written before a field existed
    (here: without k_train_stack) resumes when the field is at its default, to the weights of a
    straight run, and one written by another value of a field is still refused."""
    monkeypatch.setenv("PYSERINI_EXT_WORK", str(workdir))
    straight = Trainer(smoke("smoke-old-straight", epochs=2), workdir, quiet=True)
    _clean(straight)
    straight.run()
    interrupted = Trainer(smoke("smoke-old-checkpoint", epochs=2), workdir, quiet=True)
    _clean(interrupted)
    assert interrupted.run(stop_after=2) is None
    state = torch.load(interrupted.checkpoint_path, weights_only=True)
    del state["config"]["k_train_stack"]
    torch.save(state, interrupted.checkpoint_path)
    resumed = Trainer(smoke("smoke-old-checkpoint", epochs=2), workdir, quiet=True)
    resumed.run()
    assert resumed.history == straight.history
    assert all(torch.equal(a, b) for a, b in zip(straight.model.state_dict().values(), resumed.model.state_dict().values()))
    _clean(resumed)
    assert Trainer(smoke("smoke-old-checkpoint", epochs=2), workdir, quiet=True).run(stop_after=2) is None
    state = torch.load(resumed.checkpoint_path, weights_only=True)
    state["config"]["learning_rate"] = 3e-5
    torch.save(state, resumed.checkpoint_path)
    with pytest.raises(ValueError, match="different config"):
        Trainer(smoke("smoke-old-checkpoint", epochs=2), workdir, quiet=True).run()
    _clean(straight)
    _clean(resumed)


def _clean(trainer: Trainer) -> None:
    import shutil

    shutil.rmtree(trainer.state_dir, ignore_errors=True)
    shutil.rmtree(trainer.output, ignore_errors=True)


@pytest.mark.e2e
def test_bm25_lists_hold_a_judged_positive_and_unjudged_hard_negatives(workdir):
    from pyserini_ext.data.datasets import get_dataset
    from pyserini_ext.train.data import Negatives, mine_examples

    dataset = get_dataset("beir/scifact")
    qrels = dataset.qrels("train")
    examples = mine_examples(dataset, "train", Negatives("bm25", {}, 30, 3, 0), workdir)
    assert len(examples) == sum(1 for q in qrels.values() for rel in q.values() if rel > 0) == 919
    assert len({e.qid for e in examples}) == 809
    for e in examples:
        assert len(e.docids) == 4 and qrels[e.qid][e.docids[0]] > 0
        assert not set(e.docids[1:]) & set(qrels[e.qid]) and len(set(e.docids[1:])) == 3
    # the cache gives the same lists; another seed other negatives, the same positives
    assert mine_examples(dataset, "train", Negatives("bm25", {}, 30, 3, 0), workdir) == examples
    other = mine_examples(dataset, "train", Negatives("bm25", {}, 30, 3, 1), workdir)
    assert [e.docids[0] for e in other] == [e.docids[0] for e in examples]
    assert [e.docids[1:] for e in other] != [e.docids[1:] for e in examples]


@pytest.mark.parametrize("teacher", ["colbert-minilm-l6-v2", "all-minilm-l6-v2"])
def test_teacher_scores_are_the_teacher_familys_own_scores(teacher, tmp_path):
    """MaxSim for a colbert teacher, the inner product for a dense one: checked by plain loops."""
    from pyserini_ext.encode.base import load_card
    from pyserini_ext.train.data import Example, teacher_scores

    texts = {"a": "Vitamin C deficiency causes scurvy.", "b": "Bone density in mice fed a high-fat diet.",
             "c": "Stars form in molecular clouds."}
    examples = [Example("q1", "what causes scurvy", ("a", "b", "c")), Example("q2", "how do stars form", ("c", "a", "b"))]
    got = teacher_scores(teacher, examples, texts, tmp_path)
    card = load_card(teacher)
    queries = card.query_encoder().encode_batch([e.query for e in examples])
    docs = dict(zip(texts, card.document_encoder().encode(list(texts.values()))))
    if card.family.store == "tokens":
        expected = [[sum(max(float(q @ t) for t in docs[d]) for q in query) for d in e.docids]
                    for query, e in zip(queries, examples)]
    else:
        expected = [[float(query @ docs[d]) for d in e.docids] for query, e in zip(queries, examples)]
    np.testing.assert_allclose(got, expected, rtol=1e-5)
    assert got[0].argmax() == 0 and got[1].argmax() == 0  # the relevant document wins either way


def test_cached_teacher_scores_are_recomputed_when_the_teacher_card_changes(tmp_path, minilm_path):
    """The cache is keyed by what the teacher outputs (its card's identity), not its name: a card
    edited in place (here: documents cut at 2 word pieces) must not be served its old scores."""
    from pyserini_ext.train.data import Example, teacher_scores

    texts = {"a": "Vitamin C deficiency causes scurvy.", "b": "Bone density in mice fed a high-fat diet."}
    examples = [Example("q1", "what causes scurvy", ("a", "b"))]
    card = tmp_path / "teacher.yaml"

    def scores_with(max_doc_length):
        card.write_text(f"family: dense\nmodel: {{path: {minilm_path}}}\npooling: mean\nnormalize: true\n"
                        f"max_doc_length: {max_doc_length}\n")
        return teacher_scores(str(card), examples, texts, tmp_path / "work")

    full = scores_with(256)
    cut = scores_with(2)  # [CLS] and one word piece
    assert not np.allclose(full, cut)
    np.testing.assert_array_equal(scores_with(256), full)  # the first card's scores, from its own cache entry


def test_lists_mined_by_a_card_are_cached_by_what_the_card_is(tmp_path, minilm_path):
    """Negatives mined by a dense searcher (HN: by the trained student) depend on the card's
    weights and options, not its name: an edited card (or a retrained student) names another
    cache file, the same card the same file; BM25 lists keep their old name."""
    from pyserini_ext.data.datasets import get_dataset
    from pyserini_ext.train.data import Negatives, lists_path

    dataset = get_dataset("beir/scifact")
    card = tmp_path / "miner.yaml"

    def path_with(max_doc_length):
        card.write_text(f"family: dense\nmodel: {{path: {minilm_path}}}\npooling: mean\nnormalize: true\n"
                        f"max_doc_length: {max_doc_length}\n")
        negatives = Negatives("rerank", {"first_stage": {"searcher": "dense", "params": {"encoder": str(card)}}})
        assert negatives.cards() == [str(card)]
        return lists_path(dataset, "train", negatives, tmp_path)

    full = path_with(256)
    assert path_with(2) != full
    assert path_with(256) == full
    assert Negatives("bm25").cards() == []


@pytest.mark.e2e
def test_a_model_trained_by_another_config_of_the_same_name_is_retrained(workdir, monkeypatch, caplog):
    """A trained model is reused only for the inputs it was trained from: the same config (and
    the same student, teacher and initialisation cards); an edited config retrains it, warning."""
    import json
    import logging

    monkeypatch.setenv("PYSERINI_EXT_WORK", str(workdir))
    first = Trainer(smoke("smoke-edited", epochs=1), workdir, quiet=True)
    _clean(first)
    output = first.run()
    assert Trainer(smoke("smoke-edited", epochs=1), workdir, quiet=True).run() == output  # unchanged: reused
    assert json.loads((output / "training.json").read_text())["config"]["learning_rate"] == 1e-4
    edited = Trainer(smoke("smoke-edited", epochs=1, learning_rate=3e-5), workdir, quiet=True)
    with caplog.at_level(logging.WARNING, logger="pyserini_ext.train.trainer"):
        assert edited.run() == output
    assert json.loads((output / "training.json").read_text())["config"]["learning_rate"] == 3e-5
    assert "smoke-edited" in caplog.text and "learning_rate" in caplog.text
    _clean(edited)
