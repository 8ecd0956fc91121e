# The README's two commands: `make demo` (reproduce the regression suite) and `make test`.
# Both bootstrap .venv from nothing: torch first from the local CPU wheel (so nothing
# pulls a CUDA build), then this package with its pinned ranges.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
# Real data is read in place from ../shared/data when it is there; otherwise named
# datasets download from their official sources into ~/.cache/pyserini_ext/data.
export PYSERINI_EXT_DATA ?= $(if $(wildcard ../shared/data),$(abspath ../shared/data),)
export PYSERINI_EXT_MODELS ?= $(if $(wildcard ../shared/models),$(abspath ../shared/models),)

.PHONY: demo demo-trained test bench install clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet "torch==2.13.0"
	$(BIN)/python -m pip install --quiet -e ".[test]"
	touch $@

# Ends by writing the reproduction pages (work/pages/index.html) from what the run recorded,
# also when a spec failed (the pages show it).
demo: install
	$(BIN)/pyserini-ext repro run --all; status=$$?; $(BIN)/pyserini-ext repro page && exit $$status

# The specs of models trained here (training/*.yaml): each trains first (a few minutes on 2 cores).
demo-trained: install
	$(BIN)/pyserini-ext repro run --all --train

test: install
	$(BIN)/python -m pytest -q

# Each script times our code and a named peer in the same run and prints the ratios; the
# scale rows grow SciFact with seeded distractors (docs/scale.md), about an hour in all on 2 cores.
bench: install
	$(BIN)/python benchmarks/encode_throughput.py
	$(BIN)/python benchmarks/search_throughput.py
	$(BIN)/python benchmarks/rerank_latency.py --pipeline
	$(BIN)/python benchmarks/rerank_latency.py --sizes 5183 50000 200000
	$(BIN)/python benchmarks/dense_scale.py --sizes 5183 50000 200000
	$(BIN)/python benchmarks/compressed.py

clean:
	rm -rf $(VENV) work

# Issue 14, outside CI: 1,000 generated malformed inputs per reader/loader (12 targets; CI runs
# 40 per target) with their tally, and the slow fault tests (a killed BM25 build: JVM runs).
.PHONY: fuzz
fuzz: install
	FUZZ_EXAMPLES=1000 PYSERINI_EXT_SLOW_TESTS=1 $(BIN)/python -m pytest -q -s tests/test_fuzz.py tests/test_faults.py
