"""The CLI says what it did: ``index`` ends with one summary line, and Java's INFO lines stay out
of stderr (unless ``-v``)."""

import re
import subprocess
import sys


def test_index_ends_with_a_summary_and_java_stays_quiet(workdir):
    command = [sys.executable, "-m", "pyserini_ext", "index", "bm25", "--dataset", "cacm", "--work", str(workdir)]
    out = subprocess.run(command, capture_output=True, text=True, timeout=600)
    assert out.returncode == 0, out.stderr
    where = workdir / "indexes" / "cacm.lucene-flat"
    size = sum(p.stat().st_size for p in where.rglob("*") if p.is_file())
    summary = out.stdout.strip().splitlines()[-1]
    assert re.fullmatch(rf"bm25 index for cacm: {re.escape(str(where))}; 3,204 documents, "
                        rf"{size / 1e6:.1f} MB on disk, \d+\.\d s", summary), summary
    assert "INFO: Using MemorySegmentIndexInput" not in out.stderr  # Lucene's, printed on opening the index
