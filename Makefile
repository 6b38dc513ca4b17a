# One entry point for setting up, running and testing the project on a fresh machine.
#   make demo   set everything up and run the pipeline on the embedded default
#   make test   set everything up and run the tests (make test-unit: the fast unit tier)
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PTH := $(VENV)/lib/python3.11/site-packages/msd_project.pth
SHARED_TRACKS := ../shared/msd/tracks
export MSD_STATE_DIR ?= $(CURDIR)/.state

.PHONY: setup demo test test-unit services-start services-stop services-status bench clean

setup: $(STAMP) $(PTH)

$(STAMP): requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

# Makes include/ and spark_jobs/ importable from the venv (Airflow, Spark executors, pytest).
$(PTH): $(STAMP)
	printf '%s\n%s\n' "$(CURDIR)/include" "$(CURDIR)/spark_jobs" > $@

services-start: setup
	$(PY) -m msd_devtools.services start mongo

services-stop:
	$(PY) -m msd_devtools.services stop all

services-status:
	$(PY) -m msd_devtools.services status all

demo: setup services-start
	$(PY) -m msd_devtools.demo

test: setup
	$(PY) -m pytest

# The unit tier alone: pure logic, no server, no Spark (under a minute).
test-unit: setup
	$(PY) -m pytest tests/unit

bench: setup services-start
	$(PY) benchmarks/bench_ingest.py
	$(PY) benchmarks/bench_training.py

clean: services-stop
	rm -rf .state artifacts data test-artifacts
