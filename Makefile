# `make demo` and `make test` work on a fresh machine: they create .venv and install into it.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin

.PHONY: demo test lint docs install clean

$(BIN)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip
	# the CPU wheel of torch first: a bare `torch` requirement would pull a multi-GB CUDA build
	$(BIN)/pip install -q torch==2.13.0
	$(BIN)/pip install -q -e .
	touch $@

$(BIN)/.dev: $(BIN)/.installed
	$(BIN)/pip install -q -e '.[dev]'
	touch $@

$(BIN)/.docs: $(BIN)/.dev
	$(BIN)/pip install -q -e '.[docs]'
	touch $@

install: $(BIN)/.installed

demo: $(BIN)/.installed
	$(BIN)/walknoise demo -o demo

lint: $(BIN)/.dev
	$(BIN)/ruff check walknoise cli tests benchmarks docs/scripts
	$(BIN)/ruff format --check walknoise cli tests benchmarks docs/scripts
	$(BIN)/mypy

# The documentation site, built strictly (any warning fails), and the example notebook run
# from top to bottom; its outputs are not written back.
docs: $(BIN)/.docs
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --site-dir site
	$(BIN)/pytest --nbmake --nbmake-timeout=300 -p no:cacheprovider docs/examples/walk_a_model.ipynb

test: lint docs
	$(BIN)/pytest

clean:
	rm -rf $(VENV) demo site .mypy_cache .ruff_cache .pytest_cache
