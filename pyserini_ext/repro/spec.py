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

Every problem names the file and the key; types and ranges are checked when the spec is
read (:mod:`pyserini_ext.schema`): ``expected`` and ``tolerance`` are finite numbers in
[0, 1], ``hits`` at least 1. ``precision`` (decimal places compared for an exact OK)
defaults to the number of decimals ``expected`` is written with (``5.0e-1``: 2).
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from pyserini_ext.config import read_text_file, read_yaml_mapping
from pyserini_ext.eval.metrics import UnknownMetricError, parse_metric
from pyserini_ext.paths import safe_name
from pyserini_ext.schema import InputError, checked, from_mapping
from pyserini_ext.search.ties import TIE_POLICIES


class SpecError(InputError):
    pass


@dataclass(frozen=True)
class Expectation:
    metric: str
    expected: float = checked(ge=0.0, le=1.0)  # every supported metric is a mean of values in [0, 1]
    tolerance: float = checked(ge=0.0, le=1.0)
    source: str = checked()
    precision: int = checked(ge=0, le=12)


@dataclass(frozen=True)
class Pipeline:
    searcher: str
    params: dict[str, Any] = field(default_factory=dict)
    hits: int = checked(1000, ge=1)
    remove_query: bool = False
    tie_policy: str = checked("docid", choices=TIE_POLICIES)
    seed: int = checked(0, ge=0)


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
    downloads: str = ""  # what the spec needs fetched first (large); `repro run --all` skips it without --downloads
    baseline: str | None = None  # another spec's name: significance marks compare against it


@dataclass(frozen=True)
class _SpecFile:
    """The keys of a spec file (``metrics`` is read separately: its keys are metric names)."""

    dataset: str
    split: str
    pipeline: Pipeline
    description: str = ""
    relevance_level: int = checked(1, ge=1)
    train: tuple[str, ...] = ()
    downloads: str = ""
    baseline: str = ""


_NUMBER = re.compile(r"[-+]?([0-9][0-9_]*)?(?:\.([0-9_]*))?(?:[eE]([-+]?[0-9]+))?")


def _decimals(raw_text: str, metric: str, value: float) -> int:
    """Decimals of ``expected`` as written in the file (YAML floats forget trailing zeros):
    ``0.3120`` has 4, ``5.0e-1`` (0.50) has 2."""
    match = re.search(rf"^\s*{re.escape(metric)}\s*:\s*\n(?:.*\n)*?\s*expected\s*:\s*([-+0-9._eE]+)",
                      raw_text, re.MULTILINE)
    written = _NUMBER.fullmatch(match.group(1)) if match else None
    if written is None:
        written = _NUMBER.fullmatch(repr(value))
    fraction = (written.group(2) or "").replace("_", "") if written else ""
    exponent = int(written.group(3)) if written and written.group(3) else 0
    return max(0, len(fraction) - exponent)


def parse_spec(path: Path | str) -> Spec:
    path = Path(path)
    text = read_text_file(path, SpecError)
    raw = read_yaml_mapping(path, SpecError, text)
    if "metrics" not in raw:
        raise SpecError(f"{path}: missing key 'metrics'")
    metrics_raw = raw.pop("metrics")
    if isinstance(raw.get("train"), str):
        raw["train"] = [raw["train"]]
    top = from_mapping(_SpecFile, raw, str(path), SpecError)

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
        decimals = None
        if isinstance(entry.get("expected"), float):
            decimals = _decimals(text, str(metric), entry["expected"])
        elif isinstance(entry.get("expected"), int) and not isinstance(entry.get("expected"), bool):
            decimals = 0
        metrics.append(from_mapping(Expectation, entry, str(path), SpecError, prefix=f"metrics.{metric}.",
                                    given={"metric": str(metric)}, defaults={"precision": decimals}))
    if top.baseline:
        try:
            safe_name(top.baseline, "baseline spec")
        except ValueError as err:
            raise SpecError(f"{path}: key 'baseline': {err}") from None
    return Spec(name=path.stem, path=path, description=top.description.strip(), dataset=top.dataset,
                split=top.split, pipeline=top.pipeline, relevance_level=top.relevance_level,
                metrics=tuple(metrics), train=top.train, downloads=top.downloads.strip(),
                baseline=top.baseline or None)
