"""Regression specs in parallel: independent specs run as Ray tasks, sharing one work folder.

Specs that share a dataset share its indexes and encoded stores, and specs that train share
the trained model; two tasks building the same folder at once would race. So specs are
grouped (a spec joins the group of any spec with its dataset or one of its training
configs), each group runs its specs one after another in one task, and the groups run in
parallel, each task asking for one CPU slot (and one GPU when the cluster has GPUs and a spec
of the group encodes: a spec naming an ``encoder`` or training a model). The verdicts come back
in the order the specs were given, so the table is the sequential run's.
"""

from __future__ import annotations

import logging
from pathlib import Path

from pyserini_ext.distributed import connect

log = logging.getLogger(__name__)


def spec_groups(specs: list) -> list[list[int]]:
    """Indices of ``specs`` grouped so that no two groups share a dataset or a training config."""
    parent = list(range(len(specs)))

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    owner: dict[tuple[str, str], int] = {}
    for i, spec in enumerate(specs):
        for key in [("dataset", spec.dataset), *(("train", name) for name in spec.train)]:
            if key in owner:
                parent[find(i)] = find(owner[key])
            else:
                owner[key] = i
    groups: dict[int, list[int]] = {}
    for i in range(len(specs)):
        groups.setdefault(find(i), []).append(i)
    return list(groups.values())


def encodes(spec) -> bool:
    """Whether a spec runs a neural encoder (and so would use a GPU when one is there)."""
    return bool(spec.train) or "encoder" in repr(spec.pipeline.params)


def run_group(items: list, workdir: str | None, quiet: bool, results: str | None) -> list:
    """One group's specs in one task, recorded as a sequential run records them."""
    from pyserini_ext.repro.results import run_specs as run_and_record

    return run_and_record(items, Path(workdir) if workdir else None, quiet, Path(results) if results else None)


def run_specs(items: list, workdir: Path | None = None, quiet: bool = False, address: str | None = None,
              results: Path | None = None) -> list:
    """The outcomes of ``items`` (``(name, spec or the error reading it)``, as
    :func:`pyserini_ext.repro.results.run_specs` takes them), in the order given: the
    independent groups run as parallel Ray tasks, each recording its specs' results (in the
    shared ``results`` folder) exactly as the sequential run does; an unreadable spec is an
    ERROR outcome, as there."""
    from pyserini_ext.paths import work_dir
    from pyserini_ext.repro.results import run_specs as run_and_record

    ray = connect(address)
    workdir = Path(workdir) if workdir is not None else work_dir()
    readable = [i for i, (_, spec) in enumerate(items) if not isinstance(spec, Exception)]
    specs = [items[i][1] for i in readable]
    has_gpus = ray.cluster_resources().get("GPU", 0) >= 1
    task = ray.remote(run_group)
    groups = spec_groups(specs)
    refs = []
    for group in groups:
        gpus = 1 if has_gpus and any(encodes(specs[j]) for j in group) else 0
        refs.append(task.options(num_cpus=1, num_gpus=gpus, max_retries=0).remote(
            [items[readable[j]] for j in group], str(workdir), quiet, str(results) if results else None))
    log.info("running %d specs in %d parallel groups on Ray", len(specs), len(groups))
    outcomes: list = [None] * len(items)
    for i, item in enumerate(items):
        if i not in readable:
            outcomes[i] = run_and_record([item], workdir, quiet, results)[0]
    for group, ref in zip(groups, refs):
        for j, outcome in zip(group, ray.get(ref)):
            outcomes[readable[j]] = outcome
    return outcomes
