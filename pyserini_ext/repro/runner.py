"""Run regression specs end to end and give each metric a two-sided verdict.

* ``OK``                   equal to ``expected`` at the spec's precision;
* ``OK-within-tolerance``  off by no more than ``tolerance``;
* ``IMPROVED``             above ``expected + tolerance``: passes, but the spec should be
                           updated (an unexplained improvement is still a change);
* ``FAIL``                 below ``expected - tolerance``.

Work (indexes, runs) goes under a work folder, ``$PYSERINI_EXT_WORK`` or ``./work``;
indexes are reused across specs and runs.
"""

from __future__ import annotations

import json
import logging
import shlex
import time
from dataclasses import dataclass
from pathlib import Path

from pyserini_ext.data import resolve_dataset
from pyserini_ext.eval.metrics import evaluate
from pyserini_ext.paths import run_path, safe_name, work_dir
from pyserini_ext.recipes import build_searcher, workspace
from pyserini_ext.repro.spec import Expectation, Spec, parse_spec
from pyserini_ext.resources import resource_dir, resource_dirs
from pyserini_ext.search.run import Run, judged_self_matches, search_topics, write_trec_run
from pyserini_ext.search.ties import TieOrder

log = logging.getLogger(__name__)

REGRESSIONS_DIR = resource_dir("regressions")

OK, WITHIN, IMPROVED, FAIL = "OK", "OK-within-tolerance", "IMPROVED", "FAIL"


@dataclass(frozen=True)
class Verdict:
    spec: str
    expectation: Expectation
    measured: float

    @property
    def status(self) -> str:
        e = self.expectation
        if round(self.measured, e.precision) == round(e.expected, e.precision):
            return OK
        # A hair of slack so a difference equal to the tolerance is not failed by float noise.
        if abs(self.measured - e.expected) <= e.tolerance + 1e-12:
            return WITHIN
        return IMPROVED if self.measured > e.expected else FAIL

    @property
    def passed(self) -> bool:
        return self.status != FAIL


def spec_paths(directory: Path | None = None) -> list[Path]:
    """The specs in ``directory``; by default the built-in ones, then those plugins register."""
    folders = [directory] if directory is not None else resource_dirs("regressions")
    seen, paths = set(), []
    for folder in folders:
        for path in sorted(folder.glob("*.yaml")):
            if path.stem not in seen:  # a built-in name wins over a plugin's
                seen.add(path.stem)
                paths.append(path)
    return paths


def find_spec(name_or_path: str, directory: Path | None = None) -> Spec:
    """A spec by name (built-in, then plugins') or by path to a ``.yaml`` file."""
    path = Path(name_or_path)
    if path.suffix != ".yaml":
        safe_name(name_or_path, "regression spec")
        found = [p for p in spec_paths(directory) if p.stem == name_or_path]
        if not found:
            known = ", ".join(p.stem for p in spec_paths(directory))
            raise FileNotFoundError(f"no regression spec {name_or_path!r}; known: {known}")
        path = found[0]
    return parse_spec(path)


def commands(spec: Spec, workdir: Path | None = None) -> list[str]:
    """The CLI commands that reproduce ``spec`` step by step."""
    p, q = spec.pipeline, shlex.quote
    work = f"--work {q(str(workdir or work_dir()))}"
    params = "".join(f" --param {q(f'{k}={_flow(v)}')}" for k, v in p.params.items())
    run_file = q(str(run_path(workdir or work_dir(), spec.name)))
    metrics = " ".join(f"-m {q(e.metric)}" for e in spec.metrics)
    dataset = q(spec.dataset)
    return [f"pyserini-ext train {name} {work}" for name in spec.train] + [
        f"pyserini-ext index {p.searcher} --dataset {dataset}{params} {work}",
        f"pyserini-ext search {p.searcher} --dataset {dataset} --split {q(spec.split)}{params} --hits {p.hits} "
        f"--tie-policy {p.tie_policy} --seed {p.seed}{' --remove-query' if p.remove_query else ''} "
        f"--output {run_file} {work}",
        f"pyserini-ext eval --dataset {dataset} --split {q(spec.split)} --run {run_file} {metrics} "
        f"--relevance-level {spec.relevance_level}",
    ]


