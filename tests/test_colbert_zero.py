"""ColBERT-Zero's recipe (docs/colbert-zero.md): stage 1's unsupervised pairs, worked out by
hand on a tiny corpus, seeded, read without any label; the config checks; and a tiny
three-stage chain (pairs -> supervised InfoNCE -> KD) trained in order through ``init:``
cards, which resumes bit-exactly when interrupted in its second stage."""

import dataclasses
import json
import shutil
from types import SimpleNamespace

import pytest
import torch

from pyserini_ext.train.data import Unsupervised, document_pairs, unsupervised_pairs
from pyserini_ext.train.trainer import ConfigError, Trainer, ensure_trained, load_config, parse_config


def doc(docid, title, text):
    return SimpleNamespace(docid=docid, title=title, text=text)


def test_a_title_gives_a_title_to_text_pair_and_an_untitled_document_none():
    u = Unsupervised(corpora=["c"], spans=0)
    assert document_pairs("c", doc("d1", " Scurvy ", "Vitamin C deficiency. "), u) == [
        ("c/d1/title", "Scurvy", "Vitamin C deficiency.")]
    assert document_pairs("c", doc("d2", "", "Untitled text."), u) == []
    assert document_pairs("c", doc("d3", "A title alone", "  "), u) == []


def test_span_pairs_are_two_disjoint_spans_of_the_text():
    # 5 words, a 2-word query span and a 3-word document span: no word is left over, so
    # the pair is one of exactly two layouts, whichever span comes first.
    u = Unsupervised(corpora=["c"], titles=False, spans=1, query_words=2, doc_words=3)
    [(pid, query, passage)] = document_pairs("c", doc("d", "T", "a b c d e"), u)
    assert pid == "c/d/span0"
    assert (query, passage) in {("a b", "c d e"), ("d e", "a b c")}
    # a text shorter than both spans together gives no span pair
    assert document_pairs("c", doc("d", "T", "a b c d"), u) == []
    # longer texts: every pair is two contiguous runs of the text, of the asked lengths, not overlapping
    words = [f"w{i}" for i in range(40)]
    u = Unsupervised(corpora=["c"], titles=False, spans=50, query_words=4, doc_words=9, seed=3)
    for _, query, passage in document_pairs("c", doc("d", "", " ".join(words)), u):
        q, p = [int(w[1:]) for w in query.split()], [int(w[1:]) for w in passage.split()]
        assert q == list(range(q[0], q[0] + 4)) and p == list(range(p[0], p[0] + 9))
        assert not set(q) & set(p)


def test_span_pairs_are_seeded_per_document():
    text = " ".join(f"w{i}" for i in range(200))
    u = Unsupervised(corpora=["c"], titles=False, spans=3, query_words=8, doc_words=32, seed=0)
    first = document_pairs("c", doc("d", "", text), u)
    assert document_pairs("c", doc("d", "", text), u) == first
    assert len({p[1] for p in first}) == 3  # three different draws
    other_seed = document_pairs("c", doc("d", "", text), Unsupervised(**{**u.__dict__, "seed": 1}))
    assert [p[1:] for p in other_seed] != [p[1:] for p in first]
    assert [p[1:] for p in document_pairs("c", doc("e", "", text), u)] != [p[1:] for p in first]  # per docid


def _tiny_corpus(folder, docs):
    folder.mkdir(parents=True)
    with open(folder / "corpus.jsonl", "w") as f:
        for docid, title, text in docs:
            f.write(json.dumps({"_id": docid, "title": title, "text": text}) + "\n")
    return str(folder)


