"""Issue 14, defects 4, 6 and 10: specs, encoder cards and training configs are checked
field by field (type and range) when they are read, by one schema mechanism
(pyserini_ext.schema); every problem names the file and the key. YAML aliases, keys
written twice and absurd nesting are refused before anything expands."""

import signal
from pathlib import Path

import pytest

from pyserini_ext.encode.base import CardError, parse_card
from pyserini_ext.repro.spec import SpecError, parse_spec
from pyserini_ext.train.trainer import ConfigError, load_config

SPEC = """\
dataset: cacm
split: all
pipeline:
  searcher: bm25
  hits: 1000
metrics:
  MAP:
    expected: 0.3123
    tolerance: 0.001
    source: test
"""

CARD = """\
family: dense
model: {hub: sentence-transformers/all-MiniLM-L6-v2}
pooling: mean
normalize: true
max_doc_length: 256
"""

CONFIG = """\
student: all-minilm-l6-v2
loss: {name: info_nce, tau: 0.05}
data: {dataset: beir/scifact, split: train, negatives: {searcher: bm25, depth: 30, count: 3, seed: 0}}
batch_size: 8
learning_rate: 3.0e-5
warmup: 0.1
max_steps: 60
"""

BILLION_LAUGHS = """\
a: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]
b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]
e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]
f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]
g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]
h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g]
description: *h
"""


def write(tmp_path: Path, text: str, name: str) -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


def refuses(load, path: Path, error: type, key: str):
    with pytest.raises(error) as err:
        load(path)
    assert str(path) in str(err.value) and key in str(err.value), str(err.value)
    return str(err.value)


# --- defect 4: specs that cannot fail ---------------------------------------------------------

@pytest.mark.parametrize("old, new, key", [
    ("tolerance: 0.001", "tolerance: .inf", "metrics.MAP.tolerance"),
    ("tolerance: 0.001", "tolerance: -0.01", "metrics.MAP.tolerance"),
    ("tolerance: 0.001", "tolerance: .nan", "metrics.MAP.tolerance"),
    ("tolerance: 0.001", "tolerance: 2", "metrics.MAP.tolerance"),
    ("expected: 0.3123", "expected: .nan", "metrics.MAP.expected"),
    ("expected: 0.3123", "expected: 31.23", "metrics.MAP.expected"),
    ("expected: 0.3123", "expected: '0.3123'", "metrics.MAP.expected"),
    ("expected: 0.3123", "expected: true", "metrics.MAP.expected"),
    ("  MAP:", "  P@0:", "metrics.P@0"),
    ("hits: 1000", "hits: 0", "pipeline.hits"),
    ("hits: 1000", "hits: 7.5", "pipeline.hits"),
    ("hits: 1000", "remove_query: 'no'", "pipeline.remove_query"),
    ("split: all", "split: all\nrelevance_level: abc", "relevance_level"),
    ("split: all", "split: all\nrelevance_level: 0", "relevance_level"),
    ("split: all", "split: [all]", "split"),
    ("    source: test", "    source: test\n    precision: -1", "metrics.MAP.precision"),
    ("dataset: cacm", "dataset:", "dataset"),
])
def test_a_spec_field_of_the_wrong_type_or_range_is_refused(tmp_path, old, new, key):
    assert old in SPEC
    refuses(parse_spec, write(tmp_path, SPEC.replace(old, new), "spec.yaml"), SpecError, key)


@pytest.mark.parametrize("written, precision", [("5.0e-1", 2), ("0.5", 1), ("0.50", 2), ("3.123e-1", 4), ("1", 0)])
def test_precision_counts_the_decimals_of_the_value_written_in_exponent_form(tmp_path, written, precision):
    spec = parse_spec(write(tmp_path, SPEC.replace("expected: 0.3123", f"expected: {written}"), "spec.yaml"))
    assert spec.metrics[0].precision == precision and spec.metrics[0].expected == float(written)


def test_the_shipped_specs_still_read(tmp_path):
    from pyserini_ext.repro.runner import spec_paths

    for path in spec_paths():
        assert parse_spec(path).metrics


# --- defect 6: YAML alias bombs ---------------------------------------------------------------

def _alarm(seconds: int):
    def raise_timeout(*_):
        raise TimeoutError(f"still parsing after {seconds} s")
    signal.signal(signal.SIGALRM, raise_timeout)
    signal.alarm(seconds)


@pytest.mark.parametrize("load, error, name", [
    (parse_spec, SpecError, "spec.yaml"), (parse_card, CardError, "card.yaml"), (load_config, ConfigError, "cfg.yaml"),
])
def test_aliases_are_refused_before_they_expand(tmp_path, load, error, name):
    _alarm(10)
    try:
        message = refuses(load, write(tmp_path, BILLION_LAUGHS, name), error, "aliases")
    finally:
        signal.alarm(0)
    assert "line 2" in message  # the first alias


