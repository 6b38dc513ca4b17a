# One entry point for setting up, running and testing the project on a fresh machine.
#   make demo   set everything up and run the pipeline on the embedded default
#   make test   set everything up and run the tests (make test-unit: the fast unit tier)
#   make test-emr-runtime   the jobs end to end on EMR 7's Python 3.9, Spark and pinned dependencies
#                           (installed, and as EMR Serverless's dependency archive)
PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PTH := $(VENV)/lib/python3.11/site-packages/msd_project.pth
SHARED_TRACKS := ../shared/msd/tracks
export MSD_STATE_DIR ?= $(CURDIR)/.state

.PHONY: FORCE setup setup-emr demo test test-unit test-emr-runtime services-start services-stop services-status bench clean

setup: $(STAMP) $(PTH)

$(STAMP): requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $@

# Makes include/ and spark_jobs/ importable from the venv (Airflow, Spark executors, pytest).
$(PTH): $(STAMP)
	printf '%s\n%s\n' "$(CURDIR)/include" "$(CURDIR)/spark_jobs" > $@

# The EMR runtime: EMR 7's Python (3.9), the Spark that emr.release_label ships and the
# exact pins the cluster's bootstrap installs (include/emr/requirements-emr.txt), nothing
# else. The 3.9 interpreter is python3.9 on PATH, else pyenv's newest 3.9.x; without one
# setup-emr fails, naming what it tried (python -m msd_devtools.emr_runtime --python).
EMR_VENV := .venv-emr
EMR_PY := $(EMR_VENV)/bin/python
EMR_STAMP := $(EMR_VENV)/.installed
EMR_REQUIREMENTS := include/emr/requirements-emr.txt
# The interpreter .venv-emr is built from: rewritten only when another one is found,
# which rebuilds .venv-emr.
EMR_INTERPRETER := $(EMR_VENV).interpreter
export MSD_EMR_PYTHON := $(CURDIR)/$(EMR_PY)
# The same interpreter with the release's pyspark (and its py4j) only: EMR Serverless's
# runtime, where the jobs' packages come from the dependency archive
# (targets/emr_serverless/dependencies.py) and nothing else.
EMR_SPARK_VENV := .venv-emr-spark
EMR_SPARK_PY := $(EMR_SPARK_VENV)/bin/python
EMR_SPARK_STAMP := $(EMR_SPARK_VENV)/.installed
export MSD_EMR_SPARK_PYTHON := $(CURDIR)/$(EMR_SPARK_PY)

setup-emr: $(EMR_STAMP) $(EMR_SPARK_STAMP)

$(EMR_INTERPRETER): FORCE | setup
	@found="$$($(PY) -m msd_devtools.emr_runtime --python)" && \
	  { [ "$$(cat $@ 2>/dev/null)" = "$$found" ] || echo "$$found" > $@; }

$(EMR_STAMP): $(EMR_INTERPRETER) $(EMR_REQUIREMENTS) include/pipeline.toml include/msd_pipeline/targets/emr/releases.py spark_jobs/msdlib/config.py | setup
	rm -rf $(EMR_VENV)
	"$$(cat $(EMR_INTERPRETER))" -m venv $(EMR_VENV)
	$(EMR_PY) -m pip install --quiet --upgrade pip
	$(EMR_PY) -m pip install --quiet -r $(EMR_REQUIREMENTS) "$$($(PY) -m msd_devtools.emr_runtime)"
	$(EMR_PY) -m pip check
	touch $@

$(EMR_SPARK_STAMP): $(EMR_INTERPRETER) include/pipeline.toml include/msd_pipeline/targets/emr/releases.py spark_jobs/msdlib/config.py | setup
	rm -rf $(EMR_SPARK_VENV)
	"$$(cat $(EMR_INTERPRETER))" -m venv $(EMR_SPARK_VENV)
	$(EMR_SPARK_PY) -m pip install --quiet --upgrade pip
	$(EMR_SPARK_PY) -m pip install --quiet "$$($(PY) -m msd_devtools.emr_runtime)"
	$(EMR_SPARK_PY) -m pip check
	touch $@

services-start: setup
	$(PY) -m msd_devtools.services start mongo
	$(PY) -m msd_devtools.services start mlflow

services-stop:
	$(PY) -m msd_devtools.services stop all

services-status:
	$(PY) -m msd_devtools.services status all

demo: setup services-start
	$(PY) -m msd_devtools.demo

test: setup setup-emr
	$(PY) -m pytest

# The unit tier alone: pure logic, no server, no Spark (under a minute).
test-unit: setup
	$(PY) -m pytest tests/unit

# The EMR runtime tier alone: both jobs through that Spark's spark-submit, with the
# installed pins (.venv-emr) and with the dependency archive (.venv-emr-spark).
test-emr-runtime: setup setup-emr
	$(PY) -m pytest tests/emr_runtime

bench: setup services-start
	$(PY) benchmarks/bench_ingest.py
	$(PY) benchmarks/bench_s3_ingest.py
	$(PY) benchmarks/bench_training.py
	$(PY) benchmarks/bench_serving.py

FORCE:

clean: services-stop
	rm -rf .state artifacts data test-artifacts
