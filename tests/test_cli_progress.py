"""The CLI's encoding bar has a total and a time left: ``index dense`` on a 40-document corpus
shows ``N/40`` with ``elapsed<remaining`` on stderr (tqdm writes its bar there even off a terminal)."""

import re
import shutil
import subprocess
import sys
from pathlib import Path

PLUGIN_DATA = Path(__file__).resolve().parent / "plugin_pkg" / "px_hashing" / "data"


def test_the_encoding_bar_counts_to_the_corpus_size_with_time_left(tmp_path):
    data = tmp_path / "tiny"
    shutil.copytree(PLUGIN_DATA, data)  # a BEIR folder: corpus.jsonl (40 documents), queries, qrels
    out = subprocess.run([sys.executable, "-m", "pyserini_ext", "index", "dense", "--dataset", str(data),
                          "--work", str(tmp_path / "work")], capture_output=True, text=True, timeout=300)
    assert out.returncode == 0, out.stderr
    # tqdm redraws with carriage returns; each state of the bar is one piece.
    states = [s for s in re.split(r"[\r\n]", out.stderr) if s.startswith("encoding ")]
    assert states, out.stderr
    assert re.search(r": +0%\|.*\| 0/40 \[", states[0]), states[0]  # the total is known before the first document
    assert re.search(r": 100%\|.*\| 40/40 \[\d\d:\d\d<\d\d:\d\d, ", states[-1]), states[-1]  # elapsed<left
    assert out.stdout.strip().endswith(" s") and "; 40 documents, " in out.stdout
