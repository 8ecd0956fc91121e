"""``pyserini-ext <verb>``: repro, index, search, datasets, eval, fuse, qpp, typo, train, encoders.

The library logs; only this module prints. Every verb takes a name from a registry
(searcher, dataset, encoder card, spec), never a hard-coded list.
"""

from __future__ import annotations

import argparse
import logging
import os
import shlex
import sys
from pathlib import Path

import yaml

from pyserini_ext.config import parse_yaml


def _params(pairs: list[str]) -> dict:
    params = {}
    for pair in pairs or []:
        key, eq, value = pair.partition("=")
        if not eq:
            raise SystemExit(f"--param expects key=value, got {pair!r}")
        try:
            params[key] = parse_yaml(value)
        except (yaml.YAMLError, RecursionError):
            raise ValueError(f"--param {key}: {value!r} is not a YAML value (quote strings with ':' or '[')") from None
    return params


def _positive_int(text: str) -> int:
    """argparse type: an integer of at least 1 (a count of hits, ...)."""
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"must be at least 1, got {value}")
    return value


def _writable_file(path: Path) -> None:
    """Refuse an output path that cannot be a file, before any work is done for it."""
    if path.is_dir():
        raise ValueError(f"--output {path} is a folder; give a file name")


def cmd_repro(args) -> int:
    from pyserini_ext.repro.runner import commands, find_spec, format_page, spec_paths

    if args.action == "page":
        if args.markdown:
            print(format_page([find_spec(str(p)) for p in spec_paths()]), end="")
            return 0
        return cmd_repro_pages(args)
    if args.action == "list":
        for path in spec_paths():
            spec = find_spec(str(path))
            trains = f"  (trains: {', '.join(spec.train)})" if spec.train else ""
            print(f"{spec.name:32s} {spec.dataset:14s} {', '.join(e.metric for e in spec.metrics)}{trains}")
        return 0
    if not args.all and not args.names:
        raise SystemExit("repro run: give spec names or --all")
    if args.all:
        # Specs of trained models train first (minutes each): --all runs them only with --train.
        # Specs that need large downloads (MS MARCO) run only with --downloads.
        items = [(n, s) for n, s in _parse_specs([str(p) for p in spec_paths()])
                 if isinstance(s, Exception) or ((args.train or not s.train) and (args.downloads or not s.downloads))]
    else:
        items = _parse_specs(args.names)
        _refuse_bad_specs(items)
    specs = [s for _, s in items if not isinstance(s, Exception)]
    if args.dry_run or args.display_commands:
        for spec in specs:
            print(f"# {spec.name}: {spec.description}")
            for command in commands(spec, args.work):
                print(command)
            print()
        if args.dry_run:
            return 0
    return _run_and_record(items, args)


def _parse_specs(names: list[str]) -> list:
    """``(name, spec)`` per name; a spec that cannot be read pairs with its error (an ERROR row later)."""
    from pyserini_ext.repro.runner import find_spec
    from pyserini_ext.repro.spec import SpecError

    items = []
    for name in names:
        try:
            spec = find_spec(name)
            items.append((spec.name, spec))
        except (SpecError, FileNotFoundError, ValueError) as err:
            # a path names the spec by its file's stem; a bare name is the name, dots and all
            # (Path("...-ls0.1").stem would cut it to "...-ls0", and its results to another folder)
            items.append((Path(name).stem if name.endswith(".yaml") else name, err))
    return items


def _refuse_bad_specs(items) -> None:
    """Specs named on the command line are arguments: one that cannot be read, or whose
    pipeline names an unknown searcher or parameter or an encoder card that is a path, is a
    usage error (exit 2), found before anything runs. (``--all`` keeps such a spec as an ERROR
    row instead, so one broken spec does not stop the others.)"""
    from pyserini_ext.paths import safe_name
    from pyserini_ext.recipes import SEARCHERS

    def check(pipeline: dict, where: str) -> None:
        kind = SEARCHERS.get(pipeline.get("searcher"))
        kind.parse_params(pipeline.get("params") or {})
        for key, value in (pipeline.get("params") or {}).items():
            if key == "encoder" and value:
                safe_name(value, f"{where}.encoder: encoder card")
            # nested stages (fusion's searchers, rerank's first_stage) are pipelines too
            for stage in (value if isinstance(value, (list, tuple)) else [value]):
                if isinstance(stage, dict) and "searcher" in stage:
                    check(stage, f"{where}.{key}")

    for _, spec in items:
        if isinstance(spec, Exception):
            raise spec
        try:
            check({"searcher": spec.pipeline.searcher, "params": spec.pipeline.params}, "pipeline.params")
        except (KeyError, ValueError) as err:
            message = err.args[0] if isinstance(err, KeyError) and err.args else err
            raise ValueError(f"{spec.path}: {message}") from None


