"""The distillation study's train-test gap against embedding size (its Fig. 1 / Table 2) at our
scale, as measured: for each output dimension, the margin-MSE student's spec on SciFact test
(``scifact-minilm-margin-mse[-dNN]``) and on the train split it was trained on
(``...-train-split``), read from their latest result records in the work folder, with the
training loss of the model (``training.json``: mean of the first and last 10 steps). Writes a
table (TSV) and a figure (PNG: train and test nDCG@10, and the gap, against the dimension).

    PYSERINI_EXT_WORK=<work folder of the runs> python benchmarks/distill_dimension_gap.py \
        [--out docs/figures/distill-dimension-gap]

384 is the unprojected student; the others add a trained linear projection (``projection_dim``).
A dimension whose two specs have no error-free record is left out.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pyserini_ext  # noqa: F401  (configures Java before pyserini)
from pyserini_ext.paths import trained_model_dir, work_dir
from pyserini_ext.repro.results import latest_records, results_dir
from pyserini_ext.repro.spec import parse_spec

REPO = Path(__file__).resolve().parents[1]
DIMENSIONS = {384: "scifact-minilm-margin-mse", 128: "scifact-minilm-margin-mse-d128",
              64: "scifact-minilm-margin-mse-d64", 32: "scifact-minilm-margin-mse-d32"}


def rows(work: Path) -> list[dict]:
    records = latest_records(results_dir(work))
    out = []
    for dim, spec_name in sorted(DIMENSIONS.items()):
        test, train = records.get(spec_name), records.get(f"{spec_name}-train-split")
        if not test or not train or test.get("error") or train.get("error"):
            continue
        ndcg = {name: next(r["measured"] for r in rec["rows"] if r["metric"] == "nDCG@10")
                for name, rec in (("test", test), ("train", train))}
        config = parse_spec(REPO / "regressions" / f"{spec_name}.yaml").train[0]
        losses = json.loads((trained_model_dir(config, work) / "training.json").read_text())["losses"]
        out.append({"dim": dim, "test_nDCG@10": round(ndcg["test"], 4), "train_nDCG@10": round(ndcg["train"], 4),
                    "gap": round(ndcg["train"] - ndcg["test"], 4),
                    "loss_first10": round(sum(losses[:10]) / 10, 2), "loss_last10": round(sum(losses[-10:]) / 10, 2),
                    "test_record": test["date"], "train_record": train["date"]})
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(REPO / "docs" / "figures" / "distill-dimension-gap"),
                        help="path without extension: writes OUT.tsv and OUT.png")
    args = parser.parse_args()
    table = rows(work_dir())
    if not table:
        raise SystemExit("no dimension has both a test and a train-split record in the work folder; "
                         "run `pyserini-ext repro run scifact-minilm-margin-mse scifact-minilm-margin-mse-train-split` first")
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    columns = list(table[0])
    lines = ["\t".join(columns)] + ["\t".join(str(row[c]) for c in columns) for row in table]
    out.with_suffix(".tsv").write_text("\n".join(lines) + "\n")
    print("\n".join(lines))

    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    dims = [row["dim"] for row in table]
    fig, (left, right) = plt.subplots(1, 2, figsize=(9, 3.6))
    left.plot(dims, [row["train_nDCG@10"] for row in table], "o-", label="train queries")
    left.plot(dims, [row["test_nDCG@10"] for row in table], "s-", label="test queries")
    right.plot(dims, [row["gap"] for row in table], "o-", color="tab:red")
    right.axhline(0, color="grey", linewidth=0.8)
    for ax, ylabel in ((left, "nDCG@10"), (right, "train - test nDCG@10")):
        ax.set_xscale("log", base=2)
        ax.set_xticks(dims, [str(d) for d in dims])
        ax.set_xlabel("embedding dimension")
        ax.set_ylabel(ylabel)
    left.legend()
    fig.suptitle("margin-MSE students, SciFact, 60 steps (train split: the queries trained on)")
    fig.tight_layout()
    fig.savefig(out.with_suffix(".png"), dpi=120)
    print(f"wrote {out.with_suffix('.tsv')} and {out.with_suffix('.png')}")


if __name__ == "__main__":
    main()
