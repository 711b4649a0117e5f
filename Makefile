# Two entry points, each doing its own set-up: `make run` (the default experiment) and `make test` (lint and
# the fast test tier: no root, nothing written outside the checkout and its venv). `make test-all` adds the
# slow end-to-end tests and the cluster tier (Slurm, multi-node, browser), which as root install packages
# and create network namespaces; CI runs it with every skip turned into a failure.
# The virtual environment is rebuilt only when the pinned requirements change, so all are safe to rerun.
PYTHON ?= python3
VENV   := .venv
STAMP  := $(VENV)/.installed
export PATH := $(abspath $(VENV))/bin:$(PATH)
export MPLBACKEND := Agg

# Temporary files, caches and matplotlib's config of the test runs stay inside the checkout.
TEST_TMP := $(abspath .test-tmp)
TEST_ENV := TMPDIR=$(TEST_TMP) MPLCONFIGDIR=$(TEST_TMP)/mpl XDG_CACHE_HOME=$(TEST_TMP)/cache

.PHONY: run test test-slow test-cluster test-all lint report clean-venv

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

test: $(STAMP)
	ruff check src tests benchmarks
	rm -rf $(TEST_TMP) && mkdir -p $(TEST_TMP)
	$(TEST_ENV) pytest -q -rs -m "not slow and not slurm and not browser and not multinode" \
		--timeout=600 --basetemp=$(TEST_TMP)/pytest $(ARGS)

# The end-to-end runs (Snakemake pipelines, MPI kills and resumes, fine grids): tens of seconds each.
test-slow: $(STAMP)
	mkdir -p $(TEST_TMP)
	$(TEST_ENV) pytest -q -rs -m "slow and not slurm and not browser and not multinode" \
		--timeout=1200 --basetemp=$(TEST_TMP)/pytest-slow $(ARGS)

# The cluster tier: the HTML report in headless Chromium, then a throw-away Slurm cluster (and a two-node
# one in network namespaces). As root with apt-get they install what they need; elsewhere they are reported
# as skipped, or fail with BROWSER_TESTS=1 / SLURM_TESTS=1 (what CI sets). A Slurm set-up that the test
# scripts did not create is refused (tests/slurm/cluster.sh).
test-cluster: $(STAMP)
	bash tests/browser.sh
	bash tests/slurm/ci.sh

test-all: test test-slow test-cluster

lint: $(STAMP)
	ruff check src tests benchmarks
	snakemake --lint

clean-venv:
	rm -rf $(VENV)