def _run_and_record(items, args) -> int:
    from pyserini_ext.eval.significance import compare_with_baselines
    from pyserini_ext.repro.results import format_outcomes, latest_records, results_dir, run_specs

    results = args.results or results_dir(args.work)
    ray = _ray_option(args)
    if ray is not None:  # independent specs as parallel Ray tasks (pyserini_ext.distributed.repro)
        from pyserini_ext.distributed.repro import run_specs as run_on_ray

        print(f"running {len(items)} specs on Ray ...", file=sys.stderr, flush=True)
        outcomes = run_on_ray(items, args.work, args.quiet, ray, results)
    else:
        outcomes = run_specs(items, args.work, args.quiet, results,
                             progress=lambda name, i, n: print(f"running {name} ({i}/{n}) ...", file=sys.stderr, flush=True))
    comparisons = compare_with_baselines(latest_records(results))
    print(format_outcomes(outcomes, {key: c.mark for key, c in comparisons.items()}))
    verdicts = [v for o in outcomes for v in o.verdicts]
    failed = [v for v in verdicts if not v.passed]
    errors = [o for o in outcomes if o.error]
    print(f"\n{len(verdicts) - len(failed)}/{len(verdicts)} metrics pass" + (f"; {len(failed)} FAIL" if failed else "")
          + (f"; {len(errors)} spec(s) could not run (ERROR)" if errors else ""))
    shown = {k: c for k, c in comparisons.items() if k[0] in {o.name for o in outcomes}}
    if shown:
        print("significance: paired t-test per query against the spec's baseline, Bonferroni-corrected per baseline, "
              "p < 0.05 (▲ better, ▼ worse)")
        for (name, metric), c in sorted(shown.items()):
            print(f"  {name} {metric} {c.mark or '='} {c.describe()}")
    print(f"results recorded under {results}")
    return 1 if failed or errors else 0


def cmd_repro_pages(args) -> int:
    from pyserini_ext.paths import work_dir
    from pyserini_ext.repro.pages import write_site
    from pyserini_ext.repro.results import results_dir

    out = args.out or (args.work or work_dir()) / "pages"
    index = write_site(out, args.results or results_dir(args.work))
    print(f"wrote the reproduction pages: {index}")
    return 0


def _workspace(args, ties=None):
    from pyserini_ext.recipes import workspace

    return workspace(args.dataset, args.work, ties, args.quiet)


def _ray_option(args) -> str | None:
    """``--ray [ADDRESS]``: None when not given; otherwise checked to be usable (Ray installed)."""
    if getattr(args, "ray", None) is None:
        return None
    from pyserini_ext.distributed import RayMissing, require_ray

    try:
        require_ray()
    except RayMissing as missing:
        raise SystemExit(str(missing)) from None
    return args.ray


def cmd_index(args) -> int:
    import dataclasses
    import time

    from pyserini_ext.recipes import build_searcher, corpus_size

    started = time.perf_counter()
    ray = _ray_option(args)
    ws = _workspace(args)
    if ray is not None:
        ws = dataclasses.replace(ws, ray=ray)
    build_searcher(args.searcher, _params(args.param), ws)
    seconds = time.perf_counter() - started
    folders = sorted(f for f in ws.used if f.is_dir())
    size = sum(p.stat().st_size for f in folders for p in f.rglob("*") if p.is_file())
    print(f"{args.searcher} index for {ws.dataset.name}: {', '.join(map(str, folders)) or ws.workdir / 'indexes'}; "
          f"{corpus_size(ws):,} documents, {_human_bytes(size)} on disk, {seconds:.1f} s")
    return 0


def _human_bytes(size: int) -> str:
    for unit in ("B", "KB", "MB", "GB"):
        if size < 1000 or unit == "GB":
            return f"{size:.0f} {unit}" if unit == "B" else f"{size:.1f} {unit}"
        size /= 1000
    return f"{size:.1f} TB"


