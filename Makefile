# Two commands for a newcomer:  `make demo` (a default fuzz campaign on the built-in models)
# and `make test` (the whole test suite). Both create .venv on first use.
PYTHON ?= python3
VENV ?= .venv
# torch 2.13.0 is a local CPU wheel on the project's machines; elsewhere pip takes it from PyPI.
# Override for another build, e.g. make TORCH_SPEC="torch --index-url https://download.pytorch.org/whl/cpu"
TORCH_SPEC ?= torch==2.13.0
BIN = $(VENV)/bin

.PHONY: demo test setup bench clean

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

clean:
	rm -rf $(VENV)