def test_pairs_of_several_corpora_read_no_label_and_are_cached(tmp_path, monkeypatch):
    from pyserini_ext.data.dataset import Dataset

    one = _tiny_corpus(tmp_path / "one", [("1", "Scurvy", "Vitamin C deficiency causes scurvy in sailors."),
                                          ("2", "", "An untitled note.")])
    two = _tiny_corpus(tmp_path / "two", [("A", "Stars", "Stars form in molecular clouds of gas and dust.")])

    def no_labels(*args, **kwargs):
        raise AssertionError("stage 1 read a label")

    for method in ("topics", "qrels", "qrels_path"):
        monkeypatch.setattr(Dataset, method, no_labels)
    u = Unsupervised(corpora=[one, two], titles=True, spans=1, query_words=2, doc_words=4)
    examples, texts = unsupervised_pairs(u, tmp_path / "work")
    ids = [e.qid for e in examples]
    assert ids == [f"{one}/1/title", f"{one}/1/span0", f"{two}/A/title", f"{two}/A/span0"]  # the note is too short
    assert [e.docids for e in examples] == [(i,) for i in ids]  # one document each: the pair's own text
    assert examples[0].query == "Scurvy" and texts[ids[0]] == "Vitamin C deficiency causes scurvy in sailors."
    assert examples[2].query == "Stars" and texts[ids[2]] == "Stars form in molecular clouds of gas and dust."
    [cached] = (tmp_path / "work" / "train").glob("pairs-*.jsonl")
    monkeypatch.setattr(Dataset, "docs", no_labels)  # the second call reads the cache only
    assert unsupervised_pairs(u, tmp_path / "work") == (examples, texts)
    assert len(cached.read_text().splitlines()) == 4


@pytest.mark.parametrize("data, loss, message", [
    ({"unsupervised": {"corpora": ["beir/scifact"], "spans": -1}}, "info_nce", "key 'data.unsupervised.spans'"),
    ({"unsupervised": {"corpora": ["no-such-corpus"]}}, "info_nce", r"key 'data.unsupervised.corpora\[0\]'"),
    ({"unsupervised": {"corpora": ["cacm"], "titles": False, "spans": 0}}, "info_nce", "no pair would be mined"),
    ({"unsupervised": {"corpora": ["cacm"], "span": 2}}, "info_nce", "unknown key 'data.unsupervised.span'"),
    ({"unsupervised": {"corpora": ["cacm"]}}, "margin_mse", "key 'loss.name'"),
])
def test_bad_unsupervised_settings_name_the_file_and_key(data, loss, message):
    raw = {"student": "colbert-minilm-l6-v2", "data": data, "loss": {"name": loss},
           "teacher": "colbert-minilm-l6-v2"}
    with pytest.raises(ConfigError, match=message) as err:
        parse_config(raw, "x", "training/x.yaml")
    assert "training/x.yaml" in str(err.value)


# --- the chain --------------------------------------------------------------------------------

SMOKE = {"student": "colbert-minilm-l6-v2", "options": {"doc_length": 32}, "scorer": "maxsim",
         "batch_size": 4, "learning_rate": 1e-4, "warmup": 0.0, "epochs": 1, "checkpoint_every": 1, "seed": 0}


def _chain(tmp_path, corpus):
    """Three stage configs and their output cards in temporary folders, found as shipped ones."""
    training, cards = tmp_path / "training", tmp_path / "cards"
    training.mkdir()
    cards.mkdir()
    lists = {"dataset": "beir/scifact", "split": "train", "max_lists": 8,
             "negatives": {"searcher": "bm25", "depth": 30, "count": 3, "seed": 0}}
    stages = {
        "smoke-cz-s1": {"data": {"unsupervised": {"corpora": [corpus], "query_words": 4, "doc_words": 12}},
                        "loss": {"name": "info_nce", "tau": 0.05}, "score_scale": 0.03125,
                        "batch_size": 8, "grad_cache_chunk": 4},  # all 8 pairs in one contrast, cached
        "smoke-cz-s2": {"init": "smoke-cz-s1-card", "data": lists, "loss": {"name": "info_nce", "tau": 0.05},
                        "score_scale": 0.03125, "epochs": 2},
        "smoke-cz-s3": {"init": "smoke-cz-s2-card", "data": lists, "teacher": "colbert-minilm-l6-v2",
                        "loss": {"name": "listwise_kl", "tau": 1.0}},
    }
    for name, stage in stages.items():
        (training / f"{name}.yaml").write_text(json.dumps({**SMOKE, **stage, "output_card": f"{name}-card"}))
        (cards / f"{name}-card.yaml").write_text(
            f"extends: colbert-minilm-l6-v2\nmodel: {{trained: {name}}}\ndoc_length: 32\n")
    return training, cards


