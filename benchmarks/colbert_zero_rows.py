"""The ColBERT-Zero rows (docs/colbert-zero.md) as measured: each spec
``regressions/scifact-colbertzero-*.yaml`` with its latest result record in the work folder, its
nDCG@10 and R@100, and its training cost, the CPU seconds of every stage it chains (its ``train:``
config, then each config its ``init:`` card was trained by), read from each stage's
``training.json``. Writes a table (TSV) and a figure (PNG: nDCG@10 against training CPU seconds).

    PYSERINI_EXT_WORK=<work folder of the runs> python benchmarks/colbert_zero_rows.py \
        [--out docs/figures/colbert-zero-rows]

A row without a result record is left out; a stage's CPU seconds are the training loop's own
(``cpu_seconds_this_session``: list mining, teacher scoring and model loading are outside), so
they compare rows run under similar load only.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pyserini_ext  # noqa: F401  (configures Java before pyserini)
from pyserini_ext.encode.base import load_card
from pyserini_ext.paths import trained_model_dir, work_dir
from pyserini_ext.repro.results import latest_records, results_dir
from pyserini_ext.repro.runner import spec_paths
from pyserini_ext.repro.spec import parse_spec
from pyserini_ext.train.trainer import load_config

REPO = Path(__file__).resolve().parents[1]


def stages(config_name: str) -> list[str]:
    """The training configs a row chains, first stage first."""
    chain = []
    while config_name:
        chain.insert(0, config_name)
        init = load_config(config_name).init
        config_name = load_card(init).model.trained if init else ""
    return chain


def rows(work: Path) -> list[dict]:
    records = latest_records(results_dir(work))
    out = []
    for path in spec_paths():
        if not path.stem.startswith("scifact-colbertzero-"):
            continue
        spec, record = parse_spec(path), records.get(path.stem)
        if record is None or record.get("error"):
            continue
        measured = {r["metric"]: r["measured"] for r in record["rows"]}
        chain = [stage for config in spec.train for stage in stages(config)]  # a spec's train: is a list
        cpu = []
        for stage in chain:
            summary = json.loads((trained_model_dir(stage, work) / "training.json").read_text())
            cpu.append(summary["cpu_seconds_this_session"])
        out.append({"row": path.stem.removeprefix("scifact-colbertzero-"), "stages": " > ".join(chain) or "none",
                    "stage_cpu_s": cpu, "cpu_s": round(sum(cpu), 1), "nDCG@10": measured["nDCG@10"],
                    "R@100": measured["R@100"], "date": record["date"]})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=REPO / "docs" / "figures" / "colbert-zero-rows")
    args = parser.parse_args()
    table = rows(work_dir())
    if not table:
        raise SystemExit(f"no ColBERT-Zero result records under {results_dir(work_dir())}")
    lines = ["row\tnDCG@10\tR@100\ttraining_cpu_s\tstage_cpu_s\tstages\tmeasured"]
    lines += [f"{r['row']}\t{r['nDCG@10']:.4f}\t{r['R@100']:.4f}\t{r['cpu_s']}\t"
              f"{','.join(str(c) for c in r['stage_cpu_s'])}\t{r['stages']}\t{r['date']}" for r in table]
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".tsv").write_text("\n".join(lines) + "\n")

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    figure, axis = plt.subplots(figsize=(7, 4.5))
    for n, r in enumerate(sorted(table, key=lambda r: (r["cpu_s"], r["nDCG@10"]))):
        axis.scatter(r["cpu_s"], r["nDCG@10"], color="tab:blue")
        # labels to the right of their points, neighbours alternating above and below
        axis.annotate(r["row"], (r["cpu_s"], r["nDCG@10"]), textcoords="offset points", fontsize=8,
                      xytext=(5, 4 if n % 2 else -10))
    axis.set_xlim(-50, 1.4 * max(r["cpu_s"] for r in table))  # room for the rightmost labels
    axis.set_xlabel("training CPU seconds (all stages)")
    axis.set_ylabel("nDCG@10, SciFact test")
    axis.set_title("ColBERT-Zero rows at SciFact scale (all-MiniLM-L6-v2, 60 steps a stage)", fontsize=10)
    axis.grid(alpha=0.3)
    figure.tight_layout()
    figure.savefig(args.out.with_suffix(".png"), dpi=120)
    print("\n".join(lines))
    print(f"wrote {args.out.with_suffix('.tsv')} and {args.out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
