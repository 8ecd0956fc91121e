"""Query-performance prediction (QPP): pre-retrieval predictors from a Lucene index's
statistics, MRL's variance predictor, and their correlation with per-query effectiveness.

Statistics come from Pyserini's ``LuceneIndexReader``: the query is analysed with the
index's analyser (Anserini's default: Porter stemming, stopwords removed); each
distinct in-vocabulary term's postings give ``df_t`` (documents containing t),
``cf_t`` (its occurrences in the collection) and ``tf_{t,d}``; ``N`` is the number of
documents. Natural logarithms throughout.

* ``IDF(t) = ln(N / df_t)``; aggregated by sum, avg, max and std (population).
* ``SCQ(t) = (1 + ln cf_t) * ln(1 + N / df_t)`` (collection-query similarity; Zhao,
  Scholer & Tsegay, ECIR 2008); sum, avg, max.
* ``VAR(t)``: the spread, over the documents containing t, of the weight
  ``w(t, d) = (1 + ln tf_{t,d}) * ln(1 + N / df_t)`` (same paper), as a standard
  deviation (``VAR-std``) and as a variance (``VAR-var``), population; sum, avg, max.
* ``PMI(t1, t2) = ln(N * df_{t1,t2} / (df_t1 * df_t2))``, document co-occurrence,
  over pairs of distinct query terms; avg, max, sum. A pair that never co-occurs has
  no finite PMI and is left out.
* ``MRL``: ``-||s2_Q||_2``, minus the norm of the query's variance vector under an MRL
  encoder (higher variance: a less certain query, predicted to do worse).

Terms absent from the index are dropped (their IDF is infinite); a query with no
in-vocabulary term, or PMI over fewer than two terms or no co-occurring pair, gets 0.
Duplicate query terms count once.

:func:`qpp_study` records its table in ``<work>/qpp/<dataset>.<split>.json`` (with the date, the
machine, the commit and the command), which ``pyserini-ext repro page`` shows as a table.
"""

from __future__ import annotations

import datetime as dt
import itertools
import json
import math
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Mapping

import numpy as np
from scipy import stats as scipy_stats

# Predictor names in the order tables print them.
LUCENE_PREDICTORS = (
    "SCQ-sum", "SCQ-avg", "SCQ-max",
    "VAR-std-sum", "VAR-std-avg", "VAR-std-max",
    "VAR-var-sum", "VAR-var-avg", "VAR-var-max",
    "IDF-sum", "IDF-avg", "IDF-max", "IDF-std",
    "PMI-avg", "PMI-max", "PMI-sum",
)
MRL_PREDICTOR = "MRL-var-norm"
CORRELATIONS = ("spearman", "pearson", "kendall")


@dataclass(frozen=True)
class TermStats:
    term: str
    df: int
    cf: int
    tfs: np.ndarray  # tf_{t,d} for each document containing t
    docs: frozenset[int]  # internal Lucene ids of those documents


class IndexStatistics:
    """Term statistics of a Lucene index, analysed and cached per term."""

    def __init__(self, index_dir: str):
        from pyserini.index.lucene import LuceneIndexReader

        self.reader = LuceneIndexReader(str(index_dir))
        self.num_docs = int(self.reader.stats()["documents"])
        self._cache: dict[str, TermStats | None] = {}

    def query_terms(self, query: str) -> list[TermStats]:
        """The query's distinct analysed terms that occur in the index, in query order."""
        terms = dict.fromkeys(self.reader.analyze(query))
        found = (self.term(t) for t in terms)
        return [s for s in found if s is not None]

    def term(self, term: str) -> TermStats | None:
        if term not in self._cache:
            # analyzer=None: the term is already analysed; look it up as it is.
            postings = self.reader.get_postings_list(term, analyzer=None)
            if not postings:
                self._cache[term] = None
            else:
                tfs = np.array([p.tf for p in postings], dtype=np.float64)
                self._cache[term] = TermStats(term, len(postings), int(tfs.sum()), tfs,
                                              frozenset(p.docid for p in postings))
        return self._cache[term]