@pytest.mark.e2e
def test_a_chain_of_stages_trains_in_order_and_resumes_bit_exactly_in_its_second_stage(
        workdir, tmp_path, monkeypatch):
    """CI's smoke of the chained pipeline: a few steps per stage, 32-piece documents."""
    from pyserini_ext import resources
    from pyserini_ext.paths import trained_model_dir

    corpus = _tiny_corpus(tmp_path / "corpus", [
        (str(i), f"Title number {i}", " ".join(f"word{i}x{j}" for j in range(20))) for i in range(4)])
    training, cards = _chain(tmp_path, corpus)
    own_dirs = resources.resource_dirs
    monkeypatch.setattr(resources, "resource_dirs",
                        lambda kind: [training] + own_dirs(kind) if kind == "training" else own_dirs(kind))
    monkeypatch.setenv("PYSERINI_EXT_CARDS", str(cards))
    monkeypatch.setenv("PYSERINI_EXT_WORK", str(workdir))
    names = ["smoke-cz-s1", "smoke-cz-s2", "smoke-cz-s3"]

    def clean(*stages):
        for name in stages:
            trainer = Trainer(load_config(name), workdir, quiet=True)
            shutil.rmtree(trainer.state_dir, ignore_errors=True)
            shutil.rmtree(trainer.output, ignore_errors=True)

    def final_state(name):  # checkpoint_every 1: the last checkpoint holds the final weights
        trainer = Trainer(load_config(name), workdir, quiet=True)
        return torch.load(trainer.checkpoint_path, weights_only=True)["model"]

    clean(*names)
    ensure_trained("smoke-cz-s3", workdir, quiet=True)  # trains s1, then s2 from it, then s3 from s2
    summaries = [json.loads((trained_model_dir(n, workdir) / "training.json").read_text()) for n in names]
    assert [s["config"]["name"] for s in summaries] == names
    assert [s["lists"] for s in summaries] == [8, 8, 8]  # 4 titles + 4 spans; the first 8 SciFact lists
    assert all(s["cpu_seconds_this_session"] > 0 for s in summaries)
    finished = {n: (trained_model_dir(n, workdir) / "training.json").stat().st_mtime_ns for n in names}
    assert finished["smoke-cz-s1"] < finished["smoke-cz-s2"] < finished["smoke-cz-s3"]
    straight = {n: final_state(n) for n in names}
    # each stage starts from the weights the one before it ended with
    for before, after in zip(names, names[1:]):
        trainer = Trainer(load_config(after), workdir, quiet=True)
        trainer.prepare()
        start = trainer.model.state_dict()
        assert all(torch.equal(start[k], straight[before][k]) for k in start), after

    # interrupted after one step of stage 2 (stage 1 kept), then the whole chain asked for again
    clean("smoke-cz-s2", "smoke-cz-s3")
    assert Trainer(load_config("smoke-cz-s2"), workdir, quiet=True).run(stop_after=1) is None
    ensure_trained("smoke-cz-s3", workdir, quiet=True)
    # stage 1, unchanged, is reused (its recorded config survives the JSON round trip)
    assert (trained_model_dir("smoke-cz-s1", workdir) / "training.json").stat().st_mtime_ns == finished["smoke-cz-s1"]
    for name in names:
        again = final_state(name)
        assert again.keys() == straight[name].keys()
        assert all(torch.equal(again[k], straight[name][k]) for k in again), name
    clean(*names)


def test_a_model_recorded_before_the_unsupervised_field_existed_is_not_stale():
    """``data.unsupervised`` was added after models were trained: a record without it, at its
    default, is the same config; a recorded value that differs from the config still is not."""
    from pyserini_ext.train.trainer import changed_inputs

    config = parse_config({"student": "colbert-minilm-l6-v2", "loss": {"name": "info_nce", "tau": 0.05}}, "x")
    inputs = {"config": dataclasses.asdict(config), "cards": {}}
    old = json.loads(json.dumps(inputs["config"]))  # as training.json holds it
    del old["data"]["unsupervised"]
    assert changed_inputs({"config": old}, inputs) == []
    old["data"]["split"] = "dev"
    assert changed_inputs({"config": old}, inputs) == ["data"]
    unsupervised = parse_config({"student": "colbert-minilm-l6-v2", "data": {"unsupervised": {"corpora": ["cacm"]}}}, "x")
    recorded = json.loads(json.dumps(dataclasses.asdict(unsupervised)))  # lists stay lists
    assert changed_inputs({"config": recorded}, {"config": dataclasses.asdict(unsupervised)}) == []
