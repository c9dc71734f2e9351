# ofactl: set-up, tests, demo.  `make test` and `make demo` work on a fresh machine.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.ofactl-installed
# torch 2.14.1 + torchaudio 2.11.0 is the pair known to import together here.
TORCH := torch==2.14.1 torchaudio==2.11.0

.PHONY: setup system-deps test demo bench clean

setup: system-deps $(STAMP)

# Debian packages: espeak-ng speaks the synthetic corpus (tests and demo).
system-deps:
	@command -v espeak-ng >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq espeak-ng; \
	  elif command -v sudo >/dev/null 2>&1; then sudo apt-get update -qq && sudo apt-get install -y -qq espeak-ng; \
	  else echo "ofactl needs espeak-ng: apt-get install espeak-ng" >&2; exit 1; fi; }

$(STAMP): pyproject.toml Makefile
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet $(TORCH)
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	# s3prl for the DistilHuBERT parity test: its distiller needs only torch and numpy, its own pins are too old
	$(BIN)/python -m pip install --quiet --no-deps 's3prl==0.4.18'
	touch $(STAMP)

test: setup
	$(BIN)/python -m pytest -q -n 2

demo: setup
	bash recipes/mini/run.sh

# All benchmarks, one table (a report: exit 0 even when a goal is missed).
# Flags through ARGS, e.g. make bench ARGS="--quick" or ARGS="--long-minutes 60 --json bench.json".
bench: setup
	$(BIN)/python benchmarks/run_all.py $(ARGS)

clean:
	rm -rf $(VENV) exp .pytest_cache .hypothesis
