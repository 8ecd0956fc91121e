"""The reproduction site: static HTML pages from the specs and the results ``repro run`` recorded.

``write_site(out, results)`` writes ``index.html`` (every spec, verdict counts, last run, what
is stale, figures) and one page per dataset (a table per metric family, a row per condition,
a cell per metric coloured by its verdict; a row opens onto its commands, with a copy button,
the source of each expected value, and when, where and from which commit it was measured).

Every number comes from a results record (``pyserini_ext.repro.results``), a benchmark's
``benchmarks/results/*.json`` (the Pareto plot, the k' curves), a record in the work folder
(``qpp/*.json`` from ``pyserini-ext qpp``, ``models/*/training.json`` from ``pyserini-ext train``)
or a DL-Typo table in ``docs/figures``; figures are drawn here with matplotlib from those numbers
and embedded as PNG data, and CSS and JavaScript are inline, so the folder opens without a network.
Each figure and table says when and on what machine its numbers were measured, or that its
record does not say.
"""

from __future__ import annotations

import base64
import datetime as dt
import io
import json
import logging
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path

from pyserini_ext.eval.metrics import parse_metric
from pyserini_ext.eval.significance import ALPHA, BETTER, WORSE, compare_with_baselines
from pyserini_ext.repro.results import ERROR, latest_records, spec_sha256
from pyserini_ext.repro.runner import FAIL, IMPROVED, OK, WITHIN, commands, find_spec, spec_paths
from pyserini_ext.repro.spec import Spec, SpecError
from pyserini_ext.resources import resource_dir

log = logging.getLogger(__name__)

TEMPLATES = Path(__file__).resolve().parent / "templates"
NOT_RUN = "not run"
VERDICTS = (OK, WITHIN, IMPROVED, FAIL, ERROR, NOT_RUN)
VERDICT_CLASS = {OK: "ok", WITHIN: "within", IMPROVED: "improved", FAIL: "fail", ERROR: "error", NOT_RUN: "notrun"}
FAMILY_TITLES = {"nDCG": "nDCG", "R": "Recall", "RR": "Reciprocal rank", "MAP": "Mean average precision",
                 "P": "Precision"}


@dataclass
class Cell:
    metric: str
    expected: float
    tolerance: float
    precision: int
    source: str
    measured: float | None
    verdict: str
    mark: str = ""
    significance: str = ""

    @property
    def css(self) -> str:
        return VERDICT_CLASS[self.verdict]

    @property
    def shown(self) -> str:
        return "–" if self.measured is None else f"{self.measured:.{max(self.precision, 4)}f}"

    @property
    def expected_text(self) -> str:
        return f"{self.expected:.{self.precision}f}"

    @property
    def hover(self) -> str:
        measured = "not measured" if self.measured is None else f"measured {self.shown}"
        text = f"{self.metric}: expected {self.expected_text} ± {self.tolerance:g}, {measured}, {self.verdict}"
        return text + (f"; {self.significance}" if self.significance else "")


@dataclass
class Row:
    """One condition (spec) on its dataset page."""
    name: str
    description: str
    dataset: str
    commands: list[str]
    cells: dict[str, Cell]
    record: dict | None
    stale: bool
    error: str | None = None
    baseline: str | None = None


@dataclass
class DatasetPage:
    dataset: str
    file: str
    rows: list[Row] = field(default_factory=list)

    def families(self) -> list[tuple[str, list[str]]]:
        """``[(title, metrics)]``: the metrics of this page's specs grouped by family, in a stable order."""
        metrics = []
        for row in self.rows:
            metrics += [m for m in row.cells if m not in metrics]
        grouped: dict[str, list[str]] = {}
        for m in sorted(metrics, key=lambda m: (parse_metric(m).family, parse_metric(m).cutoff or 0)):
            grouped.setdefault(parse_metric(m).family, []).append(m)
        order = list(FAMILY_TITLES)
        return [(FAMILY_TITLES.get(f, f), grouped[f]) for f in sorted(grouped, key=order.index)]

    def anchor_table(self, row: Row) -> int:
        """The index of the first table that shows ``row``: its row there carries the anchor
        (``#spec-name``) other pages link to."""
        return next(i for i, (_, metrics) in enumerate(self.families()) if any(m in row.cells for m in metrics))


def page_file(dataset: str) -> str:
    return "".join(c if c.isalnum() or c in "-_." else "-" for c in dataset) + ".html"


