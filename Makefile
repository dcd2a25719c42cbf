# The two commands of README.md: `make demo` and `make test`. Both create .venv when missing.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: venv demo test mutate test-slurm test-browser bench bench-quick bench-session clean-demo

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -e ".[all]"
	touch $(STAMP)

venv: $(STAMP)

# The offline demo (config/demo.yaml): every stage of the Snakefile on 2 cores, ending in
# results/demo/report.html. Two AL runs at a time, one core each.
demo: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/snakemake --cores 2 --configfile config/demo.yaml \
		--set-threads al=1 clusters=1 prototypes=1 synth=1
	@echo "report: results/demo/report.html"

clean-demo:
	rm -rf data/demo results/demo

test: $(STAMP)
	$(BIN)/python -m pytest -m "not slurm and not browser" tests

# Deliberate bugs (tools/mutations.yaml), one at a time in a copy of the tree: each must fail
# the tests named for it. Fails, with a table, if one survives.
mutate: $(STAMP)
	$(BIN)/python tools/mutate.py

# Needs root: installs Debian's SLURM packages and starts the daemons (tests/test_slurm.py).
test-slurm: $(STAMP)
	PATH="$(CURDIR)/$(BIN):$$PATH" $(BIN)/python -m pytest -m slurm tests

# Needs Debian's chromium and chromium-driver (apt-get install chromium chromium-driver): the
# labelling page driven in a real browser (tests/test_session_browser.py).
test-browser: $(STAMP)
	$(BIN)/python -m pytest -m browser -s tests

# Query speed and memory vs scikit-activeml and baal, plus a 1M-point CCMA run (benchmarks/README.md).
bench: $(STAMP)
	$(BIN)/python benchmarks/al_speed.py

bench-quick: $(STAMP)
	$(BIN)/python benchmarks/al_speed.py --quick

# A labelling session's next-batch latency at 50,000 images and its thumbnail page time.
bench-session: $(STAMP)
	$(BIN)/python benchmarks/session_latency.py
