# `make run` and `make test` set everything up on a fresh machine, then do the job.
# The CPU build of torch is the default; GPU users override TORCH_SPEC (e.g. TORCH_SPEC=torch).
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
DESIGN ?= examples/playground.yaml
BIN := $(VENV)/bin

.PHONY: run test lint bench clean

$(BIN)/.installed: pyproject.toml
	test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q "$(TORCH_SPEC)"
	$(BIN)/pip install -q -e ".[dev]"
	touch $@

run: $(BIN)/.installed
	$(BIN)/pretrainlab run $(DESIGN)

test: $(BIN)/.installed
	$(BIN)/python -m pytest

lint: $(BIN)/.installed
	$(BIN)/ruff check src tests bench

bench: $(BIN)/.installed
	$(BIN)/python bench/data_throughput.py
	$(BIN)/python bench/train_throughput.py

clean:
	rm -rf runs
