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


def run_group(specs: list, workdir: str | None, quiet: bool) -> list[list]:
    from pyserini_ext.repro.runner import run_spec

    return [run_spec(spec, Path(workdir) if workdir else None, quiet) for spec in specs]


def run_specs(specs: list, workdir: Path | None = None, quiet: bool = False, address: str | None = None) -> list:
    """The verdicts of ``specs`` (as :func:`pyserini_ext.repro.runner.run_spec` gives them, in
    order), the independent groups run as parallel Ray tasks."""
    from pyserini_ext.paths import work_dir

    ray = connect(address)
    workdir = Path(workdir) if workdir is not None else work_dir()
    has_gpus = ray.cluster_resources().get("GPU", 0) >= 1
    task = ray.remote(run_group)
    groups = spec_groups(specs)
    refs = []
    for group in groups:
        gpus = 1 if has_gpus and any(encodes(specs[i]) for i in group) else 0
        refs.append(task.options(num_cpus=1, num_gpus=gpus, max_retries=0).remote(
            [specs[i] for i in group], str(workdir), quiet))
    log.info("running %d specs in %d parallel groups on Ray", len(specs), len(groups))
    verdicts: list = [None] * len(specs)
    for group, ref in zip(groups, refs):
        for i, spec_verdicts in zip(group, ray.get(ref)):
            verdicts[i] = spec_verdicts
    return [v for spec_verdicts in verdicts for v in spec_verdicts]
