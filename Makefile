# The two commands a new user types: `make demo` and `make test`.
# Both create .venv/ on first use from the pinned requirements.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.pcm_installed
export HF_HUB_OFFLINE := 1
export TRANSFORMERS_OFFLINE := 1
export TOKENIZERS_PARALLELISM := false

.PHONY: venv demo dry-run test test-fast lint bench clean-venv

venv: $(STAMP)

$(STAMP): requirements/pinned.txt requirements/tests.txt requirements/no_deps.txt setup.py
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	@# pip's config on some machines prints one 'is ignored' line per
	@# package; keep real warnings and errors.
	$(PY) -m pip install -q -r requirements/pinned.txt -r requirements/tests.txt 2>&1 | grep -v 'is ignored: it is neither' || true
	$(PY) -m pip install -q --no-deps -r requirements/no_deps.txt 2>&1 | grep -v 'is ignored: it is neither' || true
	$(PY) -m pip install -q --no-deps --no-build-isolation -e . 2>&1 | grep -v 'is ignored: it is neither' || true
	$(PY) tools/install_torchvision_shim.py
	$(PY) -W "ignore:Fail to import:UserWarning" -c "import torch, mmengine, mmpretrain.models, open_clip, diffusers, pcm_plugin; assert torch.__version__.startswith('2.13.0'), torch.__version__"
	touch $(STAMP)

# The lab (projects/): not in the wheel, run from a clone.
demo: $(STAMP)
	$(PY) projects/mini_world/tools/demo.py

# The whole data path (captions -> ... -> captions of test photos) on 60
# captions with tiny random models, each tool as a user runs it: minutes.
dry-run: $(STAMP)
	$(PY) tools/data/dry_run.py --out work_dirs/dry_run

# Tests run on TEST_WORKERS processes (pytest-xdist; 0 runs them in this
# one), a file's tests on one worker (module fixtures are built once, the
# README tier keeps its order), each with one torch thread: two threads in
# each of two workers would oversubscribe two cores.
TEST_WORKERS ?= 2
PYTEST := OMP_NUM_THREADS=1 $(PY) -m pytest tests projects -q -n $(TEST_WORKERS) --dist loadfile

test: $(STAMP)
	$(PYTEST)

# ruff, and the floor plan of docs/architecture.md (.importlinter).
lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/lint-imports --no-logo

# SHARED_DATA=DIR adds the caption-metric rows on the real COCO subset
# (DIR/coco-val2014-captions/); without it they are skipped with a note.
bench: $(STAMP)
	$(PY) projects/benchmarks/tools/benchmark.py --out work_dirs/benchmark.json $(if $(SHARED_DATA),--shared-data $(SHARED_DATA))

test-fast: $(STAMP)
	$(PYTEST) -m "not slow"

clean-venv:
	rm -rf $(VENV)