def collect(results: Path, specs: list[Spec] | None = None) -> tuple[list[DatasetPage], list[str]]:
    """The dataset pages' rows from the specs and their newest records; and the specs that could not be read."""
    unreadable = []
    if specs is None:
        specs = []
        for path in spec_paths():
            try:
                specs.append(find_spec(str(path)))
            except (SpecError, ValueError) as err:
                unreadable.append(f"{path.name}: {err}")
    specs = list(specs)
    records = latest_records(results) if Path(results).is_dir() else {}
    known = {spec.name for spec in specs}
    for name, record in sorted(records.items()):  # a spec run by path (not a shipped one): shown too
        path = Path(record.get("spec_path") or "")
        if name not in known and path.suffix == ".yaml" and path.is_file():
            try:
                specs.append(find_spec(str(path)))
            except (SpecError, ValueError) as err:
                unreadable.append(f"{path}: {err}")
    comparisons = compare_with_baselines(records)
    pages: dict[str, DatasetPage] = {}
    for spec in specs:
        record = records.get(spec.name)
        by_metric = {r["metric"]: r for r in (record or {}).get("rows", [])}
        cells = {}
        for e in spec.metrics:
            recorded = by_metric.get(e.metric)
            measured = recorded.get("measured") if recorded else None
            verdict = recorded["verdict"] if recorded else NOT_RUN
            comparison = comparisons.get((spec.name, e.metric))
            cells[e.metric] = Cell(e.metric, e.expected, e.tolerance, e.precision, e.source, measured, verdict,
                                   comparison.mark if comparison else "",
                                   comparison.describe() if comparison else "")
        row = Row(spec.name, spec.description, spec.dataset, commands(spec, Path("work")), cells, record,
                  stale=bool(record) and record.get("spec_sha256") != spec_sha256(spec.path),
                  error=(record or {}).get("error"), baseline=spec.baseline)
        pages.setdefault(spec.dataset, DatasetPage(spec.dataset, page_file(spec.dataset))).rows.append(row)
    return [pages[d] for d in sorted(pages)], unreadable


# ---- figures: matplotlib, from recorded numbers only ------------------------------------------------

def _png(figure) -> str:
    import matplotlib.pyplot as plt

    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=110, bbox_inches="tight")
    plt.close(figure)
    return "data:image/png;base64," + base64.b64encode(buffer.getvalue()).decode("ascii")


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


@dataclass
class Figure:
    title: str
    image: str  # a data: URI
    caption: str


def effectiveness_figure(page: DatasetPage) -> Figure | None:
    """Measured against expected, per condition, for the page's most common metric."""
    counts = Counter(m for row in page.rows for m, c in row.cells.items() if c.measured is not None)
    if not counts:
        return None
    metric = counts.most_common(1)[0][0]
    rows = [r for r in page.rows if metric in r.cells and r.cells[metric].measured is not None]
    plt = _pyplot()
    figure, axis = plt.subplots(figsize=(7, 0.35 * len(rows) + 1.2))
    names = [r.name for r in rows]
    axis.barh(names, [r.cells[metric].measured for r in rows], color="#4c78a8", label="measured")
    axis.scatter([r.cells[metric].expected for r in rows], names, color="#e45756", zorder=3, marker="|", s=200,
                 label="expected")
    axis.set_xlabel(metric)
    axis.invert_yaxis()
    axis.legend(loc="lower right", fontsize=8)
    when = max(r.record["date"] for r in rows)
    machines = "; ".join(sorted({r.record["machine"] for r in rows}))
    return Figure(f"{metric} by condition", _png(figure),
                  f"{page.dataset}: measured (bars) and expected (red ticks) {metric}, from the recorded runs "
                  f"(newest {when}, on {machines}).")


def benchmark_files(folder: Path) -> list[tuple[Path, dict]]:
    found = []
    for path in sorted(Path(folder).glob("*.json")):
        try:
            data = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError) as err:
            log.warning("skipping unreadable benchmark result %s: %s", path, err)
            continue
        if isinstance(data, dict) and isinstance(data.get("rows"), list):
            found.append((path, data))
    return found


def _metric_rows(data: dict, key: str) -> tuple[list[dict], str | None]:
    """The rows of a benchmark record that carry ``key`` and its first metric, and that metric."""
    rows = [r for r in data["rows"] if isinstance(r, dict) and key in r]
    metric = next((k for r in rows for k in r if _is_metric(k)), None)
    return [r for r in rows if metric in r], metric


def pareto_figures(benchmarks: list[tuple[Path, dict]]) -> list[Figure]:
    """Effectiveness against ms/query, for every benchmark result whose rows carry both."""
    figures = []
    for path, data in benchmarks:
        rows, metric = _metric_rows(data, "ms_per_query")
        if not rows:
            continue
        plt = _pyplot()
        figure, axis = plt.subplots(figsize=(7, 4.5))
        for i, r in enumerate(rows):
            axis.scatter(r["ms_per_query"], r[metric], color="#4c78a8")
            axis.annotate(str(r.get("condition", r.get("name", "?"))), (r["ms_per_query"], r[metric]), fontsize=7,
                          xytext=(4, 3 if i % 2 == 0 else -10), textcoords="offset points")  # neighbours apart
        frontier = _frontier([(r["ms_per_query"], r[metric]) for r in rows])
        axis.plot(*zip(*frontier), color="#e45756", linewidth=1, label="Pareto frontier")
        axis.set_xscale("log")
        axis.set_xlabel("ms per query (log scale)")
        axis.set_ylabel(metric)
        axis.legend(loc="lower right", fontsize=8)
        figures.append(Figure(f"{metric} against latency ({data.get('benchmark', path.stem)})", _png(figure),
                              f"From {path.name}: {_measured(data)}."))
    return figures


