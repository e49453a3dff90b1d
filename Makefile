# make env   - create .venv with every pinned dependency (pyproject.toml)
#              PYTHON=python3.11: the interpreter to build it from (python3 by default; >= 3.11)
#              TORCH_INDEX=https://download.pytorch.org/whl/cu126: take the pinned torch and
#              torchvision from that PyTorch wheel index (the CUDA build that the GPU nodes'
#              driver supports; README "Run on SLURM") instead of PyPI's default build
# make run   - the workflow on this machine: make run CONFIG=config/quick.yaml CORES=2
# make test  - the test suite (what CI runs, after .ci/run has started SLURM)
# make report - report.html of the last run
# make status - while a run goes on (beside it, e.g. on the SLURM login node): an interim summary
#               of the jobs finished so far in WORKDIR/results/interim/, every file marked
#               .interim.; reads the run's files only (no snakemake, no torch):
#               make status CONFIG=config/quick.yaml [WORKDIR=study-run]
# make study  - the reference study (config/study.yaml) in $(STUDY_DIR), resumed from and
#               published to docs/study/: make study DATA=/path/to/sign-language-digits

VENV   ?= .venv
PYTHON ?= python3
TORCH_INDEX ?=
# The torch pins of pyproject.toml (one source), e.g. "torch==2.14.1 torchvision==0.29.1".
TORCH_PINS := $(shell grep -oE '"torch(vision)?==[^"]+"' pyproject.toml | tr -d '"')
CONFIG ?= config/config.yaml
CORES  ?= all
WORKDIR ?= .
BIN    := $(VENV)/bin
STUDY_DIR ?= study-run
DATA   ?= ../shared/datasets/sign-language-digits
SNAKEMAKE_STUDY = PATH="$(abspath $(BIN)):$$PATH" $(BIN)/snakemake -s $(abspath workflow/Snakefile) \
	-d $(STUDY_DIR) --configfile $(abspath config/study.yaml) --config data_dir=$(abspath $(DATA))

.PHONY: env run report test study status gpu-acceptance
# A venv built from another wheel index is not silently kept: asking for an index that differs
# from the one recorded at build time stops with what to do.
env: $(VENV)/.installed
	@built=$$(cat $(VENV)/.torch-index 2>/dev/null || echo 'an unrecorded index'); \
	if [ -n '$(TORCH_INDEX)' ] && [ "$$built" != '$(TORCH_INDEX)' ]; then \
	    echo "error: $(VENV) has torch from $${built:-PyPI}, not from $(TORCH_INDEX):" \
	         "rebuild it with: rm -rf $(VENV) && make env TORCH_INDEX=$(TORCH_INDEX)" >&2; exit 1; fi

$(VENV)/.installed: pyproject.toml
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "error: $(PYTHON) is Python %d.%d, cvgrid needs >= 3.11: make env PYTHON=python3.11 (on a cluster e.g. after module load python/3.11)" % sys.version_info[:2])'
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(if $(TORCH_INDEX),$(BIN)/python -m pip install --quiet --index-url '$(TORCH_INDEX)' $(TORCH_PINS))
	$(BIN)/python -m pip install --quiet -e '.[test]'
	echo '$(TORCH_INDEX)' > $(VENV)/.torch-index
	touch $@

run: env
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/snakemake --cores $(CORES) --configfile $(CONFIG)

report: env
	PATH="$(abspath $(BIN)):$$PATH" $(BIN)/snakemake --configfile $(CONFIG) --report report.html

PYTEST = PATH="$(abspath $(BIN)):$$PATH" $(BIN)/python -m pytest
# Two pytest processes at once: the SLURM tests, which mostly wait for the scheduler, and the one
# long single-process scale test (-m "slurm or scale") run beside the rest; their report follows
# the other's (also in .pytest-slurm.log). A failure in either fails the target.
test: env
	@$(PYTEST) -m "slurm or scale" > .pytest-slurm.log 2>&1 & slurm=$$!; \
	$(PYTEST) -m "not slurm and not scale"; rest=$$?; \
	wait $$slurm; slurm_status=$$?; \
	echo "=== the SLURM and scale tests (pytest -m 'slurm or scale'), run beside the others ==="; cat .pytest-slurm.log; \
	[ $$rest -eq 0 ] && [ $$slurm_status -eq 0 ]

# Not after `env`: a run is using .venv, which must not be rebuilt under it.
status:
	$(BIN)/python scripts/interim_summary.py --workdir $(WORKDIR) --configfile $(CONFIG)

# Data steps first, then the published jobs are restored (newer than their inputs, so they are
# not retrained), then the rest of the grid runs and everything is published again.
study: env
	$(SNAKEMAKE_STUDY) --cores $(CORES) results/data/folds.tsv results/compare/data/folds.tsv
	$(BIN)/python scripts/publish_study.py restore --workdir $(STUDY_DIR)
	$(SNAKEMAKE_STUDY) --cores $(CORES) --keep-going; status=$$?; \
	$(BIN)/python scripts/publish_study.py publish --workdir $(STUDY_DIR) && exit $$status
	$(SNAKEMAKE_STUDY) --report $(abspath $(STUDY_DIR))/report.html

# The GPU acceptance run (README, "Run on SLURM"): on a machine with one GPU, no Snakemake or
# network needed; DATA is a copy of the data set. Writes docs/benchmarks/gpu-<gpu>.json.
# ACCEPT_PYTHON: any python with torch >= 2.11, numpy, pandas, pillow, pyyaml (default: .venv's).
ACCEPT_PYTHON ?= $(BIN)/python
gpu-acceptance:
	$(ACCEPT_PYTHON) scripts/gpu_acceptance.py --data-dir $(abspath $(DATA))
