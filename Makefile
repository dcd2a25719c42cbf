# The two commands of README.md: `make demo` and `make test`. Both create .venv when missing.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv demo test test-slurm bench bench-quick clean-demo

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[all]"
	touch $(STAMP)

venv: $(STAMP)

test: $(STAMP)
	$(BIN)/python -m pytest -m "not slurm" tests

test-slurm: $(STAMP)
	$(BIN)/python -m pytest -m slurm tests

# Query speed and memory vs scikit-activeml and baal, plus a 1M-point CCMA run (benchmarks/README.md).
bench: $(STAMP)
	$(BIN)/python benchmarks/al_speed.py

bench-quick: $(STAMP)
	$(BIN)/python benchmarks/al_speed.py --quick