def _measured(record: dict) -> str:
    """When, where and by what command a record says its numbers were measured, or that it does not say."""
    when = record.get("date") or "(the record gives no date)"
    where = record.get("machine") or "(the record names no machine)"
    command = f" by `{record['command']}`" if record.get("command") else ""
    return f"measured {when} on {where}{command}"


def k_prime_figures(benchmarks: list[tuple[Path, dict]]) -> list[Figure]:
    """Effectiveness against k' (tokens retrieved per query token), a line per scoring, for every
    benchmark result whose rows carry ``k_prime`` (``benchmarks/multivector.py``)."""
    figures = []
    for path, data in benchmarks:
        rows, metric = _metric_rows(data, "k_prime")
        if not rows:
            continue
        lines: dict[str, list[tuple[float, float]]] = {}
        for r in rows:
            lines.setdefault(str(r.get("scoring", "?")), []).append((r["k_prime"], r[metric]))
        plt = _pyplot()
        figure, axis = plt.subplots(figsize=(6, 3.8))
        for scoring, points in lines.items():
            axis.plot(*zip(*sorted(points)), marker="o", label=scoring)
        k_primes = sorted({r["k_prime"] for r in rows})
        axis.set_xscale("log")  # k' grows by factors of about 3
        axis.set_xticks(k_primes, labels=[str(k) for k in k_primes])  # the measured k', not powers of ten
        axis.minorticks_off()
        axis.set_xlabel("k' (tokens retrieved per query token, log scale)")
        axis.set_ylabel(metric)
        axis.legend(loc="lower right", fontsize=8)
        about = ", ".join(str(data[k]) for k in ("dataset", "encoder") if data.get(k))
        figures.append(Figure(f"{metric} against k' ({data.get('benchmark', path.stem)})", _png(figure),
                              f"From {path.name}{f' ({about})' if about else ''}: {', '.join(lines)} at "
                              f"k' = {', '.join(map(str, k_primes))}; {_measured(data)}."))
    return figures


def _is_metric(key: str) -> bool:
    try:
        parse_metric(key)
        return True
    except ValueError:
        return False


def _frontier(points: list[tuple[float, float]]) -> list[tuple[float, float]]:
    """The points no other point beats on both latency (lower) and effectiveness (higher)."""
    frontier, best = [], float("-inf")
    for x, y in sorted(points, key=lambda p: (p[0], -p[1])):
        if y > best:
            frontier.append((x, y))
            best = y
    return frontier


def typo_figures(folder: Path) -> list[Figure]:
    """DL-Typo histograms, redrawn from the per-query tables ``pyserini-ext typo`` writes beside its PNGs."""
    figures = []
    for path in sorted(Path(folder).glob("dl-typo-*.tsv")):
        differences = []
        for line in path.read_text().splitlines()[1:]:
            parts = line.split("\t")
            if len(parts) == 4:
                differences.append(float(parts[3]))
        if not differences:
            continue
        plt = _pyplot()
        figure, axis = plt.subplots(figsize=(6, 3.2))
        axis.hist(differences, bins=40, color="#72b7b2")
        axis.axvline(0, color="#333", linewidth=0.8)
        axis.set_xlabel("variance norm: typo query minus clean query")
        axis.set_ylabel("queries")
        positive = sum(d > 0 for d in differences)
        figures.append(Figure(f"DL-Typo: {path.stem.removeprefix('dl-typo-')}", _png(figure),
                              f"From {path.name} ({len(differences)} queries, {positive} with a larger norm when "
                              f"typoed), written by `pyserini-ext typo`; that table records no date or machine."))
    return figures