def _flow(value) -> str:
    """A parameter value as ``--param`` reads it back (YAML): scalars bare, lists and maps as JSON."""
    return json.dumps(value) if isinstance(value, (list, dict)) else str(value)


def spec_run(spec: Spec, workdir: Path | None = None, quiet: bool = False) -> Run:
    """The spec's run over its split's topics, ordered, and written to ``runs/NAME.txt`` under the work folder."""
    workdir = workdir or work_dir()
    if spec.train:
        from pyserini_ext.train.trainer import ensure_trained

        for name in spec.train:
            ensure_trained(name, workdir, quiet)
    p = spec.pipeline
    ws = workspace(spec.dataset, workdir, TieOrder(p.tie_policy, p.seed), quiet)
    searcher = build_searcher(p.searcher, p.params, ws)
    if p.remove_query:
        warn_remove_query(ws.dataset.qrels(spec.split), f"{spec.name} ({ws.dataset.name} {spec.split})")
    run = search_topics(searcher, ws.dataset.topics(spec.split), p.hits, p.remove_query, ws.ties)
    write_trec_run(run, run_path(workdir, spec.name), tag=spec.name)
    return run


def warn_remove_query(qrels, what: str) -> int:
    """Log how many judged-relevant documents ``remove_query`` drops (docid == qid), if any.

    BEIR's ArguAna and Quora judge a query's own document as not relevant and remove it
    (Anserini's ``-removeQuery``); elsewhere such a pair may be a real judgement (CISI has 7).
    """
    dropped = judged_self_matches(qrels)
    if dropped:
        log.warning("%s: remove_query drops %d judged-relevant document(s) whose docid equals the query id; "
                    "they can no longer be retrieved", what, dropped)
    return dropped


def run_spec(spec: Spec, workdir: Path | None = None, quiet: bool = False) -> list[Verdict]:
    started = time.perf_counter()
    run = spec_run(spec, workdir, quiet)
    qrels = resolve_dataset(spec.dataset).qrels(spec.split)
    measured = evaluate(run, qrels, [e.metric for e in spec.metrics], spec.relevance_level)
    log.info("%s: %s in %.0f s", spec.name, measured, time.perf_counter() - started)
    return [Verdict(spec.name, e, measured[e.metric]) for e in spec.metrics]


def format_table(verdicts: list[Verdict]) -> str:
    rows = [("spec", "metric", "expected", "measured", "tolerance", "verdict")]
    for v in verdicts:
        e = v.expectation
        rows.append((v.spec, e.metric, f"{e.expected:.{e.precision}f}", f"{v.measured:.{max(e.precision, 4)}f}",
                     f"{e.tolerance:g}", v.status))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)


def format_page(specs: list[Spec]) -> str:
    """A Markdown reproduction page: per spec, what it is, the commands, and the expected values."""
    lines = ["# Reproductions", "",
             "Generated by `pyserini-ext repro page --markdown` from `regressions/*.yaml`; do not edit by hand.",
             "Run one condition with `pyserini-ext repro run NAME`, all with `make demo`.", ""]
    for spec in specs:
        lines += [f"## {spec.name}", "", spec.description, "", "```bash"]
        lines += commands(spec, Path("work"))
        lines += ["```", "", "| metric | expected | tolerance | source |", "| --- | --- | --- | --- |"]
        lines += [f"| {e.metric} | {e.expected:.{e.precision}f} | {e.tolerance:g} | {' '.join(e.source.split())} |"
                  for e in spec.metrics]
        lines.append("")
    return "\n".join(lines)
