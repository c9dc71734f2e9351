# ofactl: set-up, tests, demo.  `make test` and `make demo` work on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.ofactl-installed
# torch 2.14.1 + torchaudio 2.11.0 is the pair known to import together here.
TORCH := torch==2.14.1 torchaudio==2.11.0

.PHONY: setup test demo clean

setup: $(STAMP)

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet $(TORCH)
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	touch $(STAMP)

test: setup
	$(BIN)/python -m pytest -q -n 2

demo: setup
	bash recipes/demo/run.sh

clean:
	rm -rf $(VENV) exp .pytest_cache .hypothesis
