"""QPP predictors against values worked out by hand on a five-document Lucene index,
correlations against textbook examples, and the MRL variance predictor on a real encoder."""

import math

import numpy as np
import pytest
import torch

from pyserini_ext.data.readers import Document
from pyserini_ext.eval.qpp import IndexStatistics, correlate, correlation_table, format_correlation_table, \
    lucene_predictors, mrl_predictor, term_predictors
from pyserini_ext.index.lucene import build_lucene_index

# Words that Porter stemming and the stopword list leave alone.
DOCS = {"d1": "lion lion tiger", "d2": "lion zebra", "d3": "tiger tiger tiger zebra", "d4": "cat",
        "d5": "lion cat zebra"}
N = 5


@pytest.fixture(scope="module")
def statistics(tmp_path_factory):
    index = build_lucene_index((Document(d, "", t) for d, t in DOCS.items()), tmp_path_factory.mktemp("qpp") / "idx",
                               quiet=True)
    return IndexStatistics(index)


def test_term_statistics_come_from_the_index(statistics):
    terms = statistics.query_terms("Lions, zebra and a cat; a unicorn and a lion again")
    # Stemmed, stopwords gone, duplicates once, out-of-vocabulary "unicorn" dropped.
    assert [(t.term, t.df, t.cf) for t in terms] == [("lion", 3, 4), ("zebra", 3, 3), ("cat", 2, 2)]
    assert statistics.num_docs == N


def test_predictors_match_hand_computed_values(statistics):
    got = term_predictors(statistics.query_terms("lion zebra cat unicorn"), N)
    # lion: df 3, cf 4, tfs (2, 1, 1); zebra: df 3, cf 3, tfs (1, 1, 1); cat: df 2, cf 2, tfs (1, 1).
    idf = [math.log(5 / 3), math.log(5 / 3), math.log(5 / 2)]
    scq = [(1 + math.log(4)) * math.log(8 / 3), (1 + math.log(3)) * math.log(8 / 3), (1 + math.log(2)) * math.log(7 / 2)]
    # zebra's and cat's weights are constant (all tf 1): variance 0. lion's weights are ln(8/3) * (1 + ln 2, 1, 1): variance ln(8/3)^2 * ln(2)^2 * var(1, 0, 0) = ... * 2/9.
    lion_var = math.log(8 / 3) ** 2 * math.log(2) ** 2 * 2 / 9
    # Co-occurrence: lion & zebra in d2, d5; lion & cat in d5; zebra & cat in d5.
    pmi = [math.log(5 * 2 / (3 * 3)), math.log(5 * 1 / (3 * 2)), math.log(5 * 1 / (3 * 2))]
    mean_idf = sum(idf) / 3
    expected = {
        "IDF-sum": sum(idf), "IDF-avg": mean_idf, "IDF-max": math.log(5 / 2),
        "IDF-std": math.sqrt(sum((v - mean_idf) ** 2 for v in idf) / 3),
        "SCQ-sum": sum(scq), "SCQ-avg": sum(scq) / 3, "SCQ-max": max(scq),
        "VAR-var-sum": lion_var, "VAR-var-avg": lion_var / 3, "VAR-var-max": lion_var,
        "VAR-std-sum": math.sqrt(lion_var), "VAR-std-avg": math.sqrt(lion_var) / 3, "VAR-std-max": math.sqrt(lion_var),
        "PMI-sum": sum(pmi), "PMI-avg": sum(pmi) / 3, "PMI-max": math.log(10 / 9),
    }
    assert set(got) == set(expected)
    for name, value in expected.items():
        assert got[name] == pytest.approx(value, abs=1e-12), name


def test_pairs_that_never_co_occur_and_empty_queries(statistics):
    # lion and cat co-occur only in d5; tiger and cat never: that pair has no finite PMI and is left out.
    got = term_predictors(statistics.query_terms("tiger cat"), N)
    assert got["PMI-sum"] == got["PMI-avg"] == got["PMI-max"] == 0.0
    assert got["IDF-sum"] == pytest.approx(math.log(5 / 2) + math.log(5 / 2))
    nothing = lucene_predictors(statistics, {"q1": "unicorn the", "q2": "tiger"})
    assert all(values["q1"] == 0.0 for values in nothing.values())
    assert nothing["IDF-avg"]["q2"] == pytest.approx(math.log(5 / 2))
    assert nothing["PMI-max"]["q2"] == 0.0 and nothing["IDF-std"]["q2"] == 0.0


def test_correlations_match_textbook_values():
    x = {"a": 1.0, "b": 2.0, "c": 3.0, "d": 4.0}
    y = {"a": 1.0, "b": 3.0, "c": 2.0, "d": 4.0}
    # Spearman: 1 - 6 * 2 / (4 * 15); Kendall: 5 concordant, 1 discordant of 6 pairs; Pearson: 4 / sqrt(5 * 5).
    assert correlate(x, y, "spearman") == pytest.approx(0.8)
    assert correlate(x, y, "kendall") == pytest.approx(2 / 3)
    assert correlate(x, y, "pearson") == pytest.approx(0.8)
    assert math.isnan(correlate({q: 1.0 for q in y}, y, "spearman"))
    with pytest.raises(KeyError, match="no prediction"):
        correlate({"a": 1.0}, y, "pearson")
    table = format_correlation_table(correlation_table({"P": x}, {"run": y}))
    assert table.splitlines()[0] == "reference run: run" and table.splitlines()[-1].split() == ["P", "+0.800", "+0.800",
                                                                                              "+0.667"]


def test_mrl_predictor_is_minus_the_variance_norm():
    from pyserini_ext.encode.base import load_card

    encoder = load_card("mrl-minilm-l6-v2").query_encoder()
    topics = {"q1": "how long does amoxicillin work for", "q2": "drug testing in animals"}
    # Untrained heads give every variance exactly 1: the norm is sqrt(k) = sqrt(128).
    assert mrl_predictor(encoder, topics) == pytest.approx({"q1": -math.sqrt(128), "q2": -math.sqrt(128)})
    generator = np.random.default_rng(0)
    with torch.no_grad():  # a variance head that responds to the text
        encoder.net.heads.var.weight.copy_(torch.from_numpy(generator.normal(0, 0.05, encoder.net.heads.var.weight.shape)))
    _, s2 = encoder.gaussians(list(topics.values()))
    predicted = mrl_predictor(encoder, topics)
    assert predicted["q1"] != predicted["q2"]
    assert predicted == pytest.approx({"q1": -np.sqrt((s2[0] ** 2).sum()), "q2": -np.sqrt((s2[1] ** 2).sum())})


@pytest.mark.e2e
def test_qpp_command_on_scifact_bm25(workdir, capsys):
    from pyserini_ext.cli import main

    assert main(["qpp", "--dataset", "beir/scifact", "--split", "test", "--reference", "scifact-bm25-flat",
                 "--work", str(workdir), "--quiet"]) == 0
    rows = {line.split()[0]: line.split()[1:] for line in capsys.readouterr().out.splitlines()
            if line.split() and line.split()[0].startswith(("PMI", "SCQ"))}
    assert rows["PMI-avg"] == ["+0.345", "+0.246", "+0.263"]  # the figures in docs/qpp.md
    assert rows["SCQ-sum"] == ["+0.024", "+0.060", "+0.020"]
    assert main(["qpp", "--dataset", "beir/scifact", "--split", "train", "--reference", "scifact-bm25-flat",
                 "--work", str(workdir)]) == 2  # a reference on another split is refused
