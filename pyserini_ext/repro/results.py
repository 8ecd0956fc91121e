"""What ``repro run`` measured, kept: one JSON file per spec run, and runs that survive a broken spec.

A record holds the spec (name, dataset, description, SHA-256 of its file, so a page can say the
spec changed since it last ran), every metric's expected value, tolerance, source, measured value
and verdict, the per-query scores (what a significance test against a baseline needs), the
commands that reproduce it, and when, where (machine) and from which commit it was measured, in
how many seconds. A spec that could not run is recorded too, with the reason, as ERROR.

Records go to ``<results folder>/<spec>/<UTC time>.json``; the results folder is ``results/``
under the work folder unless ``repro run --results DIR`` says otherwise. The newest record of a
spec is its current state.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import os
import platform
import subprocess
import time
import traceback
from dataclasses import dataclass, field
from pathlib import Path

from pyserini_ext.data import resolve_dataset
from pyserini_ext.eval.metrics import evaluate
from pyserini_ext.paths import safe_name, work_dir
from pyserini_ext.repro.runner import Verdict, commands, spec_run
from pyserini_ext.repro.spec import Spec

log = logging.getLogger(__name__)

ERROR = "ERROR"


@dataclass
class Outcome:
    """One spec's run: its verdicts, or the reason it could not run; and the record written for it."""
    name: str
    spec: Spec | None
    verdicts: list[Verdict] = field(default_factory=list)
    per_query: dict[str, dict[str, float]] = field(default_factory=dict)
    error: str | None = None
    record: dict | None = None
    path: Path | None = None

    @property
    def passed(self) -> bool:
        return self.error is None and all(v.passed for v in self.verdicts)


def results_dir(workdir: Path | None = None) -> Path:
    return Path(workdir or work_dir()) / "results"


def spec_sha256(path: Path) -> str:
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def machine() -> str:
    """The host, its architecture and core count: enough to tell two machines' numbers apart."""
    return f"{platform.node() or 'unknown host'} ({platform.machine()}, {os.cpu_count()} CPUs, {platform.system()})"


def commit() -> str:
    """The checkout's git commit (with ``+dirty`` when it has changes), else the package version."""
    checkout = Path(__file__).resolve().parents[2]
    try:
        head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=checkout, capture_output=True, text=True, timeout=10)
        if head.returncode == 0:
            dirty = subprocess.run(["git", "status", "--porcelain", "--untracked-files=no"], cwd=checkout,
                                   capture_output=True, text=True, timeout=10).stdout.strip()
            return head.stdout.strip() + ("+dirty" if dirty else "")
    except (OSError, subprocess.SubprocessError):
        pass
    from importlib.metadata import PackageNotFoundError, version

    try:
        return f"pyserini_ext {version('pyserini_ext')} (no git checkout)"
    except PackageNotFoundError:
        return "unknown"


def measure_spec(spec: Spec, workdir: Path | None = None, quiet: bool = False) -> tuple[list[Verdict], dict]:
    """The spec's verdicts and its per-query scores ``{metric: {qid: score}}`` (means as ``run_spec``)."""
    run = spec_run(spec, workdir, quiet)
    qrels = resolve_dataset(spec.dataset).qrels(spec.split)
    per_query = evaluate(run, qrels, [e.metric for e in spec.metrics], spec.relevance_level, per_query=True)
    means = {m: sum(v.values()) / len(v) if v else 0.0 for m, v in per_query.items()}
    return [Verdict(spec.name, e, means[e.metric]) for e in spec.metrics], per_query


def run_specs(items: list[tuple[str, Spec | Exception]], workdir: Path | None = None, quiet: bool = False,
              results: Path | None = None, progress=None) -> list[Outcome]:
    """Run every spec, record each, and go on past one that fails: it becomes an ERROR outcome.

    ``items`` pairs a name with its parsed spec, or with the error that parsing it raised.
    ``progress(name, i, n)`` is called before the i-th of n specs (the CLI prints there).
    """
    workdir = Path(workdir or work_dir())
    results = Path(results or results_dir(workdir))
    outcomes = []
    for i, (name, spec) in enumerate(items, 1):
        if progress:
            progress(name, i, len(items))
        if isinstance(spec, Exception):  # not a readable spec: an ERROR row, nothing recorded
            outcomes.append(Outcome(name, None, error=_reason(spec)))
            continue
        started = time.perf_counter()
        try:
            verdicts, per_query = measure_spec(spec, workdir, quiet)
            outcome = Outcome(name, spec, verdicts, per_query)
        except Exception as err:  # one spec that cannot run must not stop the others
            log.debug("%s could not run:\n%s", name, traceback.format_exc())
            outcome = Outcome(name, spec, error=_reason(err))
        outcome.record = make_record(outcome, workdir, time.perf_counter() - started)
        outcome.path = write_record(outcome.record, results)
        outcomes.append(outcome)
    return outcomes


