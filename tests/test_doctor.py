"""``pyserini-ext doctor`` runs on this install, names every check, and says what to install
for whatever it finds missing; it neither imports Ray nor starts the JVM."""

import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
NAMES = ["java", "torch", "onnxruntime", "faiss", "ray", "chromium", "data root", "work folder"]


def test_doctor_names_each_check_and_what_to_install(tmp_path):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "PYSERINI_EXT_WORK": str(tmp_path / "work"),
           "PATH": "/usr/bin:/bin"}
    out = subprocess.run([sys.executable, "-m", "pyserini_ext", "doctor"], capture_output=True, text=True,
                         timeout=300, env=env)
    assert out.returncode == 0, out.stderr
    rows = [line for line in out.stdout.splitlines() if not line.startswith(" ")]
    assert [row[:12].strip() for row in rows] == NAMES
    statuses = {row[:12].strip(): row[13:23].strip() for row in rows}
    assert set(statuses.values()) <= {"ok", "missing", "cpu-only"}
    assert f"work folder  ok        {tmp_path / 'work'} ($PYSERINI_EXT_WORK): created on first use" in out.stdout
    # every row that is not ok is followed by what to install
    lines = out.stdout.splitlines()
    for i, line in enumerate(lines):
        if not line.startswith(" ") and line[13:23].strip() != "ok":
            assert lines[i + 1].lstrip().startswith("-> "), line


def test_doctor_imports_no_ray_and_starts_no_jvm():
    code = ("import sys\nfrom pyserini_ext.doctor import diagnose\nchecks = diagnose()\n"
            "print(len(checks), 'ray' in sys.modules, 'jnius' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["8", "False", "False"]
