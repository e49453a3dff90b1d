# make env   - create .venv with every pinned dependency (pyproject.toml)
# make run   - the workflow on this machine: make run CONFIG=config/quick.yaml CORES=2
# make test  - the test suite (what CI runs, after .ci/run has started SLURM)
# make report - report.html of the last run

VENV   ?= .venv
CONFIG ?= config/config.yaml
CORES  ?= all
BIN    := $(VENV)/bin

.PHONY: env run report test
env: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $@

run: env
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/snakemake --cores $(CORES) --configfile $(CONFIG)

report: env
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/snakemake --configfile $(CONFIG) --report report.html

test: env
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python -m pytest
