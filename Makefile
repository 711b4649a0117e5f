# Two entry points, each doing its own set-up: `make run` (the default experiment) and `make test`.
# The virtual environment is rebuilt only when the pinned requirements change, so both are safe to rerun.
PYTHON ?= python3
VENV   := .venv
STAMP  := $(VENV)/.installed
export PATH := $(abspath $(VENV))/bin:$(PATH)
export MPLBACKEND := Agg

.PHONY: run test lint report clean-venv

$(STAMP): envs/requirements.lock pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install --quiet --upgrade pip
	$(VENV)/bin/pip install --quiet -r envs/requirements.lock
	$(VENV)/bin/pip install --quiet --no-deps -e .
	touch $(STAMP)

run: $(STAMP)
	snakemake $(ARGS)

report: $(STAMP)
	snakemake --report results/report.html

# The Slurm integration tests (tests/slurm) follow when this machine can host a throw-away Slurm
# cluster (root and apt-get); otherwise they are reported as skipped. SLURM_TESTS=0 skips them.
test: $(STAMP)
	ruff check src tests benchmarks
	pytest -q $(ARGS)
	bash tests/browser.sh
	bash tests/slurm/ci.sh

lint: $(STAMP)
	ruff check src tests benchmarks
	snakemake --lint

clean-venv:
	rm -rf $(VENV)
