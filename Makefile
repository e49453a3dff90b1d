# make env   - create .venv with every pinned dependency (pyproject.toml)
# make run   - the workflow on this machine: make run CONFIG=config/quick.yaml CORES=2
# make test  - the test suite (what CI runs, after .ci/run has started SLURM)
# make report - report.html of the last run
# make study  - the reference study (config/study.yaml) in $(STUDY_DIR), resumed from and
#               published to docs/study/: make study DATA=/path/to/sign-language-digits

VENV   ?= .venv
CONFIG ?= config/config.yaml
CORES  ?= all
BIN    := $(VENV)/bin
STUDY_DIR ?= study-run
DATA   ?= ../shared/datasets/sign-language-digits
SNAKEMAKE_STUDY = PATH="$(abspath $(BIN)):$$PATH" $(BIN)/snakemake -s $(abspath workflow/Snakefile) \
	-d $(STUDY_DIR) --configfile $(abspath config/study.yaml) --config data_dir=$(abspath $(DATA))

.PHONY: env run report test study
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

# Data steps first, then the published jobs are restored (newer than their inputs, so they are
# not retrained), then the rest of the grid runs and everything is published again.
study: env
	$(SNAKEMAKE_STUDY) --cores $(CORES) results/data/folds.tsv results/compare/data/folds.tsv
	$(BIN)/python scripts/publish_study.py restore --workdir $(STUDY_DIR)
	$(SNAKEMAKE_STUDY) --cores $(CORES) --keep-going; status=$$?; \
	$(BIN)/python scripts/publish_study.py publish --workdir $(STUDY_DIR) && exit $$status
	$(SNAKEMAKE_STUDY) --report $(abspath $(STUDY_DIR))/report.html
