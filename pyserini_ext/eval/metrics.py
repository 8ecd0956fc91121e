"""Effectiveness metrics through pytrec_eval, with the field's definitions.

Names are the ones papers print: ``nDCG@10``, ``RR@10`` (MS MARCO: reciprocal rank
of the first relevant document in the top 10, else 0), ``R@100``, ``R@1000``,
``P@30``, ``MAP``, ``MAP@1000``. Binary metrics (RR, R, P, MAP) count a document
as relevant when its grade is at least ``relevance_level`` (TREC DL uses 2; BEIR
and most others 1), and the level is always explicit. nDCG uses the graded
judgements as trec_eval does.

Scores are averaged over every query in the qrels, a query missing from the run
counting as 0 (trec_eval ``-c``), so a run cannot look better by skipping queries.
"""

from __future__ import annotations

import logging
import re
from dataclasses import dataclass

import pytrec_eval

from pyserini_ext.data.readers import Qrels
from pyserini_ext.search.run import Run, run_as_dict

log = logging.getLogger(__name__)

_METRIC = re.compile(r"^(nDCG|RR|R|P|MAP)(?:@([1-9][0-9]{0,8}))?$")  # a cutoff of 0 aborts trec_eval
SUPPORTED = "nDCG@k, RR@k, RR, R@k, P@k, MAP, MAP@k"


class UnknownMetricError(ValueError):
    pass


@dataclass(frozen=True)
class Metric:
    name: str
    family: str
    cutoff: int | None

    @property
    def is_binary(self) -> bool:
        return self.family != "nDCG"

    @property
    def trec_eval_measure(self) -> str:
        """The measure as trec_eval's ``-m`` takes it; pytrec_eval reports it with ``.`` as ``_``."""
        if self.family == "RR":
            return "recip_rank"  # cut by truncating the run, as MS MARCO's script does
        if self.family == "MAP" and self.cutoff is None:
            return "map"
        name = {"nDCG": "ndcg_cut", "R": "recall", "P": "P", "MAP": "map_cut"}[self.family]
        return f"{name}.{self.cutoff}"


# trec_eval's spellings (``ndcg_cut_10``, ``ndcg_cut.10``, ``recall_100``, ``P_30``, ``map``,
# ``map_cut_100``, ``recip_rank``) and ours in any case (``ndcg@10``, ``mrr@10``), mapped to ours.
_ALIASES = re.compile(r"^(ndcg_cut|ndcg|recall|r|p|map_cut|map|recip_rank|mrr|rr)(?:[._@](\d+))?$")
_FAMILIES = {"ndcg_cut": "nDCG", "ndcg": "nDCG", "recall": "R", "r": "R", "p": "P", "map_cut": "MAP", "map": "MAP",
             "recip_rank": "RR", "mrr": "RR", "rr": "RR"}


def canonical_metric(name: str) -> str:
    """Our name for ``name``, which may be spelt as trec_eval spells it, in any case."""
    match = _ALIASES.match(name.strip().lower())
    if not match:
        return name
    family, cutoff = _FAMILIES[match.group(1)], match.group(2)
    if match.group(1) == "recip_rank" and cutoff is None:
        return "RR"  # trec_eval's recip_rank: the whole list, no cut-off
    return f"{family}@{int(cutoff)}" if cutoff else family


def parse_metric(name: str) -> Metric:
    canonical = canonical_metric(name)
    match = _METRIC.match(canonical)
    if not match or (match.group(1) in ("nDCG", "R", "P") and match.group(2) is None) or \
            (match.group(1) == "RR" and match.group(2) is None and canonical != "RR"):
        raise UnknownMetricError(f"unknown metric {name!r}; supported: {SUPPORTED} (or trec_eval's spellings: "
                                 f"ndcg_cut_10, recall_100, P_30, map, map_cut_1000, recip_rank)")
    return Metric(canonical, match.group(1), int(match.group(2)) if match.group(2) else None)


def evaluate(run: Run, qrels: Qrels, metrics: list[str], relevance_level: int = 1,
             per_query: bool = False) -> dict[str, float] | dict[str, dict[str, float]]:
    """Mean of each metric over the qrels' queries; with ``per_query``, ``{metric: {qid: value}}``.

    The run's lists must already be in their final order (see ``order_run``).
    """
    parsed = [parse_metric(m) for m in metrics]
    run_dict = run_as_dict(run)
    if run_dict and qrels and not set(run_dict) & set(qrels):
        log.warning("none of the run's %d queries is judged in the qrels (%d queries; e.g. run %r, qrels %r): "
                    "every score is 0; are the run and the qrels from the same topic set?",
                    len(run_dict), len(qrels), next(iter(run_dict)), next(iter(qrels)))
    results: dict[str, dict[str, float]] = {}
    for given, metric in zip(metrics, parsed):  # keyed by the caller's spelling
        measure = metric.trec_eval_measure
        evaluated_run = run_dict
        if metric.family == "RR" and metric.cutoff is not None:
            evaluated_run = {q: dict(list(d.items())[: metric.cutoff]) for q, d in run_dict.items()}
        level = relevance_level if metric.is_binary else 1
        evaluator = pytrec_eval.RelevanceEvaluator(qrels, {measure}, relevance_level=level)
        scores = evaluator.evaluate(evaluated_run)
        key = measure.replace(".", "_")
        results[given] = {qid: scores.get(qid, {}).get(key, 0.0) for qid in qrels}
    if per_query:
        return results
    return {name: sum(values.values()) / len(values) if values else 0.0 for name, values in results.items()}