def _aggregate(values: list[float], how: str) -> float:
    if not values:
        return 0.0
    return {"sum": math.fsum, "avg": lambda v: math.fsum(v) / len(v), "max": max,
            "std": lambda v: float(np.std(v))}[how](values)


def term_predictors(terms: list[TermStats], num_docs: int) -> dict[str, float]:
    """Every Lucene-statistics predictor for one query's terms (see the module docstring)."""
    n = num_docs
    idf = [math.log(n / t.df) for t in terms]
    scq = [(1 + math.log(t.cf)) * math.log(1 + n / t.df) for t in terms]
    weights = [(1 + np.log(t.tfs)) * math.log(1 + n / t.df) for t in terms]
    var_var = [float(np.var(w)) for w in weights]
    var_std = [math.sqrt(v) for v in var_var]
    pmi = []
    for a, b in itertools.combinations(terms, 2):
        both = len(a.docs & b.docs)
        if both:
            pmi.append(math.log(n * both / (a.df * b.df)))
    values = {"SCQ": scq, "VAR-std": var_std, "VAR-var": var_var, "IDF": idf, "PMI": pmi}
    out = {}
    for name in LUCENE_PREDICTORS:
        family, _, how = name.rpartition("-")
        out[name] = _aggregate(values[family], how)
    return out


def lucene_predictors(statistics: IndexStatistics, topics: Mapping[str, str]) -> dict[str, dict[str, float]]:
    """``{predictor: {qid: value}}`` for every Lucene-statistics predictor."""
    per_query = {qid: term_predictors(statistics.query_terms(text), statistics.num_docs)
                 for qid, text in topics.items()}
    return {name: {qid: values[name] for qid, values in per_query.items()} for name in LUCENE_PREDICTORS}


def variance_norms(query_encoder, texts: list[str]) -> np.ndarray:
    """``||s2_Q||_2`` per text under an MRL query encoder (anything with ``gaussians(texts)``)."""
    _, s2 = query_encoder.gaussians(texts)
    return np.linalg.norm(s2, axis=1)


def mrl_predictor(query_encoder, topics: Mapping[str, str]) -> dict[str, float]:
    qids = list(topics)
    norms = variance_norms(query_encoder, [topics[q] for q in qids])
    return {qid: -float(v) for qid, v in zip(qids, norms)}


_CORRELATE: dict[str, Callable] = {
    "spearman": scipy_stats.spearmanr,
    "pearson": scipy_stats.pearsonr,
    "kendall": scipy_stats.kendalltau,  # tau-b, which accounts for ties
}


def correlate(predicted: Mapping[str, float], effectiveness: Mapping[str, float], method: str) -> float:
    """Correlation over the queries of ``effectiveness`` (a query the predictor lacks is an error).

    NaN when either side is constant: a constant predictor predicts nothing.
    """
    qids = list(effectiveness)
    missing = [q for q in qids if q not in predicted]
    if missing:
        raise KeyError(f"no prediction for {len(missing)} evaluated queries, e.g. {missing[0]!r}")
    x = np.array([predicted[q] for q in qids], dtype=np.float64)
    y = np.array([effectiveness[q] for q in qids], dtype=np.float64)
    if np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    return float(_CORRELATE[method](x, y)[0])


def correlation_table(predictors: Mapping[str, Mapping[str, float]],
                      references: Mapping[str, Mapping[str, float]]) -> list[tuple[str, str, dict[str, float]]]:
    """Rows ``(predictor, reference, {method: correlation})`` for every pair."""
    return [(name, ref, {m: correlate(predicted, effectiveness, m) for m in CORRELATIONS})
            for name, predicted in predictors.items() for ref, effectiveness in references.items()]