def cmd_search(args) -> int:
    from pyserini_ext.recipes import build_searcher
    from pyserini_ext.repro.runner import warn_remove_query
    from pyserini_ext.search.run import search_topics, write_trec_run
    from pyserini_ext.search.ties import TieOrder

    _writable_file(args.output)
    ray = _ray_option(args)
    ws = _workspace(args, TieOrder(args.tie_policy, args.seed))
    topics = ws.dataset.topics(args.split)  # an unknown split fails before any index is built
    if ray is not None:  # the index split among --shards Ray actors (pyserini_ext.distributed.search)
        import dataclasses

        from pyserini_ext.distributed.search import open_sharded

        searcher = open_sharded(args.searcher, _params(args.param), dataclasses.replace(ws, ray=ray), args.shards)
    else:
        searcher = build_searcher(args.searcher, _params(args.param), ws)
    if args.remove_query:
        warn_remove_query(ws.dataset.qrels(args.split), f"{ws.dataset.name} {args.split}")
    run = search_topics(searcher, topics, args.hits, args.remove_query, ws.ties)
    write_trec_run(run, args.output, tag=args.searcher)
    print(f"wrote {args.output} ({len(run)} queries)")
    return 0


def cmd_datasets(args) -> int:
    from pyserini_ext.data import dataset_names, resolve_dataset

    for name in dataset_names():
        print(resolve_dataset(name).describe())
    return 0


def cmd_eval(args) -> int:
    from pyserini_ext.data import resolve_dataset
    from pyserini_ext.data.readers import read_qrels
    from pyserini_ext.eval.metrics import evaluate
    from pyserini_ext.search.run import read_trec_run

    if args.qrels:
        qrels = read_qrels(args.qrels)
    elif args.dataset:
        qrels = resolve_dataset(args.dataset).qrels(args.split)
    else:
        raise SystemExit("eval: give --qrels FILE or --dataset NAME --split SPLIT")
    results = evaluate(read_trec_run(args.run), qrels, args.metric, args.relevance_level)
    for name, value in results.items():
        print(f"{name}\t{value:.4f}")
    return 0


def cmd_fuse(args) -> int:
    from pyserini_ext.search.fusion import fuse_runs
    from pyserini_ext.search.run import order_run, read_trec_run, write_trec_run

    runs = [order_run(read_trec_run(path), args.tie_policy, args.seed) for path in args.run]
    fused = fuse_runs(runs, args.method, args.hits, args.alpha, args.normalization, args.weight_on_dense,
                      args.weights, args.rrf_k, args.depth, args.tie_policy, args.seed)
    write_trec_run(fused, args.output, tag=f"fusion-{args.method}")
    print(f"wrote {args.output}")
    return 0


def cmd_encoders(args) -> int:
    from pyserini_ext.encode.base import ENCODER_FAMILIES, card_names, load_card

    if args.action == "families":
        print("\n".join(ENCODER_FAMILIES.names()))
        return 0
    if args.action == "export":
        if not args.card:
            raise SystemExit("encoders export: give a card name")
        for side, path in load_card(args.card).export_onnx(args.precision).items():
            print(f"{side}\t{path}")
        return 0
    for name in card_names():
        card = load_card(name)
        print(f"{name:32s} {card.family.name:12s} {card.model.hub or card.model.path or card.model.python_package}")
    return 0


def cmd_qpp(args) -> int:
    from pyserini_ext.eval.qpp import format_correlation_table, qpp_study

    command = " ".join(["pyserini-ext qpp --dataset", shlex.quote(str(args.dataset)), "--split", shlex.quote(args.split),
                        *(f"--reference {shlex.quote(r)}" for r in args.reference), "--metric", shlex.quote(args.metric),
                        *([f"--mrl-encoder {shlex.quote(args.mrl_encoder)}"] if args.mrl_encoder else [])])
    header, rows, record = qpp_study(args.dataset, args.split, args.reference, args.metric, args.mrl_encoder,
                                     args.work, args.quiet, command)
    print(f"# {header}")
    print(format_correlation_table(rows))
    print(f"recorded {record} (shown by `pyserini-ext repro page`)")
    return 0


