# Two commands for a newcomer:  `make demo` (a default fuzz campaign on the built-in models)
# and `make test` (the whole test suite). Both create .venv on first use.
PYTHON ?= python3
VENV ?= .venv
# torch 2.13.0 is a local CPU wheel on the project's machines; elsewhere pip takes it from PyPI.
# Override for another build, e.g. make TORCH_SPEC="torch --index-url https://download.pytorch.org/whl/cpu"
TORCH_SPEC ?= torch==2.13.0
BIN = $(VENV)/bin

.PHONY: demo test setup bench clean test-torch

$(BIN)/mtcheck: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	$(BIN)/python -c "import torch" 2>/dev/null || $(BIN)/python -m pip install -q $(TORCH_SPEC)
	$(BIN)/python -m pip install -q -e ".[dev]"
	touch $(BIN)/mtcheck

setup: $(BIN)/mtcheck

# exit 1 means "findings saved to the corpus": a result, not a failure of the demo
demo: setup
	$(BIN)/mtcheck fuzz --max-time 60 || test $$? -eq 1

test: setup
	$(BIN)/python -m pytest -q -n 2

bench: setup
	$(BIN)/python bench/check_cost.py

# ---- the version matrix (not part of `make test` or CI): the property suite, the corpus and the
# catalogue under another torch, in a second venv (git-ignored), e.g.
#     make test-torch TORCH_SPEC=torch==2.14.1
# The expected per-version differences are data: properties/torch_versions.json (properties/torch_matrix.py
# applies them to pytest; `mtcheck catalogue --diff --expect` to the catalogue, against the catalogue of .venv).
TORCH_VENV ?= .venv-torch
# the baseline venv (.venv) keeps its own torch: TORCH_SPEC here names the other one
BASE_TORCH_SPEC ?= torch==2.13.0
TORCH_BIN = $(TORCH_VENV)/bin
MATRIX = build/torch-matrix
# OpInfo entries swept into both catalogues (the ops whose tie rules PyTorch 2.14 changed, and their kin)
MATRIX_OPINFO = --op clamp --op clamp_min --op clamp_max --op fmax --op fmin --op maximum --op minimum \
	--op max.binary --op min.binary

$(TORCH_BIN)/mtcheck: pyproject.toml
	$(PYTHON) -m venv $(TORCH_VENV)
	$(TORCH_BIN)/python -m pip install -q --upgrade pip
	$(TORCH_BIN)/python -m pip install -q $(TORCH_SPEC)
	$(TORCH_BIN)/python -m pip install -q -e ".[dev]"
	touch $(TORCH_BIN)/mtcheck

test-torch: $(TORCH_BIN)/mtcheck
	$(MAKE) setup TORCH_SPEC='$(BASE_TORCH_SPEC)'
	$(TORCH_BIN)/python -m pip install -q $(TORCH_SPEC)
	@mkdir -p $(MATRIX)
	@echo "== torch matrix: baseline $$($(BIN)/python -c 'import torch; print(torch.__version__)')," \
	      "other $$($(TORCH_BIN)/python -c 'import torch; print(torch.__version__)')"
	PYTHONPATH=properties $(TORCH_BIN)/python -m pytest -q -p no:xdist -p torch_matrix properties corpus
	$(TORCH_BIN)/mtcheck replay corpus
	$(BIN)/mtcheck opinfo $(MATRIX_OPINFO) -n 1 -q --op-budget 30 --output $(MATRIX)/opinfo-old.json
	$(TORCH_BIN)/mtcheck opinfo $(MATRIX_OPINFO) -n 1 -q --op-budget 30 --output $(MATRIX)/opinfo-new.json
	$(BIN)/mtcheck catalogue --format json --sweep $(MATRIX)/opinfo-old.json --output $(MATRIX)/catalogue-old.json
	$(TORCH_BIN)/mtcheck catalogue --format json --sweep $(MATRIX)/opinfo-new.json --output $(MATRIX)/catalogue-new.json
	$(TORCH_BIN)/mtcheck catalogue --diff $(MATRIX)/catalogue-old.json $(MATRIX)/catalogue-new.json \
	    --format md --output $(MATRIX)/diff.md --expect properties/torch_versions.json

clean:
	rm -rf $(VENV)
