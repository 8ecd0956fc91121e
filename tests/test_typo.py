"""The DL-Typo variance analysis on the real 60 query pairs."""

import math

import numpy as np
import pytest
import torch

from pyserini_ext.data.datasets import DL_TYPO_CLEAN, DL_TYPO_TYPO
from pyserini_ext.data.readers import read_topics
from pyserini_ext.encode.base import load_card
from pyserini_ext.eval.typo import plot_differences, typo_variance


@pytest.fixture(scope="module")
def encoder():
    return load_card("mrl-minilm-l6-v2").query_encoder()


def test_dl_typo_pairs_and_untrained_heads(encoder, tmp_path):
    clean, typo = read_topics(DL_TYPO_CLEAN.resolve()), read_topics(DL_TYPO_TYPO.resolve())
    assert len(clean) == len(typo) == 60 and clean["103970"] == "how long does amoxicillin work for"
    result = typo_variance(encoder, clean, typo)
    # Untrained heads: unit variances whatever the text, so every norm is sqrt(128) and no typo moves it.
    assert np.allclose(result.clean, math.sqrt(128)) and not result.differences.any()
    assert result.summary()["equal"] == 60
    png = plot_differences(result, tmp_path / "typo.png", "untrained")
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_differences_are_typo_minus_clean():
    encoder = load_card("mrl-minilm-l6-v2").query_encoder()
    generator = np.random.default_rng(1)
    with torch.no_grad():  # a variance head that responds to the text
        encoder.net.heads.var.weight.copy_(torch.from_numpy(generator.normal(0, 0.05, encoder.net.heads.var.weight.shape)))
    clean = {"a": "drug testing in animals", "b": "mobile homes for sale"}
    typo = {"b": "mobile omes for sale", "a": "drug teting in animals"}
    result = typo_variance(encoder, clean, typo)
    _, s2_typo = encoder.gaussians([typo["a"], typo["b"]])
    _, s2_clean = encoder.gaussians([clean["a"], clean["b"]])
    expected = np.linalg.norm(s2_typo, axis=1) - np.linalg.norm(s2_clean, axis=1)
    assert result.qids == ["a", "b"] and np.allclose(result.differences, expected) and expected.all()
    with pytest.raises(ValueError, match="unpaired: c"):
        typo_variance(encoder, clean, {**typo, "c": "extra"})


def test_typo_command_writes_figure_and_table(tmp_path, capsys):
    from pyserini_ext.cli import main

    assert main(["typo", "--encoder", "mrl-minilm-l6-v2", "--output", str(tmp_path / "fig.png")]) == 0
    assert "equal\t60" in capsys.readouterr().out
    lines = (tmp_path / "fig.tsv").read_text().splitlines()
    assert lines[0] == "qid\tclean\ttypo\tdifference" and len(lines) == 61
    assert lines[1] == "103970\t11.313708\t11.313708\t+0.000000"