def cmd_typo(args) -> int:
    from pyserini_ext.eval.typo import typo_study

    result, figure, table = typo_study(args.encoder, args.output)
    for key, value in result.summary().items():
        print(f"{key}\t{value:.4f}" if isinstance(value, float) else f"{key}\t{value}")
    print(f"wrote {figure} and {table}")
    return 0


def cmd_distributions(args) -> int:
    from pyserini_ext.eval.distributions import format_value, distribution_study

    summaries, figure, table, summary = distribution_study(args.teacher, args.student, args.dataset, args.split,
                                                           args.output, args.work, args.quiet)
    keys = list(list(summaries.values())[-1])  # a student's: the teacher's plus its agreement with the teacher
    print("\t".join(["card", *keys]))
    for card, values in summaries.items():
        print("\t".join([card, *(format_value(values.get(k, "-")) for k in keys)]))
    print(f"wrote {figure}, {table} and {summary}")
    return 0


def cmd_train(args) -> int:
    from pyserini_ext.resources import find_resource, resource_names
    from pyserini_ext.train.trainer import ensure_trained, load_config

    if args.list:
        for name in resource_names("training"):
            config = load_config(find_resource("training", name))
            print(f"{config.name}\t{config.student}\t{config.loss_name}\t-> {config.output_card}")
        return 0
    if not args.names:
        raise ValueError("name a training config (training/NAME.yaml), or --list")
    for name in args.names:
        print(f"{name}: {ensure_trained(name, args.work, args.quiet)}")
    return 0


def cmd_doctor(args) -> int:
    from pyserini_ext.doctor import diagnose, format_report

    print(format_report(diagnose()))
    return 0


