# The two commands of the README:  make demo  and  make test.
SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# The shared CMPD reference data when it sits beside the checkout (as in CI), else data/shapes.
HOTSPOTS_DATA_DIR ?= $(if $(wildcard ../shared/cmpd/README.md),$(abspath ../shared/cmpd),$(abspath data/shapes))
export HOTSPOTS_DATA_DIR

.PHONY: setup demo test db-up db-down bench bench-dask clean

setup: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml scripts/setup-system.sh
	bash scripts/setup-system.sh
	@# A half-made .venv (an interrupted or failed `python3 -m venv`) has no working pip: start it again.
	@if ! $(BIN)/python -m pip --version >/dev/null 2>&1; then rm -rf $(VENV) && $(PYTHON) -m venv $(VENV); fi
	$(BIN)/pip install -q --disable-pip-version-check -e '.[dev]'
	touch $@

demo: setup
	$(BIN)/hotspots demo

test: setup
	$(BIN)/pytest

db-up: setup
	$(BIN)/hotspots db up

db-down: setup
	$(BIN)/hotspots db down

# Benchmarks write their figures to var/bench/*.json; bench/RESULTS.md records them with dates.
bench: setup
	$(BIN)/pip install -q --disable-pip-version-check -e '.[dev,bench]'
	$(BIN)/python bench/load_calls.py
	$(BIN)/python bench/classifier.py
	$(BIN)/python bench/recompute.py
	$(BIN)/python bench/assign_points.py
	$(BIN)/python bench/tiles.py
	$(BIN)/python bench/features.py
	$(BIN)/python bench/exports.py
	$(BIN)/python bench/sync.py
	$(BIN)/python bench/concurrency.py --clients 100 --seconds 60 --request-timeout-ms 5000
	$(BIN)/python bench/concurrency.py --clients 100 --seconds 60 --request-timeout-ms 5000 --stuck-clients 4
	$(BIN)/python bench/admission.py

# 10M calls, single machine against a 2-worker Dask LocalCluster (about 25 minutes on 2 cores).
bench-dask: setup
	$(BIN)/pip install -q --disable-pip-version-check -e '.[dev,bench]'
	$(BIN)/python bench/dask_scale.py

clean:
	-$(BIN)/hotspots db down
	rm -rf var $(VENV) *.egg-info .pytest_cache
