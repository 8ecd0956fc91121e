"""Regression specs: one YAML per reproduced condition.

    description: BM25, flat index ...
    dataset: beir/scifact          # a named dataset (pyserini_ext.data.DATASETS)
    split: test
    pipeline:
      searcher: bm25               # a named searcher (pyserini_ext.recipes.SEARCHERS)
      params: {k1: 0.9, b: 0.4}
      hits: 1000
      remove_query: true           # drop a hit whose docid equals the qid (Anserini -removeQuery)
      tie_policy: docid            # docid | reverse | shuffle (with seed)
    relevance_level: 1             # for binary metrics (RR, R, P, MAP)
    train: [scifact-colbert-teacher] # training configs (training/NAME.yaml) run first, unless trained
    baseline: scifact-bm25-flat    # optional: per-query paired t-test against this spec's run
    metrics:
      nDCG@10:
        expected: 0.6789
        tolerance: 0.0001
        source: where the expected value comes from (paper table, Pyserini page, MTEB)

Every problem names the file and the key. ``precision`` (decimal places compared
for an exact OK) defaults to the number of decimals ``expected`` is written with.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pyserini_ext.config import read_yaml_mapping
from pyserini_ext.eval.metrics import UnknownMetricError, parse_metric
from pyserini_ext.search.ties import TIE_POLICIES


class SpecError(ValueError):
    pass


@dataclass(frozen=True)
class Expectation:
    metric: str
    expected: float
    tolerance: float
    source: str
    precision: int


@dataclass(frozen=True)
class Pipeline:
    searcher: str
    params: dict[str, Any] = field(default_factory=dict)
    hits: int = 1000
    remove_query: bool = False
    tie_policy: str = "docid"
    seed: int = 0


@dataclass(frozen=True)
class Spec:
    name: str
    path: Path
    description: str
    dataset: str
    split: str
    pipeline: Pipeline
    relevance_level: int
    metrics: tuple[Expectation, ...]
    train: tuple[str, ...] = ()
    baseline: str | None = None  # another spec's name: significance marks compare against it


TOP_KEYS = {"description": False, "dataset": True, "split": True, "pipeline": True, "relevance_level": False,
            "metrics": True, "train": False, "baseline": False}
PIPELINE_KEYS = {"searcher", "params", "hits", "remove_query", "tie_policy", "seed"}
METRIC_KEYS = {"expected": True, "tolerance": True, "source": True, "precision": False}


def _decimals(raw_text: str, metric: str, value: float) -> int:
    """Decimals of ``expected`` as written in the file (YAML floats forget trailing zeros)."""
    match = re.search(rf"^\s*{re.escape(metric)}\s*:\s*\n(?:.*\n)*?\s*expected\s*:\s*([0-9.]+)", raw_text, re.MULTILINE)
    written = match.group(1) if match else repr(value)
    return len(written.split(".")[1]) if "." in written else 0


def parse_spec(path: Path | str) -> Spec:
    path = Path(path)
    text = path.read_text()
    raw = read_yaml_mapping(path, SpecError, text)
    _check_keys(path, "", raw, TOP_KEYS)

    pipeline_raw = raw["pipeline"]
    if not isinstance(pipeline_raw, dict):
        raise SpecError(f"{path}: key 'pipeline': expected a mapping")
    _check_keys(path, "pipeline.", pipeline_raw, {k: k == "searcher" for k in PIPELINE_KEYS})
    pipeline = Pipeline(**pipeline_raw)
    if pipeline.tie_policy not in TIE_POLICIES:
        raise SpecError(f"{path}: key 'pipeline.tie_policy': {pipeline.tie_policy!r} is not one of {', '.join(TIE_POLICIES)}")

    metrics_raw = raw["metrics"]
    if not isinstance(metrics_raw, dict) or not metrics_raw:
        raise SpecError(f"{path}: key 'metrics': expected a non-empty mapping of metric name to expectation")
    metrics = []
    for metric, entry in metrics_raw.items():
        try:
            parse_metric(str(metric))
        except UnknownMetricError as err:
            raise SpecError(f"{path}: key 'metrics.{metric}': {err}") from None
        if not isinstance(entry, dict):
            raise SpecError(f"{path}: key 'metrics.{metric}': expected a mapping with expected, tolerance, source")
        _check_keys(path, f"metrics.{metric}.", entry, METRIC_KEYS)
        for key in ("expected", "tolerance"):
            if not isinstance(entry[key], (int, float)) or isinstance(entry[key], bool):
                raise SpecError(f"{path}: key 'metrics.{metric}.{key}': expected a number, got {entry[key]!r}")
        precision = entry.get("precision", _decimals(text, str(metric), float(entry["expected"])))
        metrics.append(Expectation(str(metric), float(entry["expected"]), float(entry["tolerance"]),
                                   str(entry["source"]), int(precision)))
    train = raw.get("train", [])
    if isinstance(train, str):
        train = [train]
    if not isinstance(train, list) or not all(isinstance(t, str) for t in train):
        raise SpecError(f"{path}: key 'train': expected a training config name or a list of them, got {train!r}")
    baseline = raw.get("baseline")
    if baseline is not None and (not isinstance(baseline, str) or not re.fullmatch(r"[A-Za-z0-9][A-Za-z0-9._+-]*", baseline)):
        raise SpecError(f"{path}: key 'baseline': expected the name of another spec, got {baseline!r}")
    return Spec(
        baseline=baseline, train=tuple(train), name=path.stem, path=path, description=str(raw.get("description", "")).strip(),
        dataset=str(raw["dataset"]), split=str(raw["split"]), pipeline=pipeline,
        relevance_level=int(raw.get("relevance_level", 1)), metrics=tuple(metrics),
    )


def _check_keys(path: Path, prefix: str, raw: dict, keys: dict[str, bool]) -> None:
    for key, required in keys.items():
        if required and key not in raw:
            raise SpecError(f"{path}: missing key '{prefix}{key}'")
    for key in raw:
        if key not in keys:
            raise SpecError(f"{path}: unknown key '{prefix}{key}'; known: {', '.join(sorted(keys))}")