def build_parser() -> argparse.ArgumentParser:
    from pyserini_ext.data.datasets import compact_names, dataset_names
    from pyserini_ext.recipes import SEARCHERS
    from pyserini_ext.search.fusion import FUSION_METHODS
    from pyserini_ext.search.ties import TIE_POLICIES

    dataset_help = (f"a dataset: a registered name ({compact_names(dataset_names())}; `pyserini-ext datasets list` "
                    f"says where each lives), a Pyserini topic-set name (e.g. dl19-passage), a folder in BEIR or "
                    f"Pyserini layout, a dataset card (.yaml), or irds:ID")
    parser = argparse.ArgumentParser(prog="pyserini-ext", description=__doc__.splitlines()[0])
    parser.add_argument("-v", "--verbose", action="store_true", help="log at INFO level")
    sub = parser.add_subparsers(dest="verb", required=True)

    def common(p, work=True):
        p.add_argument("--quiet", action="store_true", help="no progress bars")
        if work:
            p.add_argument("--work", type=Path, default=None, help="work folder for indexes and runs (default $PYSERINI_EXT_WORK or ./work)")

    repro = sub.add_parser("repro", help="list or run regression specs (regressions/*.yaml)")
    actions = repro.add_subparsers(dest="action", required=True)
    actions.add_parser("list", help="the specs, with dataset and metrics").set_defaults(func=cmd_repro)
    p = actions.add_parser("page", help="write the HTML reproduction pages from the recorded results (or --markdown)")
    p.add_argument("--out", type=Path, help="folder of the site (default work/pages)")
    p.add_argument("--results", type=Path, help="recorded results (default WORK/results)")
    p.add_argument("--work", type=Path, default=None, help="work folder whose results/ to read")
    p.add_argument("--markdown", action="store_true", help="print the Markdown page (docs/reproductions.md) instead")
    p.set_defaults(func=cmd_repro)
    p = actions.add_parser("run", help="run specs and print a verdict table; exit 1 on any FAIL")
    p.add_argument("names", nargs="*", help="spec names (file stems) or paths")
    p.add_argument("--all", action="store_true", help="run every spec that needs no training")
    p.add_argument("--train", action="store_true", help="with --all: also the specs of trained models (trains them first)")
    p.add_argument("--downloads", action="store_true",
                   help="with --all: also the specs that need large downloads (MS MARCO corpora, Pyserini's prebuilt indexes)")
    p.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")
    p.add_argument("--display-commands", action="store_true", help="print the commands, then run")
    p.add_argument("--results", type=Path, help="where to record the results (default WORK/results)")
    p.add_argument("--ray", nargs="?", const="local", metavar="ADDRESS",
                   help="run independent specs as parallel Ray tasks: alone, a local Ray instance; 'auto' or an "
                        "address joins a running cluster (needs pip install \"pyserini_ext[ray]\")")
    common(p)
    p.set_defaults(func=cmd_repro)

    for verb, func, text in (("index", cmd_index, "build (or reuse) a searcher's index for a dataset"),
                             ("search", cmd_search, "search a dataset's topics and write a TREC run")):
        p = sub.add_parser(verb, help=text)
        p.add_argument("searcher", choices=SEARCHERS.names(), help="a registered searcher")
        p.add_argument("--dataset", required=True, help=dataset_help)
        p.add_argument("--param", action="append", metavar="KEY=VALUE", help="searcher parameter (repeatable)")
        if verb == "index":
            p.add_argument("--ray", nargs="?", const="local", metavar="ADDRESS",
                           help="encode on Ray actors: alone, a local Ray instance; 'auto' or an address joins a "
                                "running cluster (needs pip install \"pyserini_ext[ray]\")")
        if verb == "search":
            p.add_argument("--split", required=True)
            p.add_argument("--hits", type=_positive_int, default=1000)
            p.add_argument("--remove-query", action="store_true", help="drop hits whose docid equals the qid")
            p.add_argument("--tie-policy", default="docid", choices=TIE_POLICIES)
            p.add_argument("--seed", type=int, default=0)
            p.add_argument("--output", type=Path, required=True)
            p.add_argument("--ray", nargs="?", const="local", metavar="ADDRESS",
                           help="dense, impact, multivector (colbert, flat): search an index split among --shards "
                                "Ray actors (same run file); alone, a local Ray instance; 'auto' or an address joins "
                                "a running cluster")
            p.add_argument("--shards", type=int, default=2, help="with --ray: how many search shards (actors)")
        common(p)
        p.set_defaults(func=func)

    p = sub.add_parser("datasets", help="list the registered datasets (name, layout, splits, where)")
    p.add_argument("action", nargs="?", choices=["list"], default="list")
    p.set_defaults(func=cmd_datasets)

    p = sub.add_parser("eval", help="evaluate a TREC run")
    p.add_argument("--run", type=Path, required=True)
    p.add_argument("--qrels", type=Path, help="a qrels file (TREC or BEIR .tsv)")
    p.add_argument("--dataset", help="or a dataset and --split: " + dataset_help)
    p.add_argument("--split")
    p.add_argument("-m", "--metric", action="append", required=True, help="e.g. nDCG@10, RR@10, R@100, MAP")
    p.add_argument("--relevance-level", type=int, default=1, help="minimum grade counted relevant by binary metrics")
    p.set_defaults(func=cmd_eval)

    p = sub.add_parser("fuse", help="fuse two or more TREC runs (RRF, weighted sum, HybridSearcher interpolation)")
    p.add_argument("--run", type=Path, action="append", required=True, help="a TREC run (repeat; hybrid: sparse first)")
    p.add_argument("--method", choices=FUSION_METHODS, default="rrf")
    p.add_argument("--rrf-k", type=int, default=60)
    p.add_argument("--weights", type=float, nargs="+", help="weighted: one per run")
    p.add_argument("--alpha", type=float, default=0.1, help="hybrid: weight on the sparse (or dense) score")
    p.add_argument("--normalization", action="store_true", help="hybrid: centre and scale each list")
    p.add_argument("--weight-on-dense", action="store_true", help="hybrid: alpha weighs the dense score")
    p.add_argument("--depth", type=int, help="hits read from each run (default all)")
    p.add_argument("--hits", type=_positive_int, default=1000)
    p.add_argument("--tie-policy", default="docid", choices=TIE_POLICIES)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--output", type=Path, required=True)
    p.set_defaults(func=cmd_fuse)

    p = sub.add_parser("qpp", help="correlate query-performance predictors with reference runs' per-query effectiveness")
    p.add_argument("--dataset", required=True, help=dataset_help + "; its BM25 index supplies the statistics")
    p.add_argument("--split", required=True)
    p.add_argument("--reference", action="append", required=True, help="a regression spec whose run is a reference (repeat)")
    p.add_argument("--metric", default="nDCG@10")
    p.add_argument("--mrl-encoder", help="an MRL encoder card: adds the MRL variance-norm predictor")
    common(p)
    p.set_defaults(func=cmd_qpp)

    p = sub.add_parser("typo", help="DL-Typo: MRL variance norms of clean and typo queries, paired differences, histogram")
    p.add_argument("--encoder", required=True, help="an MRL encoder card")
    p.add_argument("--output", type=Path, required=True, help="PNG histogram; the per-query norms go beside it as .tsv")
    p.set_defaults(func=cmd_typo)

    p = sub.add_parser("distributions", help="a teacher's and its students' scores of the same held-out lists: "
                                             "histograms, margins, margin agreement (PNG + TSV)")
    p.add_argument("--teacher", required=True, help="the teacher's encoder card")
    p.add_argument("--student", action="append", required=True, help="a student's encoder card (repeat)")
    p.add_argument("--dataset", required=True)
    p.add_argument("--split", required=True)
    p.add_argument("--output", type=Path, required=True, help="PNG figure; the scores and the summary go beside it as .tsv")
    common(p)
    p.set_defaults(func=cmd_distributions)

    p = sub.add_parser("train", help="train models from training configs (training/NAME.yaml); resumes from checkpoints")
    p.add_argument("names", nargs="*", help="training config names or paths")
    p.add_argument("--list", action="store_true", help="list the training configs")
    common(p)
    p.set_defaults(func=cmd_train)

    p = sub.add_parser("encoders", help="list encoder cards or families; export a card to ONNX")
    p.add_argument("action", choices=["list", "families", "export"], nargs="?", default="list")
    p.add_argument("card", nargs="?", help="export: the card to export (both sides; cached, see $PYSERINI_EXT_CACHE)")
    p.add_argument("--precision", help="export: override the card's precision (fp32, fp16 on CUDA, int8 on CPU)")
    p.set_defaults(func=cmd_encoders)

    p = sub.add_parser("doctor", help="what this install found (Java, torch, onnxruntime, FAISS, Ray, Chromium, "
                                      "data root, work folder) and what to install for what is missing")
    p.set_defaults(func=cmd_doctor)
    return parser