def _reason(err: BaseException) -> str:
    message = err.args[0] if isinstance(err, KeyError) and err.args else str(err)
    return f"{type(err).__name__}: {' '.join(str(message).split())}"


def make_record(outcome: Outcome, workdir: Path, seconds: float) -> dict:
    spec = outcome.spec
    record = {
        "spec": outcome.name,
        "spec_sha256": spec_sha256(spec.path),
        "spec_path": str(spec.path),
        "dataset": spec.dataset,
        "description": spec.description,
        "baseline": spec.baseline,
        "commands": commands(spec, Path("work")),
        "commit": commit(),
        "date": dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds"),
        "machine": machine(),
        "duration_s": round(seconds, 1),
        "error": outcome.error,
        "rows": [],
        "per_query": {},
    }
    if outcome.error:
        record["rows"] = [{"metric": e.metric, "expected": e.expected, "tolerance": e.tolerance,
                           "precision": e.precision, "source": e.source, "measured": None, "verdict": ERROR}
                          for e in spec.metrics]
    for v in outcome.verdicts:
        e = v.expectation
        record["rows"].append({"metric": e.metric, "expected": e.expected, "tolerance": e.tolerance,
                               "precision": e.precision, "source": e.source, "measured": v.measured,
                               "verdict": v.status})
    if outcome.per_query:
        record["per_query"] = outcome.per_query
    return record


def write_record(record: dict, results: Path) -> Path:
    folder = Path(results) / safe_name(record["spec"], "spec name")
    folder.mkdir(parents=True, exist_ok=True)
    stamp = record["date"].replace(":", "").replace("+0000", "Z")
    path = folder / f"{stamp}.json"
    n = 1
    while path.exists():  # two runs of one spec in the same second
        path = folder / f"{stamp}-{n}.json"
        n += 1
    tmp = path.with_suffix(".json.tmp")
    tmp.write_text(json.dumps(record, indent=1, sort_keys=True) + "\n")
    tmp.rename(path)
    return path


def latest_records(results: Path) -> dict[str, dict]:
    """The newest record of every spec under ``results`` (by its ``date``, then file name)."""
    latest: dict[str, dict] = {}
    for folder in sorted(p for p in Path(results).glob("*") if p.is_dir()):
        files = sorted(folder.glob("*.json"))
        records = []
        for path in files:
            try:
                records.append((json.loads(path.read_text()), path.name))
            except (OSError, json.JSONDecodeError) as err:
                log.warning("skipping unreadable results file %s: %s", path, err)
        if records:
            latest[folder.name] = max(records, key=lambda r: (r[0].get("date", ""), r[1]))[0]
    return latest


def format_outcomes(outcomes: list[Outcome], marks: dict[tuple[str, str], str] | None = None) -> str:
    """``repro run``'s table: a row per metric; a spec that could not run is one ERROR row with its reason.

    ``marks`` maps ``(spec, metric)`` to a significance mark against the spec's baseline.
    """
    marks = marks or {}
    rows = [("spec", "metric", "expected", "measured", "tolerance", "verdict")]
    errors = []
    for o in outcomes:
        if o.error:
            rows.append((o.name, "-", "-", "-", "-", ERROR))
            errors.append(f"{o.name}: {o.error}")
            continue
        for v in o.verdicts:
            e = v.expectation
            rows.append((v.spec, e.metric, f"{e.expected:.{e.precision}f}",
                         f"{v.measured:.{max(e.precision, 4)}f}{marks.get((v.spec, e.metric), '')}",
                         f"{e.tolerance:g}", v.status))
    widths = [max(len(r[i]) for r in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(c.ljust(w) for c, w in zip(r, widths)).rstrip() for r in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    if errors:
        lines += ["", "could not run:"] + [f"  {line}" for line in errors]
    return "\n".join(lines)