def training_figures(models: Path) -> list[Figure]:
    """Loss against optimizer step for every model trained in the work folder, from the
    ``training.json`` the trainer writes beside it (``losses``: one mean loss per step)."""
    figures = []
    for path in sorted(Path(models).glob("*/training.json")):
        try:
            record = json.loads(path.read_text())
            losses = [float(v) for v in record["losses"]]
        except (OSError, ValueError, KeyError, TypeError) as err:
            log.warning("skipping unreadable training record %s: %s", path, err)
            continue
        if not losses:
            continue
        plt = _pyplot()
        figure, axis = plt.subplots(figsize=(6, 3.2))
        axis.plot(range(1, len(losses) + 1), losses, color="#4c78a8", linewidth=1)
        axis.xaxis.get_major_locator().set_params(integer=True)  # steps are whole numbers
        axis.set_xlabel("optimizer step")
        axis.set_ylabel("training loss")
        config = record.get("config") or {}
        loss = (config.get("loss") or {}).get("name", "?")
        # The trainer records no date or machine today; the file's time is the best there is.
        written = dt.datetime.fromtimestamp(path.stat().st_mtime, dt.timezone.utc).isoformat(timespec="seconds")
        measured = _measured(record) if record.get("date") or record.get("machine") else \
            f"the record gives no date and no machine (file written {written})"
        figures.append(Figure(f"Training loss: {path.parent.name}", _png(figure),
                              f"From {path.parent.name}/training.json: {loss} loss over {len(losses)} steps, "
                              f"student {config.get('student', '?')}; {measured}."))
    return figures


@dataclass
class QppTable:
    """One recorded ``pyserini-ext qpp`` study: per reference run, a row per predictor."""
    title: str
    caption: str
    correlations: list[str]
    blocks: list[tuple[str, list[tuple[str, list[str]]]]]  # (reference, [(predictor, [cell text])])


def qpp_tables(folder: Path) -> list[QppTable]:
    """The correlation tables ``pyserini-ext qpp`` recorded in ``<work>/qpp``, formatted as it prints them."""
    tables = []
    for path in sorted(Path(folder).glob("*.json")):
        try:
            record = json.loads(path.read_text())
            correlations = list(record["correlations"])
            blocks: dict[str, list] = {}
            for r in record["rows"]:
                cells = ["n/a" if r[m] is None else f"{r[m]:+.3f}" for m in correlations]  # null: constant predictor
                blocks.setdefault(r["reference"], []).append((r["predictor"], cells))
        except (OSError, ValueError, KeyError, TypeError) as err:
            log.warning("skipping unreadable QPP record %s: %s", path, err)
            continue
        title = f"QPP: {record.get('dataset', path.stem)} {record.get('split', '')}".rstrip()
        tables.append(QppTable(title, f"{record.get('header', '')}. From qpp/{path.name}: {_measured(record)}.",
                               correlations, list(blocks.items())))
    return tables


# ---- the site --------------------------------------------------------------------------------------

def _environment():
    import jinja2

    return jinja2.Environment(loader=jinja2.FileSystemLoader(str(TEMPLATES)), autoescape=True,
                              undefined=jinja2.StrictUndefined, trim_blocks=True, lstrip_blocks=True)


def write_site(out: Path, results: Path, specs: list[Spec] | None = None,
               benchmarks: Path | None = None, figures_dir: Path | None = None, work: Path | None = None) -> Path:
    """Write the site into ``out``; returns the path of ``index.html``.

    ``work``: the work folder whose ``qpp/`` and ``models/`` records are shown; by default the
    folder holding ``results`` (``repro run`` records in ``<work>/results``).
    """
    out = Path(out)
    work = Path(work) if work else Path(results).parent
    out.mkdir(parents=True, exist_ok=True)
    checkout = resource_dir("regressions").parent
    benchmarks = Path(benchmarks) if benchmarks else checkout / "benchmarks" / "results"
    figures_dir = Path(figures_dir) if figures_dir else checkout / "docs" / "figures"
    pages, unreadable = collect(results, specs)
    env = _environment()
    generated = dt.datetime.now(dt.timezone.utc).isoformat(timespec="seconds")
    rows = [row for page in pages for row in page.rows]
    counts = Counter(c.verdict for row in rows for c in row.cells.values())
    dates = [row.record["date"] for row in rows if row.record]
    machines = sorted({row.record["machine"] for row in rows if row.record})
    common = {"pages": pages, "generated": generated, "verdicts": VERDICTS, "verdict_class": VERDICT_CLASS,
              "better": BETTER, "worse": WORSE, "alpha": ALPHA, "results": str(results)}
    found = benchmark_files(benchmarks)
    figures = (pareto_figures(found) + k_prime_figures(found) + typo_figures(figures_dir)
               + training_figures(work / "models"))
    index = out / "index.html"
    index.write_text(env.get_template("index.html.j2").render(
        **common, title="Reproductions", rows=rows, counts=counts, last_run=max(dates) if dates else None,
        machines=machines, stale=[r for r in rows if r.stale], not_run=[r for r in rows if r.record is None],
        unreadable=unreadable, figures=figures, benchmarks_found=bool(found), qpp=qpp_tables(work / "qpp")))
    for page in pages:
        figure = effectiveness_figure(page)
        (out / page.file).write_text(env.get_template("dataset.html.j2").render(
            **common, title=page.dataset, page=page, figures=[figure] if figure else []))
    return index