def format_correlation_table(rows: list[tuple[str, str, dict[str, float]]]) -> str:
    """One block per reference run: a predictor per row, a correlation per column."""
    blocks = []
    for ref in dict.fromkeys(ref for _, ref, _ in rows):
        lines = [["predictor", *CORRELATIONS]]
        lines += [[name, *("n/a" if math.isnan(values[m]) else f"{values[m]:+.3f}" for m in CORRELATIONS)]
                  for name, r, values in rows if r == ref]
        widths = [max(len(line[i]) for line in lines) for i in range(len(lines[0]))]
        text = ["  ".join(c.ljust(w) for c, w in zip(line, widths)).rstrip() for line in lines]
        text.insert(1, "  ".join("-" * w for w in widths))
        blocks.append(f"reference run: {ref}\n" + "\n".join(text))
    return "\n\n".join(blocks)


def write_qpp_record(path: Path, header: str, rows: list[tuple[str, str, dict[str, float]]], **about) -> Path:
    """Record a correlation table as JSON (a NaN, a constant predictor, as null), with the date, the
    machine and the commit it was measured on, and ``about`` (dataset, split, metric, command...)."""
    from pyserini_ext.repro.results import commit, machine
    from pyserini_ext.store.atomic import write_atomic

    record = {"study": "qpp", "header": header, **about,
              "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"), "machine": machine(),
              "commit": commit(), "correlations": list(CORRELATIONS),
              "rows": [{"predictor": name, "reference": ref,
                        **{m: None if math.isnan(values[m]) else values[m] for m in CORRELATIONS}}
                       for name, ref, values in rows]}
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    write_atomic(path, json.dumps(record, indent=1) + "\n")  # a reader never sees half a record
    return path


def qpp_study(dataset, split: str, references: list[str], metric: str = "nDCG@10", mrl_encoder: str | None = None,
              work: Path | None = None, quiet: bool = False,
              command: str | None = None) -> tuple[str, list[tuple[str, str, dict[str, float]]], Path]:
    """Every predictor against each reference spec's per-query ``metric`` on ``dataset``'s ``split``.

    Returns a one-line description, :func:`correlation_table`'s rows and the record written of
    them (``<work>/qpp/<dataset>.<split>.json``, replacing the previous one; ``command``, the
    command line that asked for it, goes in the record). The Lucene
    statistics come from the dataset's BM25 index (built in the work folder if missing).
    """
    from pyserini_ext.paths import safe_name
    from pyserini_ext.data import resolve_dataset
    from pyserini_ext.encode.base import load_card
    from pyserini_ext.eval.metrics import evaluate
    from pyserini_ext.recipes import bm25_index, workspace
    from pyserini_ext.repro.runner import find_spec, spec_run

    ws = workspace(dataset, work, quiet=quiet)
    topics, qrels = ws.dataset.topics(split), ws.dataset.qrels(split)
    effectiveness = {}
    for name in references:
        spec = find_spec(name)
        if (resolve_dataset(spec.dataset).name, spec.split) != (ws.dataset.name, split):
            raise ValueError(f"reference spec {name!r} runs on {spec.dataset} {spec.split}, not {ws.dataset.name} {split}")
        run = spec_run(spec, ws.workdir, quiet)
        effectiveness[spec.name] = evaluate(run, qrels, [metric], spec.relevance_level, per_query=True)[metric]
    predictors = lucene_predictors(IndexStatistics(bm25_index(ws)), topics)
    if mrl_encoder:
        predictors["MRL-var-norm"] = mrl_predictor(load_card(mrl_encoder).query_encoder(), topics)
    header = (f"{ws.dataset.name} {split}: correlation of each predictor with per-query {metric} "
              f"({len(qrels)} judged queries); n/a = constant predictor")
    rows = correlation_table(predictors, effectiveness)
    record = write_qpp_record(
        ws.workdir / "qpp" / f"{ws.dataset.slug}.{safe_name(split, 'split')}.json", header, rows,
        dataset=ws.dataset.name, split=split, metric=metric, references=list(effectiveness), judged_queries=len(qrels),
        command=command)
    return header, rows, record