def _quiet_libraries() -> None:
    """Without -v: no INFO lines from Java (Lucene's MemorySegmentIndexInput notice), no
    transformers warnings or weight-loading bars; our own progress bars stay."""
    import jnius_config

    if not jnius_config.vm_running:
        quiet = Path(__file__).resolve().parent / "java-logging-quiet.properties"
        jnius_config.add_options(f"-Djava.util.logging.config.file={quiet}")
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    if "transformers" in sys.modules:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()
    else:  # transformers reads this when first imported; its bars check huggingface_hub's switch
        os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")


# Verbs that may run an encoder (and so torch): the others start faster without it.
ENCODING_VERBS = {"repro", "index", "search", "qpp", "typo", "train", "encoders"}


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    logging.basicConfig(level=logging.INFO if args.verbose else logging.WARNING,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    if not args.verbose:
        _quiet_libraries()
    import pyserini_ext  # noqa: F401  (configures Java before any verb imports pyserini)

    if args.verb in ENCODING_VERBS:
        from pyserini_ext.encode.runtime import set_cpu_threads

        set_cpu_threads()  # every core this process may use: the caller's choice, made once here
    if getattr(args, "quiet", False):
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()

    from pyserini_ext.paths import WORK_ENV

    if getattr(args, "work", None):  # cards of trained models resolve under the same work folder
        if args.work.exists() and not args.work.is_dir():
            print(f"pyserini-ext: error: --work {args.work} is a file; give a folder", file=sys.stderr)
            return 2
        os.environ[WORK_ENV] = str(args.work)

    try:
        return args.func(args)
    except BrokenPipeError:  # `pyserini-ext repro list | head`: the reader left, nothing is wrong
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (KeyError, FileNotFoundError, ValueError) as err:
        # KeyError's str() quotes its message; an unknown name or parameter reads better without.
        message = err.args[0] if isinstance(err, KeyError) and err.args else err
        print(f"pyserini-ext: error: {message}", file=sys.stderr)
        return 2
    except OSError as err:  # a read-only or full disk, a folder where a file goes: one line, no traceback
        where = f"{err.filename}: " if err.filename else ""
        print(f"pyserini-ext: error: {where}{err.strerror or err}", file=sys.stderr)
        return 1
    except RuntimeError as err:  # a damaged built folder (ManifestError), a failed Anserini run
        if isinstance(err, (RecursionError, NotImplementedError)):  # bugs: keep their traceback
            raise
        print(f"pyserini-ext: error: {err}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
