"""``pyserini-ext doctor``: what this installation found, and what to install for what is missing.

One :class:`Check` per thing the commands may need: Java (Anserini), torch and its device,
onnxruntime's providers, FAISS's GPUs, Ray, Chromium (the web UI's browser tests), the data
root and the work folder. A check only looks: it starts no JVM, imports no Ray, downloads
nothing. Missing optional parts are ``missing``, not errors: CPU-only is a fine install.
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import shutil
from dataclasses import dataclass
from typing import Callable

OK, MISSING, CPU_ONLY = "ok", "missing", "cpu-only"


@dataclass(frozen=True)
class Check:
    name: str
    status: str  # ok | missing | cpu-only
    found: str  # what was found, in words
    install: str = ""  # what to install for what is missing (empty when nothing is)


def version(package: str) -> str | None:
    try:
        return importlib.metadata.version(package)
    except importlib.metadata.PackageNotFoundError:
        return None


def check_java() -> Check:
    from pyserini_ext.jvm import INSTALL_HINT, REQUIRED_MAJOR, VECTOR_MODULE, JavaNotFoundError, find_java

    try:
        java = find_java()
    except JavaNotFoundError:
        return Check("java", MISSING, f"no Java {REQUIRED_MAJOR}+", " / ".join(
            line.strip() for line in INSTALL_HINT.format(major=REQUIRED_MAJOR).splitlines()[1:]))
    vector = "" if java.has_vector_module else f" (no {VECTOR_MODULE} module)"
    return Check("java", OK, f"Java {java.version} from {java.source} at {java.home}{vector}")


def check_torch() -> Check:
    import torch

    if torch.cuda.is_available():
        names = ", ".join(torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count()))
        return Check("torch", OK, f"torch {torch.__version__}, CUDA {torch.version.cuda}: {names}")
    build = f"CUDA {torch.version.cuda} build, no GPU visible" if torch.version.cuda else "CPU build"
    return Check("torch", CPU_ONLY, f"torch {torch.__version__} ({build}); encoders run on CPU",
                 "for GPUs: pip install torch --index-url https://download.pytorch.org/whl/cu128")


def check_onnxruntime() -> Check:
    try:
        import onnxruntime as ort
    except ImportError:
        return Check("onnxruntime", MISSING, "not installed", 'pip install "pyserini_ext"  (brings onnxruntime)')
    providers = ort.get_available_providers()
    found = f"onnxruntime {ort.__version__}: {', '.join(providers)}"
    if "CUDAExecutionProvider" in providers:
        return Check("onnxruntime", OK, found)
    return Check("onnxruntime", CPU_ONLY, found, 'for the CUDA provider: pip install "pyserini_ext[gpu]" '
                 "(onnxruntime-gpu in place of onnxruntime)")


def check_faiss() -> Check:
    from pyserini_ext.search.dense import faiss_gpus

    import faiss

    gpus = faiss_gpus()
    build = "GPU build" if hasattr(faiss, "StandardGpuResources") else "CPU build"
    found = f"faiss {faiss.__version__} ({build}), {gpus} GPU(s)"
    if gpus:
        return Check("faiss", OK, found)
    return Check("faiss", CPU_ONLY, found, 'for GPU search: pip install "pyserini_ext[gpu]" (a faiss GPU build) '
                 "or conda install -c pytorch faiss-gpu")


def check_ray() -> Check:
    found = version("ray")  # importlib.metadata: Ray is not imported
    if found is None:
        return Check("ray", MISSING, "not installed (--ray is unavailable)", 'pip install "pyserini_ext[ray]"')
    return Check("ray", OK, f"ray {found} (installed; imported only with --ray)")


def check_chromium() -> Check:
    browser = next((shutil.which(n) for n in ("chromium", "chromium-browser", "google-chrome") if shutil.which(n)), None)
    driver = shutil.which("chromedriver")
    if browser and driver:
        return Check("chromium", OK, f"{browser}, {driver}")
    missing = " and ".join(n for n, p in (("a Chromium browser", browser), ("chromedriver", driver)) if not p)
    return Check("chromium", MISSING, f"no {missing} on PATH (browser tests skip)",
                 "apt install chromium chromium-driver")


def check_data_root() -> Check:
    from pyserini_ext.data.sources import DATA_ROOT_ENV, data_root

    root = data_root()
    where = f"{root} ({'$' + DATA_ROOT_ENV if os.environ.get(DATA_ROOT_ENV) else 'default'})"
    if root.is_dir():
        entries = sum(1 for _ in root.iterdir())
        return Check("data root", OK, f"{where}: {entries} entries")
    return Check("data root", MISSING, f"{where}: not there yet; named datasets download into it",
                 f"export {DATA_ROOT_ENV}=/path/to/data to read datasets from a folder you have")


def check_work() -> Check:
    from pyserini_ext.paths import WORK_ENV, work_dir

    work = work_dir()
    where = f"{work} ({'$' + WORK_ENV if os.environ.get(WORK_ENV) else 'default'})"
    parent = next(p for p in [work, *work.parents] if p.exists())
    if not os.access(parent, os.W_OK):
        return Check("work folder", MISSING, f"{where}: {parent} is not writable",
                     f"export {WORK_ENV}=/a/writable/folder or pass --work")
    return Check("work folder", OK, where + ("" if work.is_dir() else ": created on first use"))


CHECKS: tuple[Callable[[], Check], ...] = (check_java, check_torch, check_onnxruntime, check_faiss, check_ray,
                                           check_chromium, check_data_root, check_work)


def diagnose() -> list[Check]:
    """Every check; one that fails unexpectedly reports its error as ``missing``, never raises."""
    results = []
    for check in CHECKS:
        try:
            results.append(check())
        except Exception as error:  # a broken install is what doctor is for: report it, go on
            name = check.__name__.removeprefix("check_").replace("_", " ")
            results.append(Check(name, MISSING, f"{type(error).__name__}: {error}", "reinstall: pip install -e ."))
    return results


def format_report(checks: list[Check]) -> str:
    width = max(len(c.name) for c in checks)
    lines = []
    for c in checks:
        lines.append(f"{c.name:{width}s}  {c.status:8s}  {c.found}")
        if c.install:
            lines.append(f"{'':{width}s}  {'':8s}  -> {c.install}")
    return "\n".join(lines)
