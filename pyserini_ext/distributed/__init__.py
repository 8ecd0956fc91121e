"""Ray behind the same commands: distributed encoding, sharded search, regression specs in parallel.

Every ``import ray`` of the package is in this package, and nothing outside it imports it
unless ``--ray`` (or a ``ray=``/``address`` argument) asks for it: ``import pyserini_ext`` and
a normal search never load Ray.

``address``: ``None`` starts a local Ray instance sized to the machine (or joins the one this
process already started); ``"auto"`` joins the cluster running on this machine
(``ray start --head``); ``"ray://host:10001"`` or ``"host:6379"`` joins that cluster. The
workers read and write the same paths as the driver (data root, work folder): on more than
one node those must be on a shared file system. See ``docs/scale.md``.
"""

from __future__ import annotations

import os

INSTALL_HINT = 'Ray is not installed: pip install "pyserini_ext[ray]"'

# What a worker process needs from the driver's environment to resolve datasets, cards,
# models and the work folder the same way (prefixes of environment variables).
FORWARDED_ENV = ("PYSERINI_EXT_", "HF_", "TRANSFORMERS_")


class RayMissing(RuntimeError):
    """``--ray`` was asked for but Ray is not installed; the message says what to install."""


def require_ray():
    """The ``ray`` module, or :class:`RayMissing` with the one line that says what to install."""
    # Ray's core worker installs absl's failure signal handler for SIGSEGV, which takes the
    # signal from a JVM in the same process (Anserini's, here or in a Ray task running a BM25
    # spec): the JVM raises SIGSEGV on purpose and must handle it itself. Measured here: a
    # threaded Lucene batch_search after a Ray task crashed the driver (exit 139) without this,
    # and ran with it. It must be set before ray is imported; the workers get it through
    # runtime_env.
    os.environ.setdefault(NO_SIGNAL_HANDLER, "1")
    try:
        import ray
    except ImportError:
        raise RayMissing(INSTALL_HINT) from None
    return ray


NO_SIGNAL_HANDLER = "RAY_DISABLE_FAILURE_SIGNAL_HANDLER"


def forwarded_env() -> dict[str, str]:
    return {k: v for k, v in os.environ.items() if k.startswith(FORWARDED_ENV)}


def connect(address: str | None = None, **local_options):
    """Ray, initialised: the instance this process already joined, else ``address`` (see the
    module's docstring; ``"local"`` is the same as ``None``), else a new local instance
    (``local_options`` go to ``ray.init``: ``num_cpus``, ...). Returns the ``ray`` module."""
    import faulthandler

    ray = require_ray()
    if not ray.is_initialized():
        runtime_env = {"env_vars": {**forwarded_env(), NO_SIGNAL_HANDLER: os.environ[NO_SIGNAL_HANDLER]}}
        handler_was_on = faulthandler.is_enabled()
        if address and address != "local":
            ray.init(address=address, runtime_env=runtime_env, log_to_driver=False)
        else:
            ray.init(runtime_env=runtime_env, log_to_driver=False, include_dashboard=False, **local_options)
        if not handler_was_on:
            # ray.init turns on Python's faulthandler, whose SIGSEGV handler takes the signal from
            # a JVM started earlier in this process (Anserini's; the JVM raises SIGSEGV on purpose,
            # for null checks) and re-raises it: the JVM then aborts. Measured here: a Lucene
            # search after ray.init crashed the driver. Off again, the JVM handles its own.
            faulthandler.disable()
    return ray


def worker_slots(ray) -> tuple[int, str]:
    """How many encoder workers the cluster holds and of what: one per GPU when it has GPUs,
    else one per CPU slot."""
    resources = ray.cluster_resources()
    gpus = int(resources.get("GPU", 0))
    return (gpus, "GPU") if gpus else (max(1, int(resources.get("CPU", 1))), "CPU")