@pytest.mark.parametrize("text, problem", [
    (SPEC + "split: test\n", "'split' is written twice"),
    ("a: " + "[" * 5000 + "]" * 5000 + "\n", "nested"),
    ("a: " + "{b: " * 200 + "1" + "}" * 200 + "\n", "nested"),
])
def test_duplicate_keys_and_deep_nesting_are_refused(tmp_path, text, problem):
    refuses(parse_spec, write(tmp_path, text, "spec.yaml"), SpecError, problem)


def test_invalid_utf8_and_a_bom(tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_bytes(SPEC.encode().replace(b"source: test", b"source: t\xffst"))
    assert ":10:" in refuses(parse_spec, path, SpecError, "not UTF-8")
    path.write_bytes(b"\xef\xbb\xbf" + SPEC.encode())
    assert parse_spec(path).dataset == "cacm"


# --- defect 10: cards and training configs ------------------------------------------------------

@pytest.mark.parametrize("old, new, key", [
    ("normalize: true", "normalize: 'no'", "normalize"),
    ("max_doc_length: 256", "max_doc_length: -5", "max_doc_length"),
    ("max_doc_length: 256", "max_doc_length: 7.5", "max_doc_length"),
    ("max_doc_length: 256", "max_doc_length:", "max_doc_length"),
    ("family: dense", "family: [dense]", "family"),
    ("family: dense", "family: densest", "family"),
    ("pooling: mean", "batch_size: -1", "batch_size"),
    ("pooling: mean", "threads: two", "threads"),
    ("{hub: sentence-transformers/all-MiniLM-L6-v2}", "{hub: [a, b]}", "model.hub"),
    ("{hub: sentence-transformers/all-MiniLM-L6-v2}", "{trained: ../../x}", "model"),
    ("{hub: sentence-transformers/all-MiniLM-L6-v2}", "{python_package: 'os; rm'}", "model"),
])
def test_a_card_field_of_the_wrong_type_or_range_is_refused(tmp_path, old, new, key):
    assert old in CARD
    refuses(parse_card, write(tmp_path, CARD.replace(old, new), "card.yaml"), CardError, key)


def test_a_card_python_package_must_expose_get_model_path(tmp_path):
    card = parse_card(write(tmp_path, CARD.replace("{hub: sentence-transformers/all-MiniLM-L6-v2}",
                                                   "{python_package: json}"), "card.yaml"))
    with pytest.raises(CardError, match="get_model_path"):
        card.model.resolve()


@pytest.mark.parametrize("old, new, key", [
    ("learning_rate: 3.0e-5", "learning_rate: abc", "learning_rate"),
    ("learning_rate: 3.0e-5", "learning_rate: -1", "learning_rate"),
    ("learning_rate: 3.0e-5", "learning_rate:", "learning_rate"),
    ("learning_rate: 3.0e-5", "learning_rate: .nan", "learning_rate"),
    ("batch_size: 8", "batch_size: 7.5", "batch_size"),
    ("batch_size: 8", "batch_size: true", "batch_size"),
    ("warmup: 0.1", "warmup: 1.5", "warmup"),
    ("max_steps: 60", "max_steps: -3", "max_steps"),
    ("depth: 30", "depth: 0", "data.negatives.depth"),
    ("seed: 0}}", "seed: x}}", "data.negatives.seed"),
    ("split: train", "split: 7", "data.split"),
    ("student: all-minilm-l6-v2", "student: ../../evil", "student"),
    ("loss: {name: info_nce, tau: 0.05}", "loss: info_nce", "loss"),
])
def test_a_training_config_field_of_the_wrong_type_or_range_is_refused(tmp_path, old, new, key):
    assert old in CONFIG
    refuses(load_config, write(tmp_path, CONFIG.replace(old, new), "cfg.yaml"), ConfigError, key)


def test_a_config_written_with_yaml_1_2_exponents_reads_them_as_numbers(tmp_path):
    config = load_config(write(tmp_path, CONFIG.replace("3.0e-5", "1e-4"), "cfg.yaml"))
    assert config.learning_rate == 1e-4 and config.data.negatives.depth == 30


def test_one_schema_mechanism_checks_all_three():
    """Cards, specs and configs name their errors through the same base type."""
    from pyserini_ext.schema import InputError

    assert issubclass(SpecError, InputError) and issubclass(CardError, InputError)
    assert issubclass(ConfigError, InputError)
